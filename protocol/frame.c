/*
 * frame.c — the incremental framer: any chunking of a typed-message stream in,
 * whole messages out, zero copy whenever a message lies inside one chunk.
 */
#include "protocol.h"

#include <string.h>

/* hdr_have past a full header marks a framer that returned an error. */
#define FRAME_HDR 5
#define FRAME_FAILED (FRAME_HDR + 1)
/*
 * A buffer grown for one large held message is given back afterwards, so a
 * single 100 MB Query does not pin 100 MB for the rest of the connection.
 */
#define FRAME_KEEP_CAP ((size_t)64 * 1024)

static uint32_t be32(const uint8_t *p)
{
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
         (uint32_t)p[3];
}

void pgg_framer_init(pgg_framer *f, size_t max_body)
{
  memset(f, 0, sizeof *f);
  f->max_body = max_body;
  pgg_buf_init(&f->acc);
}

void pgg_framer_free(pgg_framer *f)
{
  pgg_buf_free(&f->acc);
  f->hdr_have = 0;
  f->body_left = 0;
  f->holding = false;
}

void pgg_framer_hold(pgg_framer *f, uint8_t type)
{
  f->hold[type] = true;
}

bool pgg_framer_holding(const pgg_framer *f)
{
  return f->holding && f->hdr_have > 0 && f->hdr_have < FRAME_FAILED;
}

bool pgg_framer_at_boundary(const pgg_framer *f)
{
  return f->hdr_have == 0;
}

/*
 * The length field counts itself and is an int32 on the wire: below 4 or
 * negative cannot be a message at all; above max_body is refused before a
 * single byte of it is buffered.
 */
static int check_length(const pgg_framer *f, uint32_t n)
{
  if (n < 4 || n > INT32_MAX)
    return PGG_ERR_PROTO;
  if ((size_t)(n - 4) > f->max_body)
    return PGG_ERR_TOO_BIG;
  return PGG_OK;
}

static int fail(pgg_framer *f, int err)
{
  f->hdr_have = FRAME_FAILED;
  f->holding = false;
  f->body_left = 0;
  return err;
}

int pgg_framer_next(pgg_framer *f, const uint8_t *chunk, size_t len,
                    size_t *used, pgg_msg *msg)
{
  *used = 0;
  memset(msg, 0, sizeof *msg);
  if (f->hdr_have == FRAME_FAILED)
    return PGG_ERR_PROTO;
  if (!f->holding && f->acc.cap > FRAME_KEEP_CAP)
    pgg_buf_free(&f->acc);
  if (len == 0)
    return PGG_FRAME_MORE;

  /* Hot path: the whole message is in the chunk; hand out pointers into it. */
  if (f->hdr_have == 0 && len >= FRAME_HDR) {
    uint32_t n = be32(chunk + 1);
    int err = check_length(f, n);
    if (err)
      return fail(f, err);
    if ((size_t)(n - 4) <= len - FRAME_HDR) {
      msg->type = chunk[0];
      msg->len = n;
      msg->raw = chunk;
      msg->raw_len = (size_t)n + 1;
      msg->body = chunk + FRAME_HDR;
      msg->body_len = n - 4;
      *used = (size_t)n + 1;
      return PGG_FRAME_MSG;
    }
  }

  /* Split message: gather the header, then stream or copy the body. */
  size_t pos = 0;
  bool header_was_done = (f->hdr_have == FRAME_HDR);
  while (f->hdr_have < FRAME_HDR && pos < len) {
    if (f->hdr_have == 0)
      f->holding = f->hold[chunk[pos]];
    f->hdr[f->hdr_have++] = chunk[pos++];
  }
  if (f->hdr_have < FRAME_HDR) {
    *used = pos;
    return PGG_FRAME_MORE;
  }
  if (!header_was_done) {
    uint32_t n = be32(f->hdr + 1);
    int err = check_length(f, n);
    if (err)
      return fail(f, err);
    f->body_left = n - 4;
    if (f->holding) {
      pgg_buf_reset(&f->acc);
      if (pgg_buf_append(&f->acc, f->hdr, FRAME_HDR))
        return fail(f, PGG_ERR_NOMEM);
    }
  }

  /* The buffer grows only with bytes that arrived, never with the length field. */
  size_t take = len - pos < f->body_left ? len - pos : f->body_left;
  if (f->holding && pgg_buf_append(&f->acc, chunk + pos, take))
    return fail(f, PGG_ERR_NOMEM);
  pos += take;
  f->body_left -= take;
  *used = pos;
  if (f->body_left > 0)
    return PGG_FRAME_MORE;

  msg->type = f->hdr[0];
  msg->len = be32(f->hdr + 1);
  msg->body_len = msg->len - 4;
  if (f->holding) {
    msg->raw = f->acc.data;
    msg->raw_len = f->acc.len;
    msg->body = f->acc.data + FRAME_HDR;
    msg->buffered = true;
  }
  f->hdr_have = 0;
  f->holding = false;
  return PGG_FRAME_MSG;
}
