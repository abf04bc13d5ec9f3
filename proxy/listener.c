/*
 * listener.c — the TCP listener applications connect to.
 */
#include "proxy.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

static uv_tcp_t listener;
static bool listening;

static void on_connection(uv_stream_t *server, int status)
{
  if (status < 0) {
    pgg_log(PGG_LOG_WARN, "accept_failed", "reason=%s", pgg_logq(uv_strerror(status)));
    return;
  }
  pgg_conn_accept(server);
}

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

int pgg_listener_start(void)
{
  const pgg_hostport *hp = &pgg_p.opt->listen;
  int err = pgg_listen_tcp(&listener, hp, 511, on_connection, "client");
  if (err)
    return err;
  listening = true;
  pgg_log(PGG_LOG_INFO, "listening", "addr=%s:%d upstream=%s:%d", hp->host, hp->port,
          pgg_p.opt->upstream.host, pgg_p.opt->upstream.port);
  return PGG_OK;
}

void pgg_listener_stop(void)
{
  if (!listening)
    return;
  listening = false;
  uv_close((uv_handle_t *)&listener, NULL);
}
