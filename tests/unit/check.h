/*
 * check.h — the unit tests' tiny runner: TEST(name) defines a case, CHECK()
 * records a failure without stopping, REQUIRE() stops the case. Each test
 * file is its own executable, run by ctest; it prints one line per case and
 * exits non-zero if any failed.
 */
#ifndef PGG_CHECK_H
#define PGG_CHECK_H

#include <stdio.h>
#include <string.h>
#include <stdlib.h>

typedef void (*check_fn)(void);
struct check_case { const char *name; check_fn fn; };

#define CHECK_MAX_CASES 512
static struct check_case check_cases[CHECK_MAX_CASES];
static int check_ncases;
static int check_failed_now;

#define TEST(name)                                                         \
  static void test_##name(void);                                           \
  __attribute__((constructor)) static void register_##name(void) {         \
    if (check_ncases < CHECK_MAX_CASES)                                    \
      check_cases[check_ncases++] = (struct check_case){#name, test_##name}; \
  }                                                                        \
  static void test_##name(void)

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,  \
              #cond);                                                      \
      check_failed_now = 1;                                                \
    }                                                                      \
  } while (0)

#define REQUIRE(cond)                                                      \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "  %s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, \
              #cond);                                                      \
      check_failed_now = 1;                                                \
      return;                                                              \
    }                                                                      \
  } while (0)

#define CHECK_STR(a, b)                                                    \
  do {                                                                     \
    const char *check_a_ = (a), *check_b_ = (b);                           \
    if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {       \
      fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,   \
              check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)"); \
      check_failed_now = 1;                                                \
    }                                                                      \
  } while (0)

#define CHECK_INT(a, b)                                                    \
  do {                                                                     \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);        \
    if (check_a_ != check_b_) {                                            \
      fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__,    \
              __LINE__, #a, check_a_, check_b_);                           \
      check_failed_now = 1;                                                \
    }                                                                      \
  } while (0)

int main(int argc, char **argv)
{
  int failed = 0, ran = 0;
  for (int i = 0; i < check_ncases; i++) {
    if (argc > 1 && strcmp(argv[1], check_cases[i].name) != 0)
      continue;
    check_failed_now = 0;
    check_cases[i].fn();
    ran++;
    printf("%s %s\n", check_failed_now ? "FAIL" : "ok  ", check_cases[i].name);
    failed += check_failed_now;
  }
  printf("%d passed, %d failed\n", ran - failed, failed);
  return (failed || ran == 0) ? 1 : 0;
}

#endif
