/*
 * guardian.c — the schema guard on the event loop: runs loading, drift
 * checks and repairs one at a time on the libuv thread pool (libpq blocks;
 * the loop never does), coalesces concurrent repair requests into one
 * (single-flight), and keeps the drift metrics and /drift report current.
 */
#include "proxy.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "introspect.h"
#include "exclude.h"
#include "log.h"
#include "metrics.h"
#include "redact.h"

/* JOB_PROBE is the light one: the catalog probe alone, between full checks.
 * It shares the admin session, so it runs as a job like the others. */
typedef enum { JOB_NONE, JOB_LOAD, JOB_CHECK, JOB_REPAIR, JOB_PROBE } job_kind;

/* A repair triggered by an error that found nothing missing arms this window:
 * further errors inside it are passed through at once instead of re-reading
 * the catalogs for every mistyped query. */
#define NOTHING_WINDOW_MS 1000
/* One limiter for every path that reads the live catalog (a waiting request,
 * repair-only requests, eager repairs, drift ticks, reloads): at most one
 * drift check or repair starts per second; what is asked meanwhile is
 * served by the next one. */
#define CATALOG_INTERVAL_MS 1000
/* Retries after the database could not be reached start here and double,
 * with jitter, up to --drift-interval. */
#define BACKOFF_FIRST_MS 1000
/* The catalog probe's period: a restore or a migration is noticed within
 * about this, without a full catalog read every second. */
#define PROBE_INTERVAL_MS 1000

static struct {
  bool configured;
  const pgg_guard_config *cfg;
  pgg_admin *admin;
  pgg_catalog desired;
  bool loaded;
  bool schema_broken;     /* the schema file itself failed: wait for SIGHUP */
  bool check_ok;          /* the last check or repair reached the database */
  char load_error[600];
  char last_error[600];   /* the last failure of a load, check or repair (redacted) */
  double last_error_at;   /* its unix time; 0: none yet */
  double checked_at;      /* unix time of the last drift check that reached the database */
  pgg_secrets secrets;    /* the admin and shadow URLs' passwords */

  job_kind running;
  uv_work_t work;
  bool want_load, want_check, want_repair;
  bool requested;         /* want_repair comes from a request, not from a check */

  /* the running job's input and output */
  pgg_catalog job_desired;
  pgg_buf job_err;
  pgg_buf job_notes;     /* statements the load skipped, shadows it dropped: one per line */
  uint64_t job_shadow;   /* the loaded shadow database's hash (0: --shadow-url) */
  int job_rc;
  pgg_repair_result job_res;
  bool job_requested;

  pgg_guard_waiter *waiters;
  uint64_t last_failure_ms;
  bool had_failure;
  uint64_t nothing_at_ms;
  bool nothing_armed;
  unsigned missing_labels;
  char *drift_json;
  uv_timer_t timer;       /* the drift interval */
  uv_timer_t wake;        /* the limiter's or the backoff's wait for the next job */
  pgg_guard_config pending;   /* a reloaded configuration, applied between jobs */
  bool has_pending;

  /* the limiter */
  bool catalog_ran;
  uint64_t catalog_at_ms;     /* when the last check or repair started */

  /* backoff while the database cannot be reached */
  bool failing;
  uint64_t failing_since_ms;
  uint64_t backoff_ms;        /* the delay after the next failure, before jitter */
  uint64_t retry_at_ms;       /* no job starts before this while failing */
  unsigned attempts;          /* retries in this failing spell */
  bool upstream_news;         /* the next server-leg success is news: retry then */
  bool upstream_seen;         /* a server-leg connection succeeded since the last failure */
  /* The admin URL reaches no primary (a standby, or a read-only server): a
   * kind of failing, retried with the same backoff, but meanwhile the guard
   * holds no request at all. */
  bool standby;

  /* The catalog probe: the last fingerprint, when it last changed (the
   * eager repair's --settle counts from there), and the session a repair
   * must not race (a restore, or DDL holding ACCESS EXCLUSIVE). */
  uv_timer_t probe_timer;
  pgg_probe_result job_probe;   /* the running job's probe (before a check or repair) */
  int job_probe_rc;             /* PGG_ERR_BUSY: the job ran no probe */
  pgg_probe_result job_after;   /* a repair's probe after its work: the new baseline */
  int job_after_rc;
  bool job_settle;              /* the repair is eager: skip it if the catalog moved */
  bool job_skipped;             /* the repair did not run: deferred, or not settled */
  char job_fp[256];             /* the baseline when the repair was dispatched */
  char fingerprint[256];        /* "" before the first probe */
  bool changed;                 /* the fingerprint changed at least once */
  uint64_t changed_ms;
  bool probe_failing;           /* the last probe failed with a query error */
  bool deferring;
  int defer_pid;
  char defer_why[128];
  uint64_t defer_since_ms;
  double defer_since;           /* unix time, for /drift */

  /* Index builds after a repair: on the thread pool beside the jobs, on a
   * session of their own, so no job waits for one. */
  pgg_builder *builder;
  uv_work_t build_work;
  bool building;
  pgg_plan build_units;
  pgg_build_result build_res;
  int build_rc;
  int build_lock_ms;
  int build_statement_ms;

  /* one guarded database, on the server --upstream reaches */
  char dbname[256];
  bool unverified;        /* the servers could not be compared (yet): no repairs */
  bool refused;
  char refused_why[400];
} g;

static void schedule(void);
static void on_tick(uv_timer_t *t);

/* Whether repairs may run; requests also need a primary (pgg_guardian_active). */
static bool may_repair(void)
{
  return g.configured && g.cfg->repair_mode != PGG_REPAIR_MODE_OFF && !g.schema_broken &&
         !g.refused && !g.unverified;
}

bool pgg_guardian_active(void)
{
  return may_repair() && !g.standby;
}

bool pgg_guardian_missing_labels(void)
{
  return g.missing_labels > 0;
}

const char *pgg_guardian_drift_json(void)
{
  return g.drift_json;
}

const char *pgg_guardian_last_error(double *at)
{
  *at = g.last_error_at;
  return g.last_error_at > 0 ? g.last_error : NULL;
}

double pgg_guardian_checked_at(void)
{
  return g.checked_at;
}

const char *pgg_guardian_refused(void)
{
  return g.refused ? g.refused_why : NULL;
}

const pgg_catalog *pgg_guardian_desired(void)
{
  return g.configured && g.loaded ? &g.desired : NULL;
}

bool pgg_guardian_guards_database(const char *dbname)
{
  return pgg_guardian_active() && g.dbname[0] && dbname && strcmp(dbname, g.dbname) == 0;
}

bool pgg_guardian_ready(const char **why)
{
  /* A guard that refused to act is a configuration to fix, not a reason to
   * take the proxy out of service. */
  if (!g.configured || g.refused)
    return true;
  if (g.standby) {
    *why = "the admin URL reaches no primary (a standby or a read-only server)";
    return false;
  }
  if (!g.loaded) {
    *why = g.schema_broken ? g.load_error : "desired schema not loaded yet";
    return false;
  }
  if (!g.check_ok) {
    *why = "the upstream database did not answer the last drift check";
    return false;
  }
  return true;
}

/* ---- jobs on the thread pool ---------------------------------------------- */

/* Whether a wanted repair must not start yet: another session runs a
 * restore or DDL, or (an eager repair, nobody waiting) the catalog changed
 * less than --settle seconds ago. *until: when the settling ends, or 0. */
static bool repair_waits(uint64_t now, uint64_t *until)
{
  *until = 0;
  if (g.deferring)
    return true;
  if (g.requested || !g.changed || g.cfg->settle <= 0)
    return false;
  uint64_t end = g.changed_ms + (uint64_t)(g.cfg->settle * 1000);
  if (now >= end)
    return false;
  *until = end;
  return true;
}

static void job_work(uv_work_t *w)
{
  /* Checks and repairs start with the probe: it is the baseline of the
   * next one, and a repair must not race a restore that began since. */
  g.job_probe_rc = g.job_after_rc = PGG_ERR_BUSY;
  if (g.running == JOB_CHECK || g.running == JOB_REPAIR || g.running == JOB_PROBE)
    g.job_probe_rc = pgg_admin_probe(g.admin, g.cfg->defer_to, &g.job_probe);
  switch (g.running) {
  case JOB_LOAD:
    pgg_catalog_init(&g.job_desired);
    /* The admin session first: it names the guarded database and compares
     * servers before anything is created on the admin URL's server. */
    g.job_rc = pgg_admin_connect(g.admin, &g.job_err);
    if (g.job_rc == PGG_OK)
      g.job_rc = pgg_desired_load(g.cfg, &g.job_desired, &g.job_err, &g.job_notes,
                                  &g.job_shadow);
    break;
  case JOB_CHECK:
    g.job_rc = pgg_admin_check(g.admin, &g.desired, &g.job_res);
    break;
  case JOB_REPAIR:
    g.job_skipped = g.job_probe_rc == PGG_OK &&
                    (g.job_probe.defer_pid != 0 ||
                     (g.job_settle && g.job_fp[0] &&
                      strcmp(g.job_fp, g.job_probe.fingerprint) != 0));
    if (g.job_skipped) {
      g.job_rc = PGG_OK;
      break;
    }
    g.job_rc = pgg_admin_repair(g.admin, &g.desired, &g.job_res);
    /* What the repair created is no news to the next probe. */
    if (g.job_res.outcome == PGG_REPAIR_APPLIED)
      g.job_after_rc = pgg_admin_probe(g.admin, g.cfg->defer_to, &g.job_after);
    break;
  case JOB_PROBE:
    g.job_rc = g.job_probe_rc;
    break;
  case JOB_NONE:
    break;
  }
}

static void publish_drift(const pgg_repair_result *r)
{
  if (r->outcome == PGG_REPAIR_FAILED || !r->drift_known) {
    g.check_ok = false;
    pgg_metrics_g.upstream_up = 0;
    return;
  }
  g.check_ok = true;
  pgg_metrics_g.upstream_up = 1;
  memcpy(pgg_metrics_g.drift, r->counts, sizeof(pgg_metrics_g.drift));
  pgg_metrics_g.drift_known = true;
  pgg_metrics_g.drift_check_timestamp = (double)time(NULL);
  g.checked_at = pgg_metrics_g.drift_check_timestamp;
  g.missing_labels = r->missing_labels;
  if (r->drift_json) {
    free(g.drift_json);
    g.drift_json = strdup(r->drift_json);
  }
}

static unsigned missing_total(void)
{
  unsigned n = 0;
  for (int k = 0; k < PGG_OBJ__COUNT; k++)
    n += pgg_metrics_g.drift[k][PGG_DRIFT_MISSING];
  return n;
}

static void notify(pgg_repair_outcome outcome)
{
  pgg_guard_waiter *list = g.waiters;
  g.waiters = NULL;
  while (list) {
    pgg_guard_waiter *w = list;
    list = w->next;
    w->next = w->prev = NULL;
    w->queued = false;
    w->cb(w, outcome);
  }
}

static const char *job_name(job_kind k)
{
  return k == JOB_LOAD ? "load" : k == JOB_CHECK ? "check" : k == JOB_REPAIR ? "repair" :
         k == JOB_PROBE ? "probe" : "none";
}

static uint64_t backoff_cap_ms(void)
{
  uint64_t cap = (uint64_t)(g.cfg->drift_interval * 1000);
  return cap < BACKOFF_FIRST_MS ? BACKOFF_FIRST_MS : cap;
}

/*
 * The database could not be reached (or the schema could not be loaded):
 * retry later, 1 s doubling up to --drift-interval, with jitter so that a
 * fleet of sidecars does not knock in step. Only the change of state is
 * logged (at the caller's level and event); the retries are counted.
 */
/* Keep the failure for /drift, its password masked. */
static void note_error(const char *reason)
{
  pgg_redact(&g.secrets, reason ? reason : "", g.last_error, sizeof g.last_error);
  g.last_error_at = (double)time(NULL);
}

static void set_standby(bool on)
{
  g.standby = on;
  pgg_metrics_g.guard_standby = on;
}

static void failing(int level, const char *event, const char *kv, const char *reason)
{
  uint64_t now = uv_now(pgg_p.loop);
  note_error(reason);
  bool first = !g.failing;
  /* Reaching a standby instead of the primary (or the reverse) is a change
   * of state worth its own line, even in the middle of a failing spell. */
  bool standby = pgg_pq_standby_message(reason);
  bool news = first || standby != g.standby;
  set_standby(standby);
  if (first) {
    g.failing = true;
    g.failing_since_ms = now;
    g.backoff_ms = BACKOFF_FIRST_MS;
    g.attempts = 0;
  }
  /* A server-leg success means something only if none was seen since the
   * last failure: while the admin credentials are wrong, clients keep
   * connecting fine, and each of them must not trigger another attempt. */
  g.upstream_news = first || !g.upstream_seen;
  g.upstream_seen = false;
  uint64_t cap = backoff_cap_ms();
  uint64_t base = g.backoff_ms < cap ? g.backoff_ms : cap;
  uint64_t delay = (uint64_t)((double)base * (0.75 + 0.5 * ((double)rand() / RAND_MAX)));
  if (delay > cap)
    delay = cap;
  g.retry_at_ms = now + delay;
  g.backoff_ms = base * 2 < cap ? base * 2 : cap;
  if (news && standby)
    pgg_log(PGG_LOG_WARN, "guard_standby", "guard=paused reason=%s retry_in_s=%.1f",
            pgg_logq(reason), (double)delay / 1000);
  else if (news)
    pgg_log(level, event, "%s%sreason=%s retry_in_s=%.1f", kv ? kv : "", kv ? " " : "",
            pgg_logq(reason), (double)delay / 1000);
  else
    pgg_log(PGG_LOG_DEBUG, "guard_retry_failed", "attempts=%u reason=%s retry_in_s=%.1f",
            g.attempts, pgg_logq(reason), (double)delay / 1000);
  /* While failing, requests are answered at once (the client gets its
   * original error); those already waiting are answered now. */
  g.want_repair = false;
  g.requested = false;
  notify(PGG_REPAIR_FAILED);
}

static void recovered(void)
{
  if (!g.failing)
    return;
  g.failing = false;
  g.backoff_ms = BACKOFF_FIRST_MS;
  pgg_log(PGG_LOG_INFO, "guard_recovered", "from=%s after_s=%.1f retries=%u",
          g.standby ? "standby" : "unreachable",
          (double)(uv_now(pgg_p.loop) - g.failing_since_ms) / 1000, g.attempts);
  set_standby(false);
}

/* The admin session told us which database it guards, and whether its
 * server is --upstream's; say so when that changes. */
static void learn_database(void)
{
  const char *name = pgg_admin_dbname(g.admin);
  const char *why = "";
  pgg_server_match m = pgg_admin_server(g.admin, &why);
  static const char *const names[] = {"unchecked", "same", "different", "unverified"};
  if (!g.dbname[0] && name[0]) {
    snprintf(g.dbname, sizeof g.dbname, "%s", name);
    pgg_log(PGG_LOG_INFO, "guarded_database", "name=%s server=%s", pgg_logq(g.dbname),
            names[m]);
  }
  bool unverified = m == PGG_SERVER_UNVERIFIED;
  if (unverified && !g.unverified)
    pgg_log(PGG_LOG_WARN, "guard_server_unverified", "guard=off_until_verified reason=%s",
            pgg_logq(why));
  else if (!unverified && g.unverified && m == PGG_SERVER_SAME)
    pgg_log(PGG_LOG_INFO, "guard_server_verified", "name=%s", pgg_logq(g.dbname));
  g.unverified = unverified;
}

/* --admin-url and --upstream reach different servers: the guard stands down. */
static void refuse(const char *why)
{
  g.refused = true;
  snprintf(g.refused_why, sizeof g.refused_why, "%s", why);
  pgg_log(PGG_LOG_ERROR, "guard_refused", "reason=%s", pgg_logq(why));
  pgg_metrics_g.guard_refused = true;
  /* Refusing is final: whatever was said of a standby before no longer applies. */
  set_standby(false);
  pgg_metrics_g.schema_loaded = false;
  pgg_metrics_g.drift_known = false;
  g.missing_labels = 0;
  free(g.drift_json);
  g.drift_json = NULL;
  g.want_load = g.want_check = g.want_repair = false;
  uv_timer_stop(&g.timer);
  uv_timer_stop(&g.wake);
  notify(PGG_REPAIR_FAILED);
}

/*
 * Another session runs a restore or DDL (or no longer does). While it does,
 * no repair starts and guarded errors pass through unchanged; a request
 * already waiting gets its original error now.
 */
static void set_deferring(int pid, const char *why)
{
  assert(!g.deferring || g.defer_pid != 0);
  uint64_t now = uv_now(pgg_p.loop);
  if (pid && !g.deferring) {
    g.deferring = true;
    g.defer_since_ms = now;
    g.defer_since = (double)time(NULL);
    g.defer_pid = pid;
    snprintf(g.defer_why, sizeof g.defer_why, "%s", why);
    pgg_metrics_g.guard_deferring = true;
    pgg_log(PGG_LOG_INFO, "guard_deferring", "reason=%s pid=%d", pgg_logq(why), pid);
    g.requested = false;
    if (g.cfg->repair_mode != PGG_REPAIR_MODE_EAGER)
      g.want_repair = false;
    notify(PGG_REPAIR_FAILED);
  } else if (pid) {
    g.defer_pid = pid;
    snprintf(g.defer_why, sizeof g.defer_why, "%s", why);
  } else if (g.deferring) {
    g.deferring = false;
    pgg_metrics_g.guard_deferring = false;
    pgg_log(PGG_LOG_INFO, "guard_defer_ended", "reason=%s pid=%d after_s=%.1f",
            pgg_logq(g.defer_why), g.defer_pid, (double)(now - g.defer_since_ms) / 1000);
    g.defer_pid = 0;
    g.defer_why[0] = 0;
    /* What the restore or the migration left is read at once; an eager
     * repair then still waits --settle, in case another step follows. */
    g.want_check = true;
    g.changed = true;
    g.changed_ms = now;
  }
}

/* Take a probe's answer; true when the catalog changed since the last one. */
static bool take_probe(const pgg_probe_result *p)
{
  bool changed = g.fingerprint[0] && strcmp(g.fingerprint, p->fingerprint) != 0;
  if (changed) {
    g.changed = true;
    g.changed_ms = uv_now(pgg_p.loop);
  }
  snprintf(g.fingerprint, sizeof g.fingerprint, "%s", p->fingerprint);
  g.probe_failing = false;
  set_deferring(p->defer_pid, p->defer_why);
  return changed;
}

static void probe_done(void)
{
  /* Stopping cancels the probe's statement: that is no news of the database. */
  if (pgg_p.shutting_down)
    return;
  if (g.job_rc == PGG_ERR_UPSTREAM) {
    /* The session died and could not be reopened: a restart, a dropped
     * database. The backoff retries with drift checks from here. */
    g.want_check = true;
    failing(PGG_LOG_WARN, "drift_check_failed", NULL, g.job_probe.error);
    return;
  }
  if (g.job_rc != PGG_OK) {
    if (!g.probe_failing)
      pgg_log(PGG_LOG_WARN, "catalog_probe_failed", "reason=%s", pgg_logq(g.job_probe.error));
    g.probe_failing = true;
    return;
  }
  bool changed = take_probe(&g.job_probe);
  if (g.job_probe.reconnected && !g.want_check) {
    /* A new session may be on a new database (a restore that replaced
     * it) or a restarted server: whatever the fingerprint says, read it. */
    pgg_log(PGG_LOG_INFO, "guard_recheck", "reason=%s", pgg_logq("admin session reopened"));
    g.want_check = true;
  } else if (changed && !g.deferring && !g.want_check) {
    /* While a restore runs, its every step changes the catalog: the
     * check waits for its end rather than read a half-restored schema. */
    pgg_log(PGG_LOG_DEBUG, "guard_recheck", "reason=%s", pgg_logq("catalog changed"));
    g.want_check = true;
  }
}

static void load_done(void)
{
  if (g.job_rc == PGG_OK) {
    pgg_catalog_free(&g.desired);
    g.desired = g.job_desired;
    pgg_catalog_init(&g.job_desired);
    g.loaded = true;
    g.schema_broken = false;
    pgg_metrics_g.schema_loaded = true;
    recovered();
    pgg_log(PGG_LOG_INFO, "schema_loaded", "objects=%zu", g.desired.n);
    if (g.cfg->repair_mode == PGG_REPAIR_MODE_EAGER)
      g.want_repair = true;
    else
      g.want_check = true;
    return;
  }
  pgg_catalog_free(&g.job_desired);
  pgg_buf_append_u8(&g.job_err, 0);
  pgg_redact(&g.secrets, g.job_err.len > 1 ? (const char *)g.job_err.data : pgg_strerror(g.job_rc),
             g.load_error, sizeof g.load_error);
  const char *guard = g.loaded ? "guard=keeps_previous_schema" : "guard=off";
  if (g.job_rc == PGG_ERR_SCHEMA) {
    /* A broken schema file stays broken until someone edits it (SIGHUP).
     * The database answered, so nothing is failing to connect. */
    recovered();
    g.schema_broken = true;
    pgg_metrics_g.schema_loaded = false;
    pgg_log(PGG_LOG_ERROR, "schema_load_failed", "%s reason=%s", guard, pgg_logq(g.load_error));
    note_error(g.load_error);
  } else {
    /* An unreachable database, a refused login: retried with backoff. */
    g.want_load = true;
    failing(PGG_LOG_ERROR, "schema_load_failed", guard, g.load_error);
  }
  if (!g.loaded)
    notify(PGG_REPAIR_FAILED);
}

static void check_done(void)
{
  publish_drift(&g.job_res);
  if (g.job_res.outcome == PGG_REPAIR_FAILED && g.job_rc == PGG_ERR_UPSTREAM) {
    g.want_check = true;
    failing(PGG_LOG_WARN, "drift_check_failed", NULL, g.job_res.error);
    return;
  }
  recovered();
  if (g.job_res.outcome == PGG_REPAIR_FAILED)
    pgg_log(PGG_LOG_WARN, "drift_check_failed", "reason=%s", pgg_logq(g.job_res.error));
  else
    pgg_log(PGG_LOG_DEBUG, "drift_checked", "missing=%u", missing_total());
  uint64_t now = uv_now(pgg_p.loop);
  /* An eager repair still waiting to settle has nothing left to do. */
  if (g.want_repair && !g.requested && g.job_res.outcome != PGG_REPAIR_FAILED &&
      missing_total() == 0)
    g.want_repair = false;
  if (g.cfg->repair_mode == PGG_REPAIR_MODE_EAGER && g.job_res.outcome != PGG_REPAIR_FAILED &&
      missing_total() > 0 &&
      !(g.had_failure && now - g.last_failure_ms < (uint64_t)(g.cfg->cooldown * 1000)))
    g.want_repair = true;
}

static void build_work(uv_work_t *w)
{
  g.build_rc = pgg_builder_run(g.builder, g.cfg->admin_url, g.build_lock_ms,
                               g.build_statement_ms, &g.build_units, &g.build_res);
}

static void build_done(uv_work_t *w, int status)
{
  g.building = false;
  pgg_plan_free(&g.build_units);
  char shown[600];
  pgg_redact(&g.secrets, g.build_res.error, shown, sizeof shown);
  if (g.build_res.busy) {
    /* Its holder's check will show them built; no check (and, eager, no
     * repair) from here until the next drift interval. */
    pgg_log(PGG_LOG_INFO, "index_builds_elsewhere", "reason=%s",
            pgg_logq("another pgguard holds the build lock and builds them"));
    schedule();
    return;
  } else if (g.build_rc != PGG_OK || g.build_res.failed) {
    /* Retried by the next repair, after the cool-down like any failure. */
    g.had_failure = true;
    g.last_failure_ms = uv_now(pgg_p.loop);
    note_error(shown);
    pgg_log(PGG_LOG_ERROR, "index_builds_failed", "built=%u failed=%u duration_ms=%.1f reason=%s",
            g.build_res.built, g.build_res.failed, g.build_res.seconds * 1000, pgg_logq(shown));
  } else {
    pgg_log(PGG_LOG_INFO, "index_builds_done", "built=%u already=%u duration_ms=%.1f",
            g.build_res.built, g.build_res.already, g.build_res.seconds * 1000);
  }
  /* The drift gauge shows the new indexes (or still the missing ones). */
  g.want_check = true;
  schedule();
}

/* Hand a repair's concurrent units to the builder. One run at a time: what
 * a later repair planned meanwhile is planned again by the next one. */
static void start_builds(pgg_plan *units)
{
  if (!units->n || g.building || pgg_p.shutting_down || !g.builder)
    return;
  g.build_units = *units;
  pgg_plan_init(units);
  g.build_lock_ms = g.cfg->lock_timeout_ms;
  g.build_statement_ms = g.cfg->statement_timeout_ms;
  memset(&g.build_res, 0, sizeof g.build_res);
  g.building = true;
  pgg_log(PGG_LOG_INFO, "index_builds_started", "units=%zu", g.build_units.n / 3);
  int err = uv_queue_work(pgg_p.loop, &g.build_work, build_work, build_done);
  if (err) {
    g.building = false;
    pgg_plan_free(&g.build_units);
    pgg_log(PGG_LOG_ERROR, "guard_job_failed", "job=build reason=%s", pgg_logq(uv_strerror(err)));
  }
}

static void repair_done(void)
{
  uint64_t now = uv_now(pgg_p.loop);
  if (g.job_skipped) {
    assert(!g.job_res.drift_json);   /* pgg_admin_repair never ran */
    /* The probe before it saw a restore or DDL (set_deferring answered the
     * waiters), or the catalog still moving under an eager repair: that
     * one runs once it has settled, and as a requested one if someone
     * joined it meanwhile. */
    pgg_log(PGG_LOG_DEBUG, "repair_postponed", "reason=%s",
            pgg_logq(g.deferring ? "deferring" : "catalog not settled"));
    if (!g.deferring || g.cfg->repair_mode == PGG_REPAIR_MODE_EAGER)
      g.want_repair = true;
    if (g.waiters && !g.deferring)
      g.requested = true;
    return;
  }
  pgg_repair_outcome oc = g.job_res.outcome;
  int idx = oc == PGG_REPAIR_APPLIED ? PGG_REPAIR_RES_APPLIED :
            oc == PGG_REPAIR_NOTHING ? PGG_REPAIR_RES_NOTHING : PGG_REPAIR_RES_FAILED;
  pgg_metrics_g.repairs[idx]++;
  pgg_histogram_observe(&pgg_metrics_g.repair_duration, g.job_res.seconds);
  publish_drift(&g.job_res);
  if (oc == PGG_REPAIR_FAILED && g.job_rc == PGG_ERR_UPSTREAM) {
    /* The database went away: that is the backoff's business, not the
     * repair cool-down's, so requests work again as soon as it is back. */
    g.want_check = true;
    failing(PGG_LOG_ERROR, "repair_failed", NULL, g.job_res.error);
    return;
  }
  if (oc == PGG_REPAIR_FAILED && pgg_pq_standby_message(g.job_res.error)) {
    /* The session is open but the server refused to write (25006: it is in
     * recovery). A drift check would read fine and end the spell at once,
     * so the retry is a repair: it resumes once writes succeed (or when
     * nothing is missing any more). */
    failing(PGG_LOG_ERROR, "repair_failed", NULL, g.job_res.error);
    g.want_repair = true;
    return;
  }
  recovered();
  if (oc == PGG_REPAIR_FAILED) {
    g.had_failure = true;
    g.last_failure_ms = now;
    pgg_log(PGG_LOG_ERROR, "repair_failed", "duration_ms=%.1f reason=%s",
            g.job_res.seconds * 1000, pgg_logq(g.job_res.error));
  } else {
    if (oc == PGG_REPAIR_NOTHING && (g.waiters || g.job_requested)) {
      g.nothing_armed = true;
      g.nothing_at_ms = now;
    }
    pgg_log(PGG_LOG_INFO, oc == PGG_REPAIR_APPLIED ? "repair_applied" : "repair_nothing_missing",
            "statements=%u duration_ms=%.1f missing_after=%u", g.job_res.statements,
            g.job_res.seconds * 1000, missing_total());
    if (oc == PGG_REPAIR_APPLIED && g.job_res.failed_statements) {
      /* Partial: what could be created is committed, the refused part is
       * retried after the cool-down like a failed repair (no retry storm). */
      g.had_failure = true;
      g.last_failure_ms = now;
      note_error(g.job_res.error);
      pgg_log(PGG_LOG_ERROR, "repair_partial", "failed_statements=%u reason=%s",
              g.job_res.failed_statements, pgg_logq(g.job_res.error));
    } else if (oc == PGG_REPAIR_APPLIED && g.job_res.error[0]) {
      /* Applied, but a step after the commit (a materialized view's refresh)
       * failed: the objects exist, the log says what is left to do. */
      pgg_log(PGG_LOG_WARN, "repair_incomplete", "reason=%s", pgg_logq(g.job_res.error));
    }
  }
  notify(oc);
  start_builds(&g.job_res.builds);
}

/* One line per statement the schema load skipped (a role this server lacks)
 * and per old shadow database it dropped. */
static void log_notes(pgg_buf *notes)
{
  if (!notes->len)
    return;
  pgg_buf_append_u8(notes, 0);
  char *line = (char *)notes->data, *nl;
  while (*line) {
    if ((nl = strchr(line, '\n')) != NULL)
      *nl = 0;
    char shown[1024];
    pgg_redact(&g.secrets, line, shown, sizeof shown);
    if (strncmp(line, "schema file ", 12) == 0)
      pgg_log(PGG_LOG_WARN, "schema_statement_skipped", "detail=%s", pgg_logq(shown));
    else
      pgg_log(PGG_LOG_INFO, "shadow_pruning", "detail=%s", pgg_logq(shown));
    if (!nl)
      break;
    line = nl + 1;
  }
  pgg_buf_reset(notes);
}

static void job_done(uv_work_t *w, int status)
{
  job_kind kind = g.running;
  g.running = JOB_NONE;

  learn_database();
  const char *why = NULL;
  if (pgg_admin_server(g.admin, &why) == PGG_SERVER_DIFFERENT && !g.refused) {
    if (kind == JOB_LOAD)
      pgg_catalog_free(&g.job_desired);
    pgg_repair_result_free(&g.job_res);
    pgg_buf_reset(&g.job_err);
    refuse(why);
    return;
  }
  if (kind == JOB_CHECK || kind == JOB_REPAIR) {
    if (g.job_probe_rc == PGG_OK)
      take_probe(&g.job_probe);
    if (g.job_after_rc == PGG_OK)
      snprintf(g.fingerprint, sizeof g.fingerprint, "%s", g.job_after.fingerprint);
  }
  switch (kind) {
  case JOB_PROBE:
    probe_done();
    break;
  case JOB_LOAD:
    log_notes(&g.job_notes);
    if (g.job_rc == PGG_OK)
      pgg_admin_set_shadow(g.admin, g.job_shadow);
    load_done();
    pgg_buf_reset(&g.job_err);
    break;
  case JOB_CHECK:
    check_done();
    pgg_repair_result_free(&g.job_res);
    break;
  case JOB_REPAIR:
    repair_done();
    pgg_repair_result_free(&g.job_res);
    break;
  case JOB_NONE:
    break;
  }
  schedule();
}

/*
 * Jobs on the thread pool read the configuration; it changes only here,
 * between jobs. The admin URL is the admin session's own copy: it stays.
 */
static void apply_pending(void)
{
  pgg_guard_config *cfg = &pgg_p.opt->guard;
  const pgg_guard_config *n = &g.pending;
  cfg->schema_path = n->schema_path;
  cfg->shadow_url = n->shadow_url;
  cfg->repair_mode = n->repair_mode;
  cfg->repair_wait = n->repair_wait;
  cfg->cooldown = n->cooldown;
  cfg->exclude = n->exclude;
  cfg->shadow_keep = n->shadow_keep;
  {
    pgg_buf err;
    pgg_buf_init(&err);
    if (pgg_exclude_set(cfg->exclude, &err) != PGG_OK)
      pgg_log(PGG_LOG_WARN, "reload_failed", "option=exclude");
    pgg_buf_free(&err);
  }
  cfg->lock_timeout_ms = n->lock_timeout_ms;
  cfg->statement_timeout_ms = n->statement_timeout_ms;
  cfg->object_owner = n->object_owner;
  cfg->defer_to = n->defer_to;
  cfg->settle = n->settle;
  if (pgg_admin_set_limits(g.admin, n) != PGG_OK)
    pgg_log(PGG_LOG_WARN, "reload_failed", "reason=%s",
            pgg_logq("out of memory taking the new object owner"));
  if (n->drift_interval != cfg->drift_interval) {
    cfg->drift_interval = n->drift_interval;
    uint64_t every = (uint64_t)(cfg->drift_interval * 1000);
    uv_timer_start(&g.timer, on_tick, every, every);
  }
  pgg_secrets_add_conninfo(&g.secrets, cfg->shadow_url);
  g.has_pending = false;
}

static void on_wake(uv_timer_t *t)
{
  schedule();
}

static job_kind next_job(uint64_t now, uint64_t *settled_at)
{
  *settled_at = 0;
  if (g.want_load)
    return JOB_LOAD;
  /* A repair waits while the guard may not act (servers not compared yet),
   * while a restore or DDL runs, and (eager) until the catalog settles. */
  if (g.loaded && g.want_repair && may_repair() && !repair_waits(now, settled_at))
    return JOB_REPAIR;
  if (g.loaded && g.want_check)
    return JOB_CHECK;
  return JOB_NONE;
}

static void schedule(void)
{
  if (!g.configured || g.running != JOB_NONE || pgg_p.shutting_down || g.refused)
    return;
  if (g.has_pending)
    apply_pending();
  uint64_t now = uv_now(pgg_p.loop), settled_at;
  job_kind next = next_job(now, &settled_at);
  if (next == JOB_NONE) {
    if (settled_at > now)
      uv_timer_start(&g.wake, on_wake, settled_at - now, 0);
    return;
  }
  uint64_t at = now;
  if (g.failing && g.retry_at_ms > at)
    at = g.retry_at_ms;
  if (next != JOB_LOAD && g.catalog_ran && g.catalog_at_ms + CATALOG_INTERVAL_MS > at)
    at = g.catalog_at_ms + CATALOG_INTERVAL_MS;
  if (at > now) {
    /* Not a busy retry: one timer for the remainder, and whatever else is
     * asked meanwhile joins the job it starts. */
    uv_timer_start(&g.wake, on_wake, at - now, 0);
    return;
  }
  switch (next) {
  case JOB_LOAD:
    g.want_load = false;
    break;
  case JOB_REPAIR:
    g.want_repair = false;
    g.want_check = false;
    g.job_requested = g.requested;
    g.job_settle = !g.requested && g.cfg->repair_mode == PGG_REPAIR_MODE_EAGER;
    snprintf(g.job_fp, sizeof g.job_fp, "%s", g.fingerprint);
    g.job_skipped = false;
    g.requested = false;
    break;
  case JOB_CHECK:
    g.want_check = false;
    break;
  case JOB_PROBE:
  case JOB_NONE:
    return;
  }
  if (next != JOB_LOAD) {
    g.catalog_ran = true;
    g.catalog_at_ms = now;
    pgg_metrics_g.catalog_checks++;
  }
  if (g.failing) {
    g.attempts++;
    pgg_metrics_g.guard_retries++;
  }
  memset(&g.job_res, 0, sizeof(g.job_res));
  g.running = next;
  int err = uv_queue_work(pgg_p.loop, &g.work, job_work, job_done);
  if (err) {
    g.running = JOB_NONE;
    pgg_log(PGG_LOG_ERROR, "guard_job_failed", "job=%s reason=%s", job_name(next),
            pgg_logq(uv_strerror(err)));
  }
}

/*
 * Every second between jobs: the catalog probe. Not while the database
 * cannot be reached (the backoff's checks retry then) nor before the first
 * schema load; it is no catalog check and takes no turn of the limiter.
 */
static void catalog_probe_tick(uv_timer_t *t)
{
  (void)t;
  if (!g.configured || !g.loaded || g.refused || g.failing || g.running != JOB_NONE ||
      pgg_p.shutting_down)
    return;
  g.running = JOB_PROBE;
  int err = uv_queue_work(pgg_p.loop, &g.work, job_work, job_done);
  if (err) {
    g.running = JOB_NONE;
    pgg_log(PGG_LOG_ERROR, "guard_job_failed", "job=%s reason=%s", job_name(JOB_PROBE),
            pgg_logq(uv_strerror(err)));
  }
}

static void on_tick(uv_timer_t *t)
{
  if (!g.loaded && !g.schema_broken)
    g.want_load = true;
  else if (g.loaded)
    g.want_check = true;
  schedule();
}

/* ---- requests from connections -------------------------------------------- */

pgg_ask pgg_guardian_request(pgg_guard_waiter *w)
{
  uint64_t now = uv_now(pgg_p.loop);
  if (!pgg_guardian_active())
    return PGG_ASK_OFF;
  if (g.failing)
    return PGG_ASK_COOLING_DOWN;
  if (g.deferring)
    return PGG_ASK_DEFERRING;
  if (g.had_failure && now - g.last_failure_ms < (uint64_t)(g.cfg->cooldown * 1000))
    return PGG_ASK_COOLING_DOWN;
  if (g.nothing_armed && now - g.nothing_at_ms < NOTHING_WINDOW_MS)
    return PGG_ASK_NOTHING_MISSING;
  if (w) {
    w->prev = NULL;
    w->next = g.waiters;
    if (g.waiters)
      g.waiters->prev = w;
    g.waiters = w;
    w->queued = true;
  }
  /* A repair already running serves this request too (single-flight). */
  if (g.running != JOB_REPAIR) {
    g.want_repair = true;
    g.requested = true;
  }
  schedule();
  return PGG_ASK_WAIT;
}

void pgg_guardian_cancel(pgg_guard_waiter *w)
{
  if (!w->queued)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    g.waiters = w->next;
  if (w->next)
    w->next->prev = w->prev;
  w->next = w->prev = NULL;
  w->queued = false;
}

/*
 * Called for every server-leg connection that succeeds, so it must cost
 * nothing unless the guard is backing off. Then the first success since the
 * last failed attempt means PostgreSQL is back: retry soon (still through
 * the limiter) instead of at the end of a long backoff.
 */
void pgg_guardian_upstream_ok(void)
{
  /* A standby accepts sessions all along: that says nothing of a primary. */
  if (!g.failing || g.standby)
    return;
  bool news = g.upstream_news;
  g.upstream_news = false;
  g.upstream_seen = true;
  if (!news)
    return;
  uint64_t now = uv_now(pgg_p.loop);
  g.backoff_ms = BACKOFF_FIRST_MS;
  if (g.retry_at_ms > now)
    g.retry_at_ms = now;
  pgg_log(PGG_LOG_DEBUG, "guard_retry_soon", "reason=%s",
          pgg_logq("a server connection succeeded"));
  schedule();
}

/*
 * A server leg ended in a way that says PostgreSQL went away: a FATAL
 * 57P01/57P02/57P03, or the connection lost without one. A restore often
 * restarts or replaces the database: check again now (through the
 * limiter), rather than at the next drift tick.
 */
void pgg_guardian_server_gone(const char *fatal)
{
  if (!g.configured || !g.loaded || g.refused || g.failing || pgg_p.shutting_down)
    return;
  bool lost = !fatal || !fatal[0];
  if (!lost && strcmp(fatal, "57P01") != 0 && strcmp(fatal, "57P02") != 0 &&
      strcmp(fatal, "57P03") != 0)
    return;
  if (g.want_check || g.running == JOB_CHECK)
    return;
  pgg_log(PGG_LOG_INFO, "guard_recheck", "reason=%s sqlstate=%s",
          pgg_logq(lost ? "server connection lost" : "server shut down"),
          lost ? "none" : fatal);
  g.want_check = true;
  schedule();
}

const char *pgg_guardian_deferring(int *pid, double *since)
{
  if (!g.configured || !g.deferring)
    return NULL;
  *pid = g.defer_pid;
  *since = g.defer_since;
  return g.defer_why;
}

/* ---- upstream probe ---------------------------------------------------------- */

/*
 * Readiness means "the upstream accepted a connection recently". Client
 * traffic shows that for free (conn.c calls pgg_upstream_accepted); with no
 * traffic, a connect every 2 s does, and keeps pgguard_upstream_up
 * honest without --schema.
 */
#define PROBE_EVERY_MS 2000

static struct {
  uv_timer_t timer;
  pgg_sock sock;
  pgg_dial dial;
  bool busy;     /* a dial is under way, or its socket is closing */
  bool dialing;  /* the dial has not called back yet */
  bool on;
  uint64_t attempt_ms;  /* uv_now when the dial began or moved to its next address */
} probe;

void pgg_upstream_accepted(void)
{
  pgg_p.upstream_ok_ms = uv_now(pgg_p.loop);
  pgg_p.upstream_ever_ok = true;
}

static void probe_closed(uv_handle_t *h)
{
  (void)h;
  probe.busy = false;
}

static void probe_connected(pgg_dial *d, int status)
{
  (void)d;
  probe.dialing = false;
  if (status == 0)
    pgg_upstream_accepted();
  /* With a guard, its drift checks own the gauge: they reach the database, not just its port. */
  if (status != UV_ECANCELED && !g.configured)
    pgg_metrics_g.upstream_up = status == 0 ? 1 : 0;
  if (status == 0)
    uv_close(&probe.sock.handle, probe_closed);
  else
    probe.busy = false;   /* a failed dial leaves no socket open */
}

/*
 * An unanswering address would hold the probe for the kernel's two minutes
 * of SYN retries, and the addresses after it would never be tried. With
 * --server-connect-timeout set, a client moves on after that period; the
 * probe asks whether a client can be served, not how soon, so it moves on
 * at its next tick (a period past readiness' 10 s window would
 * otherwise let /readyz lapse every cycle while every client gets in), and
 * gives up on the last address after the client's period.
 */
static void probe_check_timeout(void)
{
  double limit = pgg_p.opt->server_connect_timeout;
  uint64_t now = uv_now(pgg_p.loop);
  double waited = (double)(now - probe.attempt_ms);
  /* Half a period: ticks come every PROBE_EVERY_MS, give or take a millisecond. */
  double move_on = PROBE_EVERY_MS / 2;
  if (limit <= 0 || waited < (limit * 1000.0 < move_on ? limit * 1000.0 : move_on))
    return;
  if (pgg_dial_next(&probe.dial)) {
    probe.attempt_ms = now;
    return;
  }
  if (waited < limit * 1000.0)
    return;
  probe.attempt_ms = now;
  if (!g.configured)
    pgg_metrics_g.upstream_up = 0;
  if (pgg_dial_abort(&probe.dial))
    probe.dialing = probe.busy = false;
}

static void probe_tick(uv_timer_t *t)
{
  (void)t;
  if (probe.dialing && !pgg_p.shutting_down)
    probe_check_timeout();
  if (probe.busy || pgg_p.shutting_down)
    return;
  if (pgg_p.upstream_ever_ok && uv_now(pgg_p.loop) - pgg_p.upstream_ok_ms < PROBE_EVERY_MS)
    return;   /* a client's connection just showed it */
  probe.busy = true;
  probe.dialing = true;
  probe.attempt_ms = uv_now(pgg_p.loop);
  pgg_dial_start(&probe.dial, &probe.sock, probe_connected, "probe=yes ");
}

/* ---- start, reload, stop --------------------------------------------------- */

int pgg_guardian_start(void)
{
  const pgg_guard_config *cfg = &pgg_p.opt->guard;
  pgg_metrics_g.upstream_up = 0;
  probe.on = true;
  uv_timer_init(pgg_p.loop, &probe.timer);
  uv_timer_start(&probe.timer, probe_tick, 0, PROBE_EVERY_MS);
  if (!cfg->schema_path)
    return PGG_OK;
  g.configured = true;
  g.cfg = cfg;
  pgg_metrics_g.guard_configured = true;
  pgg_catalog_init(&g.desired);
  pgg_buf_init(&g.job_err);
  pgg_buf_init(&g.job_notes);
  g.admin = pgg_admin_new(cfg);
  g.builder = pgg_builder_new();
  if (!g.admin || !g.builder || pgg_admin_set_upstream(g.admin, pgg_p.opt->upstream.host,
                                         pgg_p.opt->upstream.port))
    return PGG_ERR_NOMEM;
  pgg_secrets_init(&g.secrets);
  pgg_secrets_add_conninfo(&g.secrets, cfg->admin_url);
  pgg_secrets_add_conninfo(&g.secrets, cfg->shadow_url);
  g.backoff_ms = BACKOFF_FIRST_MS;
  pgg_buf shown;
  pgg_buf_init(&shown);
  if (pgg_redact_conninfo(cfg->admin_url, &shown) == PGG_OK)
    pgg_log(PGG_LOG_INFO, "guard_starting", "admin_url=%s schema=%s",
            pgg_logq((const char *)shown.data), pgg_logq(cfg->schema_path));
  pgg_buf_free(&shown);
  if (cfg->strict) {
    /* --strict: refuse to start rather than proxy unguarded. */
    int rc = pgg_desired_load(cfg, &g.desired, &g.job_err, &g.job_notes, &g.job_shadow);
    log_notes(&g.job_notes);
    if (!rc)
      pgg_admin_set_shadow(g.admin, g.job_shadow);
    if (rc) {
      pgg_buf_append_u8(&g.job_err, 0);
      pgg_redact(&g.secrets, g.job_err.len > 1 ? (const char *)g.job_err.data : pgg_strerror(rc),
                 g.load_error, sizeof g.load_error);
      fprintf(stderr, "pgguard: the desired schema did not load (--strict): %s\n", g.load_error);
      return PGG_ERR_SCHEMA;
    }
    g.loaded = true;
    pgg_metrics_g.schema_loaded = true;
    g.want_check = true;
    if (cfg->repair_mode == PGG_REPAIR_MODE_EAGER)
      g.want_repair = true;
  } else {
    g.want_load = true;
  }
  uint64_t every = (uint64_t)(cfg->drift_interval * 1000);
  uv_timer_init(pgg_p.loop, &g.timer);
  uv_timer_init(pgg_p.loop, &g.wake);
  uv_timer_start(&g.timer, on_tick, every, every);
  uv_timer_init(pgg_p.loop, &g.probe_timer);
  uv_timer_start(&g.probe_timer, catalog_probe_tick, PROBE_INTERVAL_MS, PROBE_INTERVAL_MS);
  schedule();
  return PGG_OK;
}

void pgg_guardian_reload(const pgg_guard_config *next)
{
  if (!g.configured)
    return;
  if (!next->schema_path) {
    pgg_log(PGG_LOG_WARN, "reload_needs_restart", "reason=%s",
            pgg_logq("turning the guard off needs a restart; keeping the old schema"));
    return;
  }
  if (g.refused)
    return;
  g.pending = *next;
  g.has_pending = true;
  g.schema_broken = false;
  pgg_log(PGG_LOG_INFO, "schema_reload", "path=%s", pgg_logq(g.cfg->schema_path));
  g.want_load = true;
  /* Someone acted: try now rather than at the end of a long backoff. */
  if (g.failing) {
    g.backoff_ms = BACKOFF_FIRST_MS;
    g.retry_at_ms = uv_now(pgg_p.loop);
  }
  schedule();
}

void pgg_guardian_stop(void)
{
  if (probe.on) {
    probe.on = false;
    uv_timer_stop(&probe.timer);
    uv_close((uv_handle_t *)&probe.timer, NULL);
    if (probe.dialing && pgg_dial_abort(&probe.dial))
      probe.dialing = probe.busy = false;
  }
  pgg_upstream_stop();
  if (!g.configured)
    return;
  /* A job blocked in libpq would keep the loop (and the process) alive
   * until its lock_timeout or statement_timeout: stopping cancels it. */
  if (g.running != JOB_NONE)
    pgg_admin_cancel(g.admin);
  if (g.builder)
    pgg_builder_cancel(g.builder);
  uv_timer_stop(&g.timer);
  uv_close((uv_handle_t *)&g.timer, NULL);
  uv_timer_stop(&g.wake);
  uv_close((uv_handle_t *)&g.wake, NULL);
  uv_timer_stop(&g.probe_timer);
  uv_close((uv_handle_t *)&g.probe_timer, NULL);
  notify(PGG_REPAIR_FAILED);
}

/* After the loop has ended: no job can be running any more. */
void pgg_guardian_free(void)
{
  if (!g.configured)
    return;
  pgg_admin_free(g.admin);
  pgg_builder_free(g.builder);
  pgg_plan_free(&g.build_units);
  pgg_catalog_free(&g.desired);
  pgg_buf_free(&g.job_err);
  pgg_buf_free(&g.job_notes);
  pgg_secrets_free(&g.secrets);
  free(g.drift_json);
  g.configured = false;
}
