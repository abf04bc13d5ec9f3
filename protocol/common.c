/*
 * common.c — the pieces every module shares: the names of the pgg_err codes
 * and the growable byte buffer.
 */
#include "pgg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pgg_strerror(int err)
{
  switch ((pgg_err)err) {
  case PGG_OK: return "success";
  case PGG_ERR_PROTO: return "protocol violation";
  case PGG_ERR_TOO_BIG: return "message too big";
  case PGG_ERR_NOMEM: return "out of memory";
  case PGG_ERR_TRUNCATED: return "message truncated";
  case PGG_ERR_CONFIG: return "bad configuration";
  case PGG_ERR_IO: return "I/O error";
  case PGG_ERR_UPSTREAM: return "upstream unavailable";
  case PGG_ERR_SCHEMA: return "desired schema did not load";
  case PGG_ERR_DB: return "database statement failed";
  case PGG_ERR_BUSY: return "busy";
  }
  return "unknown error";
}

void pgg_buf_init(pgg_buf *b)
{
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void pgg_buf_free(pgg_buf *b)
{
  free(b->data);
  pgg_buf_init(b);
}

void pgg_buf_reset(pgg_buf *b)
{
  b->len = 0;
}

int pgg_buf_reserve(pgg_buf *b, size_t extra)
{
  if (extra > SIZE_MAX - b->len)
    return PGG_ERR_NOMEM;
  size_t need = b->len + extra;
  if (need <= b->cap)
    return PGG_OK;
  /* Doubling keeps appends amortised O(1); past SIZE_MAX / 2 take what is needed. */
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap = (cap > SIZE_MAX / 2) ? need : cap * 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p)
    return PGG_ERR_NOMEM;
  b->data = p;
  b->cap = cap;
  return PGG_OK;
}

int pgg_buf_append(pgg_buf *b, const void *p, size_t n)
{
  if (n == 0)
    return PGG_OK;
  int err = pgg_buf_reserve(b, n);
  if (err)
    return err;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return PGG_OK;
}

int pgg_buf_append_u8(pgg_buf *b, uint8_t v)
{
  return pgg_buf_append(b, &v, 1);
}

int pgg_buf_append_u32be(pgg_buf *b, uint32_t v)
{
  uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                   (uint8_t)v};
  return pgg_buf_append(b, be, sizeof be);
}

int pgg_buf_append_cstr(pgg_buf *b, const char *s)
{
  return pgg_buf_append(b, s, strlen(s) + 1);
}

int pgg_buf_printf(pgg_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return PGG_ERR_NOMEM;
  /* One byte more than the text, so the result is also a C string. */
  int err = pgg_buf_reserve(b, (size_t)n + 1);
  if (err)
    return err;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return PGG_OK;
}

void pgg_buf_consume(pgg_buf *b, size_t n)
{
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}
