/*
 * cli.c — `pgguard check` and `pgguard plan`: the drift report and the repair
 * plan on the command line, for the step right after a restore.
 */
#include "guard.h"
#include "colorder.h"
#include "history.h"
#include "introspect.h"
#include "redact.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Exit codes, as documented in guard.h. */
enum { EXIT_CLEAN = 0, EXIT_MISSING = 1, EXIT_ERROR = 2 };

static const char *bstr(const pgg_buf *b)
{
  return b->len ? (const char *)b->data : "";
}

/* A message on stderr, with the admin and shadow URLs' passwords masked:
 * libpq's connection errors can quote pieces of a URL. */
static void say(const pgg_guard_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(const pgg_guard_config *cfg, const char *fmt, ...)
{
  char raw[2048], out[2100];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(raw, sizeof raw, fmt, ap);
  va_end(ap);
  pgg_secrets s;
  pgg_secrets_init(&s);
  pgg_secrets_add_conninfo(&s, cfg->admin_url);
  pgg_secrets_add_conninfo(&s, cfg->shadow_url);
  const pgg_secrets *g = pgg_secrets_global();
  for (size_t i = 0; i < g->n; i++)
    pgg_secrets_add(&s, g->v[i]);
  pgg_redact(&s, raw, out, sizeof out);
  pgg_secrets_free(&s);
  fprintf(stderr, "pgguard: %s\n", out);
}

/* Desired and live catalogs and their drift, or a message on stderr. */
typedef struct {
  pgg_catalog desired, live;
  pgg_drift drift;
  PGconn *conn;
} cli_state;

static void state_free(cli_state *s)
{
  pgg_drift_free(&s->drift);
  pgg_catalog_free(&s->live);
  pgg_catalog_free(&s->desired);
  if (s->conn)
    PQfinish(s->conn);
}

static int load_drift(const pgg_guard_config *cfg, cli_state *s)
{
  pgg_catalog_init(&s->desired);
  pgg_catalog_init(&s->live);
  pgg_drift_init(&s->drift);
  s->conn = NULL;
  pgg_buf err;
  pgg_buf_init(&err);
  pgg_buf notes;
  pgg_buf_init(&notes);
  int rc = pgg_desired_load(cfg, &s->desired, &err, &notes, NULL);
  if (notes.len) {
    pgg_buf_append_u8(&notes, 0);
    for (char *line = strtok((char *)notes.data, "\n"); line; line = strtok(NULL, "\n"))
      say(cfg, "warning: %s", line);
  }
  pgg_buf_free(&notes);
  if (rc) {
    say(cfg, "%s", bstr(&err));
    goto out;
  }
  if (!(s->conn = pgg_pq_connect(cfg->admin_url, NULL, &err))) {
    say(cfg, "admin database: %s", bstr(&err));
    rc = PGG_ERR_UPSTREAM;
    goto out;
  }
  if ((rc = pgg_introspect(s->conn, &s->live, &err)) != PGG_OK) {
    say(cfg, "reading the live catalog: %s", bstr(&err));
    goto out;
  }
  if ((rc = pgg_diff(&s->desired, &s->live, &s->drift)) == PGG_OK && !cfg->allow_twin)
    rc = pgg_drift_renames(&s->drift);
  if (rc != PGG_OK) {
    fprintf(stderr, "pgguard: computing the drift: %s\n", pgg_strerror(rc));
    goto out;
  }
  /* As the repair sees it: which tables have rows, and so what needs a
   * migration rather than an additive statement. */
  if ((rc = pgg_introspect_has_rows(s->conn, &s->drift, &s->live, &err)) != PGG_OK) {
    say(cfg, "checking tables for rows: %s", bstr(&err));
    goto out;
  }
  if ((rc = pgg_drift_hazards(&s->drift, &s->live)) != PGG_OK)
    fprintf(stderr, "pgguard: computing the drift: %s\n", pgg_strerror(rc));
out:
  pgg_buf_free(&err);
  return rc;
}

static int write_out(const pgg_buf *b)
{
  if (b->len && fwrite(b->data, 1, b->len, stdout) != b->len)
    return -1;
  return fflush(stdout);
}

int pgg_cli_check(const pgg_guard_config *cfg, bool json, unsigned fail_on)
{
  cli_state s;
  if (load_drift(cfg, &s)) {
    state_free(&s);
    return EXIT_ERROR;
  }
  pgg_buf out, err;
  pgg_buf_init(&out);
  pgg_buf_init(&err);
  /* Which files made the desired schema, in which order: a migrations
   * folder applied in the wrong order is a wrong desired schema. */
  int rc = json ? PGG_OK : pgg_desired_files(cfg->schema_path, &out, &err);
  pgg_buf_free(&err);
  if (!rc)
    rc = json ? pgg_drift_format_json(&s.drift, &out) : pgg_drift_format_text(&s.drift, &out);
  /* SELECT *, INSERT without a column list and COPY see a different order. */
  if (!rc && !json) {
    pgg_buf lines;
    pgg_buf_init(&lines);
    unsigned n = 0;
    rc = pgg_column_order(&s.desired, &s.live, &lines, &n);
    if (!rc && n)
      rc = pgg_buf_printf(&out, "\ncolumn order differs from the desired schema in %u table%s "
                          "(SELECT *, INSERT without a column list and COPY see it; "
                          "pgguard never reorders, that is a rewrite):\n%.*s", n,
                          n == 1 ? "" : "s", (int)lines.len, (const char *)lines.data);
    pgg_buf_free(&lines);
  }
  /* A restored migration history that lags the schema: what to mark applied. */
  if (!rc && !json) {
    pgg_buf_init(&err);
    if (pgg_history_hints(cfg->schema_path, s.conn, &s.live, &out, &err) != PGG_OK)
      say(cfg, "warning: the migration history was not compared: %s", bstr(&err));
    pgg_buf_free(&err);
  }
  if (!rc && json)
    rc = pgg_buf_append_u8(&out, '\n');
  /* The states that fail the check (--fail-on; missing by default). */
  if (!fail_on)
    fail_on = 1u << PGG_DRIFT_MISSING;
  int code = EXIT_CLEAN;
  for (int st = 0; st < PGG_DRIFT__COUNT; st++)
    if ((fail_on & (1u << st)) && pgg_drift_state_count(&s.drift, (pgg_drift_state)st))
      code = EXIT_MISSING;
  if (rc || write_out(&out) != 0) {
    fprintf(stderr, "pgguard: cannot write the report\n");
    code = EXIT_ERROR;
  }
  pgg_buf_free(&out);
  state_free(&s);
  return code;
}

/* The plan as JSON: {"statements": [{"kind", "sql"}...], "relaxed_not_null", "partial"}. */
/* What the plan leaves out on purpose (it would rewrite a table with rows,
 * or it looks like a rename): one comment line each, or a JSON array. */
static int held_back(const pgg_drift *d, bool json, pgg_buf *out)
{
  int rc = json ? pgg_buf_printf(out, ", \"held_back\": [") : PGG_OK;
  bool first = true;
  for (size_t i = 0; !rc && i < d->n; i++) {
    const pgg_drift_item *it = &d->items[i];
    if (it->implied || !it->desired ||
        (it->state != PGG_DRIFT_NEEDS_MIGRATION && it->state != PGG_DRIFT_SUSPECTED_RENAME))
      continue;
    const pgg_object *o = it->desired;
    if (json) {
      rc = first ? PGG_OK : pgg_buf_append(out, ", ", 2);
      if (!rc)
        rc = pgg_drift_item_json(out, it);
    } else {
      rc = pgg_buf_printf(out, "-- not planned, %s: %s %s%s%s.%s: %s\n",
                          pgg_drift_state_name(it->state), pgg_obj_kind_name(o->kind),
                          o->schema ? o->schema : "", o->parent ? "." : "",
                          o->parent ? o->parent : "", o->name, it->why ? it->why : "");
    }
    first = false;
  }
  if (!rc && json)
    rc = pgg_buf_append_u8(out, ']');
  return rc;
}

static int plan_json(const pgg_plan *plan, const pgg_drift *d, bool partial, pgg_buf *out)
{
  int rc = pgg_buf_printf(out, "{\"statements\": [");
  for (size_t i = 0; !rc && i < plan->n; i++) {
    rc = pgg_buf_printf(out, "%s{\"kind\": ", i ? ", " : "");
    if (!rc)
      rc = pgg_json_str(out, pgg_stmt_kind_name(plan->stmts[i].kind));
    if (!rc)
      rc = pgg_buf_printf(out, ", \"sql\": ");
    if (!rc)
      rc = pgg_json_str(out, plan->stmts[i].sql);
    if (!rc)
      rc = pgg_buf_printf(out, ", \"group\": %d, \"runs\": ", pgg_stmt_group(plan, i));
    if (!rc)
      rc = pgg_json_str(out, pgg_group_name(pgg_stmt_group(plan, i)));
    if (!rc)
      rc = pgg_buf_printf(out, ", \"lock\": ");
    if (!rc)
      rc = pgg_json_str(out, pgg_stmt_lock(&plan->stmts[i]));
    if (!rc)
      rc = pgg_buf_printf(out, "}");
  }
  if (!rc)
    rc = pgg_buf_printf(out, "], \"relaxed_not_null\": %u, \"partial\": %s",
                        plan->relaxed_not_null, partial ? "true" : "false");
  if (!rc)
    rc = held_back(d, true, out);
  if (!rc)
    rc = pgg_buf_printf(out, "}\n");
  return rc;
}

int pgg_cli_plan(const pgg_guard_config *cfg, bool json)
{
  cli_state s;
  if (load_drift(cfg, &s)) {
    state_free(&s);
    return EXIT_ERROR;
  }
  pgg_plan plan;
  pgg_plan_init(&plan);
  pgg_buf out, err;
  pgg_buf_init(&out);
  pgg_buf_init(&err);
  int code = EXIT_CLEAN;
  /* load_drift made the repair's row check, so the plan shows NOT NULL
   * columns and index builds exactly as the repair would run them. */
  int rc = pgg_plan_build(&s.drift, &s.live, &plan);
  bool partial = rc == PGG_ERR_SCHEMA;
  if (partial)
    rc = PGG_OK;
  if (rc) {
    fprintf(stderr, "pgguard: planning the repair: %s\n", pgg_strerror(rc));
    code = EXIT_ERROR;
    goto out;
  }
  if (json) {
    rc = plan_json(&plan, &s.drift, partial, &out);
  } else if (plan.n == 0) {
    rc = pgg_buf_printf(&out, "-- nothing to repair\n");
  } else {
    rc = pgg_plan_format(&plan, &out);
    if (!rc && plan.relaxed_not_null)
      rc = pgg_buf_printf(&out, "-- %u NOT NULL column(s) added nullable: their table has rows\n",
                          plan.relaxed_not_null);
  }
  if (!rc && partial && !json)
    rc = pgg_buf_printf(&out, "-- some missing objects cannot be created additively "
                        "and are left out (see pgguard check)\n");
  if (!rc && !json)
    rc = held_back(&s.drift, false, &out);
  if (rc || write_out(&out) != 0) {
    fprintf(stderr, "pgguard: cannot write the plan\n");
    code = EXIT_ERROR;
  }
out:
  pgg_plan_free(&plan);
  pgg_buf_free(&out);
  pgg_buf_free(&err);
  state_free(&s);
  return code;
}
