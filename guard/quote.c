/*
 * quote.c — SQL identifier and literal quoting for the repair planner, done
 * without a connection so the planner stays pure and testable.
 */
#include "catalog.h"

#include <string.h>

/*
 * Always quoting (unlike PostgreSQL's quote_ident, which leaves plain
 * lower-case names bare) means no keyword list to keep in sync and no name
 * the planner reads from a catalog can ever be taken as SQL.
 */
int pgg_quote_ident(pgg_buf *out, const char *ident)
{
  if (!ident)
    ident = "";
  int err = pgg_buf_append_u8(out, '"');
  for (const char *p = ident; !err && *p; p++) {
    if (*p == '"')
      err = pgg_buf_append_u8(out, '"');
    if (!err)
      err = pgg_buf_append_u8(out, (uint8_t)*p);
  }
  if (!err)
    err = pgg_buf_append_u8(out, '"');
  return err;
}

/*
 * Like PostgreSQL's quote_literal: a string with a backslash gets the E''
 * form with backslashes doubled, so it reads the same whatever
 * standard_conforming_strings says on the session that runs the plan.
 */
int pgg_quote_literal(pgg_buf *out, const char *s)
{
  if (!s)
    s = "";
  int err = PGG_OK;
  if (strchr(s, '\\'))
    err = pgg_buf_append_u8(out, 'E');
  if (!err)
    err = pgg_buf_append_u8(out, '\'');
  for (const char *p = s; !err && *p; p++) {
    if (*p == '\'' || *p == '\\')
      err = pgg_buf_append_u8(out, (uint8_t)*p);
    if (!err)
      err = pgg_buf_append_u8(out, (uint8_t)*p);
  }
  if (!err)
    err = pgg_buf_append_u8(out, '\'');
  return err;
}
