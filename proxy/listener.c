/*
 * listener.c — the socket applications connect to: TCP, or a Unix-domain
 * socket DIR/.s.PGSQL.PORT as PostgreSQL names it. pgguard accepts itself
 * (not uv_listen) so that a client refused at the file-descriptor limit is
 * answered, counted and logged rather than silently closed by libuv.
 */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

#define ACCEPTS_PER_WAKEUP 64

static struct {
  uv_poll_t poll;
  int fd;
  bool on;
  bool unix_socket;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  dev_t path_dev;           /* the socket file bound, to remove only that one at stop */
  ino_t path_ino;
  int reserve;              /* a spare descriptor, given up to refuse a client at the limit */
  uv_timer_t pause;         /* accepting paused: no descriptor could be freed */
  uint64_t refused_logged_ms;
  uint64_t refused_unlogged;
} l = {.fd = -1, .reserve = -1};

/* Resolve HOST:PORT to one address; numeric hosts never touch DNS. */
int pgg_resolve(const pgg_hostport *hp, struct sockaddr_storage *out, bool passive)
{
  uv_getaddrinfo_t req;
  struct addrinfo hints = {0};
  char port[16];
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  snprintf(port, sizeof(port), "%d", hp->port);
  int err = uv_getaddrinfo(pgg_p.loop, &req, NULL, hp->host, port, &hints);
  if (err)
    return err;
  memcpy(out, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
  uv_freeaddrinfo(req.addrinfo);
  return 0;
}

/*
 * Bind and listen on HOST:PORT; what names the listener in the message a
 * person gets when the address is taken or does not resolve.
 */
int pgg_listen_tcp(uv_tcp_t *h, const pgg_hostport *hp, int backlog, uv_connection_cb cb,
                   const char *what)
{
  struct sockaddr_storage addr;
  int err = pgg_resolve(hp, &addr, true);
  if (err) {
    fprintf(stderr, "pgguard: cannot resolve the %s address %s:%d: %s\n", what, hp->host, hp->port,
            uv_strerror(err));
    return PGG_ERR_CONFIG;
  }
  uv_tcp_init(pgg_p.loop, h);
  err = uv_tcp_bind(h, (const struct sockaddr *)&addr, 0);
  if (!err)
    err = uv_listen((uv_stream_t *)h, backlog, cb);
  if (err) {
    fprintf(stderr, "pgguard: cannot listen on the %s address %s:%d: %s\n", what, hp->host,
            hp->port, uv_strerror(err));
    uv_close((uv_handle_t *)h, NULL);
    return PGG_ERR_IO;
  }
  return PGG_OK;
}

/* ---- refusing at the descriptor limit -------------------------------------- */

static void open_reserve(void)
{
  if (l.reserve < 0)
    l.reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_readable(uv_poll_t *p, int status, int events);

static void on_pause_over(uv_timer_t *t)
{
  (void)t;
  open_reserve();
  if (l.on)
    uv_poll_start(&l.poll, UV_READABLE, on_readable);
}

/*
 * accept() failed with EMFILE/ENFILE: give up the spare descriptor, take
 * the client, tell it what PostgreSQL says at max_connections, close it.
 * Every refusal is counted; the log says so at most once a second.
 */
static void refuse_at_fd_limit(int err)
{
  int fd = -1;
  if (l.reserve >= 0) {
    close(l.reserve);
    l.reserve = -1;
    fd = accept4(l.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  }
  if (fd < 0) {
    /* Nothing to give up (or the client left): stop polling a moment rather
     * than spin on a socket that stays readable. */
    uv_poll_stop(&l.poll);
    uv_timer_start(&l.pause, on_pause_over, 100, 0);
  } else {
    pgg_buf b;
    pgg_buf_init(&b);
    if (pgg_build_error(&b, "FATAL", "53300", "sorry, too many clients already", NULL, NULL) == PGG_OK)
      (void)!send(fd, b.data, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    pgg_buf_free(&b);
    close(fd);
    open_reserve();
  }
  pgg_metrics_g.clients_rejected[PGG_REJECT_FD_LIMIT]++;
  uint64_t now = uv_now(pgg_p.loop);
  l.refused_unlogged++;
  if (now - l.refused_logged_ms >= 1000 || !l.refused_logged_ms) {
    pgg_log(PGG_LOG_WARN, "client_rejected", "reason=fd_limit count=%llu error=%s",
            (unsigned long long)l.refused_unlogged, pgg_logq(strerror(err)));
    l.refused_logged_ms = now;
    l.refused_unlogged = 0;
  }
}

static void on_readable(uv_poll_t *p, int status, int events)
{
  (void)p;
  (void)events;
  if (status < 0) {
    pgg_log(PGG_LOG_WARN, "accept_failed", "reason=%s", pgg_logq(uv_strerror(status)));
    return;
  }
  for (int i = 0; i < ACCEPTS_PER_WAKEUP && l.on; i++) {
    int fd = accept4(l.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      pgg_conn_accept_fd(fd, l.unix_socket);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    if (errno == EMFILE || errno == ENFILE) {
      refuse_at_fd_limit(errno);
      if (l.reserve < 0)
        return;
      continue;
    }
    pgg_log(PGG_LOG_WARN, "accept_failed", "reason=%s", pgg_logq(strerror(errno)));
    return;
  }
}

/* ---- binding ---------------------------------------------------------------- */

static int listen_fd_tcp(const pgg_hostport *hp)
{
  struct sockaddr_storage addr;
  int err = pgg_resolve(hp, &addr, true);
  if (err) {
    fprintf(stderr, "pgguard: cannot resolve the client address %s:%d: %s\n", hp->host,
            hp->port, uv_strerror(err));
    return -1;
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int on = 1;
  socklen_t len = addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 511) != 0) {
    fprintf(stderr, "pgguard: cannot listen on the client address %s:%d: %s\n", hp->host,
            hp->port, strerror(errno));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  return fd;
}

/*
 * A socket file left by a pgguard that did not exit cleanly is removed; one
 * that something still answers on is not taken over.
 */
static int listen_fd_unix(const pgg_hostport *hp)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (pgg_unix_path(hp, sa.sun_path, sizeof sa.sun_path)) {
    fprintf(stderr, "pgguard: the Unix socket path %s/.s.PGSQL.%d is too long (at most %zu "
            "bytes)\n", hp->host, hp->port, sizeof sa.sun_path - 1);
    return -1;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "pgguard: cannot create a Unix socket: %s\n", strerror(errno));
    return -1;
  }
  struct stat st;
  if (lstat(sa.sun_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
    /* A regular file, a directory, a symbolic link: someone else's, never removed. */
    fprintf(stderr, "pgguard: cannot listen on %s: something that is not a socket is there "
            "(pgguard removes only a stale socket file)\n", sa.sun_path);
    close(fd);
    return -1;
  }
  if (lstat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
    /* Only a refused connection proves the file stale. Any other failure
     * (EACCES: another user's server on a 0700 socket in a shared directory)
     * says nothing about whether someone listens there. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = probe >= 0 ? connect(probe, (struct sockaddr *)&sa, sizeof sa) : -1;
    int why = rc == 0 ? 0 : errno;
    if (probe >= 0)
      close(probe);
    if (rc == 0 || why == EAGAIN) {
      fprintf(stderr, "pgguard: cannot listen on %s: another process is listening there\n",
              sa.sun_path);
      close(fd);
      return -1;
    }
    if (why != ECONNREFUSED) {
      fprintf(stderr, "pgguard: cannot listen on %s: cannot tell whether another process is "
              "listening there (%s); remove the file if it is stale\n", sa.sun_path,
              strerror(why));
      close(fd);
      return -1;
    }
    if (unlink(sa.sun_path) != 0 && errno != ENOENT) {
      fprintf(stderr, "pgguard: cannot listen on %s: the stale socket file there cannot be "
              "removed (%s)\n", sa.sun_path, strerror(errno));
      close(fd);
      return -1;
    }
  }
  /* Who may connect is PostgreSQL's business (its pg_hba.conf), as with
   * its own unix_socket_permissions default of 0777. The file is created
   * so (umask 0 around bind) rather than chmod-ed after: in a directory
   * others may write, the path could be a symbolic link by then, and chmod
   * follows it. Nothing else runs yet, so the process-wide umask is ours. */
  mode_t old_umask = umask(0);
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
  int bind_errno = errno;
  umask(old_umask);
  errno = bind_errno;
  if (rc != 0 || listen(fd, 511) != 0) {
    fprintf(stderr, "pgguard: cannot listen on %s: %s\n", sa.sun_path, strerror(errno));
    close(fd);
    return -1;
  }
  snprintf(l.path, sizeof l.path, "%s", sa.sun_path);
  if (lstat(l.path, &st) == 0) {
    l.path_dev = st.st_dev;
    l.path_ino = st.st_ino;
  }
  return fd;
}

int pgg_listener_start(void)
{
  const pgg_hostport *hp = &pgg_p.opt->listen;
  l.unix_socket = hp->host[0] == '/';
  l.fd = l.unix_socket ? listen_fd_unix(hp) : listen_fd_tcp(hp);
  if (l.fd < 0)
    return PGG_ERR_IO;
  open_reserve();
  uv_timer_init(pgg_p.loop, &l.pause);
  uv_poll_init_socket(pgg_p.loop, &l.poll, l.fd);
  uv_poll_start(&l.poll, UV_READABLE, on_readable);
  l.on = true;
  char up[300];
  if (pgg_upstream_is_unix())
    pgg_unix_path(&pgg_p.opt->upstream, up, sizeof up);
  else
    snprintf(up, sizeof up, "%s:%d", pgg_p.opt->upstream.host, pgg_p.opt->upstream.port);
  if (l.unix_socket)
    pgg_log(PGG_LOG_INFO, "listening", "addr=%s upstream=%s", pgg_logq(l.path), pgg_logq(up));
  else
    pgg_log(PGG_LOG_INFO, "listening", "addr=%s:%d upstream=%s", hp->host, hp->port,
            pgg_logq(up));
  return PGG_OK;
}

static void on_poll_closed(uv_handle_t *h)
{
  (void)h;
  close(l.fd);
  l.fd = -1;
}

void pgg_listener_stop(void)
{
  if (!l.on)
    return;
  l.on = false;
  uv_close((uv_handle_t *)&l.poll, on_poll_closed);
  uv_close((uv_handle_t *)&l.pause, NULL);
  if (l.reserve >= 0) {
    close(l.reserve);
    l.reserve = -1;
  }
  /* Only the file this pgguard bound: if it was removed and another server
   * listens at the path now, that one's socket stays. */
  struct stat st;
  if (l.path[0] && lstat(l.path, &st) == 0 && st.st_dev == l.path_dev && st.st_ino == l.path_ino)
    unlink(l.path);
}

