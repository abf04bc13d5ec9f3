/*
 * test_messages.c — ErrorResponse fields, the other readers, the builders
 * (byte-exact and round-tripped through the parsers), and pgg_buf.
 */
#include "check.h"
#include "protocol.h"

#include <stdint.h>

/* Frame one built message back through the framer, as a proxy would. */
static int frame_one(const pgg_buf *b, pgg_msg *m)
{
  pgg_framer f;
  pgg_framer_init(&f, PGG_DEFAULT_MAX_MESSAGE);
  size_t used = 0;
  int rc = pgg_framer_next(&f, b->data, b->len, &used, m);
  pgg_framer_free(&f);   /* m points into b: the framer's buffer is unused */
  if (rc != PGG_FRAME_MSG || used != b->len)
    return -1;
  return 0;
}

/* ---- ErrorResponse ------------------------------------------------------ */

static const char all_fields[] =
    "SERROR\0VERROR\0C42P01\0Mrelation \"users\" does not exist\0Ddetail\0"
    "Hhint\0P15\0p3\0qSELECT 1\0Wwhere\0spublic\0tusers\0cname\0dint4\0"
    "nusers_pkey\0Fparse_relation.c\0L1392\0RparserOpenTable\0";

TEST(error_response_every_field_is_read)
{
  pgg_error_fields e;
  REQUIRE(pgg_parse_error((const uint8_t *)all_fields, sizeof all_fields, &e) == PGG_OK);
  CHECK_STR(pgg_error_severity(&e), "ERROR");
  CHECK_STR(pgg_error_field(&e, 'V'), "ERROR");
  CHECK_STR(pgg_error_sqlstate(&e), "42P01");
  CHECK_STR(pgg_error_message(&e), "relation \"users\" does not exist");
  CHECK_STR(pgg_error_field(&e, 'D'), "detail");
  CHECK_STR(pgg_error_field(&e, 'H'), "hint");
  CHECK_STR(pgg_error_field(&e, 'P'), "15");
  CHECK_STR(pgg_error_field(&e, 'p'), "3");
  CHECK_STR(pgg_error_field(&e, 'q'), "SELECT 1");
  CHECK_STR(pgg_error_field(&e, 'W'), "where");
  CHECK_STR(pgg_error_field(&e, 's'), "public");
  CHECK_STR(pgg_error_field(&e, 't'), "users");
  CHECK_STR(pgg_error_field(&e, 'c'), "name");
  CHECK_STR(pgg_error_field(&e, 'd'), "int4");
  CHECK_STR(pgg_error_field(&e, 'n'), "users_pkey");
  CHECK_STR(pgg_error_field(&e, 'F'), "parse_relation.c");
  CHECK_STR(pgg_error_field(&e, 'L'), "1392");
  CHECK_STR(pgg_error_field(&e, 'R'), "parserOpenTable");
  CHECK(pgg_error_field(&e, 'X') == NULL);
  CHECK(pgg_error_field(&e, (char)0) == NULL);
  /* Values point into the body, no copies. */
  CHECK(pgg_error_severity(&e) == all_fields + 1);
}

TEST(error_response_without_sqlstate_is_fine)
{
  static const char body[] = "SFATAL\0Mno C field here\0";
  pgg_error_fields e;
  REQUIRE(pgg_parse_error((const uint8_t *)body, sizeof body, &e) == PGG_OK);
  CHECK(pgg_error_sqlstate(&e) == NULL);
  CHECK_STR(pgg_error_severity(&e), "FATAL");
  CHECK_STR(pgg_error_message(&e), "no C field here");
}

TEST(error_response_with_only_terminator_has_no_fields)
{
  uint8_t body[1] = {0};
  pgg_error_fields e;
  REQUIRE(pgg_parse_error(body, 1, &e) == PGG_OK);
  for (int c = 0; c < 128; c++)
    CHECK(e.fields[c] == NULL);
}

TEST(error_response_truncated_anywhere_is_rejected)
{
  /* Every proper prefix misses either a value's NUL or the terminator. */
  for (size_t len = 0; len < sizeof all_fields; len++) {
    pgg_error_fields e;
    int rc = pgg_parse_error((const uint8_t *)all_fields, len, &e);
    CHECK(rc == PGG_ERR_TRUNCATED || rc == PGG_ERR_PROTO);
  }
  static const char no_nul[] = {'S', 'E', 'R'};
  pgg_error_fields e;
  CHECK_INT(pgg_parse_error((const uint8_t *)no_nul, sizeof no_nul, &e), PGG_ERR_TRUNCATED);
  CHECK_INT(pgg_parse_error(NULL, 0, &e), PGG_ERR_TRUNCATED);
}

TEST(error_response_bytes_after_terminator_are_rejected)
{
  static const char body[] = "SERROR\0\0junk";
  pgg_error_fields e;
  CHECK_INT(pgg_parse_error((const uint8_t *)body, sizeof body, &e), PGG_ERR_PROTO);
}

TEST(error_response_unknown_codes_are_skipped)
{
  static const uint8_t body[] = {'~', 'x', 0, 0x90, 'y', 0, '1', 'z', 0,
                                 'C', '4', '2', '7', '0', '3', 0, 0};
  pgg_error_fields e;
  REQUIRE(pgg_parse_error(body, sizeof body, &e) == PGG_OK);
  CHECK_STR(pgg_error_sqlstate(&e), "42703");
  CHECK(e.fields['~'] == NULL);
  CHECK(e.fields['1'] == NULL);
}

/* ---- Other readers ------------------------------------------------------ */

TEST(ready_for_query_accepts_only_i_t_e)
{
  char st = 0;
  for (const char *s = "ITE"; *s; s++) {
    CHECK_INT(pgg_parse_ready_for_query((const uint8_t *)s, 1, &st), PGG_OK);
    CHECK_INT(st, *s);
  }
  for (int c = 0; c < 256; c++) {
    if (c == 'I' || c == 'T' || c == 'E')
      continue;
    uint8_t b = (uint8_t)c;
    st = 0;
    CHECK_INT(pgg_parse_ready_for_query(&b, 1, &st), PGG_ERR_PROTO);
    CHECK_INT(st, 0);
  }
  CHECK_INT(pgg_parse_ready_for_query(NULL, 0, &st), PGG_ERR_TRUNCATED);
  CHECK_INT(pgg_parse_ready_for_query((const uint8_t *)"II", 2, &st), PGG_ERR_PROTO);
}

TEST(command_complete_tag)
{
  const char *tag = NULL;
  CHECK_INT(pgg_parse_command_complete((const uint8_t *)"INSERT 0 1", 11, &tag), PGG_OK);
  CHECK_STR(tag, "INSERT 0 1");
  CHECK_INT(pgg_parse_command_complete((const uint8_t *)"INSERT", 6, &tag), PGG_ERR_TRUNCATED);
  CHECK_INT(pgg_parse_command_complete((const uint8_t *)"A\0B", 4, &tag), PGG_ERR_PROTO);
}

TEST(backend_key_data_30_and_32)
{
  static const uint8_t k30[] = {0, 0, 1, 0, 9, 8, 7, 6};
  uint32_t pid = 0;
  const uint8_t *key = NULL;
  size_t key_len = 0;
  REQUIRE(pgg_parse_backend_key_data(k30, sizeof k30, &pid, &key, &key_len) == PGG_OK);
  CHECK_INT(pid, 256);
  CHECK(key == k30 + 4);
  CHECK_INT(key_len, 4);
  uint8_t k32[4 + 256] = {0, 0, 0, 7};
  REQUIRE(pgg_parse_backend_key_data(k32, 4 + 32, &pid, &key, &key_len) == PGG_OK);
  CHECK_INT(pid, 7);
  CHECK_INT(key_len, 32);
  CHECK_INT(pgg_parse_backend_key_data(k32, 4 + 256, &pid, &key, &key_len), PGG_OK);
  uint8_t big[4 + 257] = {0};
  CHECK_INT(pgg_parse_backend_key_data(big, sizeof big, &pid, &key, &key_len), PGG_ERR_PROTO);
  for (size_t n = 0; n < 8; n++)
    CHECK_INT(pgg_parse_backend_key_data(k30, n, &pid, &key, &key_len), PGG_ERR_TRUNCATED);
}

TEST(parameter_status_name_and_value)
{
  static const char body[] = "server_version\00015.4";
  const char *name = NULL, *value = NULL;
  REQUIRE(pgg_parse_parameter_status((const uint8_t *)body, sizeof body, &name, &value) == PGG_OK);
  CHECK_STR(name, "server_version");
  CHECK_STR(value, "15.4");
  CHECK_INT(pgg_parse_parameter_status((const uint8_t *)body, sizeof body - 1, &name, &value),
            PGG_ERR_TRUNCATED);
  CHECK_INT(pgg_parse_parameter_status((const uint8_t *)"a\0b\0c", 6, &name, &value), PGG_ERR_PROTO);
}

TEST(authentication_codes_and_payloads)
{
  uint32_t code = 99;
  const uint8_t *data;
  size_t n;
  static const uint8_t ok[] = {0, 0, 0, 0};
  REQUIRE(pgg_parse_authentication(ok, 4, &code, &data, &n) == PGG_OK);
  CHECK_INT(code, 0);
  CHECK_INT(n, 0);
  static const uint8_t md5[] = {0, 0, 0, 5, 1, 2, 3, 4};
  REQUIRE(pgg_parse_authentication(md5, 8, &code, &data, &n) == PGG_OK);
  CHECK_INT(code, 5);
  CHECK(data == md5 + 4 && n == 4);
  CHECK_INT(pgg_parse_authentication(md5, 7, &code, &data, &n), PGG_ERR_TRUNCATED);
  static const uint8_t sasl[] = "\0\0\0\012SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
  REQUIRE(pgg_parse_authentication(sasl, sizeof sasl, &code, &data, &n) == PGG_OK);
  CHECK_INT(code, 10);
  CHECK_STR((const char *)data, "SCRAM-SHA-256-PLUS");
  CHECK_INT(n, sizeof sasl - 4);
  /* A mechanism list missing its closing empty name. */
  CHECK_INT(pgg_parse_authentication(sasl, sizeof sasl - 1, &code, &data, &n), PGG_ERR_TRUNCATED);
  static const uint8_t cont[] = {0, 0, 0, 11, 'r', '=', 'x'};
  REQUIRE(pgg_parse_authentication(cont, sizeof cont, &code, &data, &n) == PGG_OK);
  CHECK_INT(code, 11);
  CHECK_INT(n, 3);
  static const uint8_t ok_junk[] = {0, 0, 0, 0, 1};
  CHECK_INT(pgg_parse_authentication(ok_junk, 5, &code, &data, &n), PGG_ERR_PROTO);
  CHECK_INT(pgg_parse_authentication(ok, 3, &code, &data, &n), PGG_ERR_TRUNCATED);
}

TEST(query_and_parse_readers)
{
  const char *sql = NULL, *name = NULL;
  CHECK_INT(pgg_parse_query((const uint8_t *)"SELECT 1", 9, &sql), PGG_OK);
  CHECK_STR(sql, "SELECT 1");
  CHECK_INT(pgg_parse_query((const uint8_t *)"SELECT 1", 8, &sql), PGG_ERR_TRUNCATED);
  CHECK_INT(pgg_parse_query((const uint8_t *)"A\0B\0", 4, &sql), PGG_ERR_PROTO);

  static const uint8_t parse[] = "s1\0SELECT $1, $2\0\0\2\0\0\0\x17\0\0\0\x19";
  size_t n = sizeof parse - 1;
  REQUIRE(pgg_parse_parse(parse, n, &name, &sql) == PGG_OK);
  CHECK_STR(name, "s1");
  CHECK_STR(sql, "SELECT $1, $2");
  for (size_t cut = 0; cut < n; cut++)
    CHECK_INT(pgg_parse_parse(parse, cut, &name, &sql), PGG_ERR_TRUNCATED);
  CHECK_INT(pgg_parse_parse(parse, sizeof parse, &name, &sql), PGG_ERR_PROTO);
  static const uint8_t unnamed[] = "\0SELECT 1\0\0\0";
  REQUIRE(pgg_parse_parse(unnamed, sizeof unnamed - 1, &name, &sql) == PGG_OK);
  CHECK_STR(name, "");
}

/* ---- Builders ----------------------------------------------------------- */

TEST(build_error_exact_bytes_and_round_trip)
{
  pgg_buf b;
  pgg_buf_init(&b);
  REQUIRE(pgg_build_error(&b, "ERROR", "42P01", "gone", NULL, NULL) == PGG_OK);
  static const uint8_t want[] = "E\0\0\0\x20SERROR\0VERROR\0C42P01\0Mgone\0";
  CHECK_INT(b.len, sizeof want);           /* the final NUL of want is the terminator */
  CHECK(memcmp(b.data, want, sizeof want) == 0);

  pgg_buf_reset(&b);
  REQUIRE(pgg_build_error(&b, "FATAL", "57P01", "bye", "the detail", "a hint") == PGG_OK);
  pgg_msg m;
  REQUIRE(frame_one(&b, &m) == 0);
  CHECK_INT(m.type, 'E');
  pgg_error_fields e;
  REQUIRE(pgg_parse_error(m.body, m.body_len, &e) == PGG_OK);
  CHECK_STR(pgg_error_severity(&e), "FATAL");
  CHECK_STR(pgg_error_field(&e, 'V'), "FATAL");
  CHECK_STR(pgg_error_sqlstate(&e), "57P01");
  CHECK_STR(pgg_error_message(&e), "bye");
  CHECK_STR(pgg_error_field(&e, 'D'), "the detail");
  CHECK_STR(pgg_error_field(&e, 'H'), "a hint");
  CHECK_INT(pgg_build_error(&b, NULL, "x", "y", NULL, NULL), PGG_ERR_PROTO);
  pgg_buf_free(&b);
}

TEST(build_error_with_hint_keeps_fields_in_order_and_adds_hint)
{
  static const char body[] = "SERROR\0VERROR\0C42703\0Mcolumn x does not exist\0P8\0";
  pgg_buf b;
  pgg_buf_init(&b);
  REQUIRE(pgg_build_error_with_hint(&b, (const uint8_t *)body, sizeof body, "not replayed") == PGG_OK);
  static const char want_body[] =
      "SERROR\0VERROR\0C42703\0Mcolumn x does not exist\0P8\0Hnot replayed\0";
  REQUIRE(b.len == 5 + sizeof want_body);
  CHECK_INT(b.data[0], 'E');
  CHECK_INT(b.data[4], 4 + sizeof want_body);
  CHECK(memcmp(b.data + 5, want_body, sizeof want_body) == 0);
  pgg_buf_free(&b);
}

TEST(build_error_with_hint_keeps_servers_hint)
{
  static const char body[] = "SERROR\0Hserver hint\0C42P01\0";
  pgg_buf b;
  pgg_buf_init(&b);
  REQUIRE(pgg_build_error_with_hint(&b, (const uint8_t *)body, sizeof body, "ours") == PGG_OK);
  REQUIRE(b.len == 5 + sizeof body);
  CHECK(memcmp(b.data + 5, body, sizeof body) == 0);
  pgg_msg m;
  REQUIRE(frame_one(&b, &m) == 0);
  pgg_error_fields e;
  REQUIRE(pgg_parse_error(m.body, m.body_len, &e) == PGG_OK);
  CHECK_STR(pgg_error_field(&e, 'H'), "server hint");
  /* Without a hint to add, the copy is exact too. */
  pgg_buf_reset(&b);
  static const char nohint[] = "SERROR\0C42P01\0";
  REQUIRE(pgg_build_error_with_hint(&b, (const uint8_t *)nohint, sizeof nohint, NULL) == PGG_OK);
  CHECK_INT(b.len, 5 + sizeof nohint);
  pgg_buf_free(&b);
}

TEST(build_error_with_hint_refuses_malformed_body_and_leaves_buffer)
{
  pgg_buf b;
  pgg_buf_init(&b);
  pgg_buf_append(&b, "keep", 4);
  static const char body[] = {'S', 'E', 'R', 'R'};
  CHECK(pgg_build_error_with_hint(&b, (const uint8_t *)body, sizeof body, "h") < 0);
  CHECK_INT(b.len, 4);
  CHECK(pgg_build_error_with_hint(&b, (const uint8_t *)"SX\0", 3, "h") < 0);
  CHECK_INT(b.len, 4);
  pgg_buf_free(&b);
}

TEST(build_query_ready_for_query_terminate_exact_bytes)
{
  pgg_buf b;
  pgg_buf_init(&b);
  pgg_buf_append(&b, "pre", 3);               /* builders append */
  REQUIRE(pgg_build_query(&b, "ROLLBACK") == PGG_OK);
  static const uint8_t q[] = "Q\0\0\0\x0dROLLBACK";
  REQUIRE(b.len == 3 + sizeof q);
  CHECK(memcmp(b.data + 3, q, sizeof q) == 0);

  pgg_buf_reset(&b);
  REQUIRE(pgg_build_ready_for_query(&b, 'T') == PGG_OK);
  REQUIRE(b.len == 6);
  CHECK(memcmp(b.data, "Z\0\0\0\5T", 6) == 0);
  CHECK_INT(pgg_build_ready_for_query(&b, 'X'), PGG_ERR_PROTO);
  CHECK_INT(b.len, 6);

  pgg_buf_reset(&b);
  REQUIRE(pgg_build_terminate(&b) == PGG_OK);
  REQUIRE(b.len == 5);
  CHECK(memcmp(b.data, "X\0\0\0\4", 5) == 0);
  pgg_buf_free(&b);
}

TEST(builders_round_trip_through_readers)
{
  pgg_buf b;
  pgg_buf_init(&b);
  pgg_msg m;
  REQUIRE(pgg_build_query(&b, "SELECT * FROM \"users\"") == PGG_OK);
  REQUIRE(frame_one(&b, &m) == 0);
  CHECK_INT(m.type, 'Q');
  const char *sql = NULL;
  REQUIRE(pgg_parse_query(m.body, m.body_len, &sql) == PGG_OK);
  CHECK_STR(sql, "SELECT * FROM \"users\"");

  for (const char *s = "ITE"; *s; s++) {
    pgg_buf_reset(&b);
    REQUIRE(pgg_build_ready_for_query(&b, *s) == PGG_OK);
    REQUIRE(frame_one(&b, &m) == 0);
    char st = 0;
    REQUIRE(pgg_parse_ready_for_query(m.body, m.body_len, &st) == PGG_OK);
    CHECK_INT(st, *s);
  }

  pgg_buf_reset(&b);
  REQUIRE(pgg_build_terminate(&b) == PGG_OK);
  REQUIRE(frame_one(&b, &m) == 0);
  CHECK_INT(m.type, 'X');
  CHECK_INT(m.body_len, 0);
  pgg_buf_free(&b);
}

/* ---- pgg_buf and pgg_strerror ------------------------------------------- */

TEST(buf_grows_by_doubling)
{
  pgg_buf b;
  pgg_buf_init(&b);
  REQUIRE(pgg_buf_append_u8(&b, 1) == PGG_OK);
  size_t cap = b.cap;
  CHECK(cap >= 1);
  for (int i = 0; i < 5000; i++) {
    REQUIRE(pgg_buf_append_u8(&b, (uint8_t)i) == PGG_OK);
    if (b.cap != cap) {
      CHECK_INT(b.cap, cap * 2);
      cap = b.cap;
    }
  }
  CHECK_INT(b.len, 5001);
  CHECK_INT(b.data[5000], (uint8_t)4999);
  pgg_buf_free(&b);
  CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

TEST(buf_reserve_overflowing_size_t_is_nomem)
{
  pgg_buf b;
  pgg_buf_init(&b);
  REQUIRE(pgg_buf_append(&b, "abc", 3) == PGG_OK);
  CHECK_INT(pgg_buf_reserve(&b, SIZE_MAX), PGG_ERR_NOMEM);
  CHECK_INT(pgg_buf_reserve(&b, SIZE_MAX - 2), PGG_ERR_NOMEM);
  CHECK_INT(pgg_buf_append(&b, "x", SIZE_MAX - 1), PGG_ERR_NOMEM);
  CHECK_INT(b.len, 3);
  CHECK(memcmp(b.data, "abc", 3) == 0);
  pgg_buf_free(&b);
}

TEST(buf_appends_printf_and_consume)
{
  pgg_buf b;
  pgg_buf_init(&b);
  REQUIRE(pgg_buf_append_u32be(&b, 0x01020304) == PGG_OK);
  CHECK(memcmp(b.data, "\1\2\3\4", 4) == 0);
  REQUIRE(pgg_buf_append_cstr(&b, "hi") == PGG_OK);
  CHECK_INT(b.len, 7);
  CHECK_INT(b.data[6], 0);
  pgg_buf_reset(&b);
  CHECK_INT(b.len, 0);
  REQUIRE(pgg_buf_printf(&b, "%s=%d", "n", 42) == PGG_OK);
  CHECK_INT(b.len, 4);
  CHECK_STR((const char *)b.data, "n=42");      /* a NUL follows, outside len */
  REQUIRE(pgg_buf_printf(&b, ";%05d", 7) == PGG_OK);
  CHECK_STR((const char *)b.data, "n=42;00007");
  pgg_buf_consume(&b, 5);
  CHECK_INT(b.len, 5);
  CHECK(memcmp(b.data, "00007", 5) == 0);
  pgg_buf_consume(&b, 100);
  CHECK_INT(b.len, 0);
  CHECK_INT(pgg_buf_append(&b, NULL, 0), PGG_OK);
  pgg_buf_free(&b);
}

TEST(strerror_names_every_error)
{
  const char *seen[11];
  for (int e = 0; e >= PGG_ERR_BUSY; e--) {
    const char *s = pgg_strerror(e);
    REQUIRE(s != NULL);
    CHECK(strcmp(s, pgg_strerror(1)) != 0);      /* not the unknown-code text */
    for (int k = 0; k < -e; k++)
      CHECK(strcmp(s, seen[k]) != 0);
    seen[-e] = s;
  }
  CHECK_STR(pgg_strerror(PGG_ERR_PROTO), "protocol violation");
  CHECK(pgg_strerror(-1000) != NULL);
}
