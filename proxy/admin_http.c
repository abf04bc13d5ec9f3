/*
 * admin_http.c — the admin listener: GET /metrics (Prometheus text 0.0.4),
 * /healthz, /readyz, /drift (JSON). One request per connection, then close;
 * a request must arrive within a few seconds, and only so many connections
 * are served at once, so idle sockets cannot starve the probes.
 */
#include "proxy.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define REQ_MAX 8192
/* A request not complete by then is dropped (a scraper sends it at once). */
#define READ_TIMEOUT_MS 5000
/* Connections served at once; more are closed on arrival. */
#define MAX_CONNS 64
/* /readyz: how recently the upstream must have accepted a connection. */
#define READY_UPSTREAM_MS 10000

typedef struct {
  uv_tcp_t tcp;
  uv_timer_t timer;
  int open_handles;
  char req[REQ_MAX];
  size_t len;
  bool answered;
  bool head;          /* HEAD: the headers of the GET answer, no body */
  pgg_buf resp;
  uv_write_t wreq;
} http_conn;

static uv_tcp_t admin;
static bool admin_on;
static size_t nconns;

static void http_closed(uv_handle_t *h)
{
  http_conn *hc = h->data;
  if (--hc->open_handles > 0)
    return;
  nconns--;
  pgg_buf_free(&hc->resp);
  free(hc);
}

static void http_close(http_conn *hc)
{
  if (!uv_is_closing((uv_handle_t *)&hc->tcp)) {
    uv_close((uv_handle_t *)&hc->tcp, http_closed);
    uv_close((uv_handle_t *)&hc->timer, http_closed);
  }
}

static void on_timeout(uv_timer_t *t)
{
  http_close(t->data);
}

static void on_written(uv_write_t *req, int status)
{
  http_close(req->data);
}

static void respond(http_conn *hc, int code, const char *ctype, const char *body, size_t blen)
{
  const char *reason = code == 200 ? "OK" : code == 404 ? "Not Found" :
                       code == 405 ? "Method Not Allowed" : code == 503 ? "Service Unavailable" :
                       "Bad Request";
  hc->answered = true;
  uv_timer_stop(&hc->timer);
  pgg_buf_printf(&hc->resp,
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                 "Connection: close\r\n\r\n",
                 code, reason, ctype, blen, code == 405 ? "Allow: GET, HEAD\r\n" : "");
  if (!hc->head)
    pgg_buf_append(&hc->resp, body, blen);
  uv_buf_t b = uv_buf_init((char *)hc->resp.data, (unsigned)hc->resp.len);
  hc->wreq.data = hc;
  if (uv_write(&hc->wreq, (uv_stream_t *)&hc->tcp, &b, 1, on_written))
    http_close(hc);
}

/* The process_* metrics, from /proc/self (Linux), as the Prometheus client libraries read them. */
static void read_process_stats(pgg_metrics *m)
{
  static double start_time;   /* constant: read once */
  long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f)
    return;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  /* Fields after the command name, which may hold spaces: from the last ')'. */
  char *p = strrchr(buf, ')');
  unsigned long utime = 0, stime = 0;
  unsigned long long starttime = 0;
  long rss = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d "
                          "%*d %*d %llu %*u %ld", &utime, &stime, &starttime, &rss) != 4)
    return;
  if (start_time == 0) {
    double boot = 0;
    FILE *st = fopen("/proc/stat", "r");
    char line[256];
    while (st && fgets(line, sizeof line, st))
      if (sscanf(line, "btime %lf", &boot) == 1)
        break;
    if (st)
      fclose(st);
    start_time = boot + (double)starttime / (double)ticks;
  }
  size_t fds = 0;
  DIR *d = opendir("/proc/self/fd");
  for (struct dirent *e; d && (e = readdir(d)) != NULL;)
    fds += e->d_name[0] != '.';
  if (d) {
    closedir(d);
    fds--;   /* the directory's own descriptor */
  }
  struct rlimit rl;
  m->process_max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (double)rl.rlim_cur : 0;
  m->process_cpu_seconds = (double)(utime + stime) / (double)ticks;
  m->process_resident_bytes = (double)rss * (double)page;
  m->process_open_fds = (double)fds;
  m->process_start_time = start_time;
  m->process_known = true;
}

/*
 * GET /drift: the drift report of the last check, preceded by when that
 * check ran and the last failure (of a load, check or repair) with its time,
 * so a runbook sees at once whether the report is fresh.
 */
static void drift(http_conn *hc)
{
  pgg_buf b;
  pgg_buf_init(&b);
  double err_at = 0, checked = pgg_guardian_checked_at();
  const char *last = pgg_guardian_last_error(&err_at);
  const char *refused = pgg_guardian_refused();
  const char *j = pgg_guardian_drift_json();
  int code = refused || !j ? 503 : 200;
  int rc = pgg_buf_printf(&b, "{\"checked_at\": ");
  rc = rc ? rc : checked > 0 ? pgg_buf_printf(&b, "%.0f", checked) : pgg_buf_printf(&b, "null");
  rc = rc ? rc : pgg_buf_printf(&b, ", \"last_error\": ");
  rc = rc ? rc : pgg_json_str(&b, last);
  rc = rc ? rc : pgg_buf_printf(&b, ", \"last_error_at\": ");
  rc = rc ? rc : err_at > 0 ? pgg_buf_printf(&b, "%.0f", err_at) : pgg_buf_printf(&b, "null");
  rc = rc ? rc : pgg_buf_printf(&b, ", \"standby\": %s", pgg_metrics_g.guard_standby ? "true" : "false");
  int defer_pid = 0;
  double defer_since = 0;
  const char *deferring = pgg_guardian_deferring(&defer_pid, &defer_since);
  rc = rc ? rc : pgg_buf_printf(&b, ", \"deferring\": ");
  if (deferring) {
    rc = rc ? rc : pgg_buf_printf(&b, "{\"reason\": ");
    rc = rc ? rc : pgg_json_str(&b, deferring);
    rc = rc ? rc : pgg_buf_printf(&b, ", \"pid\": %d, \"since\": %.0f}", defer_pid, defer_since);
  } else {
    rc = rc ? rc : pgg_buf_printf(&b, "null");
  }
  if (refused) {
    pgg_buf why;
    pgg_buf_init(&why);
    rc = rc ? rc : pgg_buf_printf(&why, "guard refused: %s", refused);
    rc = rc ? rc : pgg_buf_append_u8(&why, 0);
    rc = rc ? rc : pgg_buf_printf(&b, ", \"error\": ");
    rc = rc ? rc : pgg_json_str(&b, (const char *)why.data);
    pgg_buf_free(&why);
    rc = rc ? rc : pgg_buf_printf(&b, "}\n");
  } else if (!j) {
    rc = rc ? rc : pgg_buf_printf(&b, ", \"error\": \"no drift check has completed\"}\n");
  } else {
    /* The report is one JSON object: these keys go first, then its own. */
    rc = rc ? rc : pgg_buf_printf(&b, ", %s", j[0] == '{' ? j + 1 : "}\n");
  }
  if (rc)
    respond(hc, 500, "text/plain", "out of memory\n", 14);
  else
    respond(hc, code, "application/json", (const char *)b.data, b.len);
  pgg_buf_free(&b);
}

static void handle(http_conn *hc)
{
  char method[16], path[512];
  if (sscanf(hc->req, "%15s %511s", method, path) != 2) {
    respond(hc, 400, "text/plain", "bad request\n", 12);
    return;
  }
  char *q = strchr(path, '?');
  if (q)
    *q = 0;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    respond(hc, 405, "text/plain", "only GET and HEAD\n", 18);
    return;
  }
  hc->head = strcmp(method, "HEAD") == 0;
  if (strcmp(path, "/metrics") == 0) {
    pgg_buf body;
    pgg_buf_init(&body);
    pgg_metrics_g.connection_buffer_bytes = pgg_conn_buffer_bytes();
    read_process_stats(&pgg_metrics_g);
    pgg_metrics_render(&pgg_metrics_g, &body);
    respond(hc, 200, "text/plain; version=0.0.4; charset=utf-8", (const char *)body.data, body.len);
    pgg_buf_free(&body);
  } else if (strcmp(path, "/healthz") == 0) {
    respond(hc, 200, "text/plain", "ok\n", 3);
  } else if (strcmp(path, "/readyz") == 0) {
    /* Ready = can serve: listening, not draining, and the upstream accepted
     * a connection within the last 10 s. Guard trouble shows in /drift and
     * the metrics; it takes pods out of service only with
     * --ready-requires-guard, or a guard problem would take them all out
     * together while the proxy itself works. */
    const char *why = NULL;
    char msg[300];
    uint64_t now = uv_now(pgg_p.loop);
    if (pgg_p.shutting_down)
      why = "draining";
    else if (!pgg_p.upstream_ever_ok || now - pgg_p.upstream_ok_ms > READY_UPSTREAM_MS)
      why = "the upstream has not accepted a connection in the last 10 s";
    else if (pgg_p.opt->ready_requires_guard && !pgg_guardian_ready(&why) && !why)
      why = "starting";
    if (!why) {
      respond(hc, 200, "text/plain", "ready\n", 6);
    } else {
      int n = snprintf(msg, sizeof(msg), "not ready: %s\n", why);
      respond(hc, 503, "text/plain", msg, (size_t)n);
    }
  } else if (strcmp(path, "/drift") == 0) {
    drift(hc);
  } else {
    respond(hc, 404, "text/plain", "not found\n", 10);
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  http_conn *hc = h->data;
  *buf = uv_buf_init(hc->req + hc->len, (unsigned)(REQ_MAX - 1 - hc->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  http_conn *hc = s->data;
  if (nread < 0) {
    http_close(hc);
    return;
  }
  hc->len += (size_t)nread;
  hc->req[hc->len] = 0;
  if (hc->answered)
    return;
  /* memmem, not strstr: a NUL byte in the request must not hide its end. */
  if (memmem(hc->req, hc->len, "\r\n\r\n", 4) || memmem(hc->req, hc->len, "\n\n", 2)) {
    uv_read_stop(s);
    handle(hc);
  } else if (hc->len >= REQ_MAX - 1) {
    uv_read_stop(s);
    respond(hc, 400, "text/plain", "request too large\n", 18);
  }
}

static void on_connection(uv_stream_t *server, int status)
{
  if (status < 0)
    return;
  http_conn *hc = calloc(1, sizeof(*hc));
  if (!hc)
    return;
  pgg_buf_init(&hc->resp);
  uv_tcp_init(pgg_p.loop, &hc->tcp);
  uv_timer_init(pgg_p.loop, &hc->timer);
  hc->tcp.data = hc->timer.data = hc;
  hc->open_handles = 2;
  nconns++;
  if (uv_accept(server, (uv_stream_t *)&hc->tcp) || nconns > MAX_CONNS ||
      uv_read_start((uv_stream_t *)&hc->tcp, alloc_cb, on_read)) {
    if (nconns > MAX_CONNS)
      pgg_log(PGG_LOG_DEBUG, "admin_connection_refused", "reason=%s open=%zu",
              pgg_logq("too many admin connections"), nconns - 1);
    http_close(hc);
    return;
  }
  uv_timer_start(&hc->timer, on_timeout, READ_TIMEOUT_MS, 0);
}

int pgg_admin_http_start(void)
{
  const pgg_hostport *hp = &pgg_p.opt->admin;
  if (hp->port == 0)
    return PGG_OK;
  int err = pgg_listen_tcp(&admin, hp, 64, on_connection, "admin");
  if (err)
    return err;
  admin_on = true;
  pgg_log(PGG_LOG_INFO, "admin_listening", "addr=%s:%d", hp->host, hp->port);
  return PGG_OK;
}

void pgg_admin_http_stop(void)
{
  if (admin_on) {
    admin_on = false;
    uv_close((uv_handle_t *)&admin, NULL);
  }
}
