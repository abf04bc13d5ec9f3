/* TEMPORARY stand-in until the explain parser lands. */
#ifndef PGG_EXPLAIN_H
#define PGG_EXPLAIN_H
#include "catalog.h"
typedef enum { PGG_EXPLAIN_NO = 0, PGG_EXPLAIN_YES, PGG_EXPLAIN_TRANSLATED } pgg_explain;
pgg_explain pgg_explain_error(const pgg_catalog *desired, const char *sqlstate, const char *sev_s,
                              const char *sev_v, const char *message);
#endif
