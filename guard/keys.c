/*
 * keys.c — the names and shapes behind pgguard's concurrent builds: the
 * name an index is built under (pgguard's own, so a failed build is
 * provably its own), and the primary key and unique constraint
 * definitions that can be built as an index first and attached with
 * ADD CONSTRAINT ... USING INDEX. Pure.
 */
#include "catalog.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static bool starts(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

void pgg_build_name(const char *schema, const char *table, const char *name, const char *def,
                    char out[PGG_BUILD_NAME_LEN])
{
  /* FNV-1a over the names and the definition, each with its terminator:
   * a build left from another definition has another name, so it is never
   * finished in place of this one. */
  uint64_t h = 0xcbf29ce484222325ULL;
  const char *parts[4] = {schema, table, name, def};
  for (int i = 0; i < 4; i++) {
    const unsigned char *p = (const unsigned char *)(parts[i] ? parts[i] : "");
    do {
      h ^= *p;
      h *= 0x100000001b3ULL;
    } while (*p++);
  }
  snprintf(out, PGG_BUILD_NAME_LEN, PGG_BUILD_PREFIX "%016llx", (unsigned long long)h);
}

/* p at '(': the end of its bracketed list (after ')'), quotes honoured; NULL if unbalanced. */
static const char *list_end(const char *p)
{
  if (*p != '(')
    return NULL;
  int depth = 0;
  for (; *p; p++) {
    if (*p == '"') {
      for (p++; *p && !(*p == '"' && p[1] != '"'); p += (*p == '"') ? 2 : 1)
        ;
      if (!*p)
        return NULL;
    } else if (*p == '(') {
      depth++;
    } else if (*p == ')' && --depth == 0) {
      return p + 1;
    }
  }
  return NULL;
}

bool pgg_key_def_parse(const char *def, pgg_key_def *out)
{
  memset(out, 0, sizeof *out);
  const char *p = def;
  if (starts(p, "PRIMARY KEY ")) {
    out->primary = true;
    p += strlen("PRIMARY KEY ");
  } else if (starts(p, "UNIQUE ")) {
    p += strlen("UNIQUE ");
    if (starts(p, "NULLS NOT DISTINCT ")) {
      out->nulls_not_distinct = true;
      p += strlen("NULLS NOT DISTINCT ");
    }
  } else {
    return false;
  }
  const char *e = list_end(p);
  if (!e)
    return false;
  out->cols = p;
  out->cols_len = (size_t)(e - p);
  p = e;
  if (starts(p, " INCLUDE ")) {
    p += strlen(" INCLUDE ");
    if (!(e = list_end(p)))
      return false;
    out->include = p;
    out->include_len = (size_t)(e - p);
    p = e;
  }
  /* Only the deferral may follow: a WITH (...) or a tablespace has no
   * USING INDEX form that keeps it. */
  if (*p && strcmp(p, " DEFERRABLE") != 0 && strcmp(p, " DEFERRABLE INITIALLY DEFERRED") != 0)
    return false;
  out->deferral = p;
  return true;
}

bool pgg_key_columns(const char *cols, size_t len, bool (*fn)(const char *name, void *arg),
                     void *arg)
{
  if (len < 2 || cols[0] != '(' || cols[len - 1] != ')')
    return false;
  const char *p = cols + 1, *end = cols + len - 1;
  char name[256];
  while (p < end) {
    size_t n = 0;
    if (*p == '"') {
      for (p++; p < end && !(*p == '"' && p[1] != '"'); p += (*p == '"') ? 2 : 1)
        if (n + 1 < sizeof name)
          name[n++] = *p;
      if (p >= end)
        return false;
      p++;
    } else {
      while (p < end && *p != ',')
        if (n + 1 < sizeof name)
          name[n++] = *p++;
        else
          p++;
    }
    name[n] = 0;
    if (!n || (p < end && !starts(p, ", ")))
      return false;
    if (p < end)
      p += 2;
    if (!fn(name, arg))
      return true;
  }
  return true;
}
