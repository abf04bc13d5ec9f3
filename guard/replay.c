/*
 * replay.c — decides whether a failed request cycle may be replayed after a
 * repair. A write executed twice is the one bug pgguard must never have, so
 * every condition here is a proof obligation from DESIGN.md, not a heuristic.
 */
#include "replay.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

bool pgg_guarded_sqlstate(const char *sqlstate, bool missing_labels)
{
  static const char *const guarded[] = {"42P01", "42703", "42704", "42883", "3F000"};
  if (!sqlstate)
    return false;
  for (size_t i = 0; i < sizeof(guarded) / sizeof(guarded[0]); i++)
    if (strcmp(sqlstate, guarded[i]) == 0)
      return true;
  /* A missing enum label looks like bad user input; only trust it while the
   * drift says a label is actually missing. */
  return missing_labels && strcmp(sqlstate, "22P02") == 0;
}

/* Skip white space, comments (nested block comments too), '(' and ';'. */
static const char *skip_noise(const char *p)
{
  for (;;) {
    while (*p && (isspace((unsigned char)*p) || *p == '(' || *p == ';'))
      p++;
    if (p[0] == '-' && p[1] == '-') {
      while (*p && *p != '\n')
        p++;
      continue;
    }
    if (p[0] == '/' && p[1] == '*') {
      int depth = 0;
      do {
        if (p[0] == '/' && p[1] == '*') {
          depth++;
          p += 2;
        } else if (p[0] == '*' && p[1] == '/') {
          depth--;
          p += 2;
        } else if (*p) {
          p++;
        } else {
          return p;   /* unterminated: PostgreSQL would have refused it */
        }
      } while (depth > 0);
      continue;
    }
    return p;
  }
}

bool pgg_replay_stmt_ok(const char *sql)
{
  static const char *const ok[] = {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE",
                                   "WITH", "VALUES", "TABLE"};
  if (!sql)
    return false;
  const char *p = skip_noise(sql);
  size_t n = 0;
  while (isalpha((unsigned char)p[n]) || p[n] == '_')
    n++;
  /* The keyword must end there: "SELECTX" or "select$1" is not SELECT. */
  if (!n || isalnum((unsigned char)p[n]) || p[n] == '$' || (unsigned char)p[n] >= 0x80)
    return false;
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    if (strlen(ok[i]) == n && strncasecmp(p, ok[i], n) == 0)
      return true;
  return false;
}

pgg_guard_decision pgg_replay_decide(const pgg_replay_input *in, const char **why)
{
  const pgg_cycle *cy = in->cycle;

  *why = NULL;
  if (!pgg_guarded_sqlstate(in->sqlstate, in->missing_labels))
    return PGG_GUARD_PASS;
  if (!cy) {
    *why = "no request in flight";
    return PGG_GUARD_PASS;
  }
  /* "Once": the replay itself failed again; the repair did not help. */
  if (cy->flags & PGG_CYCLE_REPLAY) {
    *why = "already replayed";
    return PGG_GUARD_PASS;
  }
  if (cy->flags & PGG_CYCLE_SWALLOW) {
    *why = "injected by pgguard";
    return PGG_GUARD_PASS;
  }
  /* Rule 1: something of this cycle already reached the client, so it ran
   * at least in part (e.g. an INSERT before the failing statement). */
  if (cy->responses > 0) {
    *why = "part of the request already ran";
    return PGG_GUARD_REPAIR_ONLY;
  }
  /* Rule 0: only an error of parse analysis proves that nothing ran. A
   * function, DO block, trigger or dynamic SQL (W, q) may have called
   * nextval() or taken a lock before failing; a runtime cast has no P. */
  if (in->has_context || !in->has_position) {
    *why = "raised while executing, not by parse analysis";
    return PGG_GUARD_REPAIR_ONLY;
  }
  if (!in->stmt_ok) {
    *why = "not a query or DML statement";
    return PGG_GUARD_REPAIR_ONLY;
  }
  /* Rule 2: a later pipelined cycle has reached the server and will run
   * (and may commit) on its own. */
  if (in->in_flight != 1) {
    *why = "later pipelined requests in flight";
    return PGG_GUARD_REPAIR_ONLY;
  }
  /* Holding the error of a cycle the client has not finished sending (no
   * Sync yet, or a Flush it waits on) would stall the client. */
  if (!cy->closed || cy->flushed) {
    *why = "request not closed by Sync";
    return PGG_GUARD_REPAIR_ONLY;
  }
  if (cy->copy) {
    *why = "COPY";
    return PGG_GUARD_REPAIR_ONLY;
  }
  if (!in->recorded) {
    *why = "request not recorded whole";
    return PGG_GUARD_REPAIR_ONLY;
  }
  /* Rule 3: an implicit transaction rolled everything back; in a block,
   * only data-free set-up ran before, and it can be re-sent. */
  if (in->tx_status == 'I')
    return PGG_GUARD_REPLAY;
  /* In a block the hold ends in a re-send whatever the check finds; a
   * translated message gives no proof the schema is involved at all. */
  if (in->translated) {
    *why = "translated message inside a transaction block";
    return PGG_GUARD_REPAIR_ONLY;
  }
  if (in->tx_status == 'T' && in->setup_covered)
    return PGG_GUARD_REPLAY;
  *why = "statements already ran in this transaction";
  return PGG_GUARD_REPAIR_ONLY;
}

bool pgg_replay_after_hold(pgg_hold_end end, pgg_repair_outcome outcome, bool translated)
{
  if (end != PGG_HOLD_END_ANSWER)
    return false;
  if (outcome == PGG_REPAIR_APPLIED)
    return true;
  return outcome == PGG_REPAIR_NOTHING && !translated;
}
