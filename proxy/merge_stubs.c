/* TEMPORARY stand-in for the function that lands with the explain change. */
#include "proxy.h"
#include "explain.h"
pgg_explain pgg_explain_error(const pgg_catalog *desired, const char *sqlstate, const char *sev_s,
                              const char *sev_v, const char *message)
{
  return PGG_EXPLAIN_YES;
}
