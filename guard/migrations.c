/*
 * migrations.c — choosing and ordering the files of a migrations folder by
 * the conventions of the tool that wrote it (see migrations.h). Applying a
 * down migration, or V10 before V2, would make pgguard's idea of the
 * desired schema wrong, and it would then "repair" towards it.
 */
#include "migrations.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pgg_mig_tool_name(pgg_mig_tool t)
{
  switch (t) {
  case PGG_MIG_PLAIN: return "plain";
  case PGG_MIG_PRISMA: return "prisma";
  case PGG_MIG_FLYWAY: return "flyway";
  case PGG_MIG_GOLANG: return "golang-migrate";
  case PGG_MIG_DBMATE: return "dbmate";
  case PGG_MIG_SQITCH: return "sqitch";
  }
  return "?";
}

int pgg_natural_cmp(const char *a, const char *b)
{
  const char *p = a, *q = b;
  while (*p && *q) {
    if (isdigit((unsigned char)*p) && isdigit((unsigned char)*q)) {
      while (*p == '0' && isdigit((unsigned char)p[1]))
        p++;
      while (*q == '0' && isdigit((unsigned char)q[1]))
        q++;
      size_t np = 0, nq = 0;
      while (isdigit((unsigned char)p[np]))
        np++;
      while (isdigit((unsigned char)q[nq]))
        nq++;
      if (np != nq)
        return np < nq ? -1 : 1;
      int c = memcmp(p, q, np);
      if (c)
        return c < 0 ? -1 : 1;
      p += np;
      q += nq;
      continue;
    }
    if (*p != *q)
      return (unsigned char)*p < (unsigned char)*q ? -1 : 1;
    p++;
    q++;
  }
  if (*p || *q)
    return *p ? 1 : -1;
  int c = strcmp(a, b);   /* "v01" and "v1": equal by value, still two names */
  return c < 0 ? -1 : c > 0;
}

static const char *base_name(const char *rel)
{
  const char *s = strrchr(rel, '/');
  return s ? s + 1 : rel;
}

static bool ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A path with a revert/ or verify/ component (Sqitch's undo and checks). */
static bool in_undo_dir(const char *rel)
{
  static const char *const dirs[] = {"revert", "verify"};
  for (size_t i = 0; i < 2; i++) {
    size_t n = strlen(dirs[i]);
    for (const char *p = rel; (p = strstr(p, dirs[i])) != NULL; p += n)
      if ((p == rel || p[-1] == '/') && p[n] == '/')
        return true;
  }
  return false;
}

/* Flyway: V<version>__<desc>.sql, R__<desc>.sql, U<version>__ (undo). Returns the kind
 * letter, and in *version (for V and U) the start of the version text. */
static char flyway_kind(const char *rel, const char **version, size_t *vlen)
{
  const char *b = base_name(rel);
  const char *sep = strstr(b, "__");
  if (!sep || !ends_with(b, ".sql"))
    return 0;
  if (b[0] == 'R' && sep == b + 1)
    return 'R';
  if ((b[0] == 'V' || b[0] == 'U') && isdigit((unsigned char)b[1])) {
    for (const char *p = b + 1; p < sep; p++)
      if (!isdigit((unsigned char)*p) && *p != '.' && *p != '_')
        return 0;
    *version = b + 1;
    *vlen = (size_t)(sep - b - 1);
    return b[0];
  }
  return 0;
}

/* Flyway versions: dot- or underscore-separated numbers compared part by part. */
static int flyway_version_cmp(const char *a, size_t na, const char *b, size_t nb)
{
  size_t i = 0, j = 0;
  while (i < na || j < nb) {
    unsigned long long x = 0, y = 0;
    bool hx = false, hy = false;
    while (i < na && isdigit((unsigned char)a[i])) {
      x = x * 10 + (unsigned)(a[i++] - '0');
      hx = true;
    }
    while (j < nb && isdigit((unsigned char)b[j])) {
      y = y * 10 + (unsigned)(b[j++] - '0');
      hy = true;
    }
    if (!hx || !hy)
      return hx ? 1 : hy ? -1 : 0;
    if (x != y)
      return x < y ? -1 : 1;
    if (i < na)
      i++;
    if (j < nb)
      j++;
  }
  return 0;
}

typedef struct {
  const char *const *rel;
  pgg_mig_tool tool;
} sort_ctx;

static sort_ctx ctx;   /* qsort has no context argument in C11 */

static int cmp_files(const void *pa, const void *pb)
{
  const char *a = ctx.rel[*(const size_t *)pa], *b = ctx.rel[*(const size_t *)pb];
  if (ctx.tool == PGG_MIG_FLYWAY) {
    const char *va = NULL, *vb = NULL;
    size_t la = 0, lb = 0;
    char ka = flyway_kind(a, &va, &la), kb = flyway_kind(b, &vb, &lb);
    if (ka != kb)
      return ka == 'V' ? -1 : 1;      /* versioned first, then repeatable */
    if (ka == 'V') {
      int c = flyway_version_cmp(va, la, vb, lb);
      if (c)
        return c;
    }
    return pgg_natural_cmp(base_name(a), base_name(b));
  }
  if (ctx.tool == PGG_MIG_GOLANG || ctx.tool == PGG_MIG_DBMATE) {
    int c = pgg_natural_cmp(base_name(a), base_name(b));
    if (c)
      return c;
  }
  return pgg_natural_cmp(a, b);
}

/* The deploy files of the changes a sqitch.plan names, in its order, each once. */
static int sqitch_apply(const char *const *rel, size_t n, const char *plan, size_t *order,
                        size_t *norder, pgg_buf *err)
{
  const char *p = plan;
  *norder = 0;
  while (*p) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    const char *s = p;
    while (s < p + len && (*s == ' ' || *s == '\t'))
      s++;
    size_t nl = 0;
    while (s + nl < p + len && !isspace((unsigned char)s[nl]) && s[nl] != '[')
      nl++;
    /* Pragmas (%), tags (@), comments and blank lines name no change. */
    if (nl && *s != '%' && *s != '@' && *s != '#') {
      char want[512];
      if (nl + sizeof("deploy/.sql") > sizeof want) {
        pgg_buf_printf(err, "sqitch.plan: change name too long");
        return PGG_ERR_SCHEMA;
      }
      snprintf(want, sizeof want, "deploy/%.*s.sql", (int)nl, s);
      size_t found = n;
      for (size_t i = 0; i < n; i++)
        if (strcmp(rel[i], want) == 0)
          found = i;
      if (found == n) {
        pgg_buf_printf(err, "sqitch.plan names change \"%.*s\" but %s does not exist", (int)nl, s,
                       want);
        return PGG_ERR_SCHEMA;
      }
      bool seen = false;   /* a reworked change is deployed once, at its first place */
      for (size_t k = 0; k < *norder; k++)
        seen |= order[k] == found;
      if (!seen)
        order[(*norder)++] = found;
    }
    if (!eol)
      break;
    p = eol + 1;
  }
  return PGG_OK;
}

int pgg_migrations_order(const char *const *rel, size_t n, const bool *has_dbmate_marker,
                         const char *sqitch_plan, pgg_mig_tool *tool, size_t *order,
                         size_t *norder, pgg_buf *err)
{
  bool sqitch = false, flyway = false, golang = false, dbmate = false, prisma = false;
  for (size_t i = 0; i < n; i++) {
    const char *v;
    size_t vl;
    sqitch |= strncmp(rel[i], "deploy/", 7) == 0;
    flyway |= flyway_kind(rel[i], &v, &vl) != 0;
    golang |= ends_with(rel[i], ".up.sql") || ends_with(rel[i], ".down.sql");
    dbmate |= has_dbmate_marker && has_dbmate_marker[i];
    prisma |= strcmp(base_name(rel[i]), "migration.sql") == 0 && strchr(rel[i], '/');
  }
  *tool = sqitch && sqitch_plan ? PGG_MIG_SQITCH : flyway ? PGG_MIG_FLYWAY : golang ? PGG_MIG_GOLANG
          : dbmate ? PGG_MIG_DBMATE : prisma ? PGG_MIG_PRISMA : PGG_MIG_PLAIN;
  if (*tool == PGG_MIG_SQITCH)
    return sqitch_apply(rel, n, sqitch_plan, order, norder, err);

  *norder = 0;
  for (size_t i = 0; i < n; i++) {
    const char *v;
    size_t vl;
    if (ends_with(rel[i], ".down.sql") || in_undo_dir(rel[i]))
      continue;
    switch (*tool) {
    case PGG_MIG_FLYWAY: {
      char k = flyway_kind(rel[i], &v, &vl);
      if (k != 'V' && k != 'R')   /* U: undo; anything else Flyway itself ignores */
        continue;
      break;
    }
    case PGG_MIG_GOLANG:
      if (!ends_with(rel[i], ".up.sql"))
        continue;
      break;
    case PGG_MIG_DBMATE:
      if (!has_dbmate_marker[i])
        continue;
      break;
    default:
      break;
    }
    order[(*norder)++] = i;
  }
  ctx.rel = rel;
  ctx.tool = *tool;
  qsort(order, *norder, sizeof *order, cmp_files);
  return PGG_OK;
}

/* The marker at the start of a line, after blanks: "-- migrate:up" or "-- migrate:down". */
static int dbmate_marker(const char *line, size_t len)
{
  size_t i = 0;
  while (i < len && (line[i] == ' ' || line[i] == '\t'))
    i++;
  static const char up[] = "-- migrate:up", down[] = "-- migrate:down";
  if (len - i >= sizeof up - 1 && memcmp(line + i, up, sizeof up - 1) == 0)
    return 1;
  if (len - i >= sizeof down - 1 && memcmp(line + i, down, sizeof down - 1) == 0)
    return -1;
  return 0;
}

bool pgg_dbmate_has_up(const char *text, size_t len)
{
  size_t i = 0;
  while (i < len) {
    const char *eol = memchr(text + i, '\n', len - i);
    size_t l = eol ? (size_t)(eol - (text + i)) : len - i;
    if (dbmate_marker(text + i, l) == 1)
      return true;
    i += l + 1;
  }
  return false;
}

void pgg_dbmate_keep_up(char *text, size_t len)
{
  bool up = false;
  size_t i = 0;
  while (i < len) {
    char *eol = memchr(text + i, '\n', len - i);
    size_t l = eol ? (size_t)(eol - (text + i)) : len - i;
    int m = dbmate_marker(text + i, l);
    if (m)
      up = m > 0;
    else if (!up)
      memset(text + i, ' ', l);
    i += l + 1;
  }
}
