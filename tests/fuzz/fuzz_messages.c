/*
 * fuzz_messages.c — libFuzzer target: arbitrary bytes through the startup
 * parser and every message reader and builder, checking that what they hand
 * back stays inside the input and round-trips.
 */
#include "protocol.h"

#include <stdlib.h>
#include <string.h>

#define EXPECT(c) do { if (!(c)) abort(); } while (0)

static bool inside(const void *p, const uint8_t *buf, size_t len)
{
  return (const uint8_t *)p >= buf && (const uint8_t *)p < buf + len;
}

static void fuzz_startup(const uint8_t *data, size_t size)
{
  uint32_t len;
  int rc = pgg_startup_length(data, size, &len);
  EXPECT(rc == PGG_FRAME_MORE || rc == PGG_FRAME_MSG || rc < 0);
  if (rc == PGG_FRAME_MSG)
    EXPECT(len >= 8 && len <= PGG_MAX_STARTUP_PACKET);

  /* A copy whose length word agrees with its size gets past the first check. */
  uint8_t *pkt = malloc(size ? size : 1);
  memcpy(pkt, data, size);
  if (size >= 4) {
    pkt[0] = (uint8_t)(size >> 24); pkt[1] = (uint8_t)(size >> 16);
    pkt[2] = (uint8_t)(size >> 8);  pkt[3] = (uint8_t)size;
  }
  pgg_startup s;
  for (int pass = 0; pass < 2; pass++) {
    const uint8_t *p = pass ? pkt : data;
    if (pgg_startup_parse(p, size, &s) != PGG_OK)
      continue;
    EXPECT(size >= 8 && size <= PGG_MAX_STARTUP_PACKET);
    if (s.kind == PGG_STARTUP_CANCEL) {
      EXPECT(s.cancel_key_len >= 4 && s.cancel_key_len <= 256);
      EXPECT(s.cancel_key + s.cancel_key_len == p + size);
    } else if (s.kind == PGG_STARTUP_MESSAGE) {
      EXPECT(s.major == 3 && s.params_len >= 1 && s.params[s.params_len - 1] == 0);
      size_t pos = 0, n = 0;
      const char *name, *value;
      while (pgg_startup_param_next(&s, &pos, &name, &value)) {
        EXPECT(inside(name, p, size) && inside(value, p, size) && *name);
        EXPECT(pos < s.params_len);
        n++;
      }
      EXPECT(pos == s.params_len - 1);   /* iteration stops at the terminator */
      if (n)
        EXPECT(pgg_startup_param(&s, (const char *)s.params) != NULL);
    } else {
      EXPECT(size == 8);
    }
  }
  free(pkt);
}

static void fuzz_error(const uint8_t *data, size_t size)
{
  pgg_error_fields e;
  if (pgg_parse_error(data, size, &e) != PGG_OK) {
    pgg_buf b;
    pgg_buf_init(&b);
    EXPECT(pgg_build_error_with_hint(&b, data, size, "h") < 0 && b.len == 0);
    pgg_buf_free(&b);
    return;
  }
  EXPECT(size >= 1 && data[size - 1] == 0);
  for (int c = 0; c < 128; c++)
    EXPECT(!e.fields[c] || inside(e.fields[c], data, size));
  pgg_buf b;
  pgg_buf_init(&b);
  EXPECT(pgg_build_error_with_hint(&b, data, size, e.fields['H'] ? "x" : "h") == PGG_OK);
  /* Same bytes, plus a hint field only when there was none. */
  size_t extra = e.fields['H'] ? 0 : 3;
  EXPECT(b.len == 5 + size + extra);
  EXPECT(memcmp(b.data + 5, data, size - 1) == 0);
  pgg_error_fields again;
  EXPECT(pgg_parse_error(b.data + 5, b.len - 5, &again) == PGG_OK);
  EXPECT(again.fields['H'] && strcmp(again.fields['H'], e.fields['H'] ? e.fields['H'] : "h") == 0);
  pgg_buf_free(&b);
}

static void fuzz_readers(const uint8_t *data, size_t size)
{
  char st;
  if (pgg_parse_ready_for_query(data, size, &st) == PGG_OK)
    EXPECT(size == 1 && (st == 'I' || st == 'T' || st == 'E'));
  const char *a, *b;
  if (pgg_parse_command_complete(data, size, &a) == PGG_OK)
    EXPECT(strlen(a) + 1 == size);
  uint32_t u;
  const uint8_t *p;
  size_t n;
  if (pgg_parse_backend_key_data(data, size, &u, &p, &n) == PGG_OK)
    EXPECT(n >= 4 && n <= 256 && p + n == data + size);
  if (pgg_parse_parameter_status(data, size, &a, &b) == PGG_OK)
    EXPECT(strlen(a) + strlen(b) + 2 == size);
  if (pgg_parse_authentication(data, size, &u, &p, &n) == PGG_OK)
    EXPECT(p + n == data + size);
  if (pgg_parse_query(data, size, &a) == PGG_OK)
    EXPECT(strlen(a) + 1 == size);
  if (pgg_parse_parse(data, size, &a, &b) == PGG_OK)
    EXPECT(inside(a, data, size) && inside(b, data, size));
}

/* Builders fed strings cut from the input must frame and parse back. */
static void fuzz_builders(const uint8_t *data, size_t size)
{
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = 0;
  size_t l = strlen(s);
  const char *second = l < size ? s + l + 1 : "";
  pgg_buf b;
  pgg_buf_init(&b);
  EXPECT(pgg_build_query(&b, s) == PGG_OK);
  pgg_framer f;
  pgg_framer_init(&f, PGG_DEFAULT_MAX_MESSAGE);
  size_t used;
  pgg_msg m;
  EXPECT(pgg_framer_next(&f, b.data, b.len, &used, &m) == PGG_FRAME_MSG && used == b.len);
  const char *sql;
  EXPECT(pgg_parse_query(m.body, m.body_len, &sql) == PGG_OK && strcmp(sql, s) == 0);

  pgg_buf_reset(&b);
  EXPECT(pgg_build_error(&b, "ERROR", "42P01", s, second, size & 1 ? NULL : s) == PGG_OK);
  EXPECT(pgg_framer_next(&f, b.data, b.len, &used, &m) == PGG_FRAME_MSG && used == b.len);
  pgg_error_fields e;
  EXPECT(pgg_parse_error(m.body, m.body_len, &e) == PGG_OK);
  EXPECT(strcmp(pgg_error_message(&e), s) == 0 && strcmp(e.fields['D'], second) == 0);
  EXPECT(!(size & 1) == !!e.fields['H']);
  pgg_framer_free(&f);
  pgg_buf_free(&b);
  free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  fuzz_startup(data, size);
  fuzz_error(data, size);
  fuzz_readers(data, size);
  fuzz_builders(data, size);
  return 0;
}
