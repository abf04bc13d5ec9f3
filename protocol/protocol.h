/*
 * protocol.h — the PostgreSQL v3 wire protocol, pure and I/O-free: bytes in,
 * messages out, and the few messages pgguard itself must send.
 */
#ifndef PGG_PROTOCOL_H
#define PGG_PROTOCOL_H

#include "pgg.h"

/* PostgreSQL's own limit for one message (src/include/libpq/pqcomm.h). */
#define PGG_DEFAULT_MAX_MESSAGE ((size_t)1 << 30)
/* PostgreSQL refuses startup packets whose body after the length word is larger than
 * MAX_STARTUP_PACKET_LENGTH (10000): 10004 bytes in all. */
#define PGG_MAX_STARTUP_PACKET 10004

/* ---- Bounds-checked reader (protocol/reader.c) ------------------------- */

/*
 * Every field of a message is read through this; each call returns false
 * when the bytes run out, and never reads past len.
 */
typedef struct {
  const uint8_t *p;
  size_t len;
  size_t pos;
} pgg_reader;

void pgg_reader_init(pgg_reader *r, const uint8_t *p, size_t len);
bool pgg_rd_u8(pgg_reader *r, uint8_t *v);
bool pgg_rd_u16(pgg_reader *r, uint16_t *v);               /* big-endian */
bool pgg_rd_u32(pgg_reader *r, uint32_t *v);               /* big-endian */
bool pgg_rd_bytes(pgg_reader *r, size_t n, const uint8_t **v);
bool pgg_rd_cstr(pgg_reader *r, const char **s, size_t *n); /* NUL-terminated inside len */
size_t pgg_rd_left(const pgg_reader *r);

/* ---- Incremental framer (protocol/frame.c) ------------------------------ */

/*
 * One typed message: type byte, int32 length (counting itself), body.
 * raw is set only for "held" types (see pgg_framer_hold) or when the whole
 * message arrived inside one chunk; it then covers type byte through the end
 * of the body, and points into the chunk (zero copy) or, when the message
 * was split across chunks, into the framer's own buffer (buffered = true).
 */
typedef struct {
  uint8_t type;
  uint32_t len;          /* the length field: body_len + 4 */
  const uint8_t *raw;    /* NULL unless held whole, see above */
  size_t raw_len;        /* body_len + 5 when raw != NULL */
  const uint8_t *body;   /* raw + 5 when raw != NULL */
  size_t body_len;
  bool buffered;
} pgg_msg;

typedef struct {
  size_t max_body;       /* the largest body accepted; longer is PGG_ERR_TOO_BIG */
  bool hold[256];        /* types whose bytes are buffered whole when split */
  /* private */
  uint8_t hdr[5];
  size_t hdr_have;
  size_t body_left;      /* body bytes still to come of the current message */
  bool holding;          /* the current message is being buffered */
  pgg_buf acc;           /* the buffered message, header included */
} pgg_framer;

enum {
  PGG_FRAME_MORE = 0,    /* every byte given was consumed; no message ended */
  PGG_FRAME_MSG = 1,     /* a message ended; it is in *msg */
};

void pgg_framer_init(pgg_framer *f, size_t max_body);
void pgg_framer_free(pgg_framer *f);
void pgg_framer_hold(pgg_framer *f, uint8_t type);   /* set hold[type] */
/*
 * Consume bytes from chunk[0..len) until one message ends (PGG_FRAME_MSG) or
 * the chunk is exhausted (PGG_FRAME_MORE). *used says how many were taken.
 * A length field < 4 is PGG_ERR_PROTO; a body above max_body is
 * PGG_ERR_TOO_BIG; after an error the framer must not be fed again.
 * The message in *msg stays valid until the next call.
 */
int pgg_framer_next(pgg_framer *f, const uint8_t *chunk, size_t len,
                    size_t *used, pgg_msg *msg);
/*
 * True while the bytes of the current, unfinished message are being copied
 * into the framer (its type is held): the caller must not forward them from
 * the chunk, they will come back whole in msg->raw.
 */
bool pgg_framer_holding(const pgg_framer *f);
/* True when the framer is exactly between two messages. */
bool pgg_framer_at_boundary(const pgg_framer *f);

/* ---- Startup phase (protocol/startup.c) -------------------------------- */

#define PGG_SSL_REQUEST_CODE     80877103u  /* 1234 5679 */
#define PGG_GSSENC_REQUEST_CODE  80877104u  /* 1234 5680 */
#define PGG_CANCEL_REQUEST_CODE  80877102u  /* 1234 5678 */

typedef enum {
  PGG_STARTUP_MESSAGE,
  PGG_STARTUP_SSL,
  PGG_STARTUP_GSSENC,
  PGG_STARTUP_CANCEL,
} pgg_startup_kind;

typedef struct {
  pgg_startup_kind kind;
  uint16_t major, minor;        /* PGG_STARTUP_MESSAGE: protocol version */
  const uint8_t *params;        /* PGG_STARTUP_MESSAGE: name\0value\0...\0 */
  size_t params_len;
  uint32_t cancel_pid;          /* PGG_STARTUP_CANCEL */
  const uint8_t *cancel_key;    /* PGG_STARTUP_CANCEL: 4 bytes in 3.0, longer in 3.2 */
  size_t cancel_key_len;
} pgg_startup;

/*
 * How long the startup packet that begins buf is. PGG_FRAME_MORE while
 * fewer than 4 bytes are there; PGG_ERR_TOO_BIG above
 * PGG_MAX_STARTUP_PACKET; PGG_ERR_PROTO below 8.
 */
int pgg_startup_length(const uint8_t *buf, size_t have, uint32_t *len);
/* Parse one whole startup packet (len bytes, length word included). */
int pgg_startup_parse(const uint8_t *pkt, size_t len, pgg_startup *out);
/*
 * Iterate StartupMessage parameters: *pos starts at 0; returns true and sets
 * name/value while there is one more.
 */
bool pgg_startup_param_next(const pgg_startup *s, size_t *pos,
                            const char **name, const char **value);
/* The value of one parameter ("user", "database"), or NULL. */
const char *pgg_startup_param(const pgg_startup *s, const char *name);

/* ---- ErrorResponse / NoticeResponse (protocol/error.c) ------------------ */

/*
 * Every field optional: fields[c] points at the NUL-terminated value of field
 * code c inside the message body, or is NULL. Codes outside 'A'..'z' are
 * ignored, as the protocol tells frontends to.
 */
typedef struct {
  const char *fields[128];
} pgg_error_fields;

int pgg_parse_error(const uint8_t *body, size_t len, pgg_error_fields *out);
static inline const char *pgg_error_field(const pgg_error_fields *e, char code)
{
  /* Where char is unsigned, a code of 128 or more must not index past the array. */
  return ((unsigned char)code > 0 && (unsigned char)code < 128) ? e->fields[(unsigned char)code] : NULL;
}
#define pgg_error_sqlstate(e) pgg_error_field((e), 'C')
#define pgg_error_severity(e) pgg_error_field((e), 'S')
#define pgg_error_message(e)  pgg_error_field((e), 'M')

/* ---- Other readers (protocol/messages.c) ------------------------------- */

int pgg_parse_ready_for_query(const uint8_t *body, size_t len, char *status);
int pgg_parse_command_complete(const uint8_t *body, size_t len, const char **tag);
int pgg_parse_backend_key_data(const uint8_t *body, size_t len, uint32_t *pid,
                               const uint8_t **key, size_t *key_len);
int pgg_parse_parameter_status(const uint8_t *body, size_t len,
                               const char **name, const char **value);
/* Authentication*: code (0 ok, 3 cleartext, 5 md5, 10 SASL, 11/12 SASL continue/final). */
int pgg_parse_authentication(const uint8_t *body, size_t len, uint32_t *code,
                             const uint8_t **data, size_t *data_len);
int pgg_parse_query(const uint8_t *body, size_t len, const char **sql);
int pgg_parse_parse(const uint8_t *body, size_t len, const char **stmt_name,
                    const char **query);

/* ---- Builders (protocol/build.c) --------------------------------------- */

/* ErrorResponse 'E' with S, V, C, M and, when not NULL, D and H. */
int pgg_build_error(pgg_buf *out, const char *severity, const char *sqlstate,
                    const char *message, const char *detail, const char *hint);
/*
 * Copy an ErrorResponse whose body is given, every field in its original
 * order, adding an H (hint) field only when it has none.
 */
int pgg_build_error_with_hint(pgg_buf *out, const uint8_t *body, size_t len,
                              const char *hint);
int pgg_build_query(pgg_buf *out, const char *sql);
int pgg_build_ready_for_query(pgg_buf *out, char status);
int pgg_build_terminate(pgg_buf *out);

#endif
