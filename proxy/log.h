/*
 * log.h — one logfmt line per event on stderr: ts, level, event, then
 * key=value pairs. Never query text or passwords.
 */
#ifndef PGG_LOG_H
#define PGG_LOG_H

enum { PGG_LOG_DEBUG, PGG_LOG_INFO, PGG_LOG_WARN, PGG_LOG_ERROR };

extern int pgg_log_level;

int pgg_log_level_parse(const char *s);
/* fmt holds the key=value pairs after event=...; values with spaces must be quoted by the caller via pgg_logq(). */
void pgg_log(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A logfmt-quoted copy of s in a static rotating buffer (4 slots). */
const char *pgg_logq(const char *s);

#endif
