/*
 * build.c — the few messages pgguard itself sends: ErrorResponse (its own, or
 * the server's with a hint added), Query, ReadyForQuery and Terminate.
 */
#include "protocol.h"

#include <string.h>

/*
 * Every builder appends one message to out: begin() writes the type byte and
 * a placeholder length, end() patches the length in. On failure out is left
 * as it was before the call.
 */
static int begin(pgg_buf *out, uint8_t type, size_t *start)
{
  *start = out->len;
  int err = pgg_buf_append_u8(out, type);
  if (!err)
    err = pgg_buf_append_u32be(out, 0);
  if (err)
    out->len = *start;
  return err;
}

static int end(pgg_buf *out, size_t start, int err)
{
  if (err) {
    out->len = start;
    return err;
  }
  size_t n = out->len - start - 1;       /* the length counts itself, not the type */
  if (n > INT32_MAX) {
    out->len = start;
    return PGG_ERR_TOO_BIG;
  }
  uint8_t *p = out->data + start + 1;
  p[0] = (uint8_t)(n >> 24);
  p[1] = (uint8_t)(n >> 16);
  p[2] = (uint8_t)(n >> 8);
  p[3] = (uint8_t)n;
  return PGG_OK;
}

static int add_field(pgg_buf *out, char code, const char *value)
{
  int err = pgg_buf_append_u8(out, (uint8_t)code);
  return err ? err : pgg_buf_append_cstr(out, value);
}

int pgg_build_error(pgg_buf *out, const char *severity, const char *sqlstate,
                    const char *message, const char *detail, const char *hint)
{
  if (!severity || !sqlstate || !message)
    return PGG_ERR_PROTO;
  size_t start;
  int err = begin(out, 'E', &start);
  if (err)
    return err;
  /* S is localised, V is not (protocol 3.0 servers 9.6+); clients read either. */
  err = add_field(out, 'S', severity);
  if (!err)
    err = add_field(out, 'V', severity);
  if (!err)
    err = add_field(out, 'C', sqlstate);
  if (!err)
    err = add_field(out, 'M', message);
  if (!err && detail)
    err = add_field(out, 'D', detail);
  if (!err && hint)
    err = add_field(out, 'H', hint);
  if (!err)
    err = pgg_buf_append_u8(out, 0);
  return end(out, start, err);
}

int pgg_build_error_with_hint(pgg_buf *out, const uint8_t *body, size_t len,
                              const char *hint)
{
  /* Validate first, so a malformed body never produces half a message. */
  pgg_error_fields fields;
  int err = pgg_parse_error(body, len, &fields);
  if (err)
    return err;
  size_t start;
  err = begin(out, 'E', &start);
  if (err)
    return err;

  /* The server's fields, byte for byte and in their order; the terminator
   * is the last byte of the body and is written after the hint. */
  bool has_hint = false;
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  uint8_t code;
  while (!err && pgg_rd_u8(&r, &code) && code != 0) {
    const char *value;
    size_t n;
    pgg_rd_cstr(&r, &value, &n);
    has_hint |= (code == 'H');
    err = pgg_buf_append_u8(out, code);
    if (!err)
      err = pgg_buf_append(out, value, n + 1);
  }
  if (!err && hint && !has_hint)
    err = add_field(out, 'H', hint);
  if (!err)
    err = pgg_buf_append_u8(out, 0);
  return end(out, start, err);
}

int pgg_build_query(pgg_buf *out, const char *sql)
{
  size_t start;
  int err = begin(out, 'Q', &start);
  if (err)
    return err;
  return end(out, start, pgg_buf_append_cstr(out, sql));
}

int pgg_build_ready_for_query(pgg_buf *out, char status)
{
  if (status != 'I' && status != 'T' && status != 'E')
    return PGG_ERR_PROTO;
  size_t start;
  int err = begin(out, 'Z', &start);
  if (err)
    return err;
  return end(out, start, pgg_buf_append_u8(out, (uint8_t)status));
}

int pgg_build_terminate(pgg_buf *out)
{
  size_t start;
  int err = begin(out, 'X', &start);
  if (err)
    return err;
  return end(out, start, PGG_OK);
}
