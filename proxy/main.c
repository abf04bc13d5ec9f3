/*
 * main.c — pgguard's entry point: options, the `check` and `plan` commands,
 * and for `run` the event loop with its signals and graceful shutdown.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <errno.h>
#include <sys/un.h>
#include <unistd.h>

#include "exclude.h"
#include "log.h"
#include "metrics.h"

pgg_proxy pgg_p;

static uv_signal_t sig_term, sig_int, sig_hup, sig_quit, sig_usr1, sig_usr2;
static int saved_argc;
static char **saved_argv;
/* TLS contexts replaced by a reload: sessions still point at them. */
static pgg_tls_ctx *retired[64];
static size_t nretired;
static uv_timer_t drain_timer;
static uint64_t drain_deadline;

static void finish(void)
{
  uv_timer_stop(&drain_timer);
  uv_close((uv_handle_t *)&drain_timer, NULL);
  pgg_conn_close_all();
  pgg_admin_http_stop();
  pgg_guardian_stop();
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  uv_close((uv_handle_t *)&sig_hup, NULL);
  uv_close((uv_handle_t *)&sig_quit, NULL);
  uv_close((uv_handle_t *)&sig_usr1, NULL);
  uv_close((uv_handle_t *)&sig_usr2, NULL);
  pgg_log(PGG_LOG_INFO, "stopped", NULL);
}

/* SIGQUIT, as PgBouncer's: stop at once, sessions and all. */
static void on_quit_signal(uv_signal_t *s, int signum)
{
  pgg_log(PGG_LOG_INFO, "shutting_down", "signal=SIGQUIT connections=%zu", pgg_conn_count());
  pgg_p.shutting_down = true;
  pgg_listener_stop();
  finish();
}

/* SIGUSR1 pauses new requests (each session at its next idle point); SIGUSR2 resumes. */
static void on_pause_signal(uv_signal_t *s, int signum)
{
  bool pause = signum == SIGUSR1;
  if (pgg_p.paused == pause)
    return;
  pgg_log(PGG_LOG_INFO, pause ? "paused" : "resumed", "connections=%zu", pgg_conn_count());
  pgg_conn_set_paused(pause);
}

static void on_drain_tick(uv_timer_t *t)
{
  pgg_conn_close_idle();
  if (pgg_conn_count() == 0) {
    finish();
    return;
  }
  if (uv_now(pgg_p.loop) >= drain_deadline) {
    pgg_log(PGG_LOG_WARN, "shutdown_timeout", "closing=%zu", pgg_conn_count());
    finish();
  }
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
  if (pgg_p.shutting_down) {
    /* A second signal: stop now. */
    finish();
    return;
  }
  pgg_p.shutting_down = true;
  pgg_log(PGG_LOG_INFO, "shutting_down", "signal=%s connections=%zu grace_s=%g",
          signum == SIGTERM ? "SIGTERM" : "SIGINT", pgg_conn_count(),
          pgg_p.opt->shutdown_timeout);
  pgg_listener_stop();
  drain_deadline = uv_now(pgg_p.loop) + (uint64_t)(pgg_p.opt->shutdown_timeout * 1000);
  uv_timer_start(&drain_timer, on_drain_tick, 0, 50);
}

static bool fd_limit_holds(int max_client_conn, rlim_t *need, rlim_t *limit);

static void retire(pgg_tls_ctx *ctx)
{
  if (!ctx)
    return;
  if (nretired < sizeof(retired) / sizeof(retired[0]))
    retired[nretired++] = ctx;
  /* Past 64 reloads the oldest contexts are simply kept: a few KiB each. */
}

/*
 * SIGHUP: reread the config file and the environment with the original
 * flags on top, then apply what the option table marks reloadable without
 * dropping anyone: new sessions get the new TLS certificates and limits, the
 * guard takes its new settings between jobs. A restart-only setting that
 * changed keeps its old value, and the log names it.
 */
static void on_hup(uv_signal_t *s, int signum)
{
  static pgg_options next;
  pgg_options *cur = pgg_p.opt;
  int old_level = pgg_log_level;
  if (pgg_options_parse(&next, saved_argc, saved_argv)) {
    pgg_log_level = old_level;
    pgg_log(PGG_LOG_ERROR, "reload_failed", "reason=%s",
            pgg_logq("the configuration is invalid (see the message above); keeping the old one"));
    return;
  }
  /* A value start-up would refuse is refused here too. */
  rlim_t need, limit;
  if (!fd_limit_holds(next.max_client_conn, &need, &limit)) {
    char why[200];
    snprintf(why, sizeof why, "max-client-conn %d needs %llu file descriptors, but the limit is "
             "%llu; keeping the old configuration", next.max_client_conn,
             (unsigned long long)need, (unsigned long long)limit);
    pgg_log_level = old_level;
    pgg_log(PGG_LOG_ERROR, "reload_failed", "reason=%s", pgg_logq(why));
    return;
  }
  pgg_tls_ctx *client_ctx = NULL, *upstream_ctx = NULL;
  pgg_buf err;
  pgg_buf_init(&err);
  int rc = PGG_OK;
  if (next.tls_cert && next.client_tls != PGG_CLIENT_TLS_DISABLE)
    rc = pgg_tls_server_ctx_new(next.tls_cert, next.tls_key, &client_ctx, &err);
  if (!rc && next.upstream_sslmode >= PGG_SSLMODE_PREFER)
    rc = pgg_tls_client_ctx_new(next.upstream_sslmode, next.upstream_ca, &upstream_ctx, &err);
  if (rc) {
    pgg_buf_append_u8(&err, 0);
    pgg_log(PGG_LOG_ERROR, "reload_failed", "reason=%s", pgg_logq((const char *)err.data));
    pgg_tls_ctx_free(client_ctx);
    pgg_tls_ctx_free(upstream_ctx);
    pgg_buf_free(&err);
    pgg_log_level = old_level;
    return;
  }
  pgg_buf_free(&err);
  retire(pgg_p.client_ctx);
  retire(pgg_p.upstream_ctx);
  pgg_p.client_ctx = client_ctx;
  pgg_p.upstream_ctx = upstream_ctx;
  /* The guard's timers and admin session exist only when it started with a
   * schema: a new path reloads, turning the guard on or off needs a restart. */
  if (!cur->guard.schema_path != !next.guard.schema_path) {
    pgg_log(PGG_LOG_WARN, "reload_needs_restart", "option=schema reason=%s",
            pgg_logq(cur->guard.schema_path ? "turning the guard off needs a restart; keeping the old schema"
                                            : "turning the guard on needs a restart"));
    next.guard.schema_path = cur->guard.schema_path;
  }
  pgg_guard_config guard;
  pgg_options_reload(cur, &next, &guard);
  pgg_log(PGG_LOG_INFO, "reloaded", "config=%s", pgg_logq(cur->config_path ? cur->config_path : "(none)"));
  pgg_guardian_reload(&guard);
}

/* Certificates are read before listening, so a bad file stops start-up. */
static int tls_setup(pgg_options *opt)
{
  pgg_buf err;
  pgg_buf_init(&err);
  int rc = PGG_OK;
  if (opt->tls_cert && opt->client_tls != PGG_CLIENT_TLS_DISABLE)
    rc = pgg_tls_server_ctx_new(opt->tls_cert, opt->tls_key, &pgg_p.client_ctx, &err);
  /* sslmode allow tries plaintext first, and plaintext always works here,
   * so only prefer and stronger ask PostgreSQL for TLS. */
  if (!rc && opt->upstream_sslmode >= PGG_SSLMODE_PREFER)
    rc = pgg_tls_client_ctx_new(opt->upstream_sslmode, opt->upstream_ca, &pgg_p.upstream_ctx, &err);
  if (rc) {
    pgg_buf_append_u8(&err, 0);
    fprintf(stderr, "pgguard: TLS: %s\n", err.len > 1 ? (const char *)err.data : pgg_strerror(rc));
  }
  pgg_buf_free(&err);
  return rc;
}

/*
 * libpq's default channel_binding=prefer cannot log in through pgguard when
 * both legs are TLS with different certificates, and pgguard cannot mend
 * that: the client's "y" flag is inside the SCRAM proof. Whether the
 * certificates differ shows only at the first login, so say it up front.
 */
static void log_channel_binding(void)
{
  if (!pgg_p.client_ctx || !pgg_p.upstream_ctx || pgg_upstream_is_unix())
    return;
  pgg_log(PGG_LOG_INFO, "channel_binding_limit", "note=%s ways_out=%s",
          pgg_logq("libpq clients on TLS with the default channel_binding=prefer cannot log in "
                   "with SCRAM when the leg to PostgreSQL is TLS as well, unless pgguard presents "
                   "PostgreSQL's own certificate (checked at each login; then "
                   "SCRAM-SHA-256-PLUS passes through)"),
          pgg_logq("PostgreSQL's own certificate and key as --tls-cert and --tls-key; "
                   "a leg to PostgreSQL without TLS (its Unix socket, or --upstream-sslmode=disable); "
                   "or channel_binding=disable on the clients"));
}

/* A Unix-socket upstream whose path does not fit a socket address: refused
 * at start, never cut short at each connection. */
static int check_upstream_path(const pgg_options *opt)
{
  char path[512];
  if (opt->upstream.host[0] != '/' || pgg_unix_path(&opt->upstream, path, sizeof path) == PGG_OK)
    return 0;
  fprintf(stderr, "pgguard: the upstream Unix socket path %s/.s.PGSQL.%d is too long (at most "
          "107 bytes)\n", opt->upstream.host, opt->upstream.port);
  return 2;
}

static int check_config(pgg_options *opt)
{
  pgg_p.loop = uv_default_loop();
  if (tls_setup(opt) || check_upstream_path(opt))
    return 2;
  struct sockaddr_storage addr;
  if ((opt->listen.host[0] != '/' && pgg_resolve(&opt->listen, &addr, true)) ||
      (opt->upstream.host[0] != '/' && pgg_resolve(&opt->upstream, &addr, false))) {
    fprintf(stderr, "pgguard: cannot resolve the listen or upstream address\n");
    return 2;
  }
  if (opt->listen.host[0] == '/') {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (pgg_unix_path(&opt->listen, path, sizeof path)) {
      fprintf(stderr, "pgguard: the Unix socket path %s/.s.PGSQL.%d is too long (at most %zu "
              "bytes)\n", opt->listen.host, opt->listen.port, sizeof path - 1);
      return 2;
    }
    if (access(opt->listen.host, W_OK | X_OK) != 0) {
      fprintf(stderr, "pgguard: cannot create the socket in %s: %s\n", opt->listen.host,
              strerror(errno));
      return 2;
    }
  }
  if (opt->guard.schema_path && access(opt->guard.schema_path, R_OK) != 0) {
    fprintf(stderr, "pgguard: cannot read schema \"%s\": %s\n", opt->guard.schema_path,
            strerror(errno));
    return 2;
  }
  printf("pgguard: configuration OK\n");
  return 0;
}

/*
 * Every client costs two descriptors (its socket and its server's); when
 * accept hits the limit, libuv quietly accepts and closes pending clients.
 * Take the hard limit, and refuse a --max-client-conn that cannot fit.
 */
#define FD_RESERVE 64   /* listeners, the admin port, the guard's connections, logs */

/* Whether max_client_conn clients fit the descriptor limit as it is now. */
static bool fd_limit_holds(int max_client_conn, rlim_t *need, rlim_t *limit)
{
  struct rlimit rl;
  *need = (rlim_t)max_client_conn * 2 + FD_RESERVE;
  *limit = 0;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return true;
  *limit = rl.rlim_cur;
  return !max_client_conn || rl.rlim_cur == RLIM_INFINITY || *need <= rl.rlim_cur;
}

static int fd_limit(const pgg_options *opt)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    struct rlimit want = {rl.rlim_max, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0)
      rl = want;
  }
  rlim_t need, limit;
  if (!fd_limit_holds(opt->max_client_conn, &need, &limit)) {
    fprintf(stderr, "pgguard: --max-client-conn %d needs %llu file descriptors (two per client "
            "and %d more), but the limit is %llu: lower --max-client-conn or raise the limit "
            "(ulimit -n, LimitNOFILE=)\n", opt->max_client_conn, (unsigned long long)need,
            FD_RESERVE, (unsigned long long)limit);
    return 2;
  }
  pgg_log(PGG_LOG_DEBUG, "fd_limit", "limit=%llu", (unsigned long long)rl.rlim_cur);
  return 0;
}

static int run(pgg_options *opt)
{
  pgg_p.loop = uv_default_loop();
  pgg_p.opt = opt;
  pgg_metrics_init();
  signal(SIGPIPE, SIG_IGN);
  if (fd_limit(opt) || check_upstream_path(opt))
    return 2;

  int err = pgg_upstream_resolve_now();
  if (err) {
    fprintf(stderr, "pgguard: cannot resolve upstream %s:%d: %s\n", opt->upstream.host,
            opt->upstream.port, uv_strerror(err));
    return 2;
  }
  if (tls_setup(opt))
    return 2;
  log_channel_binding();
  /* Signals first: a supervisor may signal as soon as the port accepts. */
  uv_timer_init(pgg_p.loop, &drain_timer);
  uv_signal_init(pgg_p.loop, &sig_term);
  uv_signal_init(pgg_p.loop, &sig_int);
  uv_signal_init(pgg_p.loop, &sig_hup);
  uv_signal_start(&sig_term, on_stop_signal, SIGTERM);
  uv_signal_start(&sig_int, on_stop_signal, SIGINT);
  uv_signal_start(&sig_hup, on_hup, SIGHUP);
  uv_signal_init(pgg_p.loop, &sig_quit);
  uv_signal_init(pgg_p.loop, &sig_usr1);
  uv_signal_init(pgg_p.loop, &sig_usr2);
  uv_signal_start(&sig_quit, on_quit_signal, SIGQUIT);
  uv_signal_start(&sig_usr1, on_pause_signal, SIGUSR1);
  uv_signal_start(&sig_usr2, on_pause_signal, SIGUSR2);
  if (pgg_listener_start())
    return 1;
  if (pgg_admin_http_start())
    return 1;
  if (pgg_guardian_start())
    return 2;

  uv_run(pgg_p.loop, UV_RUN_DEFAULT);
  pgg_guardian_free();
  uv_loop_close(pgg_p.loop);
  pgg_tls_ctx_free(pgg_p.client_ctx);
  pgg_tls_ctx_free(pgg_p.upstream_ctx);
  for (size_t i = 0; i < nretired; i++)
    pgg_tls_ctx_free(retired[i]);
  return 0;
}

int main(int argc, char **argv)
{
  static pgg_options opt;
  saved_argc = argc;
  saved_argv = argv;
  if (pgg_options_parse(&opt, argc, argv))
    return 2;
  if (opt.check_config)
    return check_config(&opt);
  if (strcmp(opt.command, "help") == 0) {
    pgg_options_usage(stdout);
    return 0;
  }
  if (strcmp(opt.command, "version") == 0) {
    printf("pgguard %s\n", PGG_VERSION);
    return 0;
  }
  {
    pgg_buf err;
    pgg_buf_init(&err);
    int bad = pgg_exclude_set(opt.guard.exclude, &err);
    pgg_buf_free(&err);
    if (bad)
      return 2;   /* the option parser showed why */
  }
  if (strcmp(opt.command, "check") == 0)
    return pgg_cli_check(&opt.guard, opt.json, opt.fail_on);
  if (strcmp(opt.command, "plan") == 0)
    return pgg_cli_plan(&opt.guard, opt.json);
  int rc = run(&opt);
  pgg_options_free();
  return rc;
}
