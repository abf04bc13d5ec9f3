/*
 * proxy.h — the proxy's settings and the pieces proxy/ files share: the
 * listener, connection pairs, the guard's event-loop side, the admin HTTP
 * listener.
 */
#ifndef PGG_PROXY_H
#define PGG_PROXY_H

#include <uv.h>

#include "guard.h"
#include "protocol.h"
#include "tls.h"

typedef struct {
  char host[256];
  int port;
} pgg_hostport;

typedef enum {
  PGG_CLIENT_TLS_DISABLE = 0,   /* answer N to SSLRequest */
  PGG_CLIENT_TLS_ALLOW,         /* answer S when a certificate is configured */
  PGG_CLIENT_TLS_REQUIRE,       /* refuse plaintext clients (28000) */
} pgg_client_tls;

typedef struct {
  const char *command;          /* "run", "check", "plan" */
  pgg_hostport listen;          /* --listen */
  pgg_hostport upstream;        /* --upstream */
  double dns_ttl;               /* --dns-ttl seconds: re-resolve the upstream host; 0: every connection */
  pgg_hostport admin;           /* --admin-listen; port 0: off */
  size_t max_message;           /* --max-message-size */
  double shutdown_timeout;      /* --shutdown-timeout seconds */
  double client_login_timeout;  /* --client-login-timeout seconds; 0: none */
  double server_connect_timeout;/* --server-connect-timeout seconds; 0: none */
  int max_client_conn;          /* --max-client-conn; 0: no limit */
  bool tcp_keepalive;           /* --tcp-keepalive */
  bool log_connections;         /* --log-connections */
  bool log_disconnections;      /* --log-disconnections */
  int tcp_keepidle, tcp_keepintvl, tcp_keepcnt;
  bool json;                    /* check/plan --json */
  unsigned fail_on;             /* check --fail-on: 1 << pgg_drift_state for each state */
  const char *tls_cert;         /* --tls-cert: certificate chain for the client leg */
  const char *tls_key;          /* --tls-key */
  pgg_client_tls client_tls;    /* --client-tls */
  pgg_sslmode upstream_sslmode; /* --upstream-sslmode, as libpq's sslmode */
  const char *upstream_ca;      /* --upstream-ca: CA file for verify-ca / verify-full */
  bool client_tls_set;
  const char *config_path;      /* -c / --config / PGGUARD_CONFIG, or NULL */
  bool check_config;            /* --check-config: validate and exit */
  bool ready_requires_guard;    /* --ready-requires-guard: /readyz also waits for the guard */
  pgg_guard_config guard;
} pgg_options;

/* Parse argv and the environment; on error prints why and returns PGG_ERR_CONFIG. */
int pgg_options_parse(pgg_options *o, int argc, char **argv);
/* --help, from the option table: each option with its default, reload and variable. */
void pgg_options_usage(FILE *f);
/*
 * SIGHUP, after next parsed: copy every reloadable setting that changed into
 * *cur, except the guard's, which go into *guard (a copy of cur->guard) for
 * pgg_guardian_reload. Logs each one applied, and each restart-only setting
 * that changed (which keeps its old value).
 */
void pgg_options_reload(pgg_options *cur, const pgg_options *next, pgg_guard_config *guard);
/* Free the strings read from config and secret files (at exit). */
void pgg_options_free(void);
int pgg_hostport_parse(const char *s, pgg_hostport *out);

/* A stream socket of either kind: TCP, or a Unix-domain socket. */
typedef union {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} pgg_sock;

/* upstream.c: one connection attempt to the upstream, address after address. */
typedef struct pgg_addrs pgg_addrs;
typedef struct pgg_dial {
  pgg_sock *sock;
  void (*done)(struct pgg_dial *d, int status);
  const char *log_prefix;   /* e.g. "conn=12 ", for the log lines */
  uv_connect_t req;
  pgg_addrs *addrs;         /* the addresses this dial walks (a reference), or NULL */
  size_t next;              /* the next of them to try */
  int last_err;
  bool waiting, resolved, connecting, closing, aborted;
  struct pgg_dial *next_waiter;
  char addr[128];           /* the address being tried, for logs */
  struct sockaddr_storage peer;  /* the TCP address connected to (has_peer), after done(d, 0) */
  bool has_peer;
} pgg_dial;

/*
 * Connect sock to the upstream. done(d, 0): sock is open and connected, the
 * caller's to close. done(d, err): every address failed (or the name does
 * not resolve); sock is not open. Addresses come from the last lookup if it
 * is younger than --dns-ttl, else from a new asynchronous one.
 */
void pgg_dial_start(pgg_dial *d, pgg_sock *sock, void (*done)(pgg_dial *, int),
                    const char *log_prefix);
/* The same to one TCP address, looked up nowhere: a session's own server. */
void pgg_dial_start_at(pgg_dial *d, pgg_sock *sock, const struct sockaddr_storage *addr,
                       void (*done)(pgg_dial *, int), const char *log_prefix);
/*
 * The address being tried takes too long (--server-connect-timeout, which
 * bounds each address as libpq's connect_timeout does): give it up and try
 * the next. true: the next address is (or is about to be) tried, with a
 * period of its own; false: not connecting (waiting for DNS), or no address
 * is left.
 */
bool pgg_dial_next(pgg_dial *d);
/*
 * Stop a dial that has not called done yet. true: stopped, done will not be
 * called; false: done(d, UV_ECANCELED) follows once the socket is closed.
 */
bool pgg_dial_abort(pgg_dial *d);
/* Resolve the upstream now, blocking (at start): 0 or a libuv error. */
int pgg_upstream_resolve_now(void);
bool pgg_upstream_is_unix(void);
void pgg_upstream_stop(void);
/* DIR/.s.PGSQL.PORT for a Unix-socket directory given as the host; PGG_ERR_CONFIG
 * when it does not fit out or a socket address (sun_path: 107 bytes). */
int pgg_unix_path(const pgg_hostport *hp, char *out, size_t n);

/* ---- the loop-wide state ---- */
typedef struct {
  uv_loop_t *loop;
  pgg_options *opt;
  pgg_tls_ctx *client_ctx;      /* TLS toward applications, or NULL */
  pgg_tls_ctx *upstream_ctx;    /* TLS toward PostgreSQL, or NULL (sslmode disable/allow) */
  bool shutting_down;
  bool paused;                  /* SIGUSR1: no new requests are read until SIGUSR2 */
  uint64_t upstream_ok_ms;      /* uv_now when the upstream last accepted a connection */
  bool upstream_ever_ok;
  uint64_t next_conn_id;
} pgg_proxy;

extern pgg_proxy pgg_p;

/* listener.c */
int pgg_resolve(const pgg_hostport *hp, struct sockaddr_storage *out, bool passive);
int pgg_listen_tcp(uv_tcp_t *h, const pgg_hostport *hp, int backlog, uv_connection_cb cb,
                   const char *what);
int pgg_listener_start(void);
void pgg_listener_stop(void);

/* conn.c */
/* Take an accepted socket (non-blocking); unix_socket: a Unix-domain one. */
void pgg_conn_accept_fd(int fd, bool unix_socket);
size_t pgg_conn_count(void);
/* Capacity of every connection's growable buffers (read buffers excluded). */
size_t pgg_conn_buffer_bytes(void);
/* Close every connection (shutdown grace period over). */
void pgg_conn_close_all(void);
/* Close connections that are between requests and outside a transaction (draining). */
void pgg_conn_close_idle(void);
/* Pause (SIGUSR1) or resume (SIGUSR2) reading new requests from every client. */
void pgg_conn_set_paused(bool paused);

/* guardian.c: the guard on the event loop */
typedef struct pgg_guard_waiter {
  struct pgg_guard_waiter *next, *prev;
  bool queued;
  void (*cb)(struct pgg_guard_waiter *w, pgg_repair_outcome outcome);
} pgg_guard_waiter;

typedef enum {
  PGG_ASK_WAIT = 0,        /* a repair (or check) will answer through the waiter's cb */
  PGG_ASK_NOTHING_MISSING, /* a check moments ago found nothing missing */
  PGG_ASK_COOLING_DOWN,    /* a repair failed moments ago */
  PGG_ASK_OFF,             /* the guard is not active */
  PGG_ASK_DEFERRING,       /* a restore or DDL runs in the guarded database: pass through */
} pgg_ask;

int pgg_guardian_start(void);
void pgg_guardian_stop(void);
void pgg_guardian_free(void);
void pgg_guardian_reload(const pgg_guard_config *next);
bool pgg_guardian_active(void);
bool pgg_guardian_missing_labels(void);
/* Ask for a repair; w == NULL asks without waiting for the answer. */
pgg_ask pgg_guardian_request(pgg_guard_waiter *w);
void pgg_guardian_cancel(pgg_guard_waiter *w);
const char *pgg_guardian_drift_json(void);
/* The last failure of a schema load, drift check or repair (password masked), or NULL; *at its unix time. */
const char *pgg_guardian_last_error(double *at);
/* Unix time of the last drift check that reached the database; 0: none yet. */
double pgg_guardian_checked_at(void);
bool pgg_guardian_ready(const char **why);
/* The upstream accepted a connection (a client's or the probe's): readiness. */
void pgg_upstream_accepted(void);
/*
 * A server-leg connection to the upstream succeeded (conn.c calls this for
 * each one). Costs a branch unless the guard is backing off after failing to
 * reach the database; then the first success since the last failed attempt
 * makes the guard retry soon, through its limiter.
 */
void pgg_guardian_upstream_ok(void);
/*
 * A server-leg connection ended without the client's Terminate; fatal is
 * the SQLSTATE of the FATAL the server sent first, or "" when it sent none
 * (the connection was lost). 57P01, 57P02, 57P03 and a lost connection make
 * the guard check the drift again at once (through its limiter): a restore
 * usually restarts or replaces the database. Anything else costs a branch.
 */
void pgg_guardian_server_gone(const char *fatal);
/* Why repairs wait for another session (a restore, DDL), or NULL; *pid is
 * that session's, *since the unix time the wait began. */
const char *pgg_guardian_deferring(int *pid, double *since);
/*
 * Whether the guard acts for a session whose startup database (the
 * "database" startup parameter, or the user name when it is absent) is
 * dbname: only when the guard is active and dbname is the admin URL's
 * database as its first admin session reported it (PQdb); false before that
 * session and after the guard refused (different servers).
 */
bool pgg_guardian_guards_database(const char *dbname);
/* The loaded desired catalog, or NULL. Valid until the next event-loop turn
 * that finishes a schema load: look up, do not keep. */
const pgg_catalog *pgg_guardian_desired(void);
/* Why the guard refused to act (--admin-url and --upstream reach different
 * servers), or NULL. */
const char *pgg_guardian_refused(void);

/* admin_http.c */
int pgg_admin_http_start(void);
void pgg_admin_http_stop(void);

#endif
