/*
 * colorder.h — tables whose column order differs from the desired schema's
 * (ADD COLUMN appends): SELECT *, INSERT without a column list and COPY see
 * another order. Reported by check, never repaired (that is a rewrite).
 */
#ifndef PGG_COLORDER_H
#define PGG_COLORDER_H

#include "catalog.h"

/*
 * For every table in both catalogs (sorted), compare the desired order of
 * its desired columns with the order they have, or will have once the
 * repair appends the missing ones; extra live columns are ignored. Appends
 * one line per table that differs to out and counts them in *tables. Pure.
 */
int pgg_column_order(const pgg_catalog *desired, const pgg_catalog *live, pgg_buf *out,
                     unsigned *tables);

#endif
