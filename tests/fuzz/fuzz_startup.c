/*
 * fuzz_startup.c — libFuzzer target: the start-up packet (StartupMessage,
 * SSLRequest, GSSENCRequest, CancelRequest) through pgg_startup_length,
 * pgg_startup_parse and the parameter iteration, each checked against a
 * plain reference reading of the same bytes.
 *
 * Input: the packet. It is tried as given and with its length word made to
 * agree with its size, so most inputs get past the first check.
 */
#include "protocol.h"

#include <stdlib.h>
#include <string.h>

#define EXPECT(c) do { if (!(c)) abort(); } while (0)

static uint32_t be32(const uint8_t *p)
{
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* NUL-terminated string at p[at..len): its length, or -1 without a NUL. */
static long cstr_at(const uint8_t *p, size_t len, size_t at)
{
  const uint8_t *z = at < len ? memchr(p + at, 0, len - at) : NULL;
  return z ? (long)(z - (p + at)) : -1;
}

/* The reference: name\0value\0 ... \0, the last \0 being the packet's last byte. */
static bool ref_params_ok(const uint8_t *p, size_t len)
{
  size_t at = 0;
  for (;;) {
    long n = cstr_at(p, len, at);
    if (n < 0)
      return false;
    if (n == 0)
      return at + 1 == len;
    at += (size_t)n + 1;
    long v = cstr_at(p, len, at);
    if (v < 0)
      return false;
    at += (size_t)v + 1;
  }
}

static int ref_parse(const uint8_t *p, size_t len, pgg_startup_kind *kind)
{
  if (len > PGG_MAX_STARTUP_PACKET)
    return PGG_ERR_TOO_BIG;
  if (len < 8 || be32(p) != len)
    return PGG_ERR_PROTO;
  uint32_t code = be32(p + 4);
  if (code == PGG_SSL_REQUEST_CODE || code == PGG_GSSENC_REQUEST_CODE) {
    *kind = code == PGG_SSL_REQUEST_CODE ? PGG_STARTUP_SSL : PGG_STARTUP_GSSENC;
    return len == 8 ? PGG_OK : PGG_ERR_PROTO;
  }
  if (code == PGG_CANCEL_REQUEST_CODE) {
    *kind = PGG_STARTUP_CANCEL;
    return len >= 12 + 4 && len <= 12 + 256 ? PGG_OK : PGG_ERR_PROTO;
  }
  *kind = PGG_STARTUP_MESSAGE;
  if (code >> 16 != 3)
    return PGG_ERR_PROTO;
  return ref_params_ok(p + 8, len - 8) ? PGG_OK : PGG_ERR_PROTO;
}

static void check_length(const uint8_t *p, size_t size)
{
  /* Every prefix up to 8 bytes: the answer depends only on the first four. */
  for (size_t have = 0; have <= size && have <= 8; have++) {
    uint32_t len = 12345;
    int rc = pgg_startup_length(p, have, &len);
    if (have < 4) {
      EXPECT(rc == PGG_FRAME_MORE && len == 0);
      continue;
    }
    uint32_t n = be32(p);
    if (n > PGG_MAX_STARTUP_PACKET)
      EXPECT(rc == PGG_ERR_TOO_BIG && len == 0);
    else if (n < 8)
      EXPECT(rc == PGG_ERR_PROTO && len == 0);
    else
      EXPECT(rc == PGG_FRAME_MSG && len == n);
  }
}

static void check_parse(const uint8_t *p, size_t size)
{
  pgg_startup s;
  pgg_startup_kind want_kind = PGG_STARTUP_MESSAGE;
  int want = ref_parse(p, size, &want_kind);
  int rc = pgg_startup_parse(p, size, &s);
  EXPECT(rc == want);
  if (rc != PGG_OK)
    return;
  EXPECT(s.kind == want_kind);
  switch (s.kind) {
  case PGG_STARTUP_SSL:
  case PGG_STARTUP_GSSENC:
    EXPECT(size == 8 && !s.params && !s.cancel_key);
    return;
  case PGG_STARTUP_CANCEL:
    EXPECT(s.cancel_pid == be32(p + 8));
    EXPECT(s.cancel_key == p + 12 && s.cancel_key_len == size - 12);
    return;
  case PGG_STARTUP_MESSAGE:
    break;
  }
  EXPECT(s.major == 3 && s.minor == (be32(p + 4) & 0xffff));
  EXPECT(s.params == p + 8 && s.params_len == size - 8);

  /* Iterate, and walk the reference alongside: same pointers, in order. */
  size_t pos = 0, at = 0, n = 0;
  const char *name, *value;
  while (pgg_startup_param_next(&s, &pos, &name, &value)) {
    long nl = cstr_at(s.params, s.params_len, at);
    EXPECT(nl > 0 && name == (const char *)s.params + at);
    at += (size_t)nl + 1;
    long vl = cstr_at(s.params, s.params_len, at);
    EXPECT(vl >= 0 && value == (const char *)s.params + at);
    at += (size_t)vl + 1;
    EXPECT(pos == at && pos < s.params_len);
    n++;
    /* The last occurrence of a name wins, as it does for the server
     * (checked for the first few names: the check is quadratic). */
    if (n > 8)
      continue;
    const char *last = pgg_startup_param(&s, name);
    EXPECT(last != NULL);
    size_t p2 = pos;
    const char *n2, *v2, *later = value;
    while (pgg_startup_param_next(&s, &p2, &n2, &v2))
      if (strcmp(n2, name) == 0)
        later = v2;
    EXPECT(last == later);
  }
  EXPECT(at == s.params_len - 1 && pos == at);   /* stopped at the terminator */
  /* Past the end, the iterator stays stopped. */
  pos = s.params_len;
  EXPECT(!pgg_startup_param_next(&s, &pos, &name, &value));
  EXPECT(n || pgg_startup_param(&s, "user") == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  check_length(data, size);
  /* An exact-size heap copy, so ASan sees any read past the end. */
  uint8_t *pkt = malloc(size ? size : 1);
  memcpy(pkt, data, size);
  check_parse(pkt, size);
  if (size >= 4) {
    pkt[0] = (uint8_t)(size >> 24); pkt[1] = (uint8_t)(size >> 16);
    pkt[2] = (uint8_t)(size >> 8);  pkt[3] = (uint8_t)size;
    check_parse(pkt, size);
  }
  free(pkt);
  return 0;
}
