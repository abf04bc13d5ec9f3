/*
 * replay.h — the replay policy: given a guarded error and what the
 * connection has recorded, may the failed request be replayed after a
 * repair? Pure; DESIGN.md's three rules are the specification.
 */
#ifndef PGG_REPLAY_H
#define PGG_REPLAY_H

#include "cycle.h"

typedef enum {
  PGG_GUARD_PASS = 0,     /* not a guarded error: forward it as it is */
  PGG_GUARD_REPLAY,       /* hold the error, repair, replay the cycle */
  PGG_GUARD_REPAIR_ONLY,  /* forward the error now, repair so the client's retry works */
} pgg_guard_decision;

typedef struct {
  const char *sqlstate;       /* from the ErrorResponse; may be NULL */
  bool missing_labels;        /* the last drift had missing enum labels: 22P02 is guarded */
  const pgg_cycle *cycle;     /* the oldest cycle in flight (the one that failed), or NULL */
  size_t in_flight;           /* cycles in flight, the failed one included */
  char tx_status;             /* status before the cycle, from the last ReadyForQuery */
  bool txn_setup_only;        /* in a block, everything before was BEGIN / SET cycles */
  bool recorded;              /* every byte of the cycle is recorded */
} pgg_replay_input;

/* Is this SQLSTATE one the guard acts on? */
bool pgg_guarded_sqlstate(const char *sqlstate, bool missing_labels);

/*
 * The decision, and in *why (static string) the reason a replay was ruled
 * out, for logs and the metrics label.
 */
pgg_guard_decision pgg_replay_decide(const pgg_replay_input *in, const char **why);

#endif
