/*
 * test_frame.c — the framer under every chunking: a stream of real message
 * types split at every byte boundary and fed one byte at a time, zero copy
 * when unsplit, and lying lengths refused without allocation.
 */
#include "check.h"
#include "protocol.h"

#include <stdint.h>

/* ---- A stream of messages and what the framer must make of it ---------- */

#define MAX_MSGS 64

typedef struct {
  pgg_buf bytes;
  size_t n;
  size_t off[MAX_MSGS];       /* where each message starts in bytes */
  uint8_t type[MAX_MSGS];
  uint32_t body_len[MAX_MSGS];
} stream;

static void add_msg(stream *s, uint8_t type, const void *body, size_t n)
{
  s->off[s->n] = s->bytes.len;
  s->type[s->n] = type;
  s->body_len[s->n] = (uint32_t)n;
  s->n++;
  pgg_buf_append_u8(&s->bytes, type);
  pgg_buf_append_u32be(&s->bytes, (uint32_t)n + 4);
  pgg_buf_append(&s->bytes, body, n);
}

static void add_str(stream *s, uint8_t type, const char *body)
{
  add_msg(s, type, body, strlen(body) + 1);
}

/* Backend and frontend messages of every shape, including a 70 kB DataRow,
 * a held ErrorResponse of several kB, and empty bodies held and not. */
static void build_stream(stream *s)
{
  memset(s, 0, sizeof *s);
  pgg_buf_init(&s->bytes);
  static const uint8_t auth_ok[4] = {0, 0, 0, 0};
  add_msg(s, 'R', auth_ok, 4);
  add_msg(s, 'S', "client_encoding\0UTF8", 21);
  static const uint8_t key[8] = {0, 0, 0x30, 0x39, 1, 2, 3, 4};
  add_msg(s, 'K', key, sizeof key);
  add_str(s, 'Z', "I");
  add_str(s, 'Q', "SELECT repeat('x', 70000)");
  static const uint8_t rowdesc[] = {0, 1, 'r', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0};
  add_msg(s, 'T', rowdesc, sizeof rowdesc);
  size_t big = 70 * 1024;
  uint8_t *row = malloc(big);
  for (size_t i = 0; i < big; i++)
    row[i] = (uint8_t)(i * 31 + 7);
  add_msg(s, 'D', row, big);
  free(row);
  static const uint8_t small_row[] = {0, 1, 0, 0, 0, 1, '1'};
  add_msg(s, 'D', small_row, sizeof small_row);
  add_str(s, 'C', "SELECT 2");
  add_str(s, 'Z', "I");
  add_msg(s, '1', NULL, 0);                   /* ParseComplete, held, empty */
  add_msg(s, 'n', NULL, 0);                   /* NoData, not held, empty */
  add_str(s, 'N', "SNOTICE\0C00000\0Mhello\0");
  char emsg[5000];
  memset(emsg, 'm', sizeof emsg);
  memcpy(emsg, "SERROR\0VERROR\0C42P01\0M", 22);
  emsg[sizeof emsg - 2] = 0;
  emsg[sizeof emsg - 1] = 0;
  add_msg(s, 'E', emsg, sizeof emsg);
  add_str(s, 'Z', "E");
  add_msg(s, 'X', NULL, 0);
}

static void hold_types(pgg_framer *f)
{
  pgg_framer_hold(f, 'E');
  pgg_framer_hold(f, 'Z');
  pgg_framer_hold(f, 'C');
  pgg_framer_hold(f, 'N');
  pgg_framer_hold(f, '1');
}

/*
 * Feed the stream in the given chunks (copies, so "points into the chunk" is
 * a real test) and act as the proxy does: forward what was consumed unless
 * the framer is holding it, forward msg.raw when it comes back buffered. The
 * forwarded bytes must be the stream, every message must come out right, and
 * a message inside one chunk must come out zero-copy.
 */
static int check_chunking(const stream *s, const size_t *cuts, size_t ncuts)
{
  pgg_framer f;
  pgg_framer_init(&f, PGG_DEFAULT_MAX_MESSAGE);
  hold_types(&f);
  const uint8_t *all = s->bytes.data;
  size_t total = s->bytes.len;
  size_t fwd = 0, got = 0;
  int bad = 0;

  for (size_t c = 0; c <= ncuts && !bad; c++) {
    size_t from = c == 0 ? 0 : cuts[c - 1];
    size_t to = c == ncuts ? total : cuts[c];
    size_t clen = to - from;
    uint8_t *chunk = malloc(clen ? clen : 1);
    memcpy(chunk, all + from, clen);
    size_t pos = 0;
    do {
      size_t used = 99;
      pgg_msg m;
      int rc = pgg_framer_next(&f, chunk + pos, clen - pos, &used, &m);
      if (rc < 0 || used > clen - pos || (rc == PGG_FRAME_MORE && used != clen - pos)) {
        bad = 1;
        break;
      }
      size_t at = from + pos;          /* stream offset of the consumed bytes */
      if (rc == PGG_FRAME_MSG) {
        if (got >= s->n) { bad = 2; break; }
        size_t o = s->off[got];
        bool held = f.hold[s->type[got]];
        bool whole = o >= from && o + s->body_len[got] + 5 <= to;
        if (m.type != s->type[got] || m.len != s->body_len[got] + 4 ||
            m.body_len != s->body_len[got]) { bad = 3; break; }
        if (whole) {
          /* Zero copy, held or not: pointers into this very chunk. */
          if (m.raw != chunk + (o - from) || m.buffered ||
              m.body != m.raw + 5 || m.raw_len != s->body_len[got] + 5) { bad = 4; break; }
        } else if (held) {
          if (!m.raw || !m.buffered || m.raw_len != s->body_len[got] + 5 ||
              m.body != m.raw + 5 || memcmp(m.raw, all + o, m.raw_len) != 0) { bad = 5; break; }
        } else if (m.raw || m.body || m.buffered) {
          bad = 6;
          break;
        }
        if (m.raw && (m.buffered || whole)) {
          if (fwd != o) { bad = 7; break; }
          fwd += m.raw_len;
        } else {
          if (fwd != at) { bad = 8; break; }
          fwd += used;
        }
        got++;
        if (!pgg_framer_at_boundary(&f)) { bad = 9; break; }
      } else if (!pgg_framer_holding(&f)) {
        if (fwd != at) { bad = 10; break; }
        fwd += used;
      }
      pos += used;
    } while (pos < clen);
    free(chunk);
  }
  if (!bad && (got != s->n || fwd != total || !pgg_framer_at_boundary(&f)))
    bad = 11;
  pgg_framer_free(&f);
  if (bad)
    fprintf(stderr, "  chunking failed (reason %d) with %zu cuts, first at %zu\n",
            bad, ncuts, ncuts ? cuts[0] : 0);
  return bad;
}

TEST(whole_stream_in_one_chunk_is_all_zero_copy)
{
  stream s;
  build_stream(&s);
  CHECK_INT(check_chunking(&s, NULL, 0), 0);
  pgg_buf_free(&s.bytes);
}

TEST(stream_split_in_two_at_every_byte_boundary)
{
  stream s;
  build_stream(&s);
  int failures = 0;
  for (size_t cut = 0; cut <= s.bytes.len && failures < 5; cut++)
    failures += check_chunking(&s, &cut, 1) != 0;
  CHECK_INT(failures, 0);
  pgg_buf_free(&s.bytes);
}

TEST(stream_fed_one_byte_at_a_time)
{
  stream s;
  build_stream(&s);
  size_t n = s.bytes.len - 1;
  size_t *cuts = malloc(n * sizeof *cuts);
  for (size_t i = 0; i < n; i++)
    cuts[i] = i + 1;
  CHECK_INT(check_chunking(&s, cuts, n), 0);
  free(cuts);
  pgg_buf_free(&s.bytes);
}

TEST(stream_in_random_chunkings)
{
  stream s;
  build_stream(&s);
  uint32_t seed = 12345;
  int failures = 0;
  for (int round = 0; round < 300 && failures < 5; round++) {
    size_t cuts[40], n = 0, at = 0;
    while (n < 40) {
      seed = seed * 1103515245u + 12345u;
      at += 1 + (seed >> 8) % (round % 2 ? 64 : 8000);
      if (at >= s.bytes.len)
        break;
      cuts[n++] = at;
    }
    failures += check_chunking(&s, cuts, n) != 0;
  }
  CHECK_INT(failures, 0);
  pgg_buf_free(&s.bytes);
}

/* ---- Single behaviours -------------------------------------------------- */

static const uint8_t rfq[] = {'Z', 0, 0, 0, 5, 'I'};

TEST(zero_length_chunk_consumes_nothing)
{
  pgg_framer f;
  pgg_framer_init(&f, 1024);
  size_t used = 7;
  pgg_msg m;
  CHECK_INT(pgg_framer_next(&f, rfq, 0, &used, &m), PGG_FRAME_MORE);
  CHECK_INT(used, 0);
  CHECK(pgg_framer_at_boundary(&f));
  CHECK_INT(pgg_framer_next(&f, NULL, 0, &used, &m), PGG_FRAME_MORE);
  pgg_framer_free(&f);
}

TEST(only_the_first_message_of_a_chunk_is_returned_per_call)
{
  uint8_t two[12];
  memcpy(two, rfq, 6);
  memcpy(two + 6, rfq, 6);
  two[11] = 'T';
  pgg_framer f;
  pgg_framer_init(&f, 1024);
  size_t used;
  pgg_msg m;
  REQUIRE(pgg_framer_next(&f, two, sizeof two, &used, &m) == PGG_FRAME_MSG);
  CHECK_INT(used, 6);
  CHECK(m.raw == two);
  REQUIRE(pgg_framer_next(&f, two + 6, 6, &used, &m) == PGG_FRAME_MSG);
  REQUIRE(m.raw == two + 6);
  CHECK_INT(m.body[0], 'T');
  pgg_framer_free(&f);
}

TEST(holding_is_true_from_first_header_byte_of_held_type)
{
  pgg_framer f;
  pgg_framer_init(&f, 1024);
  pgg_framer_hold(&f, 'Z');
  size_t used;
  pgg_msg m;
  for (size_t i = 0; i < 5; i++) {
    REQUIRE(pgg_framer_next(&f, rfq + i, 1, &used, &m) == PGG_FRAME_MORE);
    CHECK_INT(used, 1);
    CHECK(pgg_framer_holding(&f));
    CHECK(!pgg_framer_at_boundary(&f));
  }
  REQUIRE(pgg_framer_next(&f, rfq + 5, 1, &used, &m) == PGG_FRAME_MSG);
  CHECK(!pgg_framer_holding(&f));
  CHECK(m.buffered);
  REQUIRE(m.raw != NULL);
  CHECK(memcmp(m.raw, rfq, sizeof rfq) == 0);
  CHECK_INT(m.body[0], 'I');
  pgg_framer_free(&f);
}

TEST(split_unheld_message_streams_without_copy)
{
  pgg_framer f;
  pgg_framer_init(&f, 1024);
  size_t used;
  pgg_msg m;
  REQUIRE(pgg_framer_next(&f, rfq, 3, &used, &m) == PGG_FRAME_MORE);
  CHECK(!pgg_framer_holding(&f));
  REQUIRE(pgg_framer_next(&f, rfq + 3, 3, &used, &m) == PGG_FRAME_MSG);
  CHECK_INT(m.type, 'Z');
  CHECK_INT(m.len, 5);
  CHECK_INT(m.body_len, 1);
  CHECK(m.raw == NULL && m.body == NULL && !m.buffered);
  CHECK_INT(f.acc.cap, 0);
  pgg_framer_free(&f);
}

static int feed_bytes(pgg_framer *f, const uint8_t *p, size_t n, bool one_by_one)
{
  size_t pos = 0, used;
  pgg_msg m;
  while (pos < n) {
    int rc = pgg_framer_next(f, p + pos, one_by_one ? 1 : n - pos, &used, &m);
    if (rc != PGG_FRAME_MORE)
      return rc;
    pos += used;
  }
  return PGG_FRAME_MORE;
}

TEST(length_below_four_is_a_protocol_error)
{
  for (uint32_t len = 0; len < 4; len++) {
    for (int split = 0; split < 2; split++) {
      uint8_t hdr[8] = {'D', 0, 0, 0, (uint8_t)len, 1, 2, 3};
      pgg_framer f;
      pgg_framer_init(&f, 1024);
      pgg_framer_hold(&f, 'D');
      CHECK_INT(feed_bytes(&f, hdr, sizeof hdr, split), PGG_ERR_PROTO);
      CHECK_INT(f.acc.cap, 0);
      pgg_framer_free(&f);
    }
  }
}

TEST(negative_length_is_a_protocol_error_even_without_limit)
{
  uint8_t hdr[5] = {'D', 0x80, 0, 0, 0};
  pgg_framer f;
  pgg_framer_init(&f, SIZE_MAX);
  CHECK_INT(feed_bytes(&f, hdr, sizeof hdr, false), PGG_ERR_PROTO);
  pgg_framer_free(&f);
  uint8_t minus_one[5] = {'D', 0xff, 0xff, 0xff, 0xff};
  pgg_framer_init(&f, SIZE_MAX);
  CHECK_INT(feed_bytes(&f, minus_one, 5, true), PGG_ERR_PROTO);
  pgg_framer_free(&f);
}

TEST(body_above_max_is_too_big_and_exact_max_passes)
{
  uint8_t msg[1 + 4 + 100];
  memset(msg, 'x', sizeof msg);
  msg[0] = 'E';
  msg[1] = 0; msg[2] = 0; msg[3] = 0; msg[4] = 104;
  for (int split = 0; split < 2; split++) {
    pgg_framer f;
    pgg_framer_init(&f, 99);
    pgg_framer_hold(&f, 'E');
    CHECK_INT(feed_bytes(&f, msg, sizeof msg, split), PGG_ERR_TOO_BIG);
    CHECK_INT(f.acc.cap, 0);
    pgg_framer_free(&f);

    pgg_framer_init(&f, 100);
    pgg_framer_hold(&f, 'E');
    int rc = split ? feed_bytes(&f, msg, sizeof msg, true) : PGG_FRAME_MSG;
    if (!split) {
      size_t used;
      pgg_msg m;
      rc = pgg_framer_next(&f, msg, sizeof msg, &used, &m);
      CHECK_INT(used, sizeof msg);
    }
    CHECK_INT(rc, PGG_FRAME_MSG);
    pgg_framer_free(&f);
  }
}

TEST(lying_gigabyte_length_allocates_only_what_arrived)
{
  uint8_t start[5 + 100] = {'E', 0x40, 0, 0, 4};   /* 1 GiB body announced */
  pgg_framer f;
  pgg_framer_init(&f, PGG_DEFAULT_MAX_MESSAGE);
  pgg_framer_hold(&f, 'E');
  size_t used;
  pgg_msg m;
  CHECK_INT(pgg_framer_next(&f, start, sizeof start, &used, &m), PGG_FRAME_MORE);
  CHECK_INT(used, sizeof start);
  CHECK(pgg_framer_holding(&f));
  CHECK_INT(f.acc.len, sizeof start);
  CHECK(f.acc.cap <= 256);
  pgg_framer_free(&f);
}

TEST(framer_refuses_to_continue_after_an_error)
{
  uint8_t bad[6] = {'Z', 0, 0, 0, 2, 'I'};
  pgg_framer f;
  pgg_framer_init(&f, 1024);
  size_t used;
  pgg_msg m;
  CHECK_INT(pgg_framer_next(&f, bad, sizeof bad, &used, &m), PGG_ERR_PROTO);
  CHECK(pgg_framer_next(&f, rfq, sizeof rfq, &used, &m) < 0);
  CHECK_INT(used, 0);
  CHECK(!pgg_framer_at_boundary(&f));
  pgg_framer_free(&f);
}

TEST(buffer_of_a_large_held_message_is_released_afterwards)
{
  size_t body = 1 << 20;
  uint8_t *msg = calloc(1, body + 5);
  msg[0] = 'Q';
  msg[2] = 0x10; msg[4] = 4;                 /* 0x00100004 = body + 4 */
  pgg_framer f;
  pgg_framer_init(&f, PGG_DEFAULT_MAX_MESSAGE);
  pgg_framer_hold(&f, 'Q');
  size_t used;
  pgg_msg m;
  REQUIRE(pgg_framer_next(&f, msg, 1000, &used, &m) == PGG_FRAME_MORE);
  REQUIRE(pgg_framer_next(&f, msg + 1000, body + 5 - 1000, &used, &m) == PGG_FRAME_MSG);
  CHECK(m.buffered);
  CHECK_INT(m.raw_len, body + 5);
  CHECK(f.acc.cap >= body + 5 && f.acc.cap < 2 * (body + 5));
  CHECK_INT(pgg_framer_next(&f, rfq, sizeof rfq, &used, &m), PGG_FRAME_MSG);
  CHECK(f.acc.cap <= 64 * 1024);
  pgg_framer_free(&f);
  free(msg);
}
