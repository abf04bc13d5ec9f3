/*
 * redact.c — connection-string passwords kept out of logs and outputs: which
 * strings may be a password, masking them in any text, printing a URL with
 * its password as ****, and refusing a URL whose password libpq would read
 * differently from the person who wrote it.
 */
#include "redact.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

void pgg_secrets_init(pgg_secrets *s)
{
  memset(s, 0, sizeof *s);
}

void pgg_secrets_free(pgg_secrets *s)
{
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i]);
  s->n = 0;
}

static int add_n(pgg_secrets *s, const char *v, size_t len)
{
  if (len == 0)
    return PGG_OK;
  for (size_t i = 0; i < s->n; i++)
    if (strlen(s->v[i]) == len && memcmp(s->v[i], v, len) == 0)
      return PGG_OK;
  /* Past the capacity the set stops growing; the first candidates (the
   * parsed password, the whole userinfo password) are the ones that matter. */
  if (s->n == PGG_SECRETS_MAX)
    return PGG_OK;
  char *c = strndup(v, len);
  if (!c)
    return PGG_ERR_NOMEM;
  s->v[s->n++] = c;
  return PGG_OK;
}

int pgg_secrets_add(pgg_secrets *s, const char *secret)
{
  return secret ? add_n(s, secret, strlen(secret)) : PGG_OK;
}

static int hexval(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = (char)tolower((unsigned char)c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Add v (len bytes) raw and percent-decoded (valid %XX only). */
static int add_uri_part(pgg_secrets *s, const char *v, size_t len)
{
  int rc = add_n(s, v, len);
  if (rc || !memchr(v, '%', len))
    return rc;
  char *d = malloc(len + 1);
  if (!d)
    return PGG_ERR_NOMEM;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    int hi, lo;
    if (v[i] == '%' && i + 2 < len && (hi = hexval(v[i + 1])) >= 0 &&
        (lo = hexval(v[i + 2])) >= 0) {
      d[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      d[o++] = v[i];
    }
  }
  rc = add_n(s, d, o);
  free(d);
  return rc;
}

static bool is_uri(const char *ci, const char **rest)
{
  static const char *const schemes[] = {"postgresql://", "postgres://"};
  for (int i = 0; i < 2; i++) {
    size_t n = strlen(schemes[i]);
    if (strncmp(ci, schemes[i], n) == 0) {
      *rest = ci + n;
      return true;
    }
  }
  return false;
}

/* The URI's userinfo candidates: after the first ':' up to each '@' before
 * the query, the user part holding no '/'. */
static int add_userinfo(pgg_secrets *s, const char *rest)
{
  size_t end = strcspn(rest, "?#");
  size_t colon = strcspn(rest, ":/");
  if (colon >= end || rest[colon] != ':')
    return PGG_OK;
  int rc = PGG_OK;
  size_t ats = 0, last_at = 0;
  for (size_t p = colon + 1; !rc && p < end; p++) {
    if (rest[p] != '@')
      continue;
    ats++;
    last_at = p;
    rc = add_uri_part(s, rest + colon + 1, p - colon - 1);
  }
  /* More than one '@': libpq reads the password up to the first one and
   * the rest as the host, so each piece may show up on its own. */
  if (!rc && ats > 1) {
    size_t from = colon + 1;
    for (size_t p = from; !rc && p <= last_at; p++) {
      if (rest[p] == '@') {
        rc = add_uri_part(s, rest + from, p - from);
        from = p + 1;
      }
    }
  }
  return rc;
}

/* Every password=VALUE (keyword form, or a URI query parameter). */
static int add_keyword_values(pgg_secrets *s, const char *ci, bool uri)
{
  static const char kw[] = "password";
  int rc = PGG_OK;
  for (const char *p = ci; !rc && (p = strstr(p, kw)) != NULL; p += sizeof kw - 1) {
    char before = p == ci ? ' ' : p[-1];
    if (!(isspace((unsigned char)before) || (uri && (before == '?' || before == '&'))))
      continue;
    const char *q = p + sizeof kw - 1;
    while (!uri && isspace((unsigned char)*q))
      q++;
    if (*q != '=')
      continue;
    q++;
    while (!uri && isspace((unsigned char)*q))
      q++;
    if (uri) {
      size_t len = strcspn(q, "&#");
      rc = add_uri_part(s, q, len);
    } else if (*q == '\'') {
      /* libpq's quoting: \' and \\ escape, the value ends at the next
       * unescaped quote (or, malformed, at the end of the string). */
      q++;
      size_t len = 0;
      while (q[len] && q[len] != '\'') {
        if (q[len] == '\\' && q[len + 1])
          len++;
        len++;
      }
      rc = add_n(s, q, len);
      char *d = malloc(len + 1);
      if (!d)
        return PGG_ERR_NOMEM;
      size_t o = 0;
      for (size_t i = 0; i < len; i++) {
        if (q[i] == '\\' && i + 1 < len)
          i++;
        d[o++] = q[i];
      }
      if (!rc)
        rc = add_n(s, d, o);
      free(d);
    } else {
      size_t len = 0;
      while (q[len] && !isspace((unsigned char)q[len]))
        len++;
      rc = add_n(s, q, len);
    }
  }
  return rc;
}

int pgg_secrets_add_conninfo(pgg_secrets *s, const char *ci)
{
  if (!ci || !*ci)
    return PGG_OK;
  int rc = PGG_OK;
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(ci, &perr);
  PQfreemem(perr);
  for (PQconninfoOption *o = opts; opts && !rc && o->keyword; o++)
    if (strcmp(o->keyword, "password") == 0 && o->val)
      rc = add_n(s, o->val, strlen(o->val));
  if (opts)
    PQconninfoFree(opts);
  const char *rest;
  bool uri = is_uri(ci, &rest);
  if (!rc && uri)
    rc = add_userinfo(s, rest);
  if (!rc)
    rc = add_keyword_values(s, uri ? rest : ci, uri);
  return rc;
}

/* ---- masking ---------------------------------------------------------------- */

/* The secret of s that starts at p, longest first; its length or 0. */
static size_t match_at(const pgg_secrets *s, const char *p)
{
  size_t best = 0;
  for (size_t i = 0; s && i < s->n; i++) {
    size_t n = strlen(s->v[i]);
    if (n > best && strncmp(p, s->v[i], n) == 0)
      best = n;
  }
  return best;
}

size_t pgg_redact(const pgg_secrets *s, const char *in, char *out, size_t outsz)
{
  if (outsz == 0)
    return 0;
  size_t o = 0;
  static const char mask[] = PGG_REDACT_MASK;
  for (const char *p = in ? in : ""; *p;) {
    size_t m = match_at(s, p);
    if (m) {
      for (size_t k = 0; k < sizeof mask - 1 && o + 1 < outsz; k++)
        out[o++] = mask[k];
      p += m;
    } else {
      if (o + 1 < outsz)
        out[o++] = *p;
      p++;
    }
    if (o + 1 >= outsz)
      break;
  }
  out[o] = 0;
  return o;
}

int pgg_redact_buf(const pgg_secrets *s, const char *in, pgg_buf *out)
{
  int rc = PGG_OK;
  for (const char *p = in ? in : ""; *p && !rc;) {
    size_t m = match_at(s, p);
    if (m) {
      rc = pgg_buf_append(out, PGG_REDACT_MASK, sizeof PGG_REDACT_MASK - 1);
      p += m;
    } else {
      rc = pgg_buf_append_u8(out, (uint8_t)*p);
      p++;
    }
  }
  if (!rc)
    rc = pgg_buf_append_u8(out, 0);
  if (!rc)
    out->len--;  /* the NUL ends the string but is not part of it */
  return rc;
}

/* ---- printing a connection string --------------------------------------------- */

static int put(pgg_buf *b, const char *p, size_t n)
{
  return n ? pgg_buf_append(b, p, n) : PGG_OK;
}

/* key=value text with every password value as ****. */
static int mask_keywords(const char *ci, bool uri, pgg_buf *b)
{
  static const char kw[] = "password";
  const char *from = ci;
  int rc = PGG_OK;
  for (const char *p = ci; !rc && (p = strstr(p, kw)) != NULL;) {
    char before = p == ci ? ' ' : p[-1];
    const char *q = p + sizeof kw - 1;
    if (!(isspace((unsigned char)before) || (uri && (before == '?' || before == '&')))) {
      p = q;
      continue;
    }
    while (!uri && isspace((unsigned char)*q))
      q++;
    if (*q != '=') {
      p = q;
      continue;
    }
    q++;
    while (!uri && isspace((unsigned char)*q))
      q++;
    rc = put(b, from, (size_t)(q - from));
    if (!rc)
      rc = put(b, PGG_REDACT_MASK, sizeof PGG_REDACT_MASK - 1);
    if (uri) {
      q += strcspn(q, "&#");
    } else if (*q == '\'') {
      q++;
      while (*q && *q != '\'') {
        if (*q == '\\' && q[1])
          q++;
        q++;
      }
      if (*q == '\'')
        q++;
    } else {
      while (*q && !isspace((unsigned char)*q))
        q++;
    }
    from = p = q;
  }
  if (!rc)
    rc = put(b, from, strlen(from));
  return rc;
}

int pgg_redact_conninfo(const char *ci, pgg_buf *out)
{
  pgg_buf b;
  pgg_buf_init(&b);
  const char *rest;
  int rc = PGG_OK;
  if (!ci)
    ci = "";
  if (is_uri(ci, &rest)) {
    rc = put(&b, ci, (size_t)(rest - ci));
    size_t end = strcspn(rest, "?#");
    const char *at = NULL;
    for (size_t i = 0; i < end; i++)
      if (rest[i] == '@')
        at = rest + i;
    if (at) {
      size_t colon = strcspn(rest, ":");
      if (!rc && rest + colon < at) {
        rc = put(&b, rest, colon + 1);
        if (!rc)
          rc = put(&b, PGG_REDACT_MASK, sizeof PGG_REDACT_MASK - 1);
      } else if (!rc) {
        rc = put(&b, rest, (size_t)(at - rest));
      }
      rest = at;
    }
    if (!rc)
      rc = mask_keywords(rest, true, &b);
  } else {
    rc = mask_keywords(ci, false, &b);
  }
  if (!rc)
    rc = pgg_buf_append_u8(&b, 0);
  /* Whatever the forms above missed, the candidates still catch. */
  pgg_secrets s;
  pgg_secrets_init(&s);
  if (!rc)
    rc = pgg_secrets_add_conninfo(&s, ci);
  if (!rc)
    rc = pgg_redact_buf(&s, (const char *)b.data, out);
  pgg_secrets_free(&s);
  pgg_buf_free(&b);
  return rc;
}

int pgg_conninfo_check(const char *ci, pgg_buf *err)
{
  pgg_secrets s;
  pgg_secrets_init(&s);
  int rc = pgg_secrets_add_conninfo(&s, ci);
  if (rc) {
    pgg_buf_printf(err, "out of memory");
    return rc;
  }
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(ci ? ci : "", &perr);
  if (!opts) {
    /* libpq's message may quote a piece of the string: masked. */
    char msg[512] = "";
    if (perr) {
      size_t n = strlen(perr);
      while (n && (perr[n - 1] == '\n' || perr[n - 1] == ' '))
        perr[--n] = 0;
      pgg_redact(&s, perr, msg, sizeof msg);
    }
    pgg_buf_printf(err, "not a valid libpq connection URI or conninfo string%s%s%s",
                   *msg ? " (" : "", msg, *msg ? ")" : "");
    PQfreemem(perr);
    pgg_secrets_free(&s);
    return PGG_ERR_CONFIG;
  }
  PQconninfoFree(opts);
  pgg_secrets_free(&s);
  const char *rest;
  if (is_uri(ci, &rest)) {
    size_t end = strcspn(rest, "?#");
    const char *at = NULL;
    int ats = 0;
    for (size_t i = 0; i < end; i++)
      if (rest[i] == '@') {
        at = rest + i;
        ats++;
      }
    /* libpq ends the userinfo at the first '@' or '/': a password holding
     * either would be sent cut short, and its tail taken for the host. */
    if (at && (ats > 1 || memchr(rest, '/', (size_t)(at - rest)))) {
      pgg_buf_printf(err, "ambiguous user name or password in the URI: percent-encode "
                     "'@' as %%40 and '/' as %%2F in them");
      return PGG_ERR_CONFIG;
    }
  }
  return PGG_OK;
}

/* ---- the process's secrets ------------------------------------------------------ */

static pgg_secrets global;

int pgg_secrets_register_conninfo(const char *ci)
{
  pgg_secrets s;
  pgg_secrets_init(&s);
  int rc = pgg_secrets_add_conninfo(&s, ci);
  for (size_t i = 0; !rc && i < s.n; i++)
    rc = add_n(&global, s.v[i], strlen(s.v[i]));
  pgg_secrets_free(&s);
  return rc;
}

const pgg_secrets *pgg_secrets_global(void)
{
  return &global;
}
