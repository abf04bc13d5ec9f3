/*
 * config.c — the schema guard's default settings, before flags override them.
 */
#include "guard.h"

#include <string.h>

void pgg_guard_config_defaults(pgg_guard_config *cfg)
{
  memset(cfg, 0, sizeof *cfg);
  cfg->repair_mode = PGG_REPAIR_MODE_ON_ERROR;
  /* Long enough for a repair of a few dozen tables, short enough that a
   * client waiting on it does not time out first. */
  cfg->repair_wait = 5.0;
  cfg->drift_interval = 30.0;
  cfg->cooldown = 30.0;
  /* A repair that cannot get its locks within 2 s gives up rather than queue
   * the application's own statements behind its ACCESS EXCLUSIVE requests. */
  cfg->lock_timeout_ms = 2000;
  cfg->statement_timeout_ms = 30000;
  cfg->shadow_keep = 1;   /* the previous version, for a rolling deploy */
  /* A twin beside a renamed column splits the application's writes. */
  cfg->allow_twin = false;
}
