/*
 * conn.c — a client connection paired 1:1 with its server connection: the
 * startup phase, byte-faithful relaying with backpressure, request-cycle
 * tracking, and the guard's hold / repair / replay of a failed request.
 */
#include "conn.h"

#include <assert.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "explain.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"

/* One read from a socket; also the granularity of backpressure. */
#define READ_BUF 32768
/* Client bytes kept per connection for a possible replay. */
#define RECORD_MAX (1u << 20)
/* An idle connection gives back buffers larger than this. */
#define IDLE_BUF_MAX 16384

static conn *conns;
static size_t nconns;

/* Server messages read whole: errors, transaction status, command tags,
 * authentication requests (for the SASL mechanism list) and the cancel key. */
static void hold_usual(pgg_framer *f)
{
  pgg_framer_hold(f, 'E');
  pgg_framer_hold(f, 'Z');
  pgg_framer_hold(f, 'C');
  pgg_framer_hold(f, 'R');
  pgg_framer_hold(f, 'K');
}

/* A buffer that grew for one large message is given back once it empties. */
static void buf_trim(pgg_buf *b)
{
  if (!b->len && b->cap > IDLE_BUF_MAX)
    pgg_buf_free(b);
}

static void conn_close(conn *c, const char *why);
static void update_reads(conn *c);
static void on_server_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void client_bytes(conn *c, const uint8_t *p, size_t n, uint32_t flags);

size_t pgg_conn_count(void)
{
  return nconns;
}

size_t pgg_conn_buffer_bytes(void)
{
  size_t n = 0;
  for (const conn *c = conns; c; c = c->next) {
    const pgg_buf *bufs[] = {
      &c->cl.out, &c->cl.flight, &c->cl.plain, &c->sv.out, &c->sv.flight, &c->sv.plain,
      &c->startup, &c->early, &c->cf.acc, &c->sf.acc, &c->rec, &c->setup, &c->tls_out,
      &c->replace, &c->held_in, &c->h.err, &c->h.ready, &c->h.other, &c->h.replay, &c->h.resend,
    };
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
      n += bufs[i]->cap;
  }
  return n;
}

/* ---- output with backpressure ------------------------------------------ */

static size_t queued(const side *s)
{
  return s->out.len + s->flight.len;
}

static void on_write(uv_write_t *req, int status);

static void kick_write(side *s)
{
  if (s->writing || !s->out.len || !s->open)
    return;
  pgg_buf tmp = s->flight;
  s->flight = s->out;
  s->out = tmp;
  pgg_buf_reset(&s->out);
  uv_buf_t b = uv_buf_init((char *)s->flight.data, (unsigned)s->flight.len);
  int err = uv_write(&s->wreq, &s->io.stream, &b, 1, on_write);
  if (err) {
    conn_close(s->c, uv_strerror(err));
    return;
  }
  s->writing = true;
}

static void on_write(uv_write_t *req, int status)
{
  side *s = req->data;
  conn *c = s->c;
  s->writing = false;
  pgg_buf_reset(&s->flight);
  buf_trim(&s->flight);
  buf_trim(&s->out);
  if (c->dead)
    return;
  if (status < 0) {
    conn_close(c, uv_strerror(status));
    return;
  }
  if (c->state == ST_CLOSING) {
    if (!queued(&c->cl))
      conn_close(c, NULL);
    else
      kick_write(s);
    return;
  }
  kick_write(s);
  update_reads(c);
}

/*
 * Send to one side: straight to the socket when nothing is queued (the
 * common case, no copy), else behind what is queued.
 */
static void sock_send(side *s, const uint8_t *p, size_t n)
{
  if (!n || !s->open)
    return;
  if (!queued(s)) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int r = uv_try_write(&s->io.stream, &b, 1);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
    } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
      conn_close(s->c, uv_strerror(r));
      return;
    }
  }
  if (!n)
    return;
  if (pgg_buf_append(&s->out, p, n) != PGG_OK) {
    conn_close(s->c, "out of memory");
    return;
  }
  kick_write(s);
}

/* Send application bytes to one side, encrypting when that leg is TLS. */
static void send_bytes(side *s, const uint8_t *p, size_t n)
{
  if (!n || !s->open)
    return;
  if (!s->tls) {
    sock_send(s, p, n);
    return;
  }
  conn *c = s->c;
  pgg_buf err;
  pgg_buf_init(&err);
  pgg_buf_reset(&c->tls_out);
  int rc = pgg_tls_write(s->tls, p, n, &c->tls_out, &err);
  sock_send(s, c->tls_out.data, c->tls_out.len);
  if (rc) {
    pgg_buf_append_u8(&err, 0);
    conn_close(c, (const char *)err.data);
  }
  pgg_buf_free(&err);
}

/*
 * Bytes read from a TLS leg: decrypt into s->plain, send what the handshake
 * has to say. Returns false (after handling it) when the TLS session failed.
 */
static bool tls_in(conn *c, side *s, const uint8_t *p, size_t n, pgg_buf *err)
{
  pgg_buf_reset(&s->plain);
  pgg_buf_reset(&c->tls_out);
  int rc = pgg_tls_feed(s->tls, p, n, &s->plain, &c->tls_out, err);
  sock_send(s, c->tls_out.data, c->tls_out.len);
  if (rc) {
    pgg_metrics_g.tls_handshake_failures += pgg_tls_established(s->tls) ? 0 : 1;
    pgg_buf_append_u8(err, 0);
    return false;
  }
  return true;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  side *s = h->data;
  if (!s->rbuf)
    s->rbuf = malloc(READ_BUF);
  *buf = uv_buf_init((char *)s->rbuf, s->rbuf ? READ_BUF : 0);
}

static void set_reading(side *s, bool on, uv_read_cb cb)
{
  if (!s->open || s->reading == on)
    return;
  if (on) {
    if (uv_read_start(&s->io.stream, alloc_cb, cb) == 0)
      s->reading = true;
  } else {
    uv_read_stop(&s->io.stream);
    s->reading = false;
  }
}

/*
 * Read from a side only while the other side's queue is empty: a slow
 * reader stops the fast writer, so memory per connection stays bounded by
 * one read buffer and one held message.
 */
static void update_reads(conn *c)
{
  if (c->state == ST_CLOSING)
    return;
  /* While a request is held the client is still read (so a hang-up ends
   * the hold before anything is replayed on its behalf), into held_in. */
  /* Paused (SIGUSR1): a session between requests is not read, so its next
   * request waits in the socket, neither lost nor refused. */
  bool idle = c->ready_seen && c->cycles.n == 0 && pgg_framer_at_boundary(&c->cf);
  /* While PostgreSQL is reached the client is read too, so a client that
   * hangs up frees its slot at once; what it sends waits in early. */
  bool waiting_server = (c->state == ST_CONNECTING || c->state == ST_UPSTREAM_SSL) &&
                        c->early.len < PGG_MAX_STARTUP_PACKET;
  bool client_ok = c->state == ST_STARTUP || waiting_server ||
                   (c->state == ST_RELAY && !queued(&c->sv) && !(pgg_p.paused && idle) &&
                    (!pgg_hold_active(c) || c->held_in.len < HOLD_MAX_CLIENT_IN));
  set_reading(&c->cl, client_ok, on_client_read);
  bool server_ok = (c->state == ST_RELAY && !queued(&c->cl)) || c->state == ST_UPSTREAM_SSL;
  set_reading(&c->sv, server_ok, on_server_read);
}

/* ---- errors the proxy itself sends ------------------------------------- */

static void send_fatal(conn *c, const char *sqlstate, const char *msg, const char *detail)
{
  snprintf(c->fatal, sizeof c->fatal, "%s", sqlstate);
  pgg_buf b;
  pgg_buf_init(&b);
  if (pgg_build_error(&b, "FATAL", sqlstate, msg, detail, NULL) == PGG_OK)
    send_bytes(&c->cl, b.data, b.len);
  pgg_buf_free(&b);
}

/* ---- life cycle --------------------------------------------------------- */

static void free_conn(conn *c)
{
  pgg_buf_free(&c->cl.out);
  pgg_buf_free(&c->cl.flight);
  pgg_buf_free(&c->sv.out);
  pgg_buf_free(&c->sv.flight);
  free(c->cl.rbuf);
  free(c->sv.rbuf);
  pgg_buf_free(&c->cl.plain);
  pgg_buf_free(&c->sv.plain);
  pgg_buf_free(&c->tls_out);
  pgg_buf_free(&c->replace);
  if (c->cl.tls)
    pgg_tls_free(c->cl.tls);
  if (c->sv.tls)
    pgg_tls_free(c->sv.tls);
  pgg_buf_free(&c->startup);
  pgg_buf_free(&c->early);
  pgg_framer_free(&c->cf);
  pgg_framer_free(&c->sf);
  pgg_cycles_free(&c->cycles);
  pgg_buf_free(&c->rec);
  pgg_buf_free(&c->setup);
  pgg_buf_free(&c->held_in);
  free(c->database);
  free(c->user);
  free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
  conn *c = h->data;
  if (--c->closing_handles == 0)
    free_conn(c);
}

static void close_handle(conn *c, uv_handle_t *h)
{
  h->data = c;
  c->closing_handles++;
  uv_close(h, on_handle_closed);
}

static void conn_unlink(conn *c)
{
  if (c->prev)
    c->prev->next = c->next;
  else if (conns == c)
    conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->next = c->prev = NULL;
  nconns--;
}

/*
 * Say goodbye to PostgreSQL as a client would, so the session ends without
 * "unexpected EOF on client connection" in its log: once start-up is over
 * (during authentication a Terminate is a protocol violation), and not when
 * the client is in the middle of a message, which a Terminate would break.
 */
static void say_goodbye(conn *c)
{
  static const uint8_t terminate[5] = {'X', 0, 0, 0, 4};
  if (c->state != ST_RELAY || !c->ready_seen || !c->sv.open || c->terminated ||
      !pgg_framer_at_boundary(&c->cf))
    return;
  c->terminated = true;
  send_bytes(&c->sv, terminate, sizeof terminate);
}

/*
 * The connection log, as PgBouncer's log_connections / log_disconnections:
 * who, from where, how long, how much, and how it ended. Never query text
 * or a password.
 */
static void log_disconnection(conn *c)
{
  if (!pgg_p.opt->log_disconnections || c->state == ST_CANCEL)
    return;
  pgg_log(PGG_LOG_INFO, "disconnection",
          "conn=%llu addr=%s user=%s database=%s tls=%s duration_s=%.3f bytes_in=%llu "
          "bytes_out=%llu fatal=%s", (unsigned long long)c->id, c->peer,
          pgg_logq(c->user ? c->user : ""), pgg_logq(c->database ? c->database : ""),
          c->cl.tls ? "yes" : "no", (double)(uv_now(pgg_p.loop) - c->accepted_ms) / 1000.0,
          (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
          c->fatal[0] ? c->fatal : "none");
}

static void close_now(conn *c)
{
  if (c->dead)
    return;
  say_goodbye(c);
  if (c->dead)    /* the write failed and closed the pair already */
    return;
  log_disconnection(c);
  c->dead = true;
  c->state = ST_CLOSING;
  if (c->close_timer_on) {
    uv_timer_stop(&c->close_timer);
    c->close_timer_on = false;
  }
  pgg_hold_clear(c);
  conn_unlink(c);
  pgg_metrics_g.client_connections--;
  /* Count one reference per handle; the conn is freed when the last closes. */
  c->closing_handles = 1;
  if (c->cl.open) {
    c->cl.open = false;
    close_handle(c, &c->cl.io.handle);
  }
  if (c->sv.open) {
    c->sv.open = false;
    pgg_metrics_g.server_connections--;
    close_handle(c, &c->sv.io.handle);
  }
  if (c->dialing) {
    /* The dial's socket closes on its own; its done callback releases the
     * reference taken here. */
    c->closing_handles++;
    if (pgg_dial_abort(&c->dial)) {
      c->dialing = false;
      c->closing_handles--;
    }
  }
  close_handle(c, (uv_handle_t *)&c->h.timer);
  close_handle(c, (uv_handle_t *)&c->close_timer);
  close_handle(c, (uv_handle_t *)&c->limit_timer);
  if (--c->closing_handles == 0)
    free_conn(c);
}

static void on_close_timer(uv_timer_t *t)
{
  conn *c = t->data;
  c->close_timer_on = false;
  close_now(c);
}

/*
 * Close the pair. Bytes already queued for the client (a FATAL error we
 * just built) are flushed first, for at most a second.
 */
static void conn_close(conn *c, const char *why)
{
  if (c->dead || (c->state == ST_CLOSING && why))
    return;
  if (c->state != ST_CLOSING) {
    if (why)
      pgg_log(PGG_LOG_INFO, "connection_closed", "conn=%llu reason=%s",
              (unsigned long long)c->id, pgg_logq(why));
    if (c->cl.tls && c->cl.open && pgg_tls_established(c->cl.tls)) {
      /* close_notify, so the client sees an orderly TLS close after our
       * FATAL rather than "SSL SYSCALL error: EOF detected". */
      pgg_buf_reset(&c->tls_out);
      pgg_tls_shutdown(c->cl.tls, &c->tls_out);
      sock_send(&c->cl, c->tls_out.data, c->tls_out.len);
    }
    say_goodbye(c);
    if (c->dead)  /* the write failed and closed the pair already */
      return;
    c->state = ST_CLOSING;
    set_reading(&c->cl, false, NULL);
    set_reading(&c->sv, false, NULL);
  }
  if ((c->cl.open && queued(&c->cl)) && !c->close_timer_on) {
    c->close_timer_on = true;
    uv_timer_start(&c->close_timer, on_close_timer, 1000, 0);
    return;
  }
  if (c->cl.open && queued(&c->cl))
    return;
  close_now(c);
}

void pgg_conn_close_all(void)
{
  while (conns)
    close_now(conns);
}

void pgg_conn_close_idle(void)
{
  conn *next;
  for (conn *c = conns; c; c = next) {
    next = c->next;
    /* A session inside a transaction block finishes it first: closing it
     * would roll back work the client is about to commit. */
    if (c->state == ST_STARTUP || (c->state == ST_RELAY && c->ready_seen &&
                                   c->cycles.n == 0 && c->cycles.tx_status == 'I' &&
                                   !pgg_hold_active(c) &&
                                   pgg_framer_at_boundary(&c->cf) &&
                                   pgg_framer_at_boundary(&c->sf))) {
      /* What PostgreSQL itself says when its postmaster is told to stop. */
      send_fatal(c, "57P01", "terminating connection because pgguard is shutting down", NULL);
      conn_close(c, "shutdown");
    }
  }
}

/* TCP: no Nagle delay, and keepalive as PgBouncer sets it (a dead peer is
 * noticed in minutes, not hours). Nothing to tune on a Unix socket. */
static void tune(side *s)
{
  const pgg_options *o = pgg_p.opt;
  uv_os_fd_t fd;
  if (s->unix_socket)
    return;
  uv_tcp_nodelay(&s->io.tcp, 1);
  if (!o->tcp_keepalive || uv_fileno(&s->io.handle, &fd) != 0)
    return;
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &o->tcp_keepidle, sizeof o->tcp_keepidle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &o->tcp_keepintvl, sizeof o->tcp_keepintvl);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &o->tcp_keepcnt, sizeof o->tcp_keepcnt);
}

/* The server named in messages: host:port, or the socket file. */
static void upstream_name(char *out, size_t n)
{
  if (pgg_upstream_is_unix())
    pgg_unix_path(&pgg_p.opt->upstream, out, n);
  else
    snprintf(out, n, "%s:%d", pgg_p.opt->upstream.host, pgg_p.opt->upstream.port);
}

/*
 * The login timeout (a client that has not finished start-up: a slowloris
 * holds a socket and a slot for nothing), or the connect timeout (a
 * blackholed PostgreSQL would hang the client for minutes).
 */
static void on_limit_timer(uv_timer_t *t)
{
  conn *c = t->data;
  if (c->state == ST_CLOSING)
    return;
  if (c->connect_timing && c->dialing && pgg_dial_next(&c->dial)) {
    /* Per address, as libpq's connect_timeout: an old primary that vanished
     * without a trace, still first in the answer, must not keep every client
     * from the new one. */
    uv_timer_start(&c->limit_timer, on_limit_timer, (uint64_t)(c->connect_limit * 1000.0), 0);
    return;
  }
  if (c->connect_timing) {
    char msg[600], name[300];
    c->connect_timing = false;
    pgg_metrics_g.upstream_up = 0;
    upstream_name(name, sizeof name);
    snprintf(msg, sizeof msg, "pgguard could not connect to the upstream server %s: "
             "timeout after %g s", name, c->connect_limit);
    pgg_log(PGG_LOG_WARN, "upstream_connect_failed", "conn=%llu upstream=%s reason=timeout",
            (unsigned long long)c->id, pgg_logq(name));
    if (c->state != ST_CANCEL)
      send_fatal(c, "08006", msg, NULL);
    conn_close(c, NULL);
    return;
  }
  if (c->ready_seen)
    return;
  pgg_metrics_g.clients_rejected[PGG_REJECT_LOGIN_TIMEOUT]++;
  pgg_log(PGG_LOG_INFO, "client_rejected", "conn=%llu reason=login_timeout state=%s",
          (unsigned long long)c->id, c->state == ST_STARTUP ? "startup" : "authentication");
  /* Before a startup packet PostgreSQL closes without a word; during
   * authentication it says why. */
  if (c->state != ST_STARTUP)
    send_fatal(c, "08006", "canceling authentication due to timeout", NULL);
  conn_close(c, "client login timeout");
}

void pgg_conn_set_paused(bool paused)
{
  pgg_p.paused = paused;
  for (conn *c = conns; c; c = c->next)
    update_reads(c);
}

void pgg_conn_accept_fd(int fd, bool unix_socket)
{
  conn *c = calloc(1, sizeof(*c));
  if (!c) {
    pgg_log(PGG_LOG_ERROR, "accept_failed", "reason=%s", pgg_logq("out of memory"));
    close(fd);
    return;
  }
  c->id = ++pgg_p.next_conn_id;
  c->cl.c = c->sv.c = c;
  c->cl.wreq.data = &c->cl;
  c->sv.wreq.data = &c->sv;
  pgg_buf_init(&c->startup);
  pgg_framer_init(&c->cf, pgg_p.opt->max_message);
  pgg_framer_init(&c->sf, pgg_p.opt->max_message);
  hold_usual(&c->sf);
  pgg_cycles_init(&c->cycles);
  uv_timer_init(pgg_p.loop, &c->h.timer);
  c->h.timer.data = c;
  uv_timer_init(pgg_p.loop, &c->close_timer);
  c->close_timer.data = c;
  uv_timer_init(pgg_p.loop, &c->limit_timer);
  c->limit_timer.data = c;
  c->cl.unix_socket = unix_socket;
  if (unix_socket)
    uv_pipe_init(pgg_p.loop, &c->cl.io.pipe, 0);
  else
    uv_tcp_init(pgg_p.loop, &c->cl.io.tcp);
  c->cl.io.handle.data = &c->cl;
  c->cl.open = true;
  c->next = conns;
  if (conns)
    conns->prev = c;
  conns = c;
  nconns++;
  pgg_metrics_g.client_connections++;
  pgg_metrics_g.client_connections_total++;
  c->state = ST_STARTUP;
  c->accepted_ms = uv_now(pgg_p.loop);
  c->recording = pgg_p.opt->guard.schema_path && pgg_p.opt->guard.repair_mode != PGG_REPAIR_MODE_OFF;

  int err = unix_socket ? uv_pipe_open(&c->cl.io.pipe, fd) : uv_tcp_open(&c->cl.io.tcp, fd);
  if (err) {
    /* The handle is initialised (in the loop's list) though it holds no
     * descriptor: close_now must still close it before the conn is freed. */
    pgg_log(PGG_LOG_WARN, "accept_failed", "reason=%s", pgg_logq(uv_strerror(err)));
    close(fd);
    close_now(c);
    return;
  }
  tune(&c->cl);
  if (unix_socket) {
    snprintf(c->peer, sizeof c->peer, "[local]");   /* as PostgreSQL logs it */
  } else {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->cl.io.tcp, (struct sockaddr *)&ss, &len) == 0) {
      if (ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
      } else if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
      }
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
  }
  pgg_log(PGG_LOG_DEBUG, "connection_accepted", "conn=%llu", (unsigned long long)c->id);
  if (pgg_p.shutting_down) {
    send_fatal(c, "57P03", "pgguard is shutting down", NULL);
    conn_close(c, NULL);
    return;
  }
  if (pgg_p.opt->max_client_conn && nconns > (size_t)pgg_p.opt->max_client_conn) {
    /* PostgreSQL's own words when max_connections is reached. */
    pgg_metrics_g.clients_rejected[PGG_REJECT_MAX_CLIENT_CONN]++;
    pgg_log(PGG_LOG_WARN, "client_rejected", "conn=%llu reason=max_client_conn limit=%d",
            (unsigned long long)c->id, pgg_p.opt->max_client_conn);
    send_fatal(c, "53300", "sorry, too many clients already", NULL);
    conn_close(c, NULL);
    return;
  }
  if (pgg_p.opt->client_login_timeout > 0)
    uv_timer_start(&c->limit_timer, on_limit_timer,
                   (uint64_t)(pgg_p.opt->client_login_timeout * 1000.0), 0);
  update_reads(c);
}

/* ---- start-up: SSLRequest, CancelRequest, StartupMessage ---------------- */

static void on_server_connect(pgg_dial *d, int status);
static void start_relay(conn *c);

/* at: the one address to dial (a cancel for a session on it), or NULL. */
static void connect_upstream(conn *c, const struct sockaddr_storage *at)
{
  c->sv.io.handle.data = &c->sv;
  c->sv.unix_socket = pgg_upstream_is_unix();
  if (pgg_p.opt->server_connect_timeout > 0) {
    /* Kept: a reload applies to new connections, not to this dial. */
    c->connect_limit = pgg_p.opt->server_connect_timeout;
    c->connect_timing = true;
    uv_timer_start(&c->limit_timer, on_limit_timer, (uint64_t)(c->connect_limit * 1000.0), 0);
  }
  snprintf(c->log_prefix, sizeof c->log_prefix, "conn=%llu ", (unsigned long long)c->id);
  c->dialing = true;
  if (at && !c->sv.unix_socket)
    pgg_dial_start_at(&c->dial, &c->sv.io, at, on_server_connect, c->log_prefix);
  else
    pgg_dial_start(&c->dial, &c->sv.io, on_server_connect, c->log_prefix);
}

static void on_server_connect(pgg_dial *d, int status)
{
  conn *c = (conn *)((char *)d - offsetof(conn, dial));
  c->dialing = false;
  if (status == UV_ECANCELED) {
    /* close_now aborted the dial and counted it as a handle closing. */
    if (--c->closing_handles == 0)
      free_conn(c);
    return;
  }
  if (c->state == ST_CLOSING) {
    if (status == 0) {   /* close_now closes it with the rest */
      c->sv.open = true;
      c->sv.io.handle.data = &c->sv;
      pgg_metrics_g.server_connections++;
    }
    return;
  }
  if (status < 0) {
    char msg[600], name[300];
    pgg_metrics_g.upstream_up = 0;
    upstream_name(name, sizeof name);
    snprintf(msg, sizeof(msg), "pgguard could not connect to the upstream server %s: %s", name,
             uv_strerror(status));
    if (status == UV_EAI_NONAME || status == UV_EAI_AGAIN || status == UV_EAI_FAIL)
      pgg_log(PGG_LOG_WARN, "upstream_connect_failed", "conn=%llu upstream=%s reason=%s",
              (unsigned long long)c->id, pgg_logq(name), pgg_logq(uv_strerror(status)));
    if (c->state == ST_CANCEL) {
      conn_close(c, NULL);
      return;
    }
    send_fatal(c, "08006", msg, NULL);
    conn_close(c, NULL);
    return;
  }
  c->sv.open = true;
  c->sv.io.handle.data = &c->sv;
  pgg_metrics_g.server_connections++;
  pgg_metrics_g.upstream_up = 1;
  pgg_upstream_accepted();
  pgg_guardian_upstream_ok();
  tune(&c->sv);
  /* Connected: the login timeout runs on for what is left of it. */
  c->connect_timing = false;
  uv_timer_stop(&c->limit_timer);
  if (pgg_p.opt->client_login_timeout > 0 && c->state != ST_CANCEL) {
    uint64_t spent = uv_now(pgg_p.loop) - c->accepted_ms;
    uint64_t limit = (uint64_t)(pgg_p.opt->client_login_timeout * 1000.0);
    uv_timer_start(&c->limit_timer, on_limit_timer, spent < limit ? limit - spent : 1, 0);
  }
  if (c->state != ST_CANCEL && pgg_p.upstream_ctx && !c->sv.unix_socket) {
    /* Ask PostgreSQL for TLS first; the startup packet follows encrypted. */
    static const uint8_t ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    sock_send(&c->sv, ssl_request, sizeof(ssl_request));
    c->state = ST_UPSTREAM_SSL;
    update_reads(c);
    return;
  }
  start_relay(c);
}

/* Send the client's startup packet to PostgreSQL and relay from then on. */
static void start_relay(conn *c)
{
  /* The startup packet goes to PostgreSQL untouched: parameters, protocol
   * version (3.2 negotiation is the server's to answer) and all. */
  send_bytes(&c->sv, c->startup.data, c->startup.len);
  pgg_metrics_g.bytes[PGG_DIR_CLIENT_TO_SERVER] += c->startup.len;
  pgg_buf_free(&c->startup);
  if (c->state == ST_CANCEL) {
    /* PostgreSQL answers a CancelRequest by closing; so do we, once sent. */
    conn_close(c, NULL);
    return;
  }
  c->state = ST_RELAY;
  if (c->early.len) {
    client_bytes(c, c->early.data, c->early.len, 0);
    pgg_buf_free(&c->early);
  }
  update_reads(c);
}

/* The session a CancelRequest names (its server's key), or NULL. */
static conn *cancel_target(const pgg_startup *st)
{
  for (conn *t = conns; t; t = t->next) {
    if (t->backend_key_len && t->backend_pid == st->cancel_pid &&
        t->backend_key_len == st->cancel_key_len &&
        memcmp(t->backend_key, st->cancel_key, st->cancel_key_len) == 0)
      return t;
  }
  return NULL;
}

/* A CancelRequest for a session whose request pgguard holds ends that hold. */
static bool cancel_held(const pgg_startup *st)
{
  conn *t = cancel_target(st);
  return t && pgg_hold_cancel(t);
}

static void startup_packet(conn *c)
{
  pgg_startup st;
  int err = pgg_startup_parse(c->startup.data, c->startup.len, &st);
  if (err) {
    send_fatal(c, "08P01", "invalid startup packet", pgg_strerror(err));
    conn_close(c, "invalid startup packet");
    return;
  }
  switch (st.kind) {
  case PGG_STARTUP_SSL:
    pgg_buf_reset(&c->startup);
    /* Never TLS on a Unix socket: PostgreSQL answers N there too. */
    if (pgg_p.client_ctx && !c->cl.tls && !c->cl.unix_socket &&
        pgg_p.opt->client_tls != PGG_CLIENT_TLS_DISABLE) {
      if (pgg_tls_new(pgg_p.client_ctx, NULL, &c->cl.tls)) {
        conn_close(c, "cannot create a TLS session");
        return;
      }
      pgg_metrics_g.tls_handshakes++;
      sock_send(&c->cl, (const uint8_t *)"S", 1);
      return;
    }
    sock_send(&c->cl, (const uint8_t *)"N", 1);
    return;
  case PGG_STARTUP_GSSENC:
    /* Not offered: the client falls back to TLS, plaintext, or gives up. */
    pgg_buf_reset(&c->startup);
    sock_send(&c->cl, (const uint8_t *)"N", 1);
    return;
  case PGG_STARTUP_CANCEL:
    /* A request held for a repair has not reached PostgreSQL (or pgguard's
     * own ROLLBACK has): cancelling there would hit the wrong statement.
     * The cancel ends the hold instead, and PostgreSQL's answer to a
     * CancelRequest is to close without a word. */
    if (cancel_held(&st)) {
      conn_close(c, NULL);
      return;
    }
    /* The key is the server's own, relayed untouched in BackendKeyData. */
    c->state = ST_CANCEL;
    set_reading(&c->cl, false, NULL);
    /* To the address the session is on, as libpq sends a cancel to the
     * address its connection is on: after the name changed (a failover, a
     * round-robin pool) a fresh dial could reach a server that does not
     * know the key, and the query would run on. */
    {
      const conn *t = cancel_target(&st);
      connect_upstream(c, t && t->dial.has_peer ? &t->dial.peer : NULL);
    }
    return;
  case PGG_STARTUP_MESSAGE:
    if (!c->cl.tls && !c->cl.unix_socket && pgg_p.opt->client_tls == PGG_CLIENT_TLS_REQUIRE) {
      send_fatal(c, "28000", "pgguard requires TLS: connect with sslmode=require or stronger",
                 "This pgguard is started with --client-tls=require.");
      conn_close(c, "plaintext client refused");
      return;
    }
    /* The guard acts only for its own database: PostgreSQL's default is
     * the user name when no database is given. */
    {
      const char *db = pgg_startup_param(&st, "database");
      const char *user = pgg_startup_param(&st, "user");
      if (!db || !*db)
        db = user;
      if (user && !c->user && !(c->user = strdup(user))) {
        conn_close(c, "out of memory");
        return;
      }
      if (db && !(c->database = strdup(db))) {
        conn_close(c, "out of memory");
        return;
      }
    }
    c->state = ST_CONNECTING;
    set_reading(&c->cl, false, NULL);
    connect_upstream(c, NULL);
    return;
  }
}

static void startup_bytes(conn *c, const uint8_t *p, size_t n)
{
  while (n && c->state == ST_STARTUP) {
    uint32_t len = 0;
    size_t have = c->startup.len;
    /* Take at most the header, then at most the rest of this packet. */
    if (have < 4) {
      size_t take = n < 4 - have ? n : 4 - have;
      pgg_buf_append(&c->startup, p, take);
      p += take;
      n -= take;
      if (c->startup.len < 4)
        return;
    }
    int r = pgg_startup_length(c->startup.data, c->startup.len, &len);
    if (r < 0) {
      /* PostgreSQL logs this and closes without a word (COMMERROR): a proxy
       * must not be noticed, so pgguard does the same. */
      conn_close(c, "invalid length of startup packet");
      return;
    }
    size_t need = len - c->startup.len;
    size_t take = n < need ? n : need;
    if (pgg_buf_append(&c->startup, p, take) != PGG_OK) {
      conn_close(c, "out of memory");
      return;
    }
    p += take;
    n -= take;
    if (c->startup.len == len) {
      bool had_tls = c->cl.tls != NULL;
      startup_packet(c);
      if (!had_tls && c->cl.tls && n) {
        /* Bytes that came with the SSLRequest were not protected by TLS: a
         * man in the middle could have put them there (CVE-2021-23214). */
        pgg_tls_free(c->cl.tls);
        c->cl.tls = NULL;
        send_fatal(c, "08P01", "received unencrypted data after SSL request",
                   "This could be either a client-software bug or evidence of an attempted "
                   "man-in-the-middle attack.");
        conn_close(c, "unencrypted data after SSL request");
        return;
      }
    }
  }
  if (n && c->state != ST_CLOSING) {
    /* Bytes after a StartupMessage before the server answered: a client
     * that does not wait. PostgreSQL would read them next; so will we, as
     * the start of the relayed stream, once connected. However large: the
     * same bytes in a later read are kept too (update_reads stops reading
     * once early holds PGG_MAX_STARTUP_PACKET, which bounds the memory). */
    if (pgg_buf_append(&c->early, p, n) != PGG_OK)
      conn_close(c, "out of memory");
  }
}

/* ---- client -> server ---------------------------------------------------- */

/*
 * A SASLInitialResponse for plain SCRAM whose GS2 header is "y": the client
 * could bind to its TLS channel but thinks the server cannot (pgguard took
 * SCRAM-SHA-256-PLUS out of the offer). PostgreSQL, itself on TLS toward
 * pgguard, refuses that as a downgrade attack, and the flag is inside the
 * SCRAM proof, so pgguard cannot rewrite it.
 */
static bool sasl_claims_binding(const uint8_t *body, size_t len)
{
  pgg_reader r;
  const char *mech;
  size_t mlen;
  uint32_t dlen;
  const uint8_t *data;
  pgg_reader_init(&r, body, len);
  if (!pgg_rd_cstr(&r, &mech, &mlen) || strcmp(mech, "SCRAM-SHA-256") != 0)
    return false;
  if (!pgg_rd_u32(&r, &dlen) || dlen < 2 || !pgg_rd_bytes(&r, 2, &data))
    return false;
  return data[0] == 'y' && data[1] == ',';
}

/* Stop trusting the record until the stream is idle again: fail closed. */
static void rec_break(conn *c)
{
  c->rec_broken = true;
  pgg_buf_free(&c->rec);
  c->rec_off = 0;
}

/* Keep client bytes for a replay, all of them, or break the record. */
static void rec_append(conn *c, const uint8_t *p, size_t n)
{
  if (c->rec_broken)
    return;
  if (c->rec.len - c->rec_off + n > RECORD_MAX) {
    rec_break(c);
    return;
  }
  /* Slide the live part down only when the dead prefix is the larger part:
   * each byte moves at most once on average, so pipelines stay linear. */
  if (c->rec_off && c->rec_off >= c->rec.len - c->rec_off &&
      c->rec.len + n > c->rec.cap) {
    memmove(c->rec.data, c->rec.data + c->rec_off, c->rec.len - c->rec_off);
    c->rec.len -= c->rec_off;
    c->rec_off = 0;
  }
  if (pgg_buf_append(&c->rec, p, n) != PGG_OK)
    rec_break(c);
}

/* The oldest cycle ended: its bytes leave the record. */
static void rec_consume(conn *c, size_t n)
{
  if (c->rec_broken)
    return;
  assert(c->rec.len - c->rec_off >= n);
  c->rec_off += n;
  if (c->rec_off == c->rec.len) {
    c->rec_off = 0;
    pgg_buf_reset(&c->rec);
    buf_trim(&c->rec);
  }
}

/* With nothing in flight and the client between messages, the record starts afresh. */
static void rec_resync(conn *c)
{
  if (c->cycles.n || !pgg_framer_at_boundary(&c->cf))
    return;
  c->rec_broken = false;
  c->rec_off = 0;
  pgg_buf_reset(&c->rec);
  buf_trim(&c->rec);
}

const uint8_t *pgg_conn_rec_head(const conn *c, size_t *len)
{
  const pgg_cycle *head = c->cycles.n ? &c->cycles.ring[c->cycles.head] : NULL;
  /* Exactly the one cycle's bytes, nothing more and nothing less: any
   * mismatch means a byte was not recorded or not counted. */
  if (c->rec_broken || !head || c->cycles.n != 1 || !pgg_framer_at_boundary(&c->cf) ||
      c->rec.len - c->rec_off != head->bytes || c->cycles.bytes != head->bytes)
    return NULL;
  *len = head->bytes;
  return c->rec.data + c->rec_off;
}

/*
 * Relay client bytes to the server, tracking request cycles and recording
 * the bytes of the cycles in flight (for a replay). Also the path by which
 * pgguard injects its own requests (ROLLBACK, re-sent set-up, replays), so
 * that injected cycles are tracked exactly like the client's. Bytes sent
 * before start-up completed (an eager client) are recorded too: they open
 * cycles like any others. Authentication messages ('p') open none, so a
 * record that holds one is broken until the stream is idle.
 */
static void client_bytes(conn *c, const uint8_t *p, size_t n, uint32_t flags)
{
  size_t pos = 0;
  uint64_t now = 0;

  c->cycles.next_flags = flags;
  if (c->recording)
    rec_append(c, p, n);
  while (pos < n) {
    size_t used = 0;
    pgg_msg m;
    int r = pgg_framer_next(&c->cf, p + pos, n - pos, &used, &m);
    if (r < 0) {
      send_bytes(&c->sv, p, pos);
      send_fatal(c, "08P01",
                 r == PGG_ERR_TOO_BIG ? "message too large" : "invalid message length",
                 "pgguard closed the connection: the client sent bytes that break the protocol.");
      conn_close(c, r == PGG_ERR_TOO_BIG ? "client message too large" : "client protocol error");
      return;
    }
    pos += used;
    if (r == PGG_FRAME_MSG) {
      /* With the server's own certificate the offer went through whole:
       * a "y" then is the client's own business with PostgreSQL. */
      if (m.type == 'p' && !c->ready_seen && m.body && c->cl.tls && c->sv.tls &&
          sasl_claims_binding(m.body, m.body_len) &&
          !pgg_tls_binding_passes(c->cl.tls, c->sv.tls)) {
        send_fatal(c, "28000",
                   "SCRAM channel binding cannot pass through pgguard, which terminates TLS",
                   "The client supports channel binding; PostgreSQL would reject its login as a "
                   "downgrade. Connect with channel_binding=disable. Channel binding passes "
                   "through pgguard only when it presents PostgreSQL's own certificate.");
        conn_close(c, "client asked for SCRAM channel binding through terminated TLS");
        return;
      }
      if (!now)
        now = uv_hrtime();
      if (m.type == 'X')
        c->terminated = true;
      int cr = pgg_cycles_client(&c->cycles, m.type, (size_t)m.len + 1, now);
      if (cr < 0) {
        conn_close(c, "out of memory");
        return;
      }
      if (cr == PGG_CYCLE_UNCOUNTED && c->recording)
        rec_break(c);
    }
  }
  c->cycles.next_flags = 0;
  send_bytes(&c->sv, p, n);
  pgg_metrics_g.bytes[PGG_DIR_CLIENT_TO_SERVER] += n;
  c->bytes_in += n;
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  conn *c = ((side *)s->data)->c;
  if (nread < 0) {
    conn_close(c, nread == UV_EOF ? NULL : uv_strerror((int)nread));
    return;
  }
  const uint8_t *p = (const uint8_t *)buf->base;
  size_t n = (size_t)nread;
  if (c->cl.tls) {
    pgg_buf err;
    pgg_buf_init(&err);
    bool ok = tls_in(c, &c->cl, p, n, &err);
    if (!ok) {
      pgg_log(PGG_LOG_WARN, "client_tls_failed", "conn=%llu reason=%s", (unsigned long long)c->id,
              pgg_logq((const char *)err.data));
      conn_close(c, NULL);
    }
    pgg_buf_free(&err);
    if (!ok)
      return;
    p = c->cl.plain.data;
    n = c->cl.plain.len;
  }
  if (c->state == ST_STARTUP)
    startup_bytes(c, p, n);
  else if (c->state == ST_CONNECTING || c->state == ST_UPSTREAM_SSL) {
    if (pgg_buf_append(&c->early, p, n) != PGG_OK) {
      conn_close(c, "out of memory");
      return;
    }
  } else if (c->state == ST_RELAY && pgg_hold_active(c)) {
    if (pgg_buf_append(&c->held_in, p, n) != PGG_OK) {
      conn_close(c, "out of memory");
      return;
    }
  } else if (c->state == ST_RELAY)
    client_bytes(c, p, n, 0);
  if (c->state != ST_CLOSING)
    update_reads(c);
}

/* ---- what hold.c asks of the connection ----------------------------------- */

void pgg_conn_send_client(conn *c, const uint8_t *p, size_t n)
{
  send_bytes(&c->cl, p, n);
}

/*
 * While holding or swallowing, every server message is framed whole so it
 * can be withheld or dropped as a unit. Called at every ReadyForQuery, so it
 * touches the framer only when the mode actually changes.
 */
void pgg_conn_hold_all(conn *c, bool on)
{
  if (c->hold_all == on)
    return;
  c->hold_all = on;
  memset(c->sf.hold, on, sizeof(c->sf.hold));
  if (!on)
    hold_usual(&c->sf);
}

void pgg_conn_inject(conn *c, const pgg_buf *b, uint32_t flags)
{
  size_t before = c->cycles.n;
  if (!b->len)
    return;
  client_bytes(c, b->data, b->len, flags);
  if (flags & PGG_CYCLE_SWALLOW)
    c->swallow_inflight += (unsigned)(c->cycles.n - before);
}

void pgg_conn_update_reads(conn *c)
{
  /* The hold is over: what the client sent meanwhile follows the replay. */
  if (!pgg_hold_active(c) && c->held_in.len && c->state == ST_RELAY) {
    pgg_buf in = c->held_in;
    pgg_buf_init(&c->held_in);
    client_bytes(c, in.data, in.len, 0);
    pgg_buf_free(&in);
  }
  update_reads(c);
}

void pgg_conn_fail(conn *c, const char *sqlstate, const char *msg, const char *detail)
{
  send_fatal(c, sqlstate, msg, detail);
  conn_close(c, msg);
}

/* ---- server -> client ---------------------------------------------------- */

/*
 * The set-up of the current transaction block, kept for a re-send after
 * pgguard's ROLLBACK: it must cover everything since BEGIN, all of it
 * data-free set-up (BEGIN / START TRANSACTION / SET), or a replay in the
 * block is ruled out until the block ends.
 */
static void track_setup(conn *c, const pgg_cycle *done, char before, char after)
{
  bool whole = !c->rec_broken && c->rec.len - c->rec_off >= done->bytes;
  const uint8_t *bytes = c->rec.data + c->rec_off;

  if (after == 'I') {
    pgg_buf_reset(&c->setup);
    buf_trim(&c->setup);
    c->setup_covered = false;
    return;
  }
  if (before == 'I') {
    /* This cycle opened the block. */
    pgg_buf_reset(&c->setup);
    c->setup_covered = false;
  } else if (!c->setup_covered) {
    return;
  }
  if (after == 'T' && whole && pgg_cycle_is_setup(done) && c->setup.len + done->bytes <= RECORD_MAX &&
      pgg_buf_append(&c->setup, bytes, done->bytes) == PGG_OK) {
    c->setup_covered = true;
    return;
  }
  c->setup_covered = false;
  pgg_buf_reset(&c->setup);
}

/* A server message answers the oldest cycle, except during start-up: an
 * eager client's first cycle must not count authentication as its answer. */
static void cycles_server(conn *c, uint8_t type, const char *tag)
{
  if (c->ready_seen)
    pgg_cycles_server(&c->cycles, type, tag);
}

/* Bookkeeping when a cycle ends. */
static void cycle_done(conn *c, const pgg_cycle *done, char before, char status)
{
  if (done->flags & PGG_CYCLE_SWALLOW) {
    assert(c->swallow_inflight > 0);
    if (c->swallow_inflight)
      c->swallow_inflight--;
  } else {
    pgg_histogram_observe(&pgg_metrics_g.request_duration,
                          (double)(uv_hrtime() - done->start_ns) / 1e9);
  }
  if (done->flags & PGG_CYCLE_REPLAY)
    pgg_metrics_g.replays[done->failed ? PGG_REPLAY_RES_FAILED : PGG_REPLAY_RES_SUCCEEDED]++;
  if (c->recording) {
    track_setup(c, done, before, status);
    rec_consume(c, done->bytes);
    rec_resync(c);
  }
  if (done->flags & PGG_CYCLE_SWALLOW)
    pgg_hold_swallowed(c, done, status);
}

/* What to do with one whole server message. */
enum { FORWARD, DROP, REPLACE };

/*
 * Whether channel binding passes is known only once PostgreSQL has shown its
 * certificate, so it is said at the first TLS client's login, and again
 * whenever the answer changes (a certificate rotated on either side);
 * otherwise per connection at debug level.
 */
static void log_binding(const conn *c, bool passes)
{
  static int last = -1;
  if (last == (int)passes) {
    pgg_log(PGG_LOG_DEBUG, "channel_binding", "conn=%llu passes=%s", (unsigned long long)c->id,
            passes ? "yes" : "no");
    return;
  }
  last = passes;
  pgg_log(PGG_LOG_INFO, "channel_binding", "conn=%llu passes=%s why=%s",
          (unsigned long long)c->id, passes ? "yes" : "no",
          pgg_logq(passes ? "pgguard presents PostgreSQL's own certificate: SCRAM-SHA-256-PLUS "
                            "passes through untouched"
                          : "the certificate pgguard presents is not PostgreSQL's: "
                            "SCRAM-SHA-256-PLUS is withheld, and libpq clients on TLS need "
                            "channel_binding=disable"));
}

/*
 * With TLS toward PostgreSQL, the server offers SCRAM-SHA-256-PLUS, whose
 * channel binding ties the client's proof to the server's certificate. The
 * client's TLS session ends at pgguard and binds to the certificate pgguard
 * presents: when that is PostgreSQL's own, byte for byte, the proof verifies
 * and the offer passes untouched; otherwise it could never verify, and the
 * client is offered plain SCRAM instead.
 */
static int sasl_without_plus(conn *c, const pgg_msg *m)
{
  uint32_t code;
  const uint8_t *data;
  size_t dlen;
  bool changed = false;
  if (!c->sv.tls || pgg_parse_authentication(m->body, m->body_len, &code, &data, &dlen) ||
      code != 10)
    return FORWARD;
  pgg_buf body;
  pgg_buf_init(&body);
  if (pgg_sasl_strip_plus(m->body, m->body_len, &body, &changed) || !changed) {
    pgg_buf_free(&body);
    return FORWARD;
  }
  if (c->cl.tls) {
    bool passes = pgg_tls_binding_passes(c->cl.tls, c->sv.tls);
    log_binding(c, passes);
    if (passes) {
      pgg_buf_free(&body);
      return FORWARD;
    }
  }
  pgg_buf_reset(&c->replace);
  pgg_buf_append_u8(&c->replace, 'R');
  pgg_buf_append_u32be(&c->replace, (uint32_t)body.len + 4);
  pgg_buf_append(&c->replace, body.data, body.len);
  pgg_buf_free(&body);
  return REPLACE;
}

/* The SQL of the statement that failed first in the recorded cycle, or NULL. */
static const char *failed_statement(const uint8_t *rec, size_t len)
{
  const char *sql = NULL, *name = NULL;
  if (len < 5)
    return NULL;
  uint32_t mlen = (uint32_t)rec[1] << 24 | (uint32_t)rec[2] << 16 | (uint32_t)rec[3] << 8 | rec[4];
  if (mlen < 4 || mlen > len - 1)
    return NULL;
  /* Nothing of the cycle was answered, so its first message failed: a
   * Query, or the Parse of an extended batch. A Bind of a statement parsed
   * earlier names no SQL here: not replayable. */
  if (rec[0] == 'Q' && pgg_parse_query(rec + 5, mlen - 4, &sql) == PGG_OK)
    return sql;
  if (rec[0] == 'P' && pgg_parse_parse(rec + 5, mlen - 4, &name, &sql) == PGG_OK)
    return sql;
  return NULL;
}

/* A guarded SQLSTATE arrived as an ErrorResponse: pass, hold, or repair only. */
static int guarded_error(conn *c, const pgg_msg *m, const pgg_error_fields *ef, const char *sqlstate)
{
  pgg_cycle *head = pgg_cycles_head(&c->cycles);
  bool labels = pgg_guardian_missing_labels();

  if (!c->recording || !pgg_guardian_active() || !c->database ||
      !pgg_guardian_guards_database(c->database))
    return FORWARD;
  pgg_explain ex = pgg_explain_error(pgg_guardian_desired(), sqlstate, pgg_error_field(ef, 'S'),
                                     pgg_error_field(ef, 'V'), pgg_error_message(ef));
  if (ex == PGG_EXPLAIN_NO) {
    pgg_log(PGG_LOG_DEBUG, "guarded_error", "conn=%llu sqlstate=%s decision=pass why=%s",
            (unsigned long long)c->id, sqlstate, pgg_logq("not in the desired schema"));
    return FORWARD;
  }
  size_t rlen = 0;
  const uint8_t *rec = pgg_conn_rec_head(c, &rlen);
  const char *why = NULL;
  pgg_replay_input in = {
    .sqlstate = sqlstate,
    .missing_labels = labels,
    .has_position = pgg_error_field(ef, 'P') != NULL,
    .has_context = pgg_error_field(ef, 'W') != NULL || pgg_error_field(ef, 'q') != NULL,
    .stmt_ok = rec && pgg_replay_stmt_ok(failed_statement(rec, rlen)),
    .translated = ex == PGG_EXPLAIN_TRANSLATED,
    .cycle = head,
    .in_flight = c->cycles.n,
    .tx_status = c->cycles.tx_status,
    .setup_covered = c->setup_covered,
    .recorded = rec != NULL,
  };
  pgg_guard_decision d = pgg_replay_decide(&in, &why);
  pgg_log(PGG_LOG_INFO, "guarded_error", "conn=%llu sqlstate=%s decision=%s%s%s",
          (unsigned long long)c->id, sqlstate,
          d == PGG_GUARD_REPLAY ? "replay" : d == PGG_GUARD_REPAIR_ONLY ? "repair_only" : "pass",
          why ? " why=" : "", why ? pgg_logq(why) : "");
  if (d == PGG_GUARD_REPLAY && pgg_hold_start(c, m, in.translated))
    return DROP;
  if (d != PGG_GUARD_PASS) {
    /* Not replayable (or the hold could not be set up); the error goes
     * through at once (the client's transaction may hold locks the repair
     * needs), and the repair runs so that the client's retry finds the
     * objects. */
    if (!(head && (head->flags & PGG_CYCLE_REPLAY)))
      pgg_metrics_g.replays[PGG_REPLAY_RES_SKIPPED]++;
    pgg_guardian_request(NULL);
  }
  return FORWARD;
}

static int server_msg(conn *c, const pgg_msg *m)
{
  pgg_cycle *head = pgg_cycles_head(&c->cycles);
  bool swallow = head && (head->flags & PGG_CYCLE_SWALLOW);

  if (m->type == 'Z') {
    char status = 'I', before = c->cycles.tx_status;
    pgg_cycle done;
    if (m->body && pgg_parse_ready_for_query(m->body, m->body_len, &status) != PGG_OK)
      return FORWARD;
    if (!c->ready_seen) {
      /* The end of start-up answers no request: cycles an eager client
       * opened with its startup packet stay in flight. */
      c->ready_seen = true;
      uv_timer_stop(&c->limit_timer);
      if (pgg_p.opt->log_connections)
        pgg_log(PGG_LOG_INFO, "connection_authorized", "conn=%llu addr=%s user=%s database=%s tls=%s",
                (unsigned long long)c->id, c->peer, pgg_logq(c->user ? c->user : ""),
                pgg_logq(c->database ? c->database : ""), c->cl.tls ? "yes" : "no");
      c->cycles.tx_status = status;
      if (c->recording)
        rec_resync(c);
      return FORWARD;
    }
    bool popped = pgg_cycles_ready(&c->cycles, status, &done);
    if (popped)
      cycle_done(c, &done, before, status);
    if (pgg_hold_before_ready(c) && !swallow) {
      pgg_hold_ready(c, m);
      return DROP;
    }
    if (!pgg_hold_active(c) && !c->swallow_inflight)
      pgg_conn_hold_all(c, false);
    return swallow ? DROP : FORWARD;
  }

  if (m->type == 'R' && m->body && !c->ready_seen)
    return sasl_without_plus(c, m);

  if (m->type == 'K' && m->body && !c->ready_seen) {
    const uint8_t *key;
    size_t klen;
    if (pgg_parse_backend_key_data(m->body, m->body_len, &c->backend_pid, &key, &klen) == PGG_OK &&
        klen <= sizeof(c->backend_key)) {
      memcpy(c->backend_key, key, klen);
      c->backend_key_len = klen;
    }
    return FORWARD;
  }

  const char *tag = NULL;
  if (m->type == 'C' && m->body)
    pgg_parse_command_complete(m->body, m->body_len, &tag);

  if (m->type == 'E' && m->body && !swallow && !pgg_hold_before_ready(c)) {
    pgg_error_fields ef;
    if (pgg_parse_error(m->body, m->body_len, &ef) == PGG_OK) {
      const char *sqlstate = pgg_error_sqlstate(&ef);
      const char *sev = pgg_error_field(&ef, 'V') ? pgg_error_field(&ef, 'V') : pgg_error_severity(&ef);
      if (sev && sqlstate && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0))
        snprintf(c->fatal, sizeof c->fatal, "%s", sqlstate);
      int idx = pgg_metrics_sqlstate_index(sqlstate);
      if (idx >= 0 && pgg_guarded_sqlstate(sqlstate, pgg_guardian_missing_labels())) {
        pgg_metrics_g.undefined_object_errors[idx]++;
        if (guarded_error(c, m, &ef, sqlstate) == DROP) {
          cycles_server(c, m->type, NULL);
          return DROP;
        }
      }
    }
  }
  cycles_server(c, m->type, tag);

  if (pgg_hold_before_ready(c) && !swallow) {
    /* Between the withheld error and its ReadyForQuery: asynchronous
     * messages only (NOTICE, NOTIFY, ParameterStatus). */
    if (m->raw)
      pgg_hold_other(c, m);
    return DROP;
  }
  /* Of a cycle pgguard sent itself, the client already has the answer; but
   * a setting it changes (a re-sent SET) and a notification are news the
   * client must get, or its idea of the session parts from the server's. */
  if (swallow && (m->type == 'S' || m->type == 'A'))
    return FORWARD;
  return swallow ? DROP : FORWARD;
}

static void upstream_tls_failed(conn *c, const char *why)
{
  char msg[700];
  snprintf(msg, sizeof(msg), "pgguard could not establish TLS with the upstream server %s:%d: %s",
           pgg_p.opt->upstream.host, pgg_p.opt->upstream.port, why);
  pgg_log(PGG_LOG_WARN, "upstream_tls_failed", "conn=%llu reason=%s", (unsigned long long)c->id,
          pgg_logq(why));
  send_fatal(c, "08006", msg, NULL);
  conn_close(c, NULL);
}

/* PostgreSQL's one-byte answer to our SSLRequest. */
static void upstream_ssl_answer(conn *c, const uint8_t *p, size_t n)
{
  pgg_sslmode mode = pgg_p.opt->upstream_sslmode;
  if (p[0] == 'S') {
    /* Bytes after the 'S' were not protected by TLS: a man in the middle
     * could have injected them (CVE-2021-23222). */
    if (n > 1) {
      upstream_tls_failed(c, "the server sent unencrypted data after accepting TLS");
      return;
    }
    pgg_buf err;
    pgg_buf_init(&err);
    int rc = pgg_tls_new(pgg_p.upstream_ctx, pgg_p.opt->upstream.host, &c->sv.tls);
    pgg_metrics_g.tls_handshakes++;
    if (!rc) {
      pgg_buf_reset(&c->tls_out);
      rc = pgg_tls_start(c->sv.tls, &c->tls_out, &err);
      sock_send(&c->sv, c->tls_out.data, c->tls_out.len);
    }
    if (rc) {
      pgg_buf_append_u8(&err, 0);
      upstream_tls_failed(c, err.len > 1 ? (const char *)err.data : pgg_strerror(rc));
      pgg_buf_free(&err);
      return;
    }
    pgg_buf_free(&err);
    start_relay(c);
    return;
  }
  if (p[0] == 'N' && n == 1 && mode < PGG_SSLMODE_REQUIRE) {
    start_relay(c);
    return;
  }
  upstream_tls_failed(c, p[0] == 'N' ? "the server does not support TLS, but --upstream-sslmode requires it"
                                     : "the server answered the SSLRequest with something other than S or N");
}

static void on_server_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  conn *c = ((side *)s->data)->c;
  if (nread < 0) {
    if (nread != UV_EOF)
      pgg_log(PGG_LOG_INFO, "server_read_failed", "conn=%llu reason=%s",
              (unsigned long long)c->id, pgg_logq(uv_strerror((int)nread)));
    /* Nobody asked the server to close: it shut down, crashed or was lost. */
    if (c->state != ST_CANCEL && !c->terminated)
      pgg_guardian_server_gone(c->fatal);
    conn_close(c, NULL);
    return;
  }
  /* libuv may report a read of nothing (EAGAIN); there is no byte to look at. */
  if (nread == 0)
    return;
  const uint8_t *p = (const uint8_t *)buf->base;
  size_t n = (size_t)nread, pos = 0, fwd = 0;
  if (c->state == ST_UPSTREAM_SSL) {
    upstream_ssl_answer(c, p, n);
    return;
  }
  if (c->sv.tls) {
    pgg_buf err;
    pgg_buf_init(&err);
    bool ok = tls_in(c, &c->sv, p, n, &err);
    if (!ok)
      upstream_tls_failed(c, (const char *)err.data);
    pgg_buf_free(&err);
    if (!ok)
      return;
    p = c->sv.plain.data;
    n = c->sv.plain.len;
  }
  pgg_metrics_g.bytes[PGG_DIR_SERVER_TO_CLIENT] += n;
  c->bytes_out += n;

  while (pos < n && c->state == ST_RELAY) {
    size_t before = pos, used = 0;
    pgg_msg m;
    int r = pgg_framer_next(&c->sf, p + pos, n - pos, &used, &m);
    if (r < 0) {
      send_bytes(&c->cl, p + fwd, before - fwd);
      send_fatal(c, "08P01", "invalid message from the server",
                 "pgguard closed the connection: PostgreSQL sent bytes pgguard could not frame.");
      conn_close(c, "server protocol error");
      return;
    }
    pos += used;
    if (r == PGG_FRAME_MORE) {
      if (pgg_framer_holding(&c->sf)) {
        send_bytes(&c->cl, p + fwd, before - fwd);
        fwd = pos;
      }
      break;
    }
    int action = FORWARD;
    if (m.raw || m.type == 'Z' || m.type == 'E' || m.type == 'C')
      action = server_msg(c, &m);
    else
      cycles_server(c, m.type, NULL);
    if (m.buffered) {
      send_bytes(&c->cl, p + fwd, before - fwd);
      fwd = pos;
      if (action == FORWARD)
        send_bytes(&c->cl, m.raw, m.raw_len);
    } else if (action != FORWARD) {
      send_bytes(&c->cl, p + fwd, pos - m.raw_len - fwd);
      fwd = pos;
    }
    if (action == REPLACE)
      send_bytes(&c->cl, c->replace.data, c->replace.len);
  }
  if (c->state == ST_RELAY || c->state == ST_CLOSING)
    send_bytes(&c->cl, p + fwd, pos - fwd);
  if (c->state != ST_CLOSING)
    update_reads(c);
}
