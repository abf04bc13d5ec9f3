/*
 * startup.c — the untyped packets a client opens with: StartupMessage (3.x),
 * SSLRequest, GSSENCRequest and CancelRequest.
 */
#include "protocol.h"

#include <string.h>

/* A CancelRequest key: 4 bytes in protocol 3.0, up to 256 from 3.2 on. */
#define CANCEL_KEY_MIN 4
#define CANCEL_KEY_MAX 256

int pgg_startup_length(const uint8_t *buf, size_t have, uint32_t *len)
{
  *len = 0;
  pgg_reader r;
  pgg_reader_init(&r, buf, have);
  uint32_t n;
  if (!pgg_rd_u32(&r, &n))
    return PGG_FRAME_MORE;
  if (n > PGG_MAX_STARTUP_PACKET)
    return PGG_ERR_TOO_BIG;
  if (n < 8)
    return PGG_ERR_PROTO;
  *len = n;
  return PGG_FRAME_MSG;
}

/*
 * name\0value\0 pairs, then one \0 that must be the packet's last byte, as
 * the server's ProcessStartupPacket insists.
 */
static int check_params(const uint8_t *p, size_t len)
{
  pgg_reader r;
  pgg_reader_init(&r, p, len);
  for (;;) {
    const char *name;
    size_t name_len;
    if (!pgg_rd_cstr(&r, &name, &name_len))
      return PGG_ERR_PROTO;
    if (name_len == 0)
      return pgg_rd_left(&r) == 0 ? PGG_OK : PGG_ERR_PROTO;
    if (!pgg_rd_cstr(&r, NULL, NULL))
      return PGG_ERR_PROTO;
  }
}

int pgg_startup_parse(const uint8_t *pkt, size_t len, pgg_startup *out)
{
  memset(out, 0, sizeof *out);
  if (len > PGG_MAX_STARTUP_PACKET)
    return PGG_ERR_TOO_BIG;
  pgg_reader r;
  pgg_reader_init(&r, pkt, len);
  uint32_t n, code;
  if (!pgg_rd_u32(&r, &n) || !pgg_rd_u32(&r, &code))
    return PGG_ERR_PROTO;
  if (n != len)
    return PGG_ERR_PROTO;

  switch (code) {
  case PGG_SSL_REQUEST_CODE:
  case PGG_GSSENC_REQUEST_CODE:
    if (len != 8)
      return PGG_ERR_PROTO;
    out->kind = code == PGG_SSL_REQUEST_CODE ? PGG_STARTUP_SSL : PGG_STARTUP_GSSENC;
    return PGG_OK;
  case PGG_CANCEL_REQUEST_CODE: {
    uint32_t pid;
    if (!pgg_rd_u32(&r, &pid))
      return PGG_ERR_PROTO;
    size_t key_len = pgg_rd_left(&r);
    if (key_len < CANCEL_KEY_MIN || key_len > CANCEL_KEY_MAX)
      return PGG_ERR_PROTO;
    out->kind = PGG_STARTUP_CANCEL;
    out->cancel_pid = pid;
    pgg_rd_bytes(&r, key_len, &out->cancel_key);
    out->cancel_key_len = key_len;
    return PGG_OK;
  }
  default:
    break;
  }

  /* Any 3.x is ours to pass on: the server answers an unknown minor with
   * NegotiateProtocolVersion. Protocol 2 and below are long gone. */
  if ((code >> 16) != 3)
    return PGG_ERR_PROTO;
  size_t params_len = pgg_rd_left(&r);
  const uint8_t *params;
  pgg_rd_bytes(&r, params_len, &params);
  int err = check_params(params, params_len);
  if (err)
    return err;
  out->kind = PGG_STARTUP_MESSAGE;
  out->major = (uint16_t)(code >> 16);
  out->minor = (uint16_t)(code & 0xffff);
  out->params = params;
  out->params_len = params_len;
  return PGG_OK;
}

bool pgg_startup_param_next(const pgg_startup *s, size_t *pos,
                            const char **name, const char **value)
{
  if (s->kind != PGG_STARTUP_MESSAGE || !s->params || *pos >= s->params_len)
    return false;
  pgg_reader r;
  pgg_reader_init(&r, s->params, s->params_len);
  r.pos = *pos;
  const char *n, *v;
  size_t n_len;
  if (!pgg_rd_cstr(&r, &n, &n_len) || n_len == 0)
    return false;
  if (!pgg_rd_cstr(&r, &v, NULL))
    return false;
  *pos = r.pos;
  *name = n;
  *value = v;
  return true;
}

/* The last occurrence wins, as it does for the server. */
const char *pgg_startup_param(const pgg_startup *s, const char *name)
{
  size_t pos = 0;
  const char *n, *v, *found = NULL;
  while (pgg_startup_param_next(s, &pos, &n, &v))
    if (strcmp(n, name) == 0)
      found = v;
  return found;
}
