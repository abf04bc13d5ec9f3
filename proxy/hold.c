/*
 * hold.c — the guard's hold on one failed request: the withheld error and
 * ReadyForQuery, the wait for the repair, and then either the replay or the
 * original answer, unchanged. One state enum, changed only by hold_to().
 */
#include "conn.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

static const char *const state_names[] = {"idle", "await_both", "await_answer", "await_ready",
                                          "resending"};

/*
 * The one place the hold changes state. The legal moves:
 * idle -> await_both (start); await_both -> await_answer (ReadyForQuery
 * first) or await_ready (answer first); await_answer / await_ready ->
 * resending (a replay in a block); any -> idle (finish, or an overflow
 * that gives up).
 */
static void hold_to(conn *c, hold_state next)
{
  hold_state cur = c->h.state;
  assert((cur == HOLD_IDLE && next == HOLD_AWAIT_BOTH) ||
         (cur == HOLD_AWAIT_BOTH && (next == HOLD_AWAIT_ANSWER || next == HOLD_AWAIT_READY)) ||
         ((cur == HOLD_AWAIT_ANSWER || cur == HOLD_AWAIT_READY) && next == HOLD_RESENDING) ||
         (cur != HOLD_IDLE && next == HOLD_IDLE));
  pgg_log(PGG_LOG_DEBUG, "hold_state", "conn=%llu from=%s to=%s", (unsigned long long)c->id,
          state_names[cur], state_names[next]);
  c->h.state = next;
}

void pgg_hold_clear(conn *c)
{
  hold *h = &c->h;
  if (h->waiter.queued)
    pgg_guardian_cancel(&h->waiter);
  if (h->timer_running) {
    uv_timer_stop(&h->timer);
    h->timer_running = false;
  }
  if (h->state != HOLD_IDLE)
    hold_to(c, HOLD_IDLE);
  h->rolled_back = false;
  h->restore_abort = false;
  /* A hold is rare; its buffers need not outlive it. */
  pgg_buf_free(&h->err);
  pgg_buf_free(&h->ready);
  pgg_buf_free(&h->other);
  pgg_buf_free(&h->replay);
  pgg_buf_free(&h->resend);
}

static void inject_rollback(conn *c)
{
  pgg_buf q;
  pgg_buf_init(&q);
  if (pgg_build_query(&q, "ROLLBACK") == PGG_OK)
    pgg_conn_inject(c, &q, PGG_CYCLE_SWALLOW);
  pgg_buf_free(&q);
  c->h.rolled_back = true;
}

static const char *end_name(const hold *h)
{
  static const char *const outcomes[] = {"applied", "nothing_missing", "failed"};
  switch (h->end) {
  case PGG_HOLD_END_ANSWER: return outcomes[h->outcome];
  case PGG_HOLD_END_TIMEOUT: return "wait_expired";
  case PGG_HOLD_END_CANCEL: return "cancelled";
  case PGG_HOLD_END_OVERFLOW: return "overflow";
  }
  return "?";
}

/* The original error and ReadyForQuery, as PostgreSQL sent them. */
static void deliver_original(conn *c)
{
  hold *h = &c->h;
  pgg_metrics_g.replays[PGG_REPLAY_RES_SKIPPED]++;
  pgg_conn_send_client(c, h->err.data, h->err.len);
  pgg_conn_send_client(c, h->other.data, h->other.len);
  pgg_conn_send_client(c, h->ready.data, h->ready.len);
  pgg_hold_clear(c);
  pgg_conn_hold_all(c, c->swallow_inflight > 0);
  pgg_conn_update_reads(c);
}

/*
 * Re-create the client's block exactly as it had set it up (ROLLBACK first
 * if not sent yet). Then either the request goes again, or — to give the
 * original error — a statement that cannot succeed leaves the block aborted,
 * as the server had it. Both wait for the server's confirmation
 * (pgg_hold_swallowed): a replay must never run outside the block, and the
 * client's next statement must never run in a block it thinks aborted.
 */
static void resend_setup(conn *c, bool restore_abort)
{
  hold *h = &c->h;
  static const char marker[] = "ROLLBACK TO SAVEPOINT pgguard_restores_the_failed_transaction";
  if (!restore_abort) {
    pgg_conn_send_client(c, h->other.data, h->other.len);
    pgg_buf_reset(&h->other);
  }
  if (!h->rolled_back)
    inject_rollback(c);
  h->resend_failed = false;
  h->restore_abort = restore_abort;
  hold_to(c, HOLD_RESENDING);
  pgg_conn_inject(c, &h->resend, PGG_CYCLE_SWALLOW);
  if (restore_abort) {
    pgg_buf q;
    pgg_buf_init(&q);
    if (pgg_build_query(&q, marker) == PGG_OK)
      pgg_conn_inject(c, &q, PGG_CYCLE_SWALLOW);
    pgg_buf_free(&q);
  }
}

/* Both the ReadyForQuery and the answer are in: replay, or the original answer. */
static void finish(conn *c)
{
  hold *h = &c->h;
  assert(h->state == HOLD_AWAIT_ANSWER || h->state == HOLD_AWAIT_READY);
  assert(h->err.len && h->ready.len);
  bool replay = pgg_replay_after_hold(h->end, h->outcome, h->translated);
  pgg_log(PGG_LOG_INFO, replay ? "replay" : "replay_skipped",
          "conn=%llu end=%s prior_status=%c wait_ms=%.1f", (unsigned long long)c->id,
          end_name(h), h->prior_status, (double)(uv_hrtime() - h->started_ns) / 1e6);
  if (h->prior_status != 'I' && (replay || h->rolled_back)) {
    resend_setup(c, !replay);
    return;
  }
  if (!replay) {
    /* Nothing was sent since the error: the server is where it left the client. */
    deliver_original(c);
    return;
  }
  pgg_conn_send_client(c, h->other.data, h->other.len);
  pgg_conn_inject(c, &h->replay, PGG_CYCLE_REPLAY);
  pgg_hold_clear(c);
  pgg_conn_hold_all(c, c->swallow_inflight > 0);
  pgg_conn_update_reads(c);
}

/* The wait is over, for whatever reason. */
static void answered(conn *c, pgg_hold_end end, pgg_repair_outcome outcome)
{
  hold *h = &c->h;
  assert(h->state != HOLD_IDLE);
  if (h->waiter.queued)
    pgg_guardian_cancel(&h->waiter);
  if (h->timer_running) {
    uv_timer_stop(&h->timer);
    h->timer_running = false;
  }
  h->end = end;
  h->outcome = outcome;
  if (h->state == HOLD_AWAIT_BOTH)
    hold_to(c, HOLD_AWAIT_READY);
  else if (h->state == HOLD_AWAIT_ANSWER)
    finish(c);
}

static void on_answer(pgg_guard_waiter *w, pgg_repair_outcome outcome)
{
  conn *c = (conn *)((char *)w - offsetof(conn, h.waiter));
  answered(c, PGG_HOLD_END_ANSWER, outcome);
}

static void on_timeout(uv_timer_t *t)
{
  conn *c = t->data;
  c->h.timer_running = false;
  pgg_log(PGG_LOG_WARN, "repair_wait_expired", "conn=%llu", (unsigned long long)c->id);
  answered(c, PGG_HOLD_END_TIMEOUT, PGG_REPAIR_FAILED);
}

bool pgg_hold_start(conn *c, const pgg_msg *m, bool translated)
{
  hold *h = &c->h;
  size_t rlen = 0;
  const uint8_t *rec = pgg_conn_rec_head(c, &rlen);

  assert(h->state == HOLD_IDLE);
  assert(c->cycles.n == 1);
  if (!rec || !m->raw)
    return false;
  /* Every byte the hold may need is copied now or never: a hold that could
   * not give the client its original answer must not start. */
  if (pgg_buf_append(&h->err, m->raw, m->raw_len) != PGG_OK ||
      pgg_buf_append(&h->replay, rec, rlen) != PGG_OK ||
      (c->cycles.tx_status != 'I' &&
       pgg_buf_append(&h->resend, c->setup.data, c->setup.len) != PGG_OK) ||
      pgg_buf_reserve(&h->ready, 6) != PGG_OK) {
    pgg_hold_clear(c);
    return false;
  }
  assert(c->cycles.tx_status == 'I' || h->resend.len > 0);
  h->prior_status = c->cycles.tx_status;
  h->translated = translated;
  h->rolled_back = false;
  h->started_ns = uv_hrtime();
  hold_to(c, HOLD_AWAIT_BOTH);
  pgg_conn_hold_all(c, true);
  h->waiter.cb = on_answer;
  switch (pgg_guardian_request(&h->waiter)) {
  case PGG_ASK_WAIT:
    h->timer_running = true;
    uv_timer_start(&h->timer, on_timeout, (uint64_t)(pgg_p.opt->guard.repair_wait * 1000.0), 0);
    break;
  case PGG_ASK_NOTHING_MISSING:
    /* A check moments ago found nothing missing: another sidecar may have
     * created the object since this request failed. */
    answered(c, PGG_HOLD_END_ANSWER, PGG_REPAIR_NOTHING);
    break;
  default:
    answered(c, PGG_HOLD_END_ANSWER, PGG_REPAIR_FAILED);
    break;
  }
  pgg_conn_update_reads(c);
  return true;
}

/*
 * Before the failed cycle's ReadyForQuery, nothing was rolled back: giving
 * up the hold is delivering what was withheld, then m, and letting the rest
 * of the answer flow as PostgreSQL sends it.
 */
static void give_up(conn *c, const pgg_msg *m)
{
  hold *h = &c->h;
  pgg_conn_send_client(c, h->err.data, h->err.len);
  pgg_conn_send_client(c, h->other.data, h->other.len);
  pgg_conn_send_client(c, m->raw, m->raw_len);
  pgg_metrics_g.replays[PGG_REPLAY_RES_SKIPPED]++;
  pgg_hold_clear(c);
  pgg_conn_hold_all(c, c->swallow_inflight > 0);
  pgg_conn_update_reads(c);
}

void pgg_hold_ready(conn *c, const pgg_msg *m)
{
  hold *h = &c->h;
  assert(pgg_hold_before_ready(c));
  /* Reserved at the start: this append cannot fail for a 6-byte message. */
  if (pgg_buf_append(&h->ready, m->raw, m->raw_len) != PGG_OK || h->ready.len != m->raw_len) {
    give_up(c, m);
    return;
  }
  if (h->state == HOLD_AWAIT_READY) {
    finish(c);
    return;
  }
  /* Still waiting for the repair. In a block, roll back now: the failed
   * statement may hold locks (on the tables it did find) that the repair's
   * ALTER TABLE would wait on. The set-up is re-sent after the repair. */
  if (h->prior_status != 'I')
    inject_rollback(c);
  hold_to(c, HOLD_AWAIT_ANSWER);
}

void pgg_hold_other(conn *c, const pgg_msg *m)
{
  hold *h = &c->h;
  assert(pgg_hold_before_ready(c));
  if (h->other.len + m->raw_len <= HOLD_MAX_OTHER &&
      pgg_buf_append(&h->other, m->raw, m->raw_len) == PGG_OK)
    return;
  /* Too much to keep (or no memory): give up the hold before anything was
   * rolled back, and let the rest of the answer flow as PostgreSQL sends it. */
  pgg_log(PGG_LOG_WARN, "hold_overflow", "conn=%llu bytes=%zu", (unsigned long long)c->id,
          h->other.len);
  give_up(c, m);
}

void pgg_hold_swallowed(conn *c, const pgg_cycle *done, char status)
{
  hold *h = &c->h;
  if (h->state != HOLD_RESENDING)
    return;
  h->resend_failed |= done->failed;
  if (c->swallow_inflight)
    return;
  if (h->restore_abort ? status == 'E' : (!h->resend_failed && status == 'T')) {
    if (h->restore_abort) {
      deliver_original(c);
      return;
    }
    pgg_log(PGG_LOG_DEBUG, "resend_done", "conn=%llu", (unsigned long long)c->id);
    pgg_conn_inject(c, &h->replay, PGG_CYCLE_REPLAY);
    pgg_hold_clear(c);
    pgg_conn_hold_all(c, c->swallow_inflight > 0);
    pgg_conn_update_reads(c);
    return;
  }
  if (status == 'E') {
    /* The set-up failed on the way: the server's transaction is aborted,
     * as the client was told by the original error. */
    pgg_log(PGG_LOG_WARN, "resend_failed", "conn=%llu status=E", (unsigned long long)c->id);
    deliver_original(c);
    return;
  }
  /* The block could not be re-created at all: the client's transaction,
   * which had run nothing but set-up, is gone. Closing is the only answer
   * that cannot mislead it into running statements outside a block. */
  pgg_metrics_g.replays[PGG_REPLAY_RES_SKIPPED]++;
  pgg_log(PGG_LOG_ERROR, "resend_failed", "conn=%llu status=%c", (unsigned long long)c->id, status);
  pgg_conn_fail(c, "08006", "pgguard could not restore the transaction block after a repair",
                "The transaction had run only BEGIN/SET; nothing of it was committed.");
}

bool pgg_hold_cancel(conn *c)
{
  hold *h = &c->h;
  /* Idle, or re-sending the set-up for a replay: the cancel goes to the
   * server as usual and meets the replay, or nothing. */
  if (h->state == HOLD_IDLE || h->state == HOLD_RESENDING)
    return false;
  pgg_log(PGG_LOG_INFO, "hold_cancelled", "conn=%llu", (unsigned long long)c->id);
  if (h->state == HOLD_AWAIT_READY) {
    /* Answered, but nothing re-sent yet: the original answer it is. */
    h->end = PGG_HOLD_END_CANCEL;
    return true;
  }
  answered(c, PGG_HOLD_END_CANCEL, PGG_REPAIR_FAILED);
  return true;
}
