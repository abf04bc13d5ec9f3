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
    .setup_covered = true,
    .recorded = true,
    .has_position = true,
    .stmt_ok = true,
  };
  return in;
}

TEST(guarded_sqlstates_are_undefined_table_column_object)
{
  CHECK(pgg_guarded_sqlstate("42P01", false));
  CHECK(pgg_guarded_sqlstate("42703", false));
  CHECK(pgg_guarded_sqlstate("42704", false));
  CHECK(pgg_guarded_sqlstate("42883", false));  /* function ... does not exist */
  CHECK(pgg_guarded_sqlstate("3F000", false));  /* schema "s" does not exist */
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
  in.setup_covered = true;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPLAY);
}

TEST(replay_skipped_mid_transaction_but_repair_runs)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.tx_status = 'T';
  in.setup_covered = false;
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

TEST(replay_skipped_when_error_raised_inside_function_do_block_or_trigger)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.has_context = true;   /* W: PL/pgSQL function inline_code_block line 1 at EXECUTE */
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
  CHECK(why != NULL);
}

TEST(replay_skipped_when_error_has_no_position_as_runtime_casts)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.has_position = false;  /* v::mood at execution, after nextval() ran */
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
}

TEST(replay_skipped_for_statements_that_are_not_query_or_dml)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.stmt_ok = false;       /* DROP TYPE x: a repair then a replay would make it succeed */
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
}

TEST(translated_message_in_a_block_is_repair_only)
{
  pgg_cycle cy = fresh_query();
  pgg_replay_input in = input(&cy);
  const char *why;
  in.translated = true;
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPLAY);
  in.tx_status = 'T';
  CHECK_INT(pgg_replay_decide(&in, &why), PGG_GUARD_REPAIR_ONLY);
}

TEST(only_queries_and_dml_are_replayable_statements)
{
  static const struct { const char *sql; bool ok; } cases[] = {
    {"SELECT * FROM t", true},
    {"select 1", true},
    {"  \n\tINSERT INTO t VALUES (1)", true},
    {"update t set a = 1", true},
    {"DELETE FROM t", true},
    {"MERGE INTO t USING s ON true WHEN MATCHED THEN DO NOTHING", true},
    {"WITH x AS (SELECT 1) SELECT * FROM x", true},
    {"VALUES (1)", true},
    {"TABLE t", true},
    {"(SELECT 1) UNION (SELECT 2)", true},
    {"-- a comment\nSELECT 1", true},
    {"/* outer /* nested */ still */ SELECT 1", true},
    {";;  SELECT 1", true},
    {"DROP TYPE mood", false},
    {"drop table t", false},
    {"ALTER TABLE t DROP COLUMN c", false},
    {"COMMENT ON TABLE t IS 'x'", false},
    {"GRANT SELECT ON t TO r", false},
    {"REVOKE SELECT ON t FROM r", false},
    {"TRUNCATE t", false},
    {"CALL p()", false},
    {"DO $$ BEGIN END $$", false},
    {"CREATE TABLE x AS SELECT * FROM t", false},
    {"EXPLAIN ANALYZE INSERT INTO t VALUES (1)", false},
    {"COPY t FROM STDIN", false},
    {"SELECTX 1", false},
    {"select1", false},
    {"/* unterminated SELECT 1", false},
    {"-- only a comment", false},
    {"", false},
    {NULL, false},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (pgg_replay_stmt_ok(cases[i].sql) != cases[i].ok)
      fprintf(stderr, "  case %zu: %s\n", i, cases[i].sql ? cases[i].sql : "(null)");
    CHECK(pgg_replay_stmt_ok(cases[i].sql) == cases[i].ok);
  }
}

TEST(after_hold_replays_only_what_a_repair_explains)
{
  CHECK(pgg_replay_after_hold(PGG_HOLD_END_ANSWER, PGG_REPAIR_APPLIED, false));
  CHECK(pgg_replay_after_hold(PGG_HOLD_END_ANSWER, PGG_REPAIR_NOTHING, false));
  CHECK(!pgg_replay_after_hold(PGG_HOLD_END_ANSWER, PGG_REPAIR_FAILED, false));
  /* Translated: only a check that created something proves the schema was the cause. */
  CHECK(pgg_replay_after_hold(PGG_HOLD_END_ANSWER, PGG_REPAIR_APPLIED, true));
  CHECK(!pgg_replay_after_hold(PGG_HOLD_END_ANSWER, PGG_REPAIR_NOTHING, true));
  /* A timeout, a cancel or an overflow delivers the original error, whatever the repair did. */
  CHECK(!pgg_replay_after_hold(PGG_HOLD_END_TIMEOUT, PGG_REPAIR_APPLIED, false));
  CHECK(!pgg_replay_after_hold(PGG_HOLD_END_CANCEL, PGG_REPAIR_APPLIED, false));
  CHECK(!pgg_replay_after_hold(PGG_HOLD_END_OVERFLOW, PGG_REPAIR_NOTHING, false));
}
