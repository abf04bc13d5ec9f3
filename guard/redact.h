/*
 * redact.h — keeping the admin and shadow URLs' passwords out of every log
 * line, error message and output: finding a connection string's password
 * (even in a string libpq cannot parse), masking it in any text, and
 * printing the connection string itself with the password as ****.
 */
#ifndef PGG_REDACT_H
#define PGG_REDACT_H

#include "pgg.h"

#define PGG_REDACT_MASK "****"
/* Candidate secrets one set holds; a connection string gives a few. */
#define PGG_SECRETS_MAX 32

typedef struct {
  char *v[PGG_SECRETS_MAX];
  size_t n;
} pgg_secrets;

void pgg_secrets_init(pgg_secrets *s);
void pgg_secrets_free(pgg_secrets *s);

/*
 * Add every string that may be conninfo's password: the password libpq
 * parses (URI userinfo, ?password=, password=), and, so that a malformed
 * string leaks nothing either, what a person meant as the password: the URI
 * userinfo after its first ':' up to each '@' (raw and percent-decoded, and
 * its '@'-separated pieces when there is more than one '@'), and every
 * password= value (quoted or not, escaped or not). Returns PGG_OK or
 * PGG_ERR_NOMEM.
 */
int pgg_secrets_add_conninfo(pgg_secrets *s, const char *conninfo);

/* Add one secret as it is. */
int pgg_secrets_add(pgg_secrets *s, const char *secret);

/*
 * Copy in to out (outsz bytes, always NUL-terminated when outsz > 0) with
 * every occurrence of every secret replaced by ****; longer secrets first,
 * so one that contains another is masked whole. Pure. Returns the length
 * written.
 */
size_t pgg_redact(const pgg_secrets *s, const char *in, char *out, size_t outsz);

/* The same into a buffer (appended, NUL-terminated). */
int pgg_redact_buf(const pgg_secrets *s, const char *in, pgg_buf *out);

/*
 * conninfo (a postgresql:// URI or key=value string) as it may be printed:
 * the password in the userinfo, a ?password= parameter or a password= value
 * (quoted or not) replaced by ****. Appended to out, NUL-terminated.
 */
int pgg_redact_conninfo(const char *conninfo, pgg_buf *out);

/*
 * Check that libpq parses conninfo and that its userinfo is unambiguous (a
 * password holding '@' must be percent-encoded: libpq splits at the first
 * one). On failure appends to err why, naming no password, and returns
 * PGG_ERR_CONFIG.
 */
int pgg_conninfo_check(const char *conninfo, pgg_buf *err);

/*
 * The process's secrets: every URL pgguard was configured with registers
 * here (pgg_secrets_register_conninfo), and pgg_log() and the command-line
 * messages mask them as a last line of defence. Registered strings are kept
 * until exit; register from one thread, before the threads that read.
 */
int pgg_secrets_register_conninfo(const char *conninfo);
const pgg_secrets *pgg_secrets_global(void);

#endif
