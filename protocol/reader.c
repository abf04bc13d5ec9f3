/*
 * reader.c — the bounds-checked reader every message field goes through, so
 * a truncated or lying message is a clean false, never a read past its end.
 */
#include "protocol.h"

#include <string.h>

void pgg_reader_init(pgg_reader *r, const uint8_t *p, size_t len)
{
  r->p = p;
  r->len = p ? len : 0;
  r->pos = 0;
}

size_t pgg_rd_left(const pgg_reader *r)
{
  return r->len - r->pos;
}

bool pgg_rd_u8(pgg_reader *r, uint8_t *v)
{
  if (pgg_rd_left(r) < 1)
    return false;
  *v = r->p[r->pos++];
  return true;
}

bool pgg_rd_u16(pgg_reader *r, uint16_t *v)
{
  if (pgg_rd_left(r) < 2)
    return false;
  const uint8_t *q = r->p + r->pos;
  *v = (uint16_t)((q[0] << 8) | q[1]);
  r->pos += 2;
  return true;
}

bool pgg_rd_u32(pgg_reader *r, uint32_t *v)
{
  if (pgg_rd_left(r) < 4)
    return false;
  const uint8_t *q = r->p + r->pos;
  *v = ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) |
       (uint32_t)q[3];
  r->pos += 4;
  return true;
}

bool pgg_rd_bytes(pgg_reader *r, size_t n, const uint8_t **v)
{
  if (pgg_rd_left(r) < n)
    return false;
  if (v)
    *v = r->p + r->pos;
  r->pos += n;
  return true;
}

bool pgg_rd_cstr(pgg_reader *r, const char **s, size_t *n)
{
  size_t left = pgg_rd_left(r);
  if (left == 0)
    return false;
  const uint8_t *start = r->p + r->pos;
  const uint8_t *nul = memchr(start, 0, left);
  if (!nul)
    return false;
  if (s)
    *s = (const char *)start;
  if (n)
    *n = (size_t)(nul - start);
  r->pos += (size_t)(nul - start) + 1;
  return true;
}
