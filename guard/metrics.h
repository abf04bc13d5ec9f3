/*
 * metrics.h — pgguard's Prometheus registry: one process-wide struct of
 * counters, gauges and histograms, written only from the event loop's thread,
 * rendered in the text exposition format 0.0.4.
 */
#ifndef PGG_METRICS_H
#define PGG_METRICS_H

#include "catalog.h"

#define PGG_HIST_BUCKETS 14

typedef struct {
  const double *bounds;            /* PGG_HIST_BUCKETS upper bounds, ascending */
  uint64_t counts[PGG_HIST_BUCKETS]; /* non-cumulative; rendered cumulative */
  uint64_t count;
  double sum;
} pgg_histogram;

void pgg_histogram_observe(pgg_histogram *h, double v);

enum {
  PGG_SQLSTATE_42P01, PGG_SQLSTATE_42703, PGG_SQLSTATE_42704, PGG_SQLSTATE_22P02,
  PGG_SQLSTATE_42883, PGG_SQLSTATE_3F000, PGG_SQLSTATE__COUNT
};
enum { PGG_REPAIR_RES_APPLIED, PGG_REPAIR_RES_NOTHING, PGG_REPAIR_RES_FAILED, PGG_REPAIR_RES__COUNT };
enum {
  PGG_REPLAY_RES_SUCCEEDED,   /* replayed, and the replay succeeded */
  PGG_REPLAY_RES_FAILED,      /* replayed, and the replay failed again */
  PGG_REPLAY_RES_SKIPPED,     /* not provably safe: the original error went through */
  PGG_REPLAY_RES__COUNT
};
enum { PGG_DIR_CLIENT_TO_SERVER, PGG_DIR_SERVER_TO_CLIENT, PGG_DIR__COUNT };
enum { PGG_REJECT_MAX_CLIENT_CONN, PGG_REJECT_LOGIN_TIMEOUT, PGG_REJECT_FD_LIMIT, PGG_REJECT__COUNT };

typedef struct {
  uint64_t undefined_object_errors[PGG_SQLSTATE__COUNT];
  uint64_t repairs[PGG_REPAIR_RES__COUNT];
  pgg_histogram repair_duration;
  uint64_t replays[PGG_REPLAY_RES__COUNT];
  int64_t client_connections;
  uint64_t connection_buffer_bytes; /* growable per-connection buffers, set before rendering */
  int64_t server_connections;
  uint64_t client_connections_total;
  uint64_t bytes[PGG_DIR__COUNT];
  uint64_t clients_rejected[PGG_REJECT__COUNT]; /* refused or closed before start-up ended */
  /* The process, as Prometheus' client libraries report it (set before rendering). */
  bool process_known;
  double process_cpu_seconds;
  double process_resident_bytes;
  double process_open_fds;
  double process_max_fds;
  double process_start_time;
  pgg_histogram request_duration;
  int upstream_up;
  uint64_t tls_handshakes;         /* TLS sessions started, both legs */
  uint64_t tls_handshake_failures; /* of which failed before being established */
  bool drift_known;
  unsigned drift[PGG_OBJ__COUNT][PGG_DRIFT__COUNT];
  double drift_check_timestamp;    /* unix seconds of the last successful check */
  bool schema_loaded;              /* the desired schema is loaded: the guard is on */
  bool guard_configured;           /* --schema was given */
  bool guard_refused;              /* --admin-url and --upstream reach different servers */
  bool guard_standby;              /* the admin URL reaches no primary: nothing held or repaired */
  bool guard_deferring;            /* a restore or DDL runs in the guarded database: no repair starts */
  uint64_t catalog_checks;         /* drift checks and repairs started (rate-limited) */
  uint64_t guard_retries;          /* loads, checks and repairs retried after a failure */
} pgg_metrics;

extern pgg_metrics pgg_metrics_g;

void pgg_metrics_init(void);
/* Index into undefined_object_errors for a guarded SQLSTATE, or -1. */
int pgg_metrics_sqlstate_index(const char *sqlstate);
int pgg_metrics_render(const pgg_metrics *m, pgg_buf *out);

#endif
