/*
 * replay.c — decides whether a failed request cycle may be replayed after a
 * repair. A write executed twice is the one bug pgguard must never have, so
 * every condition here is a proof obligation from DESIGN.md, not a heuristic.
 */
#include "replay.h"

#include <string.h>

bool pgg_guarded_sqlstate(const char *sqlstate, bool missing_labels)
{
  if (!sqlstate)
    return false;
  if (strcmp(sqlstate, "42P01") == 0 || strcmp(sqlstate, "42703") == 0 ||
      strcmp(sqlstate, "42704") == 0)
    return true;
  /* A missing enum label looks like bad user input; only trust it while the
   * drift says a label is actually missing. */
  return missing_labels && strcmp(sqlstate, "22P02") == 0;
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
    *why = "request too large to keep";
    return PGG_GUARD_REPAIR_ONLY;
  }
  /* Rule 3: an implicit transaction rolled everything back; in a block,
   * only data-free set-up ran before, and it can be re-sent. */
  if (in->tx_status == 'I')
    return PGG_GUARD_REPLAY;
  if (in->tx_status == 'T' && in->txn_setup_only)
    return PGG_GUARD_REPLAY;
  *why = "statements already ran in this transaction";
  return PGG_GUARD_REPAIR_ONLY;
}
