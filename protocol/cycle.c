/*
 * cycle.c — request-cycle bookkeeping per connection (see cycle.h).
 */
#include "cycle.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void pgg_cycles_init(pgg_cycles *c)
{
  memset(c, 0, sizeof(*c));
  c->tx_status = 'I';
}

void pgg_cycles_free(pgg_cycles *c)
{
  free(c->ring);
  memset(c, 0, sizeof(*c));
}

static pgg_cycle *at(pgg_cycles *c, size_t i)
{
  return &c->ring[(c->head + i) % c->cap];
}

pgg_cycle *pgg_cycles_head(pgg_cycles *c)
{
  return c->n ? at(c, 0) : NULL;
}

pgg_cycle *pgg_cycles_tail(pgg_cycles *c)
{
  return c->n ? at(c, c->n - 1) : NULL;
}

/* Pipelining clients may have thousands of cycles in flight: the ring grows. */
static int grow(pgg_cycles *c)
{
  size_t ncap = c->cap ? c->cap * 2 : 8;
  pgg_cycle *nr = malloc(ncap * sizeof(*nr));
  if (!nr)
    return PGG_ERR_NOMEM;
  for (size_t i = 0; i < c->n; i++)
    nr[i] = *at(c, i);
  free(c->ring);
  c->ring = nr;
  c->cap = ncap;
  c->head = 0;
  return PGG_OK;
}

static pgg_cycle *open_cycle(pgg_cycles *c, char kind, uint64_t now_ns)
{
  if (c->n == c->cap && grow(c) != PGG_OK)
    return NULL;
  pgg_cycle *cy = at(c, c->n++);
  memset(cy, 0, sizeof(*cy));
  cy->kind = kind;
  cy->flags = c->next_flags;
  cy->start_ns = now_ns;
  return cy;
}

int pgg_cycles_client(pgg_cycles *c, uint8_t type, size_t bytes, uint64_t now_ns)
{
  pgg_cycle *tail = pgg_cycles_tail(c);
  pgg_cycle *cy;

  switch (type) {
  case 'Q':
  case 'F':
    cy = open_cycle(c, (char)type, now_ns);
    if (!cy)
      return PGG_ERR_NOMEM;
    cy->closed = true;
    break;
  case 'P': case 'B': case 'D': case 'E': case 'C': case 'H': case 'S':
    if (tail && tail->kind == 'X' && !tail->closed) {
      cy = tail;
    } else {
      cy = open_cycle(c, 'X', now_ns);
      if (!cy)
        return PGG_ERR_NOMEM;
    }
    if (type == 'S')
      cy->closed = true;
    if (type == 'H')
      cy->flushed = true;
    break;
  case 'd': case 'c': case 'f':
    /* COPY data belongs to the cycle that started the COPY. */
    if (!tail)
      return PGG_CYCLE_UNCOUNTED;
    cy = tail;
    cy->copy = true;
    break;
  default:
    /* Terminate, or a message the server will reject: no cycle. */
    return PGG_CYCLE_UNCOUNTED;
  }
  cy->bytes += bytes;
  c->bytes += bytes;
  return PGG_OK;
}

static bool is_setup_tag(const char *tag)
{
  return strcmp(tag, "BEGIN") == 0 || strcmp(tag, "START TRANSACTION") == 0 ||
         strcmp(tag, "SET") == 0;
}

void pgg_cycles_server(pgg_cycles *c, uint8_t type, const char *tag)
{
  pgg_cycle *cy = pgg_cycles_head(c);
  if (!cy)
    return;
  cy->responses++;
  switch (type) {
  case 'E':
    cy->failed = true;
    break;
  case 'D':
  case 's':
    cy->rows = true;
    break;
  case 'G': case 'H': case 'W':
    cy->copy = true;
    break;
  case 'C':
    if (tag && is_setup_tag(tag)) {
      if (cy->setup_tags < UINT16_MAX)
        cy->setup_tags++;
    } else if (cy->other_tags < UINT16_MAX) {
      cy->other_tags++;
    }
    break;
  default:
    break;
  }
}

bool pgg_cycles_ready(pgg_cycles *c, char status, pgg_cycle *done)
{
  c->tx_status = status;
  if (!c->n)
    return false;
  *done = *at(c, 0);
  assert(c->bytes >= done->bytes);
  c->bytes -= done->bytes;
  c->head = (c->head + 1) % c->cap;
  c->n--;
  return true;
}

bool pgg_cycle_is_setup(const pgg_cycle *cy)
{
  return cy->setup_tags > 0 && cy->other_tags == 0 && !cy->rows && !cy->copy &&
         !cy->failed;
}
