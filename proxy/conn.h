/*
 * conn.h — one client connection paired with its server connection, as
 * conn.c (I/O, start-up, relaying, request-cycle bookkeeping) and hold.c
 * (the guard's hold, repair wait and replay of a failed request) share it.
 * Internal to proxy/.
 */
#ifndef PGG_CONN_H
#define PGG_CONN_H

#include "proxy.h"

#include "cycle.h"
#include "replay.h"

typedef struct conn conn;

typedef struct {
  pgg_sock io;      /* TCP or Unix-domain */
  bool unix_socket;
  conn *c;
  bool open;        /* handle initialised and not yet closing */
  bool reading;
  bool writing;
  pgg_buf out;      /* bytes waiting for the socket */
  pgg_buf flight;   /* bytes handed to uv_write */
  uv_write_t wreq;
  uint8_t *rbuf;
  pgg_tls *tls;     /* TLS on this leg, or NULL for plaintext */
  pgg_buf plain;    /* decrypted bytes of the last read */
} side;

typedef enum {
  ST_STARTUP,       /* reading the client's startup packets */
  ST_CONNECTING,    /* connecting to PostgreSQL */
  ST_UPSTREAM_SSL,  /* waiting for PostgreSQL's answer to our SSLRequest */
  ST_RELAY,         /* authentication and then requests, relayed */
  ST_CANCEL,        /* relaying one CancelRequest */
  ST_CLOSING,
} conn_state;

/*
 * The guard's hold on one failed request cycle (DESIGN.md, "Replay"). Two
 * things must happen before it ends: the failed cycle's ReadyForQuery
 * arrives, and the guard answers (or the wait ends: timeout, cancel).
 */
typedef enum {
  HOLD_IDLE = 0,
  HOLD_AWAIT_BOTH,     /* error withheld; waiting for its ReadyForQuery and the answer */
  HOLD_AWAIT_ANSWER,   /* ReadyForQuery withheld too; waiting for the answer */
  HOLD_AWAIT_READY,    /* answered; waiting for the ReadyForQuery */
  HOLD_RESENDING,      /* in a block: ROLLBACK and the set-up re-sent; the replay
                          goes only once they restored the transaction */
} hold_state;

typedef struct {
  hold_state state;
  pgg_hold_end end;     /* what ended the wait (valid once answered) */
  pgg_repair_outcome outcome;
  bool translated;      /* the error's message is translated: replay only if created */
  bool rolled_back;     /* pgguard sent ROLLBACK for the client's block */
  bool resend_failed;   /* a re-sent set-up cycle failed */
  bool restore_abort;   /* re-sending only to leave the block aborted, as the
                           server had it, before the original error goes out */
  char prior_status;    /* transaction status before the failed cycle */
  pgg_buf err;          /* the withheld ErrorResponse */
  pgg_buf ready;        /* the withheld ReadyForQuery */
  pgg_buf other;        /* asynchronous messages that came meanwhile */
  pgg_buf replay;       /* the failed cycle's client bytes */
  pgg_buf resend;       /* set-up cycles to re-send after ROLLBACK */
  uv_timer_t timer;
  bool timer_running;
  pgg_guard_waiter waiter;
  uint64_t started_ns;
} hold;

/* Client bytes kept while a request is held; beyond this, reading pauses. */
#define HOLD_MAX_CLIENT_IN ((size_t)65536)
/* Held server bytes beyond this end the hold: the original error goes through. */
#define HOLD_MAX_OTHER ((size_t)4 << 20)

struct conn {
  uint64_t id;
  conn *next, *prev;
  conn_state state;
  side cl, sv;
  int closing_handles;
  bool dead;                /* close_now ran: handles are closing */
  pgg_buf startup;          /* the client's startup packet being read */
  pgg_buf early;            /* client bytes that followed it before the server answered */
  char *database;           /* the startup database (or user), for the guard */
  char *user;               /* the startup user, for the connection log */
  char peer[64];            /* the client's address, for the connection log */
  uint64_t bytes_in, bytes_out;  /* relayed client->server and server->client */
  char fatal[6];            /* SQLSTATE of a FATAL the client was sent, or "" */
  bool logged_in;           /* the connection log said "connection_authorized" */
  pgg_framer cf, sf;        /* client->server, server->client */
  pgg_cycles cycles;
  bool ready_seen;          /* the ReadyForQuery that ends start-up went by */
  bool terminated;          /* a Terminate went to the server (the client's or ours) */
  bool recording;           /* the guard is configured: keep client bytes for a replay */
  /*
   * Client bytes of the cycles in flight: the oldest cycle's bytes start at
   * rec.data + rec_off. Consuming moves the offset; the buffer is reset when
   * it empties, so keeping N pipelined cycles costs O(N), not O(N^2).
   * rec_broken: something was not recorded or not counted into a cycle, so
   * nothing in flight may be replayed until the stream is idle again.
   */
  pgg_buf rec;
  size_t rec_off;
  bool rec_broken;
  pgg_buf setup;            /* set-up cycles of the current transaction block */
  pgg_buf held_in;          /* client bytes read while a request is held: they go
                               after the replay (reading on shows a hang-up at once) */
  bool setup_covered;       /* setup holds everything since BEGIN, all of it set-up */
  unsigned swallow_inflight;
  bool hold_all;            /* the server framer holds every message type */
  hold h;
  uint32_t backend_pid;     /* BackendKeyData, to find this session from a CancelRequest */
  uint8_t backend_key[256];
  size_t backend_key_len;
  pgg_dial dial;            /* connecting to PostgreSQL, address after address */
  bool dialing;             /* dial started and its done callback not yet called */
  char log_prefix[32];      /* "conn=ID " for the dialer's log lines */
  pgg_buf tls_out;          /* ciphertext scratch for TLS writes */
  pgg_buf replace;          /* a rewritten server message (SASL without -PLUS) */
  uv_timer_t close_timer;
  bool close_timer_on;
  uv_timer_t limit_timer;   /* --client-login-timeout, then --server-connect-timeout */
  bool connect_timing;      /* limit_timer times the connect to PostgreSQL */
  double connect_limit;     /* its period per address, as --server-connect-timeout was then */
  uint64_t accepted_ms;     /* uv_now at accept */
};

/* conn.c */
void pgg_conn_send_client(conn *c, const uint8_t *p, size_t n);
/* Send bytes to the server as if the client had sent them, tracked and
 * recorded like the client's own; flags mark the cycles they open. */
void pgg_conn_inject(conn *c, const pgg_buf *b, uint32_t flags);
void pgg_conn_update_reads(conn *c);
/* Send a FATAL error to the client and close the pair. */
void pgg_conn_fail(conn *c, const char *sqlstate, const char *msg, const char *detail);
/* Frame every server message whole (while holding or swallowing), or only the usual ones. */
void pgg_conn_hold_all(conn *c, bool on);
/* The recorded bytes of the oldest cycle in flight, or NULL when not recorded whole. */
const uint8_t *pgg_conn_rec_head(const conn *c, size_t *len);

/* hold.c */
/*
 * Start holding the guarded error m of the only cycle in flight. Returns
 * false, having changed nothing, when the hold cannot be set up (memory):
 * the caller then forwards the error as it is.
 */
bool pgg_hold_start(conn *c, const pgg_msg *m, bool translated);
/* The failed cycle's ReadyForQuery (whole message). */
void pgg_hold_ready(conn *c, const pgg_msg *m);
/* An asynchronous server message between the error and its ReadyForQuery. */
void pgg_hold_other(conn *c, const pgg_msg *m);
/* A swallowed cycle (pgguard's ROLLBACK or re-sent set-up) ended with this status. */
void pgg_hold_swallowed(conn *c, const pgg_cycle *done, char status);
/* A CancelRequest for this session: ends a hold's wait. Returns false when no wait is held. */
bool pgg_hold_cancel(conn *c);
void pgg_hold_clear(conn *c);
static inline bool pgg_hold_active(const conn *c)
{
  return c->h.state != HOLD_IDLE;
}
/* Before the failed cycle's ReadyForQuery: server messages are withheld. */
static inline bool pgg_hold_before_ready(const conn *c)
{
  return c->h.state == HOLD_AWAIT_BOTH || c->h.state == HOLD_AWAIT_READY;
}

#endif
