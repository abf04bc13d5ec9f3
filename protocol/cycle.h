/*
 * cycle.h — request cycles on one connection: which client requests are in
 * flight, what the server has answered to the oldest, and the transaction
 * status from each ReadyForQuery. Pure bookkeeping: the proxy feeds message
 * types in, the guard's replay policy reads the result.
 */
#ifndef PGG_CYCLE_H
#define PGG_CYCLE_H

#include "pgg.h"

/* Flags the proxy sets on a cycle it injected or re-sent itself. */
enum {
  PGG_CYCLE_SWALLOW = 1 << 0,   /* the client already has these responses: drop them */
  PGG_CYCLE_REPLAY = 1 << 1,    /* a replay: its errors are never repaired again */
};

typedef struct {
  char kind;            /* 'Q' simple query, 'X' extended batch up to Sync, 'F' function call */
  bool closed;          /* the client sent what ends it (Q or F itself, or Sync) */
  bool flushed;         /* the client sent Flush: it may wait for answers before Sync */
  bool copy;            /* COPY data flowed: too big and too stateful to replay */
  bool failed;          /* an ErrorResponse arrived */
  bool rows;            /* DataRow or PortalSuspended arrived: results reached the client */
  uint16_t setup_tags;  /* CommandComplete BEGIN / START TRANSACTION / SET */
  uint16_t other_tags;  /* every other CommandComplete */
  uint32_t responses;   /* server messages of this cycle seen so far */
  uint32_t flags;       /* PGG_CYCLE_* */
  size_t bytes;         /* client bytes that make up the cycle */
  uint64_t start_ns;    /* when its first byte was sent, for the latency histogram */
} pgg_cycle;

typedef struct {
  pgg_cycle *ring;
  size_t cap, head, n;  /* n cycles in flight, oldest at ring[head] */
  char tx_status;       /* from the last ReadyForQuery: 'I', 'T' or 'E' */
  uint32_t next_flags;  /* flags for the next cycle the client side opens */
  size_t bytes;         /* client bytes of all cycles in flight */
} pgg_cycles;

void pgg_cycles_init(pgg_cycles *c);
void pgg_cycles_free(pgg_cycles *c);

/* pgg_cycles_client's answer when no cycle took the bytes (Terminate, stray COPY data). */
#define PGG_CYCLE_UNCOUNTED 1

/*
 * A whole client message of this type and size went to the server. Opens a
 * cycle (Query, FunctionCall, first extended message) or adds to the open
 * one. Returns PGG_OK, PGG_CYCLE_UNCOUNTED when the bytes belong to no
 * cycle, or PGG_ERR_NOMEM.
 */
int pgg_cycles_client(pgg_cycles *c, uint8_t type, size_t bytes, uint64_t now_ns);

/* The oldest cycle in flight (the one the server is answering), or NULL. */
pgg_cycle *pgg_cycles_head(pgg_cycles *c);
/* The newest cycle in flight, or NULL. */
pgg_cycle *pgg_cycles_tail(pgg_cycles *c);

/*
 * A server message arrived (any type but ReadyForQuery). tag is the
 * CommandComplete tag for 'C', else ignored.
 */
void pgg_cycles_server(pgg_cycles *c, uint8_t type, const char *tag);

/*
 * ReadyForQuery with this status: the oldest cycle is over. Copies it into
 * *done and returns true, or returns false when none was in flight (the
 * ReadyForQuery that ends start-up).
 */
bool pgg_cycles_ready(pgg_cycles *c, char status, pgg_cycle *done);

/* A cycle whose every CommandComplete was transaction set-up (and had one). */
bool pgg_cycle_is_setup(const pgg_cycle *cy);

#endif
