/*
 * pgg.h — what every pgguard module shares: the one error enum, its names,
 * and a growable byte buffer.
 */
#ifndef PGG_H
#define PGG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define PGG_VERSION "0.1.0"

/*
 * Every fallible pgguard function returns 0 or one of these (negative), the
 * way libuv does. pgg_strerror() is the only place they are named.
 */
typedef enum {
  PGG_OK = 0,
  PGG_ERR_PROTO = -1,      /* bytes that break the wire protocol */
  PGG_ERR_TOO_BIG = -2,    /* a length field beyond the configured maximum */
  PGG_ERR_NOMEM = -3,      /* an allocation failed */
  PGG_ERR_TRUNCATED = -4,  /* a reader ran out of bytes before the field ended */
  PGG_ERR_CONFIG = -5,     /* a bad flag, value or config file */
  PGG_ERR_IO = -6,         /* a socket, file or event-loop call failed */
  PGG_ERR_UPSTREAM = -7,   /* PostgreSQL could not be reached or refused us */
  PGG_ERR_SCHEMA = -8,     /* the desired schema did not load */
  PGG_ERR_DB = -9,         /* a catalog or repair statement failed */
  PGG_ERR_BUSY = -10,      /* the operation is already running or cooling down */
} pgg_err;

const char *pgg_strerror(int err);

/* A growable byte buffer. All appends return PGG_OK or PGG_ERR_NOMEM. */
typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
} pgg_buf;

void pgg_buf_init(pgg_buf *b);
void pgg_buf_free(pgg_buf *b);
void pgg_buf_reset(pgg_buf *b);              /* len = 0, keeps the memory */
int pgg_buf_reserve(pgg_buf *b, size_t extra);
int pgg_buf_append(pgg_buf *b, const void *p, size_t n);
int pgg_buf_append_u8(pgg_buf *b, uint8_t v);
int pgg_buf_append_u32be(pgg_buf *b, uint32_t v);
int pgg_buf_append_cstr(pgg_buf *b, const char *s);  /* includes the NUL */
int pgg_buf_printf(pgg_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));            /* no NUL kept in len */
void pgg_buf_consume(pgg_buf *b, size_t n);          /* drop n bytes from the front */

#endif
