/*
 * messages.c — readers for the few other messages the guard and the proxy
 * look inside: ReadyForQuery, CommandComplete, BackendKeyData,
 * ParameterStatus, Authentication*, Query and Parse.
 */
#include "protocol.h"

/* BackendKeyData's key: 4 bytes in protocol 3.0, up to 256 from 3.2 on. */
#define KEY_MIN 4
#define KEY_MAX 256

/* A reader that should have consumed the whole body. */
static int at_end(const pgg_reader *r)
{
  return pgg_rd_left(r) == 0 ? PGG_OK : PGG_ERR_PROTO;
}

int pgg_parse_ready_for_query(const uint8_t *body, size_t len, char *status)
{
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  uint8_t s;
  if (!pgg_rd_u8(&r, &s))
    return PGG_ERR_TRUNCATED;
  if (s != 'I' && s != 'T' && s != 'E')
    return PGG_ERR_PROTO;
  int err = at_end(&r);
  if (err)
    return err;
  *status = (char)s;
  return PGG_OK;
}

int pgg_parse_command_complete(const uint8_t *body, size_t len, const char **tag)
{
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  const char *t;
  if (!pgg_rd_cstr(&r, &t, NULL))
    return PGG_ERR_TRUNCATED;
  int err = at_end(&r);
  if (err)
    return err;
  *tag = t;
  return PGG_OK;
}

int pgg_parse_backend_key_data(const uint8_t *body, size_t len, uint32_t *pid,
                               const uint8_t **key, size_t *key_len)
{
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  uint32_t p;
  if (!pgg_rd_u32(&r, &p))
    return PGG_ERR_TRUNCATED;
  size_t n = pgg_rd_left(&r);
  if (n < KEY_MIN)
    return PGG_ERR_TRUNCATED;
  if (n > KEY_MAX)
    return PGG_ERR_PROTO;
  *pid = p;
  pgg_rd_bytes(&r, n, key);
  *key_len = n;
  return PGG_OK;
}

int pgg_parse_parameter_status(const uint8_t *body, size_t len,
                               const char **name, const char **value)
{
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  const char *n, *v;
  if (!pgg_rd_cstr(&r, &n, NULL) || !pgg_rd_cstr(&r, &v, NULL))
    return PGG_ERR_TRUNCATED;
  int err = at_end(&r);
  if (err)
    return err;
  *name = n;
  *value = v;
  return PGG_OK;
}

/* AuthenticationSASL: mechanism names, each NUL-terminated, then an empty one. */
static int check_sasl_list(const uint8_t *p, size_t len)
{
  pgg_reader r;
  pgg_reader_init(&r, p, len);
  for (;;) {
    size_t n;
    if (!pgg_rd_cstr(&r, NULL, &n))
      return PGG_ERR_TRUNCATED;
    if (n == 0)
      return at_end(&r);
  }
}

int pgg_parse_authentication(const uint8_t *body, size_t len, uint32_t *code,
                             const uint8_t **data, size_t *data_len)
{
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  uint32_t c;
  if (!pgg_rd_u32(&r, &c))
    return PGG_ERR_TRUNCATED;
  size_t n = pgg_rd_left(&r);
  const uint8_t *d;
  pgg_rd_bytes(&r, n, &d);

  /* The codes whose payload is fixed are checked; the others (GSS, SASL
   * continue/final, anything newer) carry opaque data for the client. */
  switch (c) {
  case 0:  /* Ok */
  case 2:  /* KerberosV5 */
  case 3:  /* CleartextPassword */
  case 7:  /* GSS */
  case 9:  /* SSPI */
    if (n != 0)
      return PGG_ERR_PROTO;
    break;
  case 5:  /* MD5Password: a 4-byte salt */
    if (n < 4)
      return PGG_ERR_TRUNCATED;
    if (n > 4)
      return PGG_ERR_PROTO;
    break;
  case 10: { /* SASL */
    int err = check_sasl_list(d, n);
    if (err)
      return err;
    break;
  }
  default:
    break;
  }
  *code = c;
  *data = d;
  *data_len = n;
  return PGG_OK;
}

int pgg_parse_query(const uint8_t *body, size_t len, const char **sql)
{
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  const char *q;
  if (!pgg_rd_cstr(&r, &q, NULL))
    return PGG_ERR_TRUNCATED;
  int err = at_end(&r);
  if (err)
    return err;
  *sql = q;
  return PGG_OK;
}

int pgg_parse_parse(const uint8_t *body, size_t len, const char **stmt_name,
                    const char **query)
{
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  const char *name, *q;
  uint16_t nparams;
  if (!pgg_rd_cstr(&r, &name, NULL) || !pgg_rd_cstr(&r, &q, NULL) ||
      !pgg_rd_u16(&r, &nparams))
    return PGG_ERR_TRUNCATED;
  /* One int32 type OID per declared parameter, and nothing after them. The
   * count is an int16: the server reads a negative one as "none". */
  size_t noids = nparams > INT16_MAX ? 0 : nparams;
  if (!pgg_rd_bytes(&r, noids * 4, NULL))
    return PGG_ERR_TRUNCATED;
  int err = at_end(&r);
  if (err)
    return err;
  *stmt_name = name;
  *query = q;
  return PGG_OK;
}
