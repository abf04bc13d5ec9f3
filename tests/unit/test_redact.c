/*
 * test_redact.c — the admin URL's password never reaches a log line: masked
 * in any text (libpq's messages included), printed as ****, found even in a
 * string libpq refuses, and ambiguous URIs refused.
 */
#include "redact.h"
#include "check.h"

/* in redacted with the candidates of conninfo (static result). */
static const char *masked(const char *conninfo, const char *in)
{
  static char out[1024];
  pgg_secrets s;
  pgg_secrets_init(&s);
  if (pgg_secrets_add_conninfo(&s, conninfo))
    return "(error)";
  pgg_redact(&s, in, out, sizeof out);
  pgg_secrets_free(&s);
  return out;
}

static const char *printed(const char *conninfo)
{
  static char out[1024];
  pgg_buf b;
  pgg_buf_init(&b);
  if (pgg_redact_conninfo(conninfo, &b) || b.len >= sizeof out) {
    pgg_buf_free(&b);
    return "(error)";
  }
  memcpy(out, b.data, b.len);
  out[b.len] = 0;
  pgg_buf_free(&b);
  return out;
}

static const struct {
  const char *conninfo, *want;
} print_cases[] = {
    {"postgresql://app:s3cr3t@db.example:5432/app", "postgresql://app:****@db.example:5432/app"},
    {"postgres://app:s3cr3t@db/app", "postgres://app:****@db/app"},
    {"postgresql://app@db/app", "postgresql://app@db/app"},                  /* no password */
    {"postgresql://db:5432/app", "postgresql://db:5432/app"},                /* no userinfo */
    {"postgresql://app:p%40ss%2Fw@db/app", "postgresql://app:****@db/app"},  /* percent-encoded */
    {"postgresql://app:pw@db/app?sslmode=require&password=other",
     "postgresql://app:****@db/app?sslmode=require&password=****"},
    {"postgresql://app@db/app?password=qq", "postgresql://app@db/app?password=****"},
    {"host=db user=app password=s3cr3t dbname=app", "host=db user=app password=**** dbname=app"},
    {"host=db password = s3cr3t", "host=db password = ****"},
    {"host=db password='my s3cr3t' dbname=app", "host=db password=**** dbname=app"},
    {"host=db password='it\\'s s3cr3t' dbname=app", "host=db password=**** dbname=app"},
    {"password=s3cr3t", "password=****"},
    {"host=db password='unterminated s3cr3t", "host=db password=****"},       /* malformed */
    {"postgresql://app:s3%ZZcr3t@db/app", "postgresql://app:****@db/app"},   /* libpq refuses it */
    {"postgresql://app:s3cr3t@[::1/app", "postgresql://app:****@[::1/app"},  /* libpq refuses it */
    {"postgresql://app:x7@q9@db/app", "postgresql://app:****@db/app"},      /* ambiguous '@' */
    {"host=db dbname=passwordless", "host=db dbname=passwordless"},
    /* several hosts (libpq's multi-host syntax): the one password still masked */
    {"postgresql://app:s3cr3t@db1:5432,db2:5433/app?target_session_attrs=any",
     "postgresql://app:****@db1:5432,db2:5433/app?target_session_attrs=any"},
    {"postgresql://app:s3cr3t@[::1]:5432,[::2]:5433/app",
     "postgresql://app:****@[::1]:5432,[::2]:5433/app"},
    {"postgresql://app@db1,db2:5433/app?password=s3cr3t",
     "postgresql://app@db1,db2:5433/app?password=****"},
    {"postgresql://db1:5432,db2:5433/app", "postgresql://db1:5432,db2:5433/app"},
    {"host=db1,db2 port=5432,5433 user=app password=s3cr3t",
     "host=db1,db2 port=5432,5433 user=app password=****"},
};

TEST(conninfo_is_printed_with_its_password_as_stars)
{
  for (size_t i = 0; i < sizeof print_cases / sizeof print_cases[0]; i++)
    CHECK_STR(printed(print_cases[i].conninfo), print_cases[i].want);
}

static const struct {
  const char *conninfo, *text, *want;
} mask_cases[] = {
    /* libpq echoes a bad port, never the password; nothing to mask */
    {"postgresql://u:s3cr3t@h:notaport/db", "invalid integer value \"notaport\" for connection option \"port\"",
     "invalid integer value \"notaport\" for connection option \"port\""},
    /* a parse error quoting the whole URI */
    {"postgresql://u:s3cr3t@[::1/db",
     "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"postgresql://u:s3cr3t@[::1/db\"",
     "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"postgresql://u:****@[::1/db\""},
    /* a parse error quoting the raw, badly percent-encoded password */
    {"postgresql://u:sec%ZZret@h/db", "invalid percent-encoded token: \"sec%ZZret\"",
     "invalid percent-encoded token: \"****\""},
    /* percent-encoded: both the raw and the decoded form are secrets */
    {"postgresql://u:p%40ss%20word@h/db", "raw p%40ss%20word decoded p@ss word",
     "raw **** decoded ****"},
    /* an unencoded '@': libpq takes "x7" as the password and "q9@h" as the host */
    {"postgresql://u:x7@q9@h/db", "could not translate host name \"q9@h\" to address",
     "could not translate host name \"****@h\" to address"},
    /* the query's password and the userinfo's are both secrets */
    {"postgresql://u:first@h/db?password=second", "first and second",
     "**** and ****"},
    /* keyword form, quoted with escapes */
    {"host=h password='a \\'b\\' c'", "said a 'b' c and a \\'b\\' c", "said **** and ****"},
    {"host=h password=plain", "plain text", "**** text"},
    /* longest first: a secret containing another is masked whole */
    {"postgresql://u:ab%40abc@h/db", "ab@abc", "****"},
    /* several hosts: libpq's message names each, the password wherever it shows */
    {"postgresql://u:s3cr3t@h1:5432,h2:5433/db",
     "connection to server at \"h1\", port 5432 failed: session is read-only\n"
     "connection to server at \"h2\", port 5433 failed: s3cr3t",
     "connection to server at \"h1\", port 5432 failed: session is read-only\n"
     "connection to server at \"h2\", port 5433 failed: ****"},
    {"host=h1,h2 port=1,2 password=s3cr3t", "h1 s3cr3t h2", "h1 **** h2"},
    /* no password: nothing masked */
    {"postgresql://u@h/db", "user u on h", "user u on h"},
};

TEST(every_candidate_password_is_masked_in_any_text)
{
  for (size_t i = 0; i < sizeof mask_cases / sizeof mask_cases[0]; i++)
    CHECK_STR(masked(mask_cases[i].conninfo, mask_cases[i].text), mask_cases[i].want);
}

TEST(redact_truncates_without_splitting_a_secret)
{
  pgg_secrets s;
  pgg_secrets_init(&s);
  REQUIRE(pgg_secrets_add_conninfo(&s, "password=abcdefgh") == PGG_OK);
  char out[8];
  pgg_redact(&s, "xyabcdefgh", out, sizeof out);
  CHECK_STR(out, "xy****");
  pgg_redact(&s, "abcdefg", out, sizeof out);  /* not the whole secret: kept */
  CHECK_STR(out, "abcdefg");
  pgg_secrets_free(&s);
}

static const struct {
  const char *conninfo;
  int rc;
  const char *must_not_contain;
} valid_cases[] = {
    {"postgresql://u:s3cr3t@h:5432/db", PGG_OK, NULL},
    {"host=h user=u password='x y' dbname=db", PGG_OK, NULL},
    {"postgresql://u:p%40ss@h/db", PGG_OK, NULL},
    {"postgresql://u:s3cr3t@h1:5432,h2:5433/db?target_session_attrs=read-write", PGG_OK, NULL},
    {"host=h1,h2 port=5432,5433 password=s3cr3t", PGG_OK, NULL},
    {"postgresql://u:sec%ZZret@h/db", PGG_ERR_CONFIG, "ZZret"},
    {"postgresql://u:s3cr3t@[::1/db", PGG_ERR_CONFIG, "s3cr3t"},
    {"postgresql://u:s3cr3t@h/db?foo=bar", PGG_ERR_CONFIG, "s3cr3t"},
    {"host=h password='s3cr3t", PGG_ERR_CONFIG, "s3cr3t"},
    {"nonsense", PGG_ERR_CONFIG, NULL},
    {"postgresql://u:x7@q9@h/db", PGG_ERR_CONFIG, "q9"},
    {"postgresql://u:qz/xy@h/db", PGG_ERR_CONFIG, "qz"},
};

TEST(conninfo_check_refuses_what_libpq_refuses_and_ambiguous_userinfo)
{
  for (size_t i = 0; i < sizeof valid_cases / sizeof valid_cases[0]; i++) {
    pgg_buf err;
    pgg_buf_init(&err);
    int rc = pgg_conninfo_check(valid_cases[i].conninfo, &err);
    pgg_buf_append_u8(&err, 0);
    const char *msg = (const char *)err.data;
    CHECK_INT(rc, valid_cases[i].rc);
    if (rc) {
      CHECK(msg && *msg);
      if (valid_cases[i].must_not_contain && strstr(msg, valid_cases[i].must_not_contain))
        fprintf(stderr, "  case %zu leaks: %s\n", i, msg);
      CHECK(!valid_cases[i].must_not_contain || !strstr(msg, valid_cases[i].must_not_contain));
    }
    pgg_buf_free(&err);
  }
}

TEST(registered_secrets_accumulate)
{
  REQUIRE(pgg_secrets_register_conninfo("postgresql://a:one@h/db") == PGG_OK);
  REQUIRE(pgg_secrets_register_conninfo("host=h password=two") == PGG_OK);
  char out[64];
  pgg_redact(pgg_secrets_global(), "one two three", out, sizeof out);
  CHECK_STR(out, "**** **** three");
}
