/*
 * error.c — ErrorResponse and NoticeResponse bodies: a list of (code, value)
 * fields, every one of them optional, ended by a zero byte.
 */
#include "protocol.h"

#include <string.h>

int pgg_parse_error(const uint8_t *body, size_t len, pgg_error_fields *out)
{
  memset(out, 0, sizeof *out);
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  for (;;) {
    uint8_t code;
    if (!pgg_rd_u8(&r, &code))
      return PGG_ERR_TRUNCATED;         /* no terminator byte */
    if (code == 0)
      break;
    const char *value;
    if (!pgg_rd_cstr(&r, &value, NULL))
      return PGG_ERR_TRUNCATED;         /* value without its NUL */
    /* Unknown codes are skipped, as the protocol asks of frontends; a repeated
     * code keeps its last value, as libpq does. */
    if (code >= 'A' && code <= 'z')
      out->fields[code] = value;
  }
  /* Bytes after the terminator mean the length and the contents disagree. */
  return pgg_rd_left(&r) == 0 ? PGG_OK : PGG_ERR_PROTO;
}
