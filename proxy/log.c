/*
 * log.c — logfmt lines on stderr, one per event.
 */
#include "log.h"

#include "redact.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>

int pgg_log_level = PGG_LOG_INFO;

static const char *const names[] = {"debug", "info", "warn", "error"};

int pgg_log_level_parse(const char *s)
{
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0)
      return i;
  return -1;
}

void pgg_log(int level, const char *event, const char *fmt, ...)
{
  if (level < pgg_log_level)
    return;
  char line[2048];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s event=%s",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, (int)(tv.tv_usec / 1000), names[level], event);
  if (fmt && *fmt && n > 0 && (size_t)n < sizeof(line) - 2) {
    line[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m > 0)
      n += m;
  }
  if (n < 0 || (size_t)n > sizeof(line) - 2)
    n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  line[n] = 0;
  /* The last line of defence for the admin and shadow URLs' passwords:
   * callers mask what they log, and whatever slips through is masked here. */
  const pgg_secrets *secrets = pgg_secrets_global();
  char masked[sizeof(line) + 64];
  const char *out = line;
  if (secrets->n) {
    n = (int)pgg_redact(secrets, line, masked, sizeof(masked) - 1);
    if (n == 0 || masked[n - 1] != '\n')
      masked[n++] = '\n';
    masked[n] = 0;
    out = masked;
  }
  /* One write per line so lines from a crash handler or helper thread never interleave. */
  fwrite(out, 1, (size_t)n, stderr);
}

const char *pgg_logq(const char *s)
{
  static _Thread_local char slots[4][512];
  static _Thread_local int next;
  char *out = slots[next++ & 3];
  size_t o = 0;
  out[o++] = '"';
  for (; s && *s && o < sizeof(slots[0]) - 4; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[o++] = '\\';
      out[o++] = (char)ch;
    } else if (ch < 0x20 || ch == 0x7f) {
      /* Control bytes (a client's user name may carry terminal escapes)
       * never reach the log as they are. */
      out[o++] = ' ';
    } else {
      out[o++] = (char)ch;
    }
  }
  out[o++] = '"';
  out[o] = 0;
  return out;
}
