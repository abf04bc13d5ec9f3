/*
 * guardian.c — the schema guard on the event loop: runs loading, drift
 * checks and repairs one at a time on the libuv thread pool (libpq blocks;
 * the loop never does), coalesces concurrent repair requests into one
 * (single-flight), and keeps the drift metrics and /drift report current.
 */
#include "proxy.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

typedef enum { JOB_NONE, JOB_LOAD, JOB_CHECK, JOB_REPAIR } job_kind;

/* A repair triggered by an error that found nothing missing arms this window:
 * further errors inside it are passed through at once instead of re-reading
 * the catalogs for every mistyped query. */
#define NOTHING_WINDOW_MS 1000

static struct {
  bool configured;
  const pgg_guard_config *cfg;
  pgg_admin *admin;
  pgg_catalog desired;
  bool loaded;
  bool schema_broken;     /* the schema file itself failed: wait for SIGHUP */
  bool check_ok;          /* the last check or repair reached the database */
  char load_error[600];

  job_kind running;
  uv_work_t work;
  bool want_load, want_check, want_repair;

  /* the running job's input and output */
  pgg_catalog job_desired;
  pgg_buf job_err;
  int job_rc;
  pgg_repair_result job_res;

  pgg_guard_waiter *waiters;
  uint64_t last_failure_ms;
  bool had_failure;
  uint64_t nothing_at_ms;
  bool nothing_armed;
  unsigned missing_labels;
  char *drift_json;
  uv_timer_t timer;
  pgg_guard_config pending;   /* a reloaded configuration, applied between jobs */
  bool has_pending;
} g;

static void schedule(void);
static void on_tick(uv_timer_t *t);

bool pgg_guardian_active(void)
{
  return g.configured && g.cfg->repair_mode != PGG_REPAIR_MODE_OFF && !g.schema_broken;
}

bool pgg_guardian_missing_labels(void)
{
  return g.missing_labels > 0;
}

const char *pgg_guardian_drift_json(void)
{
  return g.drift_json;
}

bool pgg_guardian_ready(const char **why)
{
  if (!g.configured)
    return true;
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

static void job_work(uv_work_t *w)
{
  switch (g.running) {
  case JOB_LOAD:
    pgg_catalog_init(&g.job_desired);
    g.job_rc = pgg_desired_load(g.cfg, &g.job_desired, &g.job_err);
    break;
  case JOB_CHECK:
    g.job_rc = pgg_admin_check(g.admin, &g.desired, &g.job_res);
    break;
  case JOB_REPAIR:
    g.job_rc = pgg_admin_repair(g.admin, &g.desired, &g.job_res);
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

static void job_done(uv_work_t *w, int status)
{
  job_kind kind = g.running;
  g.running = JOB_NONE;
  uint64_t now = uv_now(pgg_p.loop);

  switch (kind) {
  case JOB_LOAD:
    if (g.job_rc == PGG_OK) {
      pgg_catalog_free(&g.desired);
      g.desired = g.job_desired;
      pgg_catalog_init(&g.job_desired);
      g.loaded = true;
      g.schema_broken = false;
      g.want_load = false;
      pgg_metrics_g.schema_loaded = true;
      pgg_log(PGG_LOG_INFO, "schema_loaded", "objects=%zu", g.desired.n);
      if (g.cfg->repair_mode == PGG_REPAIR_MODE_EAGER)
        g.want_repair = true;
      else
        g.want_check = true;
    } else {
      pgg_catalog_free(&g.job_desired);
      snprintf(g.load_error, sizeof(g.load_error), "%s",
               g.job_err.len ? (const char *)g.job_err.data : pgg_strerror(g.job_rc));
      /* A broken schema file stays broken until someone edits it (SIGHUP);
       * an unreachable database is retried at the next drift interval. */
      g.schema_broken = g.job_rc == PGG_ERR_SCHEMA;
      g.want_load = !g.schema_broken;
      if (g.schema_broken)
        pgg_metrics_g.schema_loaded = false;
      pgg_log(PGG_LOG_ERROR, "schema_load_failed", "guard=%s reason=%s",
              g.loaded ? "keeps_previous_schema" : "off", pgg_logq(g.load_error));
      if (!g.loaded)
        notify(PGG_REPAIR_FAILED);
    }
    pgg_buf_reset(&g.job_err);
    break;
  case JOB_CHECK:
    publish_drift(&g.job_res);
    if (g.job_res.outcome == PGG_REPAIR_FAILED)
      pgg_log(PGG_LOG_WARN, "drift_check_failed", "reason=%s", pgg_logq(g.job_res.error));
    else
      pgg_log(PGG_LOG_DEBUG, "drift_checked", "missing=%u", missing_total());
    if (g.cfg->repair_mode == PGG_REPAIR_MODE_EAGER && g.job_res.outcome != PGG_REPAIR_FAILED &&
        missing_total() > 0 && !(g.had_failure && now - g.last_failure_ms < g.cfg->cooldown * 1000))
      g.want_repair = true;
    pgg_repair_result_free(&g.job_res);
    break;
  case JOB_REPAIR: {
    pgg_repair_outcome oc = g.job_res.outcome;
    int idx = oc == PGG_REPAIR_APPLIED ? PGG_REPAIR_RES_APPLIED :
              oc == PGG_REPAIR_NOTHING ? PGG_REPAIR_RES_NOTHING : PGG_REPAIR_RES_FAILED;
    pgg_metrics_g.repairs[idx]++;
    pgg_histogram_observe(&pgg_metrics_g.repair_duration, g.job_res.seconds);
    publish_drift(&g.job_res);
    if (oc == PGG_REPAIR_FAILED) {
      g.had_failure = true;
      g.last_failure_ms = now;
      pgg_log(PGG_LOG_ERROR, "repair_failed", "duration_ms=%.1f reason=%s",
              g.job_res.seconds * 1000, pgg_logq(g.job_res.error));
    } else {
      if (oc == PGG_REPAIR_NOTHING && g.waiters) {
        g.nothing_armed = true;
        g.nothing_at_ms = now;
      }
      pgg_log(PGG_LOG_INFO, oc == PGG_REPAIR_APPLIED ? "repair_applied" : "repair_nothing_missing",
              "statements=%u duration_ms=%.1f missing_after=%u", g.job_res.statements,
              g.job_res.seconds * 1000, missing_total());
    }
    pgg_repair_result_free(&g.job_res);
    notify(oc);
    break;
  }
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
  if (n->drift_interval != cfg->drift_interval) {
    cfg->drift_interval = n->drift_interval;
    uint64_t every = (uint64_t)(cfg->drift_interval * 1000);
    uv_timer_start(&g.timer, on_tick, every, every);
  }
  g.has_pending = false;
}

static void schedule(void)
{
  if (g.running != JOB_NONE || pgg_p.shutting_down)
    return;
  if (g.has_pending)
    apply_pending();
  job_kind next = JOB_NONE;
  if (g.want_load) {
    next = JOB_LOAD;
  } else if (g.loaded && g.want_repair) {
    next = JOB_REPAIR;
    g.want_repair = false;
    g.want_check = false;
  } else if (g.loaded && g.want_check) {
    next = JOB_CHECK;
    g.want_check = false;
  }
  if (next == JOB_NONE)
    return;
  memset(&g.job_res, 0, sizeof(g.job_res));
  g.running = next;
  int err = uv_queue_work(pgg_p.loop, &g.work, job_work, job_done);
  if (err) {
    g.running = JOB_NONE;
    pgg_log(PGG_LOG_ERROR, "guard_job_failed", "reason=%s", pgg_logq(uv_strerror(err)));
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
  if (g.running != JOB_REPAIR)
    g.want_repair = true;
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

/* ---- upstream probe without a guard ---------------------------------------- */

/*
 * Without --schema no drift check reaches the database, and a sidecar with
 * no traffic would report pgguard_upstream_up 0 forever. A TCP connect to
 * the upstream every few seconds keeps the gauge (and its alert) honest.
 */
static struct {
  uv_timer_t timer;
  uv_tcp_t tcp;
  uv_connect_t req;
  bool busy;
  bool on;
} probe;

static void probe_closed(uv_handle_t *h)
{
  probe.busy = false;
}

static void probe_connected(uv_connect_t *req, int status)
{
  if (status != UV_ECANCELED)
    pgg_metrics_g.upstream_up = status == 0 ? 1 : 0;
  uv_close((uv_handle_t *)&probe.tcp, probe_closed);
}

static void probe_tick(uv_timer_t *t)
{
  if (probe.busy || pgg_p.shutting_down)
    return;
  probe.busy = true;
  uv_tcp_init(pgg_p.loop, &probe.tcp);
  if (uv_tcp_connect(&probe.req, &probe.tcp, (const struct sockaddr *)&pgg_p.upstream_addr,
                     probe_connected)) {
    pgg_metrics_g.upstream_up = 0;
    uv_close((uv_handle_t *)&probe.tcp, probe_closed);
  }
}

/* ---- start, reload, stop --------------------------------------------------- */

int pgg_guardian_start(void)
{
  const pgg_guard_config *cfg = &pgg_p.opt->guard;
  pgg_metrics_g.upstream_up = 0;
  if (!cfg->schema_path) {
    probe.on = true;
    uv_timer_init(pgg_p.loop, &probe.timer);
    uv_timer_start(&probe.timer, probe_tick, 0, 5000);
    return PGG_OK;
  }
  g.configured = true;
  g.cfg = cfg;
  pgg_metrics_g.guard_configured = true;
  pgg_catalog_init(&g.desired);
  pgg_buf_init(&g.job_err);
  g.admin = pgg_admin_new(cfg);
  if (!g.admin)
    return PGG_ERR_NOMEM;
  if (cfg->strict) {
    /* --strict: refuse to start rather than proxy unguarded. */
    int rc = pgg_desired_load(cfg, &g.desired, &g.job_err);
    if (rc) {
      fprintf(stderr, "pgguard: the desired schema did not load (--strict): %s\n",
              g.job_err.len ? (const char *)g.job_err.data : pgg_strerror(rc));
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
  uv_timer_start(&g.timer, on_tick, every, every);
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
  g.pending = *next;
  g.has_pending = true;
  g.schema_broken = false;
  pgg_log(PGG_LOG_INFO, "schema_reload", "path=%s", pgg_logq(g.cfg->schema_path));
  g.want_load = true;
  schedule();
}

void pgg_guardian_stop(void)
{
  if (probe.on) {
    probe.on = false;
    uv_timer_stop(&probe.timer);
    uv_close((uv_handle_t *)&probe.timer, NULL);
  }
  if (!g.configured)
    return;
  uv_timer_stop(&g.timer);
  uv_close((uv_handle_t *)&g.timer, NULL);
  notify(PGG_REPAIR_FAILED);
}

/* After the loop has ended: no job can be running any more. */
void pgg_guardian_free(void)
{
  if (!g.configured)
    return;
  pgg_admin_free(g.admin);
  pgg_catalog_free(&g.desired);
  pgg_buf_free(&g.job_err);
  free(g.drift_json);
  g.configured = false;
}
