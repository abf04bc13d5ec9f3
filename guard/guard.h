/*
 * guard.h — the schema guard's entry points for the proxy and the command
 * line: its settings, loading the desired schema, checking and repairing the
 * live database. Every function here blocks on libpq; the proxy calls them
 * on the libuv thread pool, never on the event loop.
 */
#ifndef PGG_GUARD_H
#define PGG_GUARD_H

#include "catalog.h"

typedef enum {
  PGG_REPAIR_MODE_ON_ERROR = 0,  /* repair when a guarded error arrives (default) */
  PGG_REPAIR_MODE_EAGER,         /* also at start-up and whenever a check finds missing objects */
  PGG_REPAIR_MODE_OFF,           /* report drift only */
} pgg_repair_mode;

typedef struct {
  const char *schema_path;       /* --schema: a .sql file or a folder of them */
  const char *admin_url;         /* --admin-url: libpq URL/conninfo of the guarded database */
  const char *shadow_url;        /* --shadow-url, or NULL: pgguard creates pgguard_shadow_<hash> */
  const char *object_owner;      /* --object-owner, or NULL: the guarded database's owner */
  pgg_repair_mode repair_mode;
  double repair_wait;            /* --repair-wait seconds (5) */
  double drift_interval;         /* --drift-interval seconds (30) */
  double cooldown;               /* --repair-cooldown seconds after a failed repair (30) */
  int lock_timeout_ms;           /* --lock-timeout (2000) */
  int statement_timeout_ms;      /* --statement-timeout (30000) */
  bool strict;                   /* --strict: refuse to start when the schema does not load */
  const char *exclude;           /* --exclude: patterns added to the bookkeeping tables left out */
  int shadow_keep;               /* --shadow-keep: older shadow databases kept besides the current (1) */
  const char *defer_to;          /* --defer-to: application_names no repair races ("pg_restore") */
  double settle;                 /* --settle seconds the catalog stays unchanged before an eager repair (5) */
  bool allow_twin;               /* --allow-twin: create a suspected rename's new object anyway */
} pgg_guard_config;

void pgg_guard_config_defaults(pgg_guard_config *cfg);

/*
 * Load the desired schema into its shadow database (creating it when it does
 * not exist yet, reusing it while the schema's content is unchanged) and read
 * the shadow's catalog into *desired. On failure err holds a message a person
 * can act on, naming the file, the line and PostgreSQL's message. notes
 * (may be NULL) gets one line per statement skipped while loading (a role
 * this server lacks) and per old shadow database dropped. *shadow_hash (may
 * be NULL) gets the hash naming the shadow database pgguard created, or 0
 * with --shadow-url.
 */
int pgg_desired_load(const pgg_guard_config *cfg, pgg_catalog *desired, pgg_buf *err,
                     pgg_buf *notes, uint64_t *shadow_hash);

/*
 * The files of the desired schema, in the order they apply and by which
 * migration tool's conventions (a folder), one per line, for `check`.
 */
int pgg_desired_files(const char *schema_path, pgg_buf *out, pgg_buf *err);

typedef enum {
  PGG_REPAIR_APPLIED = 0,   /* missing objects were created (maybe not all: failed_statements) */
  PGG_REPAIR_NOTHING,       /* nothing was missing (maybe another sidecar repaired first) */
  PGG_REPAIR_FAILED,        /* the plan or the connection failed; nothing was committed */
} pgg_repair_outcome;

typedef struct {
  pgg_repair_outcome outcome;
  unsigned statements;                            /* statements executed */
  unsigned counts[PGG_OBJ__COUNT][PGG_DRIFT__COUNT]; /* the drift afterwards */
  unsigned missing_labels;                        /* missing enum labels afterwards */
  bool drift_known;                               /* counts are valid */
  char *drift_json;                               /* the /drift report afterwards (heap), or NULL */
  char error[512];                                /* why it failed */
  unsigned failed_statements;                     /* APPLIED, but these were rolled back */
  double seconds;
  /* The plan's concurrent units (PGG_STMT_FIRST_CONCURRENT on), for
   * pgg_builder_run after the repair has answered its waiters. */
  pgg_plan builds;
} pgg_repair_result;

void pgg_repair_result_free(pgg_repair_result *r);

/*
 * The guard's own connection to the guarded database, opened on first use
 * and reopened after a failure. One caller at a time.
 */
typedef struct pgg_admin pgg_admin;

pgg_admin *pgg_admin_new(const pgg_guard_config *cfg);
void pgg_admin_free(pgg_admin *a);
/*
 * Take new lock_timeout, statement_timeout and object owner (SIGHUP), from
 * the next job on. Call only while no job runs. PGG_OK or PGG_ERR_NOMEM.
 */
int pgg_admin_set_limits(pgg_admin *a, const pgg_guard_config *cfg);
/* The shadow database this pgguard uses (its hash; 0: none), announced by a
 * shared advisory lock from the admin session's next connection on. Call
 * only while no job runs. */
void pgg_admin_set_shadow(pgg_admin *a, uint64_t hash);
/*
 * From another thread (the event loop's, at shutdown): cancel the statement
 * the admin session is running, and open no new session, so a job blocked
 * in libpq (a repair waiting on a lock) returns at once.
 */
void pgg_admin_cancel(pgg_admin *a);
/* Read live, diff against desired; change nothing. outcome is NOTHING or FAILED. */
int pgg_admin_check(pgg_admin *a, const pgg_catalog *desired, pgg_repair_result *out);
/*
 * Under the session-level pg_advisory_lock(PGG_ADVISORY_KEY), held from
 * the first transaction to the last: re-read live, diff, plan, run the
 * plan (enum labels committed first; then the rest with SET LOCAL
 * lock_timeout, statement_timeout and ROLE, each statement in a savepoint,
 * committing after each statement on a table that existed), refresh new
 * materialized views, re-read the drift. The concurrent units are left in
 * out->builds for pgg_builder_run.
 */
int pgg_admin_repair(pgg_admin *a, const pgg_catalog *desired, pgg_repair_result *out);

/*
 * The catalog probe between full checks: one cheap row on the admin session.
 * fingerprint changes whenever a schema, relation, type, function or enum
 * label of the guarded database is created, altered or dropped (temporary
 * objects excepted). defer_pid names another session that a repair must not
 * race: its application_name is in defer_to (a comma-separated list), or it
 * runs DDL (holds an ACCESS EXCLUSIVE lock on a relation of the database
 * that its open transaction creates, alters, drops or truncates). pgguard's
 * own sessions (application_name "pgguard...") are never one.
 */
typedef struct {
  char fingerprint[256];
  int defer_pid;              /* 0: nothing to defer to */
  char defer_why[128];        /* "application_name=pg_restore" or "access_exclusive_lock" */
  bool reconnected;           /* the session was (re)opened for this probe */
  char error[512];            /* why it failed (passwords masked) */
} pgg_probe_result;

/* PGG_OK, or PGG_ERR_UPSTREAM (no session) / PGG_ERR_DB, with out->error. */
int pgg_admin_probe(pgg_admin *a, const char *defer_to, pgg_probe_result *out);

/*
 * Whether the admin URL reaches the server the proxy's sessions go to
 * (--upstream): compared on the first admin session, by system_identifier
 * (or, where pg_control_system() is revoked, postmaster start time and
 * port). DIFFERENT makes every check and repair fail with PGG_ERR_CONFIG;
 * UNVERIFIED makes repairs fail so, and is compared again at every call.
 */
typedef enum {
  PGG_SERVER_UNCHECKED = 0,  /* no admin session yet, or no --upstream given */
  PGG_SERVER_SAME,
  PGG_SERVER_DIFFERENT,
  PGG_SERVER_UNVERIFIED,     /* could not tell (no access, upstream unreachable) */
} pgg_server_match;

/* Where the proxied sessions go; before the first check. host NULL: no comparison. */
int pgg_admin_set_upstream(pgg_admin *a, const char *host, int port);
/* Open the admin session now (the first one compares servers); err is masked. */
int pgg_admin_connect(pgg_admin *a, pgg_buf *err);
/* The database the admin session is in (PQdb), "" before the first session. */
const char *pgg_admin_dbname(const pgg_admin *a);
/* The comparison's result and a sentence saying why (no password). */
pgg_server_match pgg_admin_server(const pgg_admin *a, const char **why);

/* The fixed advisory lock key every pgguard sidecar repairs under. */
#define PGG_ADVISORY_KEY 0x7067677561726400LL /* "pgguard\0" */
/*
 * Every admin session holds pg_advisory_lock_shared(PGG_SHADOW_USE_KEY,
 * low 31 bits of its shadow's hash): pg_locks then shows, cluster-wide,
 * which shadow databases some pgguard uses, and pruning keeps those.
 */
#define PGG_SHADOW_USE_KEY 0x70676773 /* "pggs" */
/* Pruning old shadow databases: one pgguard at a time, in the maintenance database. */
#define PGG_SHADOW_PRUNE_KEY (PGG_ADVISORY_KEY + 2)

/*
 * Indexes and keys of tables with rows, built CONCURRENTLY after the
 * repair committed (guard/build.c): on a session of their own, so neither
 * a waiting request's replay nor the next repair waits for a build, and
 * single-flight across sidecars under the session-level advisory lock
 * PGG_BUILD_KEY (a sidecar that finds it taken leaves the builds to its
 * holder). Neither statement_timeout nor lock_timeout bounds a build or
 * its DROP (CREATE INDEX CONCURRENTLY waits for every older transaction,
 * blocking nobody); lock_timeout bounds the brief finish. Stopping cancels.
 */
#define PGG_BUILD_KEY (PGG_ADVISORY_KEY + 3)

typedef struct {
  unsigned built;        /* units finished */
  unsigned failed;       /* units that failed; the first one's error is in error */
  unsigned already;      /* units whose index or constraint existed: nothing built */
  bool busy;             /* another pgguard holds PGG_BUILD_KEY: nothing was done */
  char error[512];
  double seconds;
} pgg_build_result;

typedef struct pgg_builder pgg_builder;

pgg_builder *pgg_builder_new(void);
void pgg_builder_free(pgg_builder *b);
/* Run the units (three statements each, see PGG_STMT_DROP_INVALID_INDEX).
 * PGG_OK when the session worked (units may still have failed). */
int pgg_builder_run(pgg_builder *b, const char *conninfo, int lock_timeout_ms,
                    int statement_timeout_ms, const pgg_plan *units, pgg_build_result *out);
/* From another thread: cancel the running statement and start no other. */
void pgg_builder_cancel(pgg_builder *b);

/* `pgguard check` and `pgguard plan`: print, return the process exit code. */
/* check: 0 clean, 1 drift in a state of fail_on (1 << pgg_drift_state; 0 means missing), 2 error */
int pgg_cli_check(const pgg_guard_config *cfg, bool json, unsigned fail_on);
int pgg_cli_plan(const pgg_guard_config *cfg, bool json);   /* 0 printed, 2 error */

#endif
