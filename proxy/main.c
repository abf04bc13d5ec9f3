/*
 * main.c — pgguard's entry point: options, the `check` and `plan` commands,
 * and for `run` the event loop with its signals and graceful shutdown.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>

#include "log.h"
#include "metrics.h"

pgg_proxy pgg_p;

static uv_signal_t sig_term, sig_int, sig_hup;
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
  pgg_log(PGG_LOG_INFO, "stopped", NULL);
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

static void on_hup(uv_signal_t *s, int signum)
{
  pgg_guardian_reload();
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

static int run(pgg_options *opt)
{
  pgg_p.loop = uv_default_loop();
  pgg_p.opt = opt;
  pgg_metrics_init();
  signal(SIGPIPE, SIG_IGN);

  int err = pgg_resolve(&opt->upstream, &pgg_p.upstream_addr, false);
  if (err) {
    fprintf(stderr, "pgguard: cannot resolve upstream %s:%d: %s\n", opt->upstream.host,
            opt->upstream.port, uv_strerror(err));
    return 2;
  }
  if (tls_setup(opt))
    return 2;
  if (pgg_listener_start())
    return 1;
  if (pgg_admin_http_start())
    return 1;
  if (pgg_guardian_start())
    return 2;

  uv_timer_init(pgg_p.loop, &drain_timer);
  uv_signal_init(pgg_p.loop, &sig_term);
  uv_signal_init(pgg_p.loop, &sig_int);
  uv_signal_init(pgg_p.loop, &sig_hup);
  uv_signal_start(&sig_term, on_stop_signal, SIGTERM);
  uv_signal_start(&sig_int, on_stop_signal, SIGINT);
  uv_signal_start(&sig_hup, on_hup, SIGHUP);

  uv_run(pgg_p.loop, UV_RUN_DEFAULT);
  pgg_guardian_free();
  uv_loop_close(pgg_p.loop);
  return 0;
}

int main(int argc, char **argv)
{
  pgg_options opt;
  if (pgg_options_parse(&opt, argc, argv))
    return 2;
  if (strcmp(opt.command, "help") == 0) {
    pgg_options_usage(stdout);
    return 0;
  }
  if (strcmp(opt.command, "version") == 0) {
    printf("pgguard %s\n", PGG_VERSION);
    return 0;
  }
  if (strcmp(opt.command, "check") == 0)
    return pgg_cli_check(&opt.guard, opt.json);
  if (strcmp(opt.command, "plan") == 0)
    return pgg_cli_plan(&opt.guard);
  return run(&opt);
}
