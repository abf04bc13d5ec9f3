/*
 * fuzz_error.c — libFuzzer target: arbitrary bytes as an ErrorResponse /
 * NoticeResponse body through pgg_parse_error, every field read through the
 * accessors, compared with a plain reference reading, then copied with a hint
 * (pgg_build_error_with_hint) and read back.
 */
#include "protocol.h"

#include <stdlib.h>
#include <string.h>

#define EXPECT(c) do { if (!(c)) abort(); } while (0)

/*
 * The reference: (code, value\0) pairs ended by a zero code that must be the
 * last byte. Fills want[] with the last value of each code in 'A'..'z'.
 */
static int ref_parse(const uint8_t *p, size_t len, const char *want[128])
{
  memset(want, 0, 128 * sizeof *want);
  size_t at = 0;
  for (;;) {
    if (at >= len)
      return PGG_ERR_TRUNCATED;
    uint8_t code = p[at++];
    if (code == 0)
      return at == len ? PGG_OK : PGG_ERR_PROTO;
    const uint8_t *z = at < len ? memchr(p + at, 0, len - at) : NULL;
    if (!z)
      return PGG_ERR_TRUNCATED;
    if (code >= 'A' && code <= 'z')
      want[code] = (const char *)p + at;
    at = (size_t)(z - p) + 1;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t *body = malloc(size ? size : 1);
  memcpy(body, data, size);
  const char *want[128];
  int want_rc = ref_parse(body, size, want);
  pgg_error_fields e;
  int rc = pgg_parse_error(body, size, &e);
  EXPECT(rc == want_rc);

  pgg_buf b;
  pgg_buf_init(&b);
  if (rc != PGG_OK) {
    /* A body that does not parse is not copied either. */
    EXPECT(pgg_build_error_with_hint(&b, body, size, "h") < 0 && b.len == 0);
    goto out;
  }
  for (int c = 0; c < 128; c++)
    EXPECT(e.fields[c] == want[c]);
  /* The accessors: every char, including the ones outside the table. */
  for (int c = -128; c < 128; c++) {
    const char *v = pgg_error_field(&e, (char)c);
    EXPECT(c <= 0 ? v == NULL : v == want[c]);
    if (v)
      EXPECT((const uint8_t *)v >= body && (const uint8_t *)v + strlen(v) < body + size);
  }
  EXPECT(pgg_error_sqlstate(&e) == want['C'] && pgg_error_severity(&e) == want['S'] &&
         pgg_error_message(&e) == want['M']);

  /* Copy with a hint: the same fields, plus H only when there was none. */
  const char *hint = "try again";
  EXPECT(pgg_build_error_with_hint(&b, body, size, hint) == PGG_OK);
  EXPECT(b.len >= 5 && b.data[0] == 'E');
  EXPECT(b.len == 5 + size + (want['H'] ? 0 : strlen(hint) + 2));
  EXPECT(memcmp(b.data + 5, body, size - 1) == 0 && b.data[b.len - 1] == 0);
  uint32_t l = ((uint32_t)b.data[1] << 24) | ((uint32_t)b.data[2] << 16) |
               ((uint32_t)b.data[3] << 8) | b.data[4];
  EXPECT(l == b.len - 1);
  pgg_error_fields again;
  EXPECT(pgg_parse_error(b.data + 5, b.len - 5, &again) == PGG_OK);
  for (int c = 'A'; c <= 'z'; c++) {
    if (c == 'H' && !want['H']) {
      EXPECT(again.fields['H'] && strcmp(again.fields['H'], hint) == 0);
      continue;
    }
    EXPECT(!want[c] == !again.fields[c]);
    EXPECT(!want[c] || strcmp(want[c], again.fields[c]) == 0);
  }
out:
  pgg_buf_free(&b);
  free(body);
  return 0;
}
