/*
 * metrics.c — the Prometheus registry and its text rendering. Names follow
 * DESIGN.md: base units, _total counters, histograms (a fleet of sidecars
 * must aggregate), labels with a handful of values.
 */
#include "metrics.h"

#include <string.h>

pgg_metrics pgg_metrics_g;

static const double repair_bounds[PGG_HIST_BUCKETS] = {
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
};
static const double request_bounds[PGG_HIST_BUCKETS] = {
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
  0.25, 1, 5, 30,
};

static const char *const sqlstate_names[PGG_SQLSTATE__COUNT] = {
  "42P01", "42703", "42704", "22P02", "42883", "3F000",
};
static const char *const repair_names[PGG_REPAIR_RES__COUNT] = {
  "applied", "nothing_missing", "failed",
};
static const char *const replay_names[PGG_REPLAY_RES__COUNT] = {
  "succeeded", "failed", "skipped",
};
static const char *const reject_names[PGG_REJECT__COUNT] = {
  "max_client_conn", "login_timeout", "fd_limit",
};
static const char *const dir_names[PGG_DIR__COUNT] = {
  "client_to_server", "server_to_client",
};

void pgg_metrics_init(void)
{
  memset(&pgg_metrics_g, 0, sizeof(pgg_metrics_g));
  pgg_metrics_g.repair_duration.bounds = repair_bounds;
  pgg_metrics_g.request_duration.bounds = request_bounds;
}

void pgg_histogram_observe(pgg_histogram *h, double v)
{
  int i = 0;
  while (i < PGG_HIST_BUCKETS && v > h->bounds[i])
    i++;
  if (i < PGG_HIST_BUCKETS)
    h->counts[i]++;
  h->count++;
  h->sum += v;
}

int pgg_metrics_sqlstate_index(const char *sqlstate)
{
  for (int i = 0; sqlstate && i < PGG_SQLSTATE__COUNT; i++)
    if (strcmp(sqlstate, sqlstate_names[i]) == 0)
      return i;
  return -1;
}

static int header(pgg_buf *out, const char *name, const char *type, const char *help)
{
  return pgg_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int histogram(pgg_buf *out, const char *name, const char *help,
                     const pgg_histogram *h)
{
  uint64_t cum = 0;
  int err = header(out, name, "histogram", help);
  for (int i = 0; !err && i < PGG_HIST_BUCKETS; i++) {
    cum += h->counts[i];
    err = pgg_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                         (unsigned long long)cum);
  }
  if (!err)
    err = pgg_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n",
                         name, (unsigned long long)h->count, name, h->sum, name,
                         (unsigned long long)h->count);
  return err;
}

static int labelled(pgg_buf *out, const char *name, const char *type,
                    const char *help, const char *label,
                    const char *const *values, const uint64_t *counts, int n)
{
  int err = header(out, name, type, help);
  for (int i = 0; !err && i < n; i++)
    err = pgg_buf_printf(out, "%s{%s=\"%s\"} %llu\n", name, label, values[i],
                         (unsigned long long)counts[i]);
  return err;
}

int pgg_metrics_render(const pgg_metrics *m, pgg_buf *out)
{
  int err = 0;

  err = err ? err : header(out, "pgguard_schema_drift_objects", "gauge",
                           "Objects of the desired schema by drift state (missing, extra, conflicting, unsupported, "
                           "needs_migration, suspected_rename), from the last check.");
  for (int k = 0; !err && m->drift_known && k < PGG_OBJ__COUNT; k++)
    for (int s = 0; !err && s < PGG_DRIFT__COUNT; s++) {
      /* A kind pgguard creates is never unsupported, one it does not is
       * never missing: those series would only ever read 0. */
      bool modeled = pgg_obj_kind_modeled((pgg_obj_kind)k);
      if ((s == PGG_DRIFT_UNSUPPORTED && modeled) || (s == PGG_DRIFT_MISSING && !modeled))
        continue;
      /* Only what pgguard creates can need a migration, only a table or a
       * column can be a rename. */
      if (s == PGG_DRIFT_NEEDS_MIGRATION && !modeled)
        continue;
      if (s == PGG_DRIFT_SUSPECTED_RENAME && k != PGG_OBJ_TABLE && k != PGG_OBJ_COLUMN)
        continue;
      err = pgg_buf_printf(out, "pgguard_schema_drift_objects{kind=\"%s\",state=\"%s\"} %u\n",
                           pgg_obj_kind_name(k), pgg_drift_state_name(s), m->drift[k][s]);
    }
  err = err ? err : header(out, "pgguard_schema_drift_check_timestamp_seconds", "gauge",
                           "Unix time of the last successful drift check.");
  err = err ? err : pgg_buf_printf(out, "pgguard_schema_drift_check_timestamp_seconds %.3f\n",
                                   m->drift_check_timestamp);
  err = err ? err : header(out, "pgguard_schema_guard_active", "gauge",
                           "1 when the desired schema is loaded and the guard acts on errors.");
  err = err ? err : pgg_buf_printf(out, "pgguard_schema_guard_active %d\n", m->schema_loaded ? 1 : 0);
  err = err ? err : header(out, "pgguard_schema_guard_refused", "gauge",
                           "1 when the guard refused to act: --admin-url and --upstream reach different servers.");
  err = err ? err : pgg_buf_printf(out, "pgguard_schema_guard_refused %d\n", m->guard_refused ? 1 : 0);
  err = err ? err : header(out, "pgguard_schema_guard_standby", "gauge",
                           "1 while the admin URL reaches no primary (a hot standby or a read-only "
                           "server): the guard holds no request and repairs nothing.");
  err = err ? err : pgg_buf_printf(out, "pgguard_schema_guard_standby %d\n", m->guard_standby ? 1 : 0);
  err = err ? err : header(out, "pgguard_schema_guard_deferring", "gauge",
                           "1 while another session runs a restore (--defer-to) or DDL in the "
                           "guarded database: no repair starts, guarded errors pass through.");
  err = err ? err : pgg_buf_printf(out, "pgguard_schema_guard_deferring %d\n",
                                   m->guard_deferring ? 1 : 0);
  err = err ? err : header(out, "pgguard_catalog_checks_total", "counter",
                           "Catalog checks started (drift checks and repairs), at most one per second.");
  err = err ? err : pgg_buf_printf(out, "pgguard_catalog_checks_total %llu\n",
                                   (unsigned long long)m->catalog_checks);
  err = err ? err : header(out, "pgguard_guard_retries_total", "counter",
                           "Schema loads, drift checks and repairs retried (with backoff) after the database could not be reached.");
  err = err ? err : pgg_buf_printf(out, "pgguard_guard_retries_total %llu\n",
                                   (unsigned long long)m->guard_retries);
  err = err ? err : labelled(out, "pgguard_undefined_object_errors_total", "counter",
                             "Guarded errors (undefined table, column, object, enum label) seen from PostgreSQL.",
                             "sqlstate", sqlstate_names, m->undefined_object_errors, PGG_SQLSTATE__COUNT);
  err = err ? err : labelled(out, "pgguard_repairs_total", "counter",
                             "Repair runs by result.", "result", repair_names, m->repairs,
                             PGG_REPAIR_RES__COUNT);
  err = err ? err : histogram(out, "pgguard_repair_duration_seconds",
                              "Time a repair run took, lock wait included.", &m->repair_duration);
  err = err ? err : labelled(out, "pgguard_replays_total", "counter",
                             "Failed requests after a guarded error: replayed (succeeded or failed again) or skipped because a replay was not provably safe.",
                             "result", replay_names, m->replays, PGG_REPLAY_RES__COUNT);
  err = err ? err : header(out, "pgguard_client_connections", "gauge", "Open client connections.");
  err = err ? err : pgg_buf_printf(out, "pgguard_client_connections %lld\n", (long long)m->client_connections);
  err = err ? err : header(out, "pgguard_connection_buffer_bytes", "gauge",
                           "Bytes held by growable per-connection buffers (queues, records, holds), read buffers excluded.");
  err = err ? err : pgg_buf_printf(out, "pgguard_connection_buffer_bytes %llu\n",
                                   (unsigned long long)m->connection_buffer_bytes);
  err = err ? err : header(out, "pgguard_server_connections", "gauge", "Open connections to PostgreSQL.");
  err = err ? err : pgg_buf_printf(out, "pgguard_server_connections %lld\n", (long long)m->server_connections);
  err = err ? err : header(out, "pgguard_client_connections_total", "counter", "Client connections accepted.");
  err = err ? err : pgg_buf_printf(out, "pgguard_client_connections_total %llu\n",
                                   (unsigned long long)m->client_connections_total);
  err = err ? err : labelled(out, "pgguard_bytes_total", "counter", "Bytes relayed, by direction.",
                             "direction", dir_names, m->bytes, PGG_DIR__COUNT);
  if (m->process_known) {
    err = err ? err : header(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.");
    err = err ? err : pgg_buf_printf(out, "process_cpu_seconds_total %.2f\n", m->process_cpu_seconds);
    err = err ? err : header(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    err = err ? err : pgg_buf_printf(out, "process_resident_memory_bytes %.0f\n", m->process_resident_bytes);
    err = err ? err : header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
    err = err ? err : pgg_buf_printf(out, "process_open_fds %.0f\n", m->process_open_fds);
    err = err ? err : header(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    err = err ? err : pgg_buf_printf(out, "process_max_fds %.0f\n", m->process_max_fds);
    err = err ? err : header(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    err = err ? err : pgg_buf_printf(out, "process_start_time_seconds %.2f\n", m->process_start_time);
  }
  err = err ? err : labelled(out, "pgguard_clients_rejected_total", "counter",
                             "Clients refused (max_client_conn, fd_limit) or closed before finishing start-up "
                             "(login_timeout).", "reason", reject_names, m->clients_rejected,
                             PGG_REJECT__COUNT);
  err = err ? err : histogram(out, "pgguard_request_duration_seconds",
                              "Time from a request's first byte to its ReadyForQuery.", &m->request_duration);
  err = err ? err : header(out, "pgguard_upstream_up", "gauge", "1 when the last attempt to reach PostgreSQL succeeded.");
  err = err ? err : pgg_buf_printf(out, "pgguard_upstream_up %d\n", m->upstream_up);
  err = err ? err : header(out, "pgguard_tls_handshakes_total", "counter", "TLS handshakes started, client and server legs.");
  err = err ? err : pgg_buf_printf(out, "pgguard_tls_handshakes_total %llu\n", (unsigned long long)m->tls_handshakes);
  err = err ? err : header(out, "pgguard_tls_handshake_failures_total", "counter", "TLS handshakes that failed.");
  err = err ? err : pgg_buf_printf(out, "pgguard_tls_handshake_failures_total %llu\n",
                                   (unsigned long long)m->tls_handshake_failures);
  err = err ? err : header(out, "pgguard_build_info", "gauge", "Build information; always 1.");
  err = err ? err : pgg_buf_printf(out, "pgguard_build_info{version=\"%s\"} 1\n", PGG_VERSION);
  return err;
}
