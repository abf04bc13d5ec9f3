/*
 * replay.h — the replay policy: given a guarded error and what the
 * connection has recorded, may the failed request be replayed after a
 * repair, and once the guard has answered, is it? Pure; DESIGN.md's rules
 * ("Replay or fail cleanly") are the specification.
 */
#ifndef PGG_REPLAY_H
#define PGG_REPLAY_H

#include "cycle.h"
#include "guard.h"

typedef enum {
  PGG_GUARD_PASS = 0,     /* not a guarded error: forward it as it is */
  PGG_GUARD_REPLAY,       /* hold the error, repair, replay the cycle */
  PGG_GUARD_REPAIR_ONLY,  /* forward the error now, repair so the client's retry works */
} pgg_guard_decision;

typedef struct {
  const char *sqlstate;       /* from the ErrorResponse; may be NULL */
  bool missing_labels;        /* the last drift had missing enum labels: 22P02 is guarded */
  bool has_position;          /* the error has a P field: raised by parse analysis */
  bool has_context;           /* it has a W or q field: raised inside a function, DO
                                 block, trigger or dynamic SQL, which may have run things */
  bool stmt_ok;               /* the failed statement is a query or DML (pgg_replay_stmt_ok) */
  bool translated;            /* the message is translated: the desired schema could not
                                 be consulted, only a catalog check can tell */
  const pgg_cycle *cycle;     /* the oldest cycle in flight (the one that failed), or NULL */
  size_t in_flight;           /* cycles in flight, the failed one included */
  char tx_status;             /* status before the cycle, from the last ReadyForQuery */
  bool setup_covered;         /* in a block: the recorded set-up cycles cover everything
                                 since BEGIN, and nothing but set-up ran */
  bool recorded;              /* every byte of the cycle is recorded */
} pgg_replay_input;

/* Is this SQLSTATE one the guard acts on? */
bool pgg_guarded_sqlstate(const char *sqlstate, bool missing_labels);

/*
 * Is the first statement of this SQL a query or DML (SELECT, INSERT, UPDATE,
 * DELETE, MERGE, WITH, VALUES, TABLE), after comments, parentheses and
 * empty statements? Anything else — DROP, ALTER, COMMENT, GRANT, REVOKE,
 * TRUNCATE, CALL, DO, ... — is never replayed: a repair followed by a replay
 * would turn a failed `DROP TYPE x` into a successful one.
 */
bool pgg_replay_stmt_ok(const char *sql);

/*
 * The decision, and in *why (static string) the reason a replay was ruled
 * out, for logs and the metrics label.
 */
pgg_guard_decision pgg_replay_decide(const pgg_replay_input *in, const char **why);

/* What ends a hold. */
typedef enum {
  PGG_HOLD_END_ANSWER = 0,   /* the guard answered with an outcome */
  PGG_HOLD_END_TIMEOUT,      /* --repair-wait passed */
  PGG_HOLD_END_CANCEL,       /* the client sent a CancelRequest for the held request */
  PGG_HOLD_END_OVERFLOW,     /* held bytes passed their bound */
} pgg_hold_end;

/*
 * Once a hold ends: send the request again (true), or give the client the
 * original error and ReadyForQuery (false)? Replay only when the repair
 * created something, or found nothing missing for an error the desired
 * schema explains (another sidecar repaired first); a timeout, a cancel, an
 * overflow or a failed repair delivers the original error. (In a block that
 * pgguard has already rolled back, the original error goes out only after
 * the set-up is re-sent and the block aborted again, as the server had it.)
 */
bool pgg_replay_after_hold(pgg_hold_end end, pgg_repair_outcome outcome, bool translated);

#endif
