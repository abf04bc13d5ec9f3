/*
 * fuzz_sasl.c — libFuzzer target: arbitrary bytes as an AuthenticationSASL
 * body through pgg_sasl_strip_plus (proxy/tls.c, compiled in here as
 * test_tls.c does), checking that it accepts exactly the well-formed lists,
 * that its output is a well-formed mechanism list without any -PLUS
 * mechanism and with every other one kept in order, and that a refused body
 * leaves the output buffer as it was.
 */
#include "../../proxy/tls.c"

#define EXPECT(c) do { if (!(c)) abort(); } while (0)

static bool ends_plus(const uint8_t *s, size_t n)
{
  return n >= 5 && memcmp(s + n - 5, "-PLUS", 5) == 0;
}

/*
 * The reference: int32 10, NUL-terminated names, an empty one that is the
 * last byte. Appends the names to keep (with their NULs) to kept.
 */
static bool ref_strip(const uint8_t *p, size_t len, pgg_buf *kept, bool *removed)
{
  *removed = false;
  if (len < 4 || p[0] || p[1] || p[2] || p[3] != 10)
    return false;
  size_t at = 4;
  for (;;) {
    const uint8_t *z = at < len ? memchr(p + at, 0, len - at) : NULL;
    if (!z)
      return false;
    size_t n = (size_t)(z - (p + at));
    if (n == 0)
      return at + 1 == len;
    if (ends_plus(p + at, n))
      *removed = true;
    else if (pgg_buf_append(kept, p + at, n + 1))
      abort();
    at += n + 1;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  uint8_t *body = malloc(size ? size : 1);
  memcpy(body, data, size);
  pgg_buf kept, out;
  pgg_buf_init(&kept);
  pgg_buf_init(&out);
  bool removed;
  bool ok = ref_strip(body, size, &kept, &removed);

  /* Something already in the output buffer must survive either way. */
  static const char before[] = "R\0\0\0\0";
  EXPECT(pgg_buf_append(&out, before, sizeof before - 1) == PGG_OK);
  bool changed = true;
  int rc = pgg_sasl_strip_plus(body, size, &out, &changed);
  EXPECT(memcmp(out.data, before, sizeof before - 1) == 0);
  if (!ok) {
    EXPECT(rc == PGG_ERR_PROTO && !changed && out.len == sizeof before - 1);
    goto done;
  }
  EXPECT(rc == PGG_OK && changed == removed);
  const uint8_t *o = out.data + sizeof before - 1;
  size_t olen = out.len - (sizeof before - 1);
  /* Exactly: code 10, the kept names in order, the terminator. */
  EXPECT(olen == 4 + kept.len + 1);
  EXPECT(o[0] == 0 && o[1] == 0 && o[2] == 0 && o[3] == 10);
  EXPECT(kept.len == 0 || memcmp(o + 4, kept.data, kept.len) == 0);
  EXPECT(o[olen - 1] == 0);
  /* Well-formed for the client too: the protocol reader accepts it, and no
   * name in it is a -PLUS one. */
  uint32_t code;
  const uint8_t *d;
  size_t dl;
  EXPECT(pgg_parse_authentication(o, olen, &code, &d, &dl) == PGG_OK && code == 10);
  for (size_t at = 4; at < olen - 1;) {
    size_t n = strlen((const char *)o + at);
    EXPECT(n > 0 && !ends_plus(o + at, n));
    at += n + 1;
  }
  /* Stripping again changes nothing. */
  pgg_buf again;
  pgg_buf_init(&again);
  EXPECT(pgg_sasl_strip_plus(o, olen, &again, &changed) == PGG_OK && !changed);
  EXPECT(again.len == olen && memcmp(again.data, o, olen) == 0);
  pgg_buf_free(&again);
done:
  pgg_buf_free(&kept);
  pgg_buf_free(&out);
  free(body);
  return 0;
}
