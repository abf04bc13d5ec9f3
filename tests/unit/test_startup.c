/*
 * test_startup.c — the startup-phase packets: every kind, protocol 3.0 and
 * 3.2, and the malformed ones a client (or an attacker) can send.
 */
#include "check.h"
#include "protocol.h"

/* A packet: length word, code, then extra bytes as given. */
static size_t packet(uint8_t *out, uint32_t code, const void *extra, size_t n)
{
  uint32_t len = (uint32_t)(8 + n);
  out[0] = (uint8_t)(len >> 24); out[1] = (uint8_t)(len >> 16);
  out[2] = (uint8_t)(len >> 8);  out[3] = (uint8_t)len;
  out[4] = (uint8_t)(code >> 24); out[5] = (uint8_t)(code >> 16);
  out[6] = (uint8_t)(code >> 8);  out[7] = (uint8_t)code;
  if (n)
    memcpy(out + 8, extra, n);
  return len;
}

static const char params[] = "user\0alice\0database\0shop\0options\0-c search_path=app\0";

TEST(startup_length_needs_four_bytes)
{
  uint8_t p[4] = {0, 0, 0, 8};
  uint32_t len = 99;
  for (size_t have = 0; have < 4; have++) {
    CHECK_INT(pgg_startup_length(p, have, &len), PGG_FRAME_MORE);
    CHECK_INT(len, 0);
  }
  CHECK_INT(pgg_startup_length(p, 4, &len), PGG_FRAME_MSG);
  CHECK_INT(len, 8);
}

TEST(startup_length_bounds)
{
  uint32_t len;
  uint8_t p[4] = {0, 0, 0x27, 0x14};               /* 10004: a 10000-byte body, PostgreSQL's limit */
  CHECK_INT(pgg_startup_length(p, 4, &len), PGG_FRAME_MSG);
  CHECK_INT(len, 10004);
  p[3] = 0x15;                                     /* 10005 */
  CHECK_INT(pgg_startup_length(p, 4, &len), PGG_ERR_TOO_BIG);
  uint8_t neg[4] = {0xff, 0xff, 0xff, 0xf0};
  CHECK_INT(pgg_startup_length(neg, 4, &len), PGG_ERR_TOO_BIG);
  for (uint8_t n = 0; n < 8; n++) {
    uint8_t s[4] = {0, 0, 0, n};
    CHECK_INT(pgg_startup_length(s, 4, &len), PGG_ERR_PROTO);
  }
}

TEST(ssl_and_gssenc_requests_are_recognised)
{
  uint8_t p[16];
  pgg_startup s;
  size_t n = packet(p, PGG_SSL_REQUEST_CODE, NULL, 0);
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  CHECK_INT(s.kind, PGG_STARTUP_SSL);
  n = packet(p, PGG_GSSENC_REQUEST_CODE, NULL, 0);
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  CHECK_INT(s.kind, PGG_STARTUP_GSSENC);
  /* An SSLRequest with bytes after the code is not one. */
  n = packet(p, PGG_SSL_REQUEST_CODE, "abcd", 4);
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
  n = packet(p, PGG_GSSENC_REQUEST_CODE, "abcd", 4);
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
}

TEST(cancel_request_protocol_30_has_4_byte_key)
{
  uint8_t p[16];
  static const uint8_t body[8] = {0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef};
  size_t n = packet(p, PGG_CANCEL_REQUEST_CODE, body, sizeof body);
  CHECK_INT(n, 16);
  pgg_startup s;
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  CHECK_INT(s.kind, PGG_STARTUP_CANCEL);
  CHECK_INT(s.cancel_pid, 12345);
  CHECK_INT(s.cancel_key_len, 4);
  CHECK(s.cancel_key == p + 12);
}

TEST(cancel_request_protocol_32_has_long_key)
{
  uint8_t p[8 + 4 + 256], body[4 + 256];
  for (size_t i = 0; i < sizeof body; i++)
    body[i] = (uint8_t)i;
  pgg_startup s;
  size_t n = packet(p, PGG_CANCEL_REQUEST_CODE, body, 4 + 32);
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  CHECK_INT(s.kind, PGG_STARTUP_CANCEL);
  CHECK_INT(s.cancel_pid, 0x00010203);
  CHECK_INT(s.cancel_key_len, 32);
  CHECK(memcmp(s.cancel_key, body + 4, 32) == 0);
  n = packet(p, PGG_CANCEL_REQUEST_CODE, body, 4 + 256);
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  CHECK_INT(s.cancel_key_len, 256);
}

TEST(cancel_request_with_short_or_oversized_key_is_rejected)
{
  uint8_t p[8 + 4 + 257], body[4 + 257] = {0};
  pgg_startup s;
  for (size_t k = 0; k < 4; k++) {
    size_t n = packet(p, PGG_CANCEL_REQUEST_CODE, body, 4 + k);
    CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
  }
  size_t n = packet(p, PGG_CANCEL_REQUEST_CODE, body, 4 + 257);
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
}

TEST(startup_message_30_parses_parameters)
{
  uint8_t p[128];
  size_t n = packet(p, 3u << 16, params, sizeof params);
  pgg_startup s;
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  CHECK_INT(s.kind, PGG_STARTUP_MESSAGE);
  CHECK_INT(s.major, 3);
  CHECK_INT(s.minor, 0);
  CHECK(s.params == p + 8);
  CHECK_INT(s.params_len, sizeof params);
  CHECK_STR(pgg_startup_param(&s, "user"), "alice");
  CHECK_STR(pgg_startup_param(&s, "database"), "shop");
  CHECK_STR(pgg_startup_param(&s, "options"), "-c search_path=app");
  CHECK(pgg_startup_param(&s, "application_name") == NULL);

  size_t pos = 0, count = 0;
  const char *name, *value;
  static const char *names[] = {"user", "database", "options"};
  while (pgg_startup_param_next(&s, &pos, &name, &value)) {
    REQUIRE(count < 3);
    CHECK_STR(name, names[count]);
    count++;
  }
  CHECK_INT(count, 3);
  CHECK(!pgg_startup_param_next(&s, &pos, &name, &value));
}

TEST(startup_message_32_is_accepted_with_its_minor)
{
  uint8_t p[128];
  size_t n = packet(p, (3u << 16) | 2, params, sizeof params);
  pgg_startup s;
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  CHECK_INT(s.kind, PGG_STARTUP_MESSAGE);
  CHECK_INT(s.major, 3);
  CHECK_INT(s.minor, 2);
  CHECK_STR(pgg_startup_param(&s, "user"), "alice");
  /* A far-future minor is still 3.x: the server negotiates it down. */
  n = packet(p, (3u << 16) | 9999, params, sizeof params);
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  CHECK_INT(s.minor, 9999);
}

TEST(startup_message_with_only_terminator_has_no_parameters)
{
  uint8_t p[16];
  size_t n = packet(p, 3u << 16, "", 1);
  pgg_startup s;
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  size_t pos = 0;
  const char *name, *value;
  CHECK(!pgg_startup_param_next(&s, &pos, &name, &value));
  CHECK(pgg_startup_param(&s, "user") == NULL);
}

TEST(startup_message_repeated_parameter_last_wins)
{
  static const char dup[] = "user\0a\0user\0b\0";
  uint8_t p[64];
  size_t n = packet(p, 3u << 16, dup, sizeof dup);
  pgg_startup s;
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  CHECK_STR(pgg_startup_param(&s, "user"), "b");
}

TEST(startup_message_without_final_terminator_is_rejected)
{
  uint8_t p[128];
  pgg_startup s;
  /* "user\0alice\0" with no closing empty name. */
  size_t n = packet(p, 3u << 16, "user\0alice", 11);
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
  /* A value missing its NUL. */
  n = packet(p, 3u << 16, "user\0alice", 10);
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
  /* A name with no value. */
  n = packet(p, 3u << 16, "user\0", 5);
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
  /* No parameter bytes at all. */
  n = packet(p, 3u << 16, NULL, 0);
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
  /* Bytes after the terminator. */
  n = packet(p, 3u << 16, "user\0a\0\0junk", 12);
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
  /* Every truncation of a good packet whose length word is patched to match. */
  size_t good = packet(p, 3u << 16, params, sizeof params);
  for (size_t len = 8; len < good; len++) {
    p[3] = (uint8_t)len;
    CHECK_INT(pgg_startup_parse(p, len, &s), PGG_ERR_PROTO);
  }
}

TEST(startup_message_with_other_protocol_major_is_rejected)
{
  uint8_t p[128];
  pgg_startup s;
  size_t n = packet(p, 2u << 16, params, sizeof params);     /* protocol 2.0 */
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
  n = packet(p, 4u << 16, params, sizeof params);
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
  n = packet(p, (1234u << 16) | 5681, params, sizeof params); /* unknown request code */
  CHECK_INT(pgg_startup_parse(p, n, &s), PGG_ERR_PROTO);
}

TEST(startup_packet_too_short_or_too_long_is_rejected)
{
  uint8_t p[10005 + 8];
  pgg_startup s;
  for (size_t len = 0; len < 8; len++) {
    memset(p, 0, 8);
    p[3] = (uint8_t)len;
    CHECK_INT(pgg_startup_parse(p, len, &s), PGG_ERR_PROTO);
  }
  /* 10005 bytes: a valid-looking StartupMessage one byte over the limit. */
  memset(p, 'a', sizeof p);
  packet(p, 3u << 16, NULL, 0);
  p[0] = 0; p[1] = 0; p[2] = 0x27; p[3] = 0x15;
  p[8 + 4] = 0;                                  /* "aaaa\0" name */
  p[10005 - 2] = 0;                              /* value ends ... */
  p[10005 - 1] = 0;                              /* ... then terminator */
  CHECK_INT(pgg_startup_parse(p, 10005, &s), PGG_ERR_TOO_BIG);
  /* The same at exactly 10004 bytes is fine. */
  p[3] = 0x14;
  p[10004 - 2] = 0;
  p[10004 - 1] = 0;
  CHECK_INT(pgg_startup_parse(p, 10004, &s), PGG_OK);
  CHECK_INT(strlen(pgg_startup_param(&s, "aaaa")), 10004 - 8 - 5 - 2);
}

TEST(startup_length_word_must_match_packet)
{
  uint8_t p[128];
  pgg_startup s;
  size_t n = packet(p, 3u << 16, params, sizeof params);
  CHECK_INT(pgg_startup_parse(p, n + 1, &s), PGG_ERR_PROTO);
  CHECK_INT(pgg_startup_parse(p, n - 1, &s), PGG_ERR_PROTO);
  n = packet(p, PGG_SSL_REQUEST_CODE, NULL, 0);
  CHECK_INT(pgg_startup_parse(p, 12, &s), PGG_ERR_PROTO);
}

TEST(param_iteration_on_non_startup_kind_yields_nothing)
{
  uint8_t p[16];
  size_t n = packet(p, PGG_SSL_REQUEST_CODE, NULL, 0);
  pgg_startup s;
  REQUIRE(pgg_startup_parse(p, n, &s) == PGG_OK);
  size_t pos = 0;
  const char *name, *value;
  CHECK(!pgg_startup_param_next(&s, &pos, &name, &value));
  CHECK(pgg_startup_param(&s, "user") == NULL);
}
