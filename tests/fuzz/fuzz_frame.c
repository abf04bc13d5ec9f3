/*
 * fuzz_frame.c — libFuzzer target: arbitrary bytes through the framer in
 * arbitrary chunkings, checked against what a proxy forwarding them would
 * see, and every whole message through the parser for its type.
 *
 * Input: [4 held types][max-body selector][2 chunking seed bytes] stream...
 */
#include "protocol.h"

#include <stdlib.h>
#include <string.h>

#define EXPECT(c) do { if (!(c)) abort(); } while (0)

static uint32_t be32(const uint8_t *p)
{
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Run the reader for a message's type; the results only need to be sane. */
static void parse_body(uint8_t type, const uint8_t *body, size_t len)
{
  switch (type) {
  case 'E':
  case 'N': {
    pgg_error_fields e;
    if (pgg_parse_error(body, len, &e) == PGG_OK) {
      for (int c = 0; c < 128; c++)
        EXPECT(!e.fields[c] || ((const uint8_t *)e.fields[c] >= body &&
                                (const uint8_t *)e.fields[c] < body + len));
      pgg_buf b;
      pgg_buf_init(&b);
      EXPECT(pgg_build_error_with_hint(&b, body, len, "fuzz") == PGG_OK);
      pgg_error_fields again;
      EXPECT(b.len >= 5 && be32(b.data + 1) == b.len - 1);
      EXPECT(pgg_parse_error(b.data + 5, b.len - 5, &again) == PGG_OK);
      for (int c = 'A'; c <= 'z'; c++) {
        if (c == 'H' && !e.fields[c]) {
          EXPECT(again.fields[c] && strcmp(again.fields[c], "fuzz") == 0);
          continue;
        }
        EXPECT(!e.fields[c] == !again.fields[c]);
        EXPECT(!e.fields[c] || strcmp(e.fields[c], again.fields[c]) == 0);
      }
      pgg_buf_free(&b);
    }
    break;
  }
  case 'Z': {
    char st;
    if (pgg_parse_ready_for_query(body, len, &st) == PGG_OK)
      EXPECT(st == 'I' || st == 'T' || st == 'E');
    break;
  }
  case 'C': {
    const char *tag;
    if (pgg_parse_command_complete(body, len, &tag) == PGG_OK)
      EXPECT(strlen(tag) + 1 == len);
    break;
  }
  case 'K': {
    uint32_t pid;
    const uint8_t *key;
    size_t key_len;
    if (pgg_parse_backend_key_data(body, len, &pid, &key, &key_len) == PGG_OK)
      EXPECT(key_len >= 4 && key_len <= 256 && key + key_len == body + len);
    break;
  }
  case 'S': {
    const char *n, *v;
    pgg_parse_parameter_status(body, len, &n, &v);
    break;
  }
  case 'R': {
    uint32_t code;
    const uint8_t *d;
    size_t n;
    if (pgg_parse_authentication(body, len, &code, &d, &n) == PGG_OK)
      EXPECT(d + n == body + len);
    break;
  }
  case 'Q': {
    const char *sql;
    pgg_parse_query(body, len, &sql);
    break;
  }
  case 'P': {
    const char *name, *q;
    pgg_parse_parse(body, len, &name, &q);
    break;
  }
  default:
    break;
  }
}

/*
 * The reference: the same stream framed the obvious way, all of it at once.
 * Fills off[] with the start of each whole message and returns how many;
 * *err is the error the framer must report after them (0 if none), *tail
 * the bytes of an unfinished message at the end.
 */
static size_t reference(const uint8_t *s, size_t total, size_t max_body,
                        size_t *off, int *err, size_t *tail)
{
  size_t n = 0, at = 0;
  *err = 0;
  while (total - at >= 5) {
    uint32_t len = be32(s + at + 1);
    if (len < 4 || len > INT32_MAX) {
      *err = PGG_ERR_PROTO;
      break;
    }
    if (len - 4 > max_body) {
      *err = PGG_ERR_TOO_BIG;
      break;
    }
    if ((size_t)len + 1 > total - at)
      break;
    off[n++] = at;
    at += (size_t)len + 1;
  }
  *tail = total - at;
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 7)
    return 0;
  pgg_framer f;
  size_t max_body = data[4] == 0xff ? PGG_DEFAULT_MAX_MESSAGE : (size_t)data[4] * 97;
  pgg_framer_init(&f, max_body);
  for (int i = 0; i < 4; i++)
    pgg_framer_hold(&f, data[i]);
  uint32_t seed = ((uint32_t)data[5] << 8) | data[6];
  const uint8_t *stream = data + 7;
  size_t total = size - 7;

  size_t *off = malloc((total / 5 + 1) * sizeof *off);
  int want_err;
  size_t tail;
  size_t nref = reference(stream, total, max_body, off, &want_err, &tail);
  size_t got = 0;

  size_t from = 0, fwd = 0;
  int rc = 0;
  while (from < total && rc >= 0) {
    /* Chunk sizes from a tiny LCG: mostly small, sometimes empty or huge. */
    seed = seed * 1103515245u + 12345u;
    size_t want = (seed >> 16) % 4 == 0 ? (seed >> 4) % 4096 : (seed >> 8) % 9;
    size_t clen = want < total - from ? want : total - from;
    uint8_t *chunk = malloc(clen ? clen : 1);
    memcpy(chunk, stream + from, clen);
    size_t pos = 0;
    do {
      size_t used;
      pgg_msg m;
      rc = pgg_framer_next(&f, chunk + pos, clen - pos, &used, &m);
      if (rc < 0) {
        EXPECT(rc == want_err && got == nref);
        size_t again;
        EXPECT(pgg_framer_next(&f, chunk, clen, &again, &m) < 0 && again == 0);
        break;
      }
      EXPECT(used <= clen - pos);
      EXPECT(rc == PGG_FRAME_MSG || used == clen - pos);
      size_t at = from + pos;
      if (rc == PGG_FRAME_MSG) {
        EXPECT(got < nref && m.type == stream[off[got]] && m.len == be32(stream + off[got] + 1));
        EXPECT(at + used == off[got] + m.len + 1);   /* it ended where it should */
        got++;
        EXPECT(m.len >= 4 && m.body_len == m.len - 4 && m.body_len <= max_body);
        EXPECT(pgg_framer_at_boundary(&f) && !pgg_framer_holding(&f));
        if (m.raw) {
          /* Whole messages: held or not, the bytes are the stream's. */
          EXPECT(m.raw_len == m.body_len + 5 && m.body == m.raw + 5);
          EXPECT(fwd + m.raw_len <= total);
          EXPECT(memcmp(m.raw, stream + fwd, m.raw_len) == 0);
          EXPECT(m.buffered == !(m.raw >= chunk && m.raw + m.raw_len <= chunk + clen));
          EXPECT(m.buffered || m.raw == chunk + pos);
          EXPECT(!m.buffered || f.hold[m.type]);
          fwd += m.raw_len;
          parse_body(m.type, m.body, m.body_len);
        } else {
          EXPECT(!m.body && !m.buffered && !f.hold[m.type] && fwd == at);
          fwd += used;
        }
      } else if (!pgg_framer_holding(&f)) {
        EXPECT(fwd == at);
        fwd += used;
      }
      pos += used;
    } while (pos < clen);
    free(chunk);
    from += clen;
  }
  if (rc >= 0) {
    /* Every whole message came out, no error was missed, and everything not
     * held back was forwarded, in order. */
    EXPECT(got == nref && want_err == 0);
    EXPECT(pgg_framer_at_boundary(&f) == (tail == 0));
    if (!pgg_framer_holding(&f))
      EXPECT(fwd == total);
    else
      EXPECT(fwd == total - tail && f.hold[stream[total - tail]]);
  }
  free(off);
  pgg_framer_free(&f);
  return 0;
}
