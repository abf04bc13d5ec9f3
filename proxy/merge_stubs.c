/* TEMPORARY stand-ins for functions that land with the guardian and explain changes. */
#include "proxy.h"
#include "explain.h"
pgg_explain pgg_explain_error(const pgg_catalog *desired, const char *sqlstate, const char *sev_s,
                              const char *sev_v, const char *message)
{
  return PGG_EXPLAIN_YES;
}
bool pgg_guardian_guards_database(const char *db) { return true; }
const pgg_catalog *pgg_guardian_desired(void) { return NULL; }
void pgg_guardian_upstream_ok(void) {}
