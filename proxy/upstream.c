/*
 * upstream.c — reaching PostgreSQL: the upstream's addresses, re-resolved
 * after --dns-ttl as PgBouncer's dns_max_ttl does, and a dialer that tries
 * each address in turn (or the Unix socket .s.PGSQL.PORT in a directory).
 */
#include "proxy.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "log.h"

#define MAX_ADDRS 16

/*
 * One answer of the resolver. A dial keeps a reference to the list it began
 * with: a newer answer replaces up.cur, never the list a dial is walking, so
 * no address is skipped or tried twice when the name changes meanwhile.
 */
struct pgg_addrs {
  unsigned refs;
  size_t n;
  struct sockaddr_storage addr[];
};

static void addrs_release(pgg_addrs *a)
{
  if (a && --a->refs == 0)
    free(a);
}

/*
 * A lookup runs on a detached thread of its own, not libuv's thread pool:
 * getaddrinfo cannot be interrupted, and a uv_getaddrinfo request keeps the
 * loop (and the process) alive until the resolver gives up, a minute or more
 * when the nameserver does not answer, so SIGQUIT would not be immediate. At
 * stop a lookup under way is abandoned: its thread frees it when it returns.
 */
typedef struct {
  char host[sizeof(((pgg_hostport *)0)->host)];
  char port[16];
  int status;               /* getaddrinfo's result */
  struct addrinfo *res;
  bool finished;            /* under lookup_mu */
  bool abandoned;           /* under lookup_mu: nobody waits for it any more */
} lookup;

static pthread_mutex_t lookup_mu = PTHREAD_MUTEX_INITIALIZER;

static struct {
  pgg_addrs *cur;           /* the last answer, or NULL before the first */
  uint64_t resolved_ms;     /* uv_now of the last answer */
  lookup *inflight;         /* the lookup under way, or NULL */
  uv_async_t async;         /* its thread says it finished */
  bool async_open;
  uv_timer_t slow;          /* the lookup under way takes too long to wait for */
  bool overdue;             /* it did: dials use the last answer meanwhile */
  uint64_t lookup_ms;       /* uv_now when it began */
  pgg_dial *waiters;        /* dials waiting for the answer */
  pgg_dial *releasing;      /* waiters being sent on, one by one */
  bool releasing_now;       /* release_waiters is running */
} up;

bool pgg_upstream_is_unix(void)
{
  return pgg_p.opt->upstream.host[0] == '/';
}

/*
 * A path that does not fit sun_path is an error even when out could hold
 * it: libuv's uv_pipe_connect cuts it short without a word, and the path cut
 * short may name another server's socket (.s.PGSQL.1234 becomes .s.PGSQL.123).
 */
int pgg_unix_path(const pgg_hostport *hp, char *out, size_t n)
{
  int len = snprintf(out, n, "%s/.s.PGSQL.%d", hp->host, hp->port);
  return len < 0 || (size_t)len >= n || (size_t)len >= sizeof(((struct sockaddr_un *)0)->sun_path)
           ? PGG_ERR_CONFIG : PGG_OK;
}

static void addr_name(const struct sockaddr_storage *ss, char *out, size_t n)
{
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    uv_ip4_name((const struct sockaddr_in *)ss, host, sizeof host);
    port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
    snprintf(out, n, "%s:%d", host, port);
  } else if (ss->ss_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)ss, host, sizeof host);
    port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    snprintf(out, n, "[%s]:%d", host, port);
  } else {
    snprintf(out, n, "?");
  }
}

/*
 * Keep the answer; says so in the log when the address list changed.
 * Returns 0, or UV_ENOMEM (the previous answer, if any, stays in use).
 */
static int remember(const struct addrinfo *ai)
{
  pgg_addrs *next = calloc(1, sizeof *next + MAX_ADDRS * sizeof next->addr[0]);
  if (!next)
    return UV_ENOMEM;
  next->refs = 1;
  for (; ai && next->n < MAX_ADDRS; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof next->addr[0])
      continue;
    memcpy(&next->addr[next->n++], ai->ai_addr, ai->ai_addrlen);
  }
  if (!next->n) {
    free(next);
    return 0;
  }
  up.resolved_ms = uv_now(pgg_p.loop);
  pgg_addrs *prev = up.cur;
  if (prev && prev->n == next->n &&
      memcmp(prev->addr, next->addr, next->n * sizeof next->addr[0]) == 0) {
    free(next);
    return 0;
  }
  up.cur = next;
  addrs_release(prev);
  if (prev) {
    char list[MAX_ADDRS * 56] = "", one[56];
    for (size_t i = 0; i < next->n; i++) {
      addr_name(&next->addr[i], one, sizeof one);
      if (i)
        strcat(list, ",");
      strcat(list, one);
    }
    pgg_log(PGG_LOG_INFO, "upstream_resolved", "host=%s addrs=%s",
            pgg_logq(pgg_p.opt->upstream.host), list);
  }
  return 0;
}

int pgg_upstream_resolve_now(void)
{
  if (pgg_upstream_is_unix())
    return 0;
  uv_getaddrinfo_t req;
  struct addrinfo hints = {0};
  char port[16];
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof port, "%d", pgg_p.opt->upstream.port);
  int err = uv_getaddrinfo(pgg_p.loop, &req, NULL, pgg_p.opt->upstream.host, port, &hints);
  if (err)
    return err;
  err = remember(req.addrinfo);
  uv_freeaddrinfo(req.addrinfo);
  if (!err && !up.cur)
    err = UV_EAI_NONAME;
  return err;
}

/* A numeric address names itself: nothing to look up again. */
static bool numeric_host(void)
{
  unsigned char buf[sizeof(struct in6_addr)];
  const char *h = pgg_p.opt->upstream.host;
  return uv_inet_pton(AF_INET, h, buf) == 0 || uv_inet_pton(AF_INET6, h, buf) == 0;
}

static bool fresh(void)
{
  if (!up.cur)
    return false;
  if (numeric_host() || (up.inflight && up.overdue))
    return true;
  double ttl = pgg_p.opt->dns_ttl;
  return ttl > 0 && (double)(uv_now(pgg_p.loop) - up.resolved_ms) < ttl * 1000.0;
}

static void try_next(pgg_dial *d);

/* The dial is over: it lets go of its address list and says how it ended. */
static void finish(pgg_dial *d, int status)
{
  addrs_release(d->addrs);
  d->addrs = NULL;
  d->done(d, status);
}

/*
 * Send every waiting dial on: with the last answer, or to its end when there
 * is none. They leave the list one at a time, so a dial aborted by another's
 * callback meanwhile is found (and unlinked) by pgg_dial_abort; a call from
 * such a callback only adds its waiters to the ones being sent on.
 */
static void release_waiters(int status)
{
  pgg_dial *w = up.waiters;
  up.waiters = NULL;
  if (w) {
    pgg_dial *tail = w;
    while (tail->next_waiter)
      tail = tail->next_waiter;
    tail->next_waiter = up.releasing;
    up.releasing = w;
  }
  if (up.releasing_now)
    return;
  up.releasing_now = true;
  while ((w = up.releasing)) {
    up.releasing = w->next_waiter;
    w->next_waiter = NULL;
    w->waiting = false;
    w->resolved = true;
    if (!up.cur) {
      w->last_err = status ? status : UV_EAI_NONAME;
      finish(w, w->last_err);
    } else {
      try_next(w);
    }
  }
  up.releasing_now = false;
}

static void on_resolved(int status, struct addrinfo *res)
{
  if (status == 0)
    status = remember(res);
  if (status != 0) {
    /* The last answer stays in use: a resolver blip must not refuse every
     * client while the database itself is fine. */
    pgg_log(PGG_LOG_WARN, "upstream_resolve_failed", "host=%s reason=%s%s",
            pgg_logq(pgg_p.opt->upstream.host), pgg_logq(uv_strerror(status)),
            up.cur ? " using=previous_addresses" : "");
    up.resolved_ms = uv_now(pgg_p.loop);
  }
  release_waiters(status);
}

/* getaddrinfo's EAI_* as the libuv error the rest of pgguard names. */
static int eai_to_uv(int rc, int saved_errno)
{
  switch (rc) {
  case 0: return 0;
  case EAI_AGAIN: return UV_EAI_AGAIN;
  case EAI_BADFLAGS: return UV_EAI_BADFLAGS;
  case EAI_FAMILY: return UV_EAI_FAMILY;
  case EAI_MEMORY: return UV_EAI_MEMORY;
  case EAI_NONAME: return UV_EAI_NONAME;
#ifdef EAI_NODATA
  case EAI_NODATA: return UV_EAI_NODATA;
#endif
  case EAI_SERVICE: return UV_EAI_SERVICE;
  case EAI_SOCKTYPE: return UV_EAI_SOCKTYPE;
  case EAI_SYSTEM: return saved_errno ? -saved_errno : UV_EAI_FAIL;   /* libuv errors are -errno */
  default: return UV_EAI_FAIL;
  }
}

static void *lookup_thread(void *arg)
{
  lookup *lk = arg;
  struct addrinfo hints = {0};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(lk->host, lk->port, &hints, &lk->res);
  rc = eai_to_uv(rc, errno);
  pthread_mutex_lock(&lookup_mu);
  lk->status = rc;
  lk->finished = true;
  bool abandoned = lk->abandoned;
  if (!abandoned)
    uv_async_send(&up.async);
  pthread_mutex_unlock(&lookup_mu);
  if (abandoned) {
    if (lk->res)
      freeaddrinfo(lk->res);
    free(lk);
  }
  return NULL;
}

static void on_lookup_done(uv_async_t *a)
{
  (void)a;
  lookup *lk = up.inflight;
  pthread_mutex_lock(&lookup_mu);
  bool finished = lk && lk->finished;
  pthread_mutex_unlock(&lookup_mu);
  if (!finished)
    return;
  up.inflight = NULL;
  up.overdue = false;
  uv_timer_stop(&up.slow);
  on_resolved(lk->status, lk->res);
  if (lk->res)
    freeaddrinfo(lk->res);
  free(lk);
}

/*
 * A nameserver that stops answering is the common resolver outage, and glibc
 * waits its timeout for each query and attempt (a minute or more). A client
 * must not wait for that while the last answer is there: past half of
 * --server-connect-timeout (5 s without one) the dials waiting go on with
 * the last answer, and so do new ones until the lookup ends; its answer is
 * kept when it comes.
 */
static void on_lookup_slow(uv_timer_t *t)
{
  (void)t;
  if (!up.inflight || !up.cur)
    return;
  up.overdue = true;
  pgg_log(PGG_LOG_WARN, "upstream_resolve_slow", "host=%s waited_s=%.1f using=previous_addresses",
          pgg_logq(pgg_p.opt->upstream.host),
          (double)(uv_now(pgg_p.loop) - up.lookup_ms) / 1000.0);
  release_waiters(0);
}

static uint64_t lookup_patience_ms(void)
{
  double limit = pgg_p.opt->server_connect_timeout;
  return limit > 0 ? (uint64_t)(limit * 500.0) : 5000;
}

/* Start a lookup on its own thread: 0, or a libuv error. */
static int lookup_start(void)
{
  if (!up.async_open) {
    int err = uv_async_init(pgg_p.loop, &up.async, on_lookup_done);
    if (err)
      return err;
    uv_timer_init(pgg_p.loop, &up.slow);
    up.async_open = true;
  }
  lookup *lk = calloc(1, sizeof *lk);
  if (!lk)
    return UV_ENOMEM;
  snprintf(lk->host, sizeof lk->host, "%s", pgg_p.opt->upstream.host);
  snprintf(lk->port, sizeof lk->port, "%d", pgg_p.opt->upstream.port);
  pthread_attr_t attr;
  pthread_t t;
  int rc = pthread_attr_init(&attr);
  if (!rc) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &attr, lookup_thread, lk);
    pthread_attr_destroy(&attr);
  }
  if (rc) {
    free(lk);
    return -rc;
  }
  up.inflight = lk;
  up.overdue = false;
  up.lookup_ms = uv_now(pgg_p.loop);
  uv_timer_start(&up.slow, on_lookup_slow, lookup_patience_ms(), 0);
  return 0;
}

static void wait_for_addresses(pgg_dial *d)
{
  d->waiting = true;
  d->next_waiter = up.waiters;
  up.waiters = d;
  if (up.inflight)
    return;
  int err = lookup_start();
  if (err)
    on_resolved(err, NULL);
}

/* ---- the dialer ------------------------------------------------------------ */

static void on_connect(uv_connect_t *req, int status);

static void on_retry_closed(uv_handle_t *h)
{
  pgg_dial *d = h->data;
  d->closing = false;
  if (d->aborted) {
    finish(d, UV_ECANCELED);
    return;
  }
  try_next(d);
}

static void attempt_failed(pgg_dial *d, int status)
{
  d->last_err = status;
  char name[300];
  snprintf(name, sizeof name, "%s:%d", pgg_p.opt->upstream.host, pgg_p.opt->upstream.port);
  pgg_log(PGG_LOG_WARN, "upstream_connect_failed", "%supstream=%s addr=%s reason=%s",
          d->log_prefix, pgg_logq(name), pgg_logq(d->addr), pgg_logq(uv_strerror(status)));
  d->closing = true;
  d->sock->handle.data = d;
  uv_close(&d->sock->handle, on_retry_closed);
}

static void try_next(pgg_dial *d)
{
  int err;
  d->req.data = d;
  if (pgg_upstream_is_unix()) {
    if (d->next++) {   /* one socket file: tried once */
      finish(d, d->last_err);
      return;
    }
    if (pgg_unix_path(&pgg_p.opt->upstream, d->addr, sizeof d->addr)) {
      finish(d, UV_ENAMETOOLONG);
      return;
    }
    uv_pipe_init(pgg_p.loop, &d->sock->pipe, 0);
    d->sock->handle.data = d;
    d->connecting = true;
    uv_pipe_connect(&d->req, &d->sock->pipe, d->addr, on_connect);
    return;
  }
  if (!d->addrs) {
    if (!d->resolved && !fresh()) {
      wait_for_addresses(d);
      return;
    }
    /* This dial walks the list as it is now, whatever answers come later. */
    d->addrs = up.cur;
    d->addrs->refs++;
  }
  if (d->next >= d->addrs->n) {
    finish(d, d->last_err ? d->last_err : UV_EAI_NONAME);
    return;
  }
  const struct sockaddr_storage *a = &d->addrs->addr[d->next++];
  addr_name(a, d->addr, sizeof d->addr);
  uv_tcp_init(pgg_p.loop, &d->sock->tcp);
  d->sock->handle.data = d;
  d->connecting = true;
  err = uv_tcp_connect(&d->req, &d->sock->tcp, (const struct sockaddr *)a, on_connect);
  if (err) {
    d->connecting = false;
    attempt_failed(d, err);
  }
}

static void on_connect(uv_connect_t *req, int status)
{
  pgg_dial *d = req->data;
  d->connecting = false;
  if (d->aborted || status == UV_ECANCELED) {
    if (!d->closing) {
      d->closing = true;
      d->aborted = true;
      d->sock->handle.data = d;
      uv_close(&d->sock->handle, on_retry_closed);
    }
    return;
  }
  if (status < 0) {
    attempt_failed(d, status);
    return;
  }
  pgg_log(PGG_LOG_DEBUG, "upstream_connected", "%saddr=%s", d->log_prefix, pgg_logq(d->addr));
  if (d->addrs) {
    d->peer = d->addrs->addr[d->next - 1];
    d->has_peer = true;
  }
  finish(d, 0);
}

void pgg_dial_start(pgg_dial *d, pgg_sock *sock, void (*done)(pgg_dial *, int),
                    const char *log_prefix)
{
  memset(d, 0, sizeof *d);
  d->sock = sock;
  d->done = done;
  d->log_prefix = log_prefix ? log_prefix : "";
  try_next(d);
}

void pgg_dial_start_at(pgg_dial *d, pgg_sock *sock, const struct sockaddr_storage *addr,
                       void (*done)(pgg_dial *, int), const char *log_prefix)
{
  pgg_addrs *one = calloc(1, sizeof *one + sizeof one->addr[0]);
  if (!one) {
    memset(d, 0, sizeof *d);
    d->done = done;
    done(d, UV_ENOMEM);
    return;
  }
  one->refs = 1;
  one->n = 1;
  one->addr[0] = *addr;
  memset(d, 0, sizeof *d);
  d->sock = sock;
  d->done = done;
  d->log_prefix = log_prefix ? log_prefix : "";
  d->addrs = one;
  d->resolved = true;
  try_next(d);
}

bool pgg_dial_next(pgg_dial *d)
{
  if (d->aborted || !d->addrs || d->next >= d->addrs->n)
    return false;
  if (d->closing)
    return true;   /* the last address just failed; the next one begins now */
  if (!d->connecting)
    return false;
  /* Closing cancels the request (its callback sees closing and returns);
   * the close then tries the next address. */
  attempt_failed(d, UV_ETIMEDOUT);
  return true;
}

bool pgg_dial_abort(pgg_dial *d)
{
  if (d->waiting) {
    pgg_dial **lists[] = {&up.waiters, &up.releasing};
    for (size_t i = 0; i < 2; i++)
      for (pgg_dial **p = lists[i]; *p; p = &(*p)->next_waiter)
        if (*p == d) {
          *p = d->next_waiter;
          break;
        }
    d->next_waiter = NULL;
    d->waiting = false;
    return true;
  }
  d->aborted = true;
  if (d->closing)
    return false;
  /* Connecting: closing the handle cancels the request, whose callback
   * (UV_ECANCELED) comes first; the close then reports the end. */
  d->closing = true;
  d->sock->handle.data = d;
  uv_close(&d->sock->handle, on_retry_closed);
  return false;
}

void pgg_upstream_stop(void)
{
  lookup *lk = up.inflight;
  up.inflight = NULL;
  if (lk) {
    pthread_mutex_lock(&lookup_mu);
    bool finished = lk->finished;
    lk->abandoned = true;
    pthread_mutex_unlock(&lookup_mu);
    if (finished) {   /* its thread is done with it: the answer came too late */
      if (lk->res)
        freeaddrinfo(lk->res);
      free(lk);
    }
  }
  if (up.async_open) {
    up.async_open = false;
    uv_close((uv_handle_t *)&up.async, NULL);
    uv_close((uv_handle_t *)&up.slow, NULL);
  }
  addrs_release(up.cur);
  up.cur = NULL;
}
