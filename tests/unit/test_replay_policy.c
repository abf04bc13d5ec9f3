/*
 * test_replay_policy.c — the replay decision, rule by rule (DESIGN.md,
 * "Replay or fail cleanly"): a table of cases, each one exclusion.
 */
#include "check.h"
#include "replay.h"

static pgg_cycle fresh_query(void)
{
  pgg_cycle cy = {0};
  cy.kind = 'Q';
  cy.closed = true;
  cy.bytes = 30;
  return cy;
}

static pgg_replay_input input(const pgg_cycle *cy)
{
  pgg_replay_input in = {
    .sqlstate = "42P01",
    .cycle = cy,
    .in_flight = 1,
    .tx_status = 'I',
    .txn_setup_only = true,
    .recorded = true,
  };
  return in;
}

TEST(guarded_sqlstates_are_undefined_table_column_object)
{
  CHECK(pgg_guarded_sqlstate("42P01", false));
  CHECK(pgg_guarded_sqlstate("42703", false));
  CHECK(pgg_guarded_sqlstate("42704", false));
  CHECK(!pgg_guarded_sqlstate("42601", false));
  CHECK(!pgg_guarded_sqlstate("0A000", false)); /* cached plan must not change result type */
  CHECK(!pgg_guarded_sqlstate(NULL, true));     /* an ErrorResponse without C */
}

TEST(invalid_enum_input_is_guarded_only_while_labels_are_missing)
{
  CHECK(!pgg_guarded_sqlstate("22P02", false));
  CHECK(pgg_guarded_sqlstate("22P02", true));
}

TEST(replay_when_first_message_of_only_cycle_in_implicit_transaction)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPLAY);
  CHECK(why == NULL);
}

TEST(unguarded_error_passes)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.sqlstate = "23505";
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_PASS);
}

TEST(replay_skipped_when_part_of_the_request_already_answered)
{
  pgg_cycle cy = fresh_query();
  cy.responses = 1; /* INSERT ...; SELECT FROM missing: the INSERT's CommandComplete */
  pgg_replay_input in = input(&cy);
  const char *why;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
  CHECK(why != NULL);
}

TEST(replay_skipped_when_pipeline_has_later_sync)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.in_flight = 2;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
}

TEST(replay_skipped_when_batch_not_closed_by_sync)
{
  pgg_cycle cy = fresh_query();
  cy.kind = 'X';
  cy.closed = false;
  pgg_replay_input in = input(&cy);
  const char *why;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
  cy.closed = true;
  cy.flushed = true;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
}

TEST(replay_skipped_for_copy_and_unrecorded_requests)
{
  pgg_cycle cy = fresh_query();
  cy.copy = true;
  pgg_replay_input in = input(&cy);
  const char *why;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
  cy.copy = false;
  in.recorded = false;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
}

TEST(replay_after_begin_and_set_only)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.tx_status = 'T';
  in.txn_setup_only = true;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPLAY);
}

TEST(replay_skipped_mid_transaction_but_repair_runs)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.tx_status = 'T';
  in.txn_setup_only = false;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
}

TEST(failed_transaction_is_not_replayed)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.tx_status = 'E';
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
}

TEST(a_replay_is_never_repaired_again)
{
  pgg_cycle cy = fresh_query();
  cy.flags = PGG_CYCLE_REPLAY;
  pgg_replay_input in = input(&cy);
  const char *why;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_PASS);
  cy.flags = PGG_CYCLE_SWALLOW;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_PASS);
}

TEST(no_cycle_in_flight_passes)
{
  pgg_replay_input in = input(NULL);
  const char *why;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_PASS);
}
