/*
 * test_cycle.c — request-cycle bookkeeping: which cycles are in flight, what
 * the server has answered, and the transaction status.
 */
#include "check.h"
#include "cycle.h"

static void client_all(pgg_cycles *c, const char *types)
{
  for (const char *t = types; *t; t++)
    pgg_cycles_client(c, (uint8_t)*t, 10, 0);
}

TEST(simple_query_is_one_closed_cycle_ended_by_ready)
{
  pgg_cycles c;
  pgg_cycle done;
  pgg_cycles_init(&c);
  CHECK(pgg_cycles_ready(&c, 'I', &done) == false); /* start-up's ReadyForQuery */
  client_all(&c, "Q");
  CHECK_INT(c.n, 1);
  CHECK(pgg_cycles_head(&c)->closed);
  CHECK_INT(pgg_cycles_head(&c)->kind, 'Q');
  pgg_cycles_server(&c, 'T', NULL);
  pgg_cycles_server(&c, 'D', NULL);
  pgg_cycles_server(&c, 'C', "SELECT 1");
  CHECK(pgg_cycles_ready(&c, 'I', &done));
  CHECK_INT(done.responses, 3);
  CHECK(done.rows);
  CHECK_INT(done.other_tags, 1);
  CHECK_INT(c.n, 0);
  CHECK_INT(c.tx_status, 'I');
  pgg_cycles_free(&c);
}

TEST(extended_batch_stays_open_until_sync)
{
  pgg_cycles c;
  pgg_cycles_init(&c);
  client_all(&c, "PBDE");
  CHECK_INT(c.n, 1);
  CHECK(!pgg_cycles_head(&c)->closed);
  client_all(&c, "S");
  CHECK_INT(c.n, 1);
  CHECK(pgg_cycles_head(&c)->closed);
  CHECK_INT(pgg_cycles_head(&c)->bytes, 50);
  pgg_cycles_free(&c);
}

TEST(pipelined_sync_groups_are_separate_cycles)
{
  pgg_cycles c;
  pgg_cycle done;
  pgg_cycles_init(&c);
  client_all(&c, "PBES" "PBES" "Q");
  CHECK_INT(c.n, 3);
  pgg_cycles_server(&c, 'E', NULL);
  CHECK(pgg_cycles_ready(&c, 'I', &done));
  CHECK(done.failed);
  CHECK_INT(c.n, 2);
  CHECK_INT(pgg_cycles_head(&c)->responses, 0);
  CHECK_INT(pgg_cycles_head(&c)->kind, 'X');
  CHECK_INT(pgg_cycles_tail(&c)->kind, 'Q');
  pgg_cycles_free(&c);
}

TEST(flush_marks_cycle_flushed)
{
  pgg_cycles c;
  pgg_cycles_init(&c);
  client_all(&c, "PH");
  CHECK(pgg_cycles_head(&c)->flushed);
  CHECK(!pgg_cycles_head(&c)->closed);
  pgg_cycles_free(&c);
}

TEST(copy_data_belongs_to_the_cycle_that_started_copy)
{
  pgg_cycles c;
  pgg_cycle done;
  pgg_cycles_init(&c);
  client_all(&c, "Q");
  pgg_cycles_server(&c, 'G', NULL);
  client_all(&c, "ddc");
  CHECK_INT(c.n, 1);
  CHECK(pgg_cycles_head(&c)->copy);
  CHECK_INT(pgg_cycles_head(&c)->bytes, 40);
  pgg_cycles_server(&c, 'C', "COPY 2");
  CHECK(pgg_cycles_ready(&c, 'I', &done));
  CHECK(done.copy);
  pgg_cycles_free(&c);
}

TEST(transaction_status_follows_ready_for_query)
{
  pgg_cycles c;
  pgg_cycle done;
  pgg_cycles_init(&c);
  client_all(&c, "Q");
  pgg_cycles_server(&c, 'C', "BEGIN");
  pgg_cycles_ready(&c, 'T', &done);
  CHECK_INT(c.tx_status, 'T');
  CHECK(pgg_cycle_is_setup(&done));
  client_all(&c, "Q");
  pgg_cycles_server(&c, 'E', NULL);
  pgg_cycles_ready(&c, 'E', &done);
  CHECK_INT(c.tx_status, 'E');
  CHECK(!pgg_cycle_is_setup(&done));
  pgg_cycles_free(&c);
}

TEST(setup_cycle_needs_only_begin_or_set_tags)
{
  pgg_cycle cy = {0};
  CHECK(!pgg_cycle_is_setup(&cy)); /* no tag at all: a Parse-only cycle */
  cy.setup_tags = 2;
  CHECK(pgg_cycle_is_setup(&cy));
  cy.other_tags = 1;
  CHECK(!pgg_cycle_is_setup(&cy));
  cy.other_tags = 0;
  cy.rows = true;
  CHECK(!pgg_cycle_is_setup(&cy));
}

TEST(set_and_start_transaction_tags_count_as_setup)
{
  pgg_cycles c;
  pgg_cycle done;
  pgg_cycles_init(&c);
  client_all(&c, "Q");
  pgg_cycles_server(&c, 'C', "START TRANSACTION");
  pgg_cycles_server(&c, 'C', "SET");
  pgg_cycles_ready(&c, 'T', &done);
  CHECK(pgg_cycle_is_setup(&done));
  client_all(&c, "Q");
  pgg_cycles_server(&c, 'C', "SELECT 1");
  pgg_cycles_ready(&c, 'T', &done);
  CHECK(!pgg_cycle_is_setup(&done));
  pgg_cycles_free(&c);
}

TEST(thousands_of_pipelined_cycles_grow_the_ring_in_order)
{
  pgg_cycles c;
  pgg_cycle done;
  pgg_cycles_init(&c);
  for (int i = 0; i < 5000; i++) {
    pgg_cycles_client(&c, 'Q', (size_t)i + 1, 0);
    if (i % 3 == 0) {
      REQUIRE(pgg_cycles_ready(&c, 'I', &done));
    }
  }
  size_t expect_n = 5000 - 1667;
  CHECK_INT(c.n, expect_n);
  /* The oldest still in flight is the 1668th request (bytes = index + 1). */
  CHECK_INT(pgg_cycles_head(&c)->bytes, 1668);
  size_t prev = 0;
  int ordered = 1;
  while (pgg_cycles_ready(&c, 'I', &done)) {
    if (done.bytes <= prev)
      ordered = 0;
    prev = done.bytes;
  }
  CHECK(ordered);
  CHECK_INT(prev, 5000);
  pgg_cycles_free(&c);
}

TEST(next_flags_mark_injected_cycles)
{
  pgg_cycles c;
  pgg_cycles_init(&c);
  c.next_flags = PGG_CYCLE_SWALLOW;
  client_all(&c, "Q");
  c.next_flags = 0;
  client_all(&c, "Q");
  CHECK_INT(pgg_cycles_head(&c)->flags, PGG_CYCLE_SWALLOW);
  CHECK_INT(pgg_cycles_tail(&c)->flags, 0);
  pgg_cycles_free(&c);
}

TEST(terminate_and_password_messages_open_no_cycle)
{
  pgg_cycles c;
  pgg_cycles_init(&c);
  client_all(&c, "pX");
  CHECK_INT(c.n, 0);
  pgg_cycles_free(&c);
}
