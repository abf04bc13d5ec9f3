/*
 * test_tls.c — the TLS engine in memory: a pgguard-as-server and a
 * pgguard-as-client pgg_tls pumped into each other, with certificates minted
 * at run time (so nothing expires), plus the SCRAM -PLUS stripping.
 */
#include "check.h"
#include "../../proxy/tls.c"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <unistd.h>

/* ---- certificates, minted once per run into a temporary directory ------- */

static char tmpdir[64];
static bool fixtures_ready;
static long next_serial = 1;

#define NFILES 16
static char made[NFILES][128];
static int nmade;

static const char *path_of(const char *name)
{
  for (int i = 0; i < nmade; i++) {
    const char *base = strrchr(made[i], '/') + 1;
    if (strcmp(base, name) == 0)
      return made[i];
  }
  fprintf(stderr, "no fixture %s\n", name);
  abort();
}

static const char *new_path(const char *name)
{
  if (nmade >= NFILES)
    abort();
  snprintf(made[nmade], sizeof made[nmade], "%s/%s", tmpdir, name);
  return made[nmade++];
}

static void remove_fixtures(void)
{
  for (int i = 0; i < nmade; i++)
    unlink(made[i]);
  if (tmpdir[0])
    rmdir(tmpdir);
}

static void add_ext(X509 *x, X509V3_CTX *v, int nid, const char *value)
{
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v, nid, value);
  if (!e || !X509_add_ext(x, e, -1))
    abort();
  X509_EXTENSION_free(e);
}

/* A certificate for key, signed by issuer (or self-signed when issuer is NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       bool ca, const char *san, long from_days, long to_days)
{
  X509 *x = X509_new();
  if (!x)
    abort();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), next_serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(x), to_days * 86400);
  X509_set_pubkey(x, key);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX v;
  X509V3_set_ctx_nodb(&v);
  X509V3_set_ctx(&v, issuer ? issuer : x, x, NULL, NULL, 0);
  add_ext(x, &v, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (ca)
    add_ext(x, &v, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(x, &v, NID_subject_key_identifier, "hash");
  if (san)
    add_ext(x, &v, NID_subject_alt_name, san);
  if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
    abort();
  return x;
}

static void write_cert(const char *name, X509 *x)
{
  FILE *f = fopen(new_path(name), "w");
  if (!f || !PEM_write_X509(f, x))
    abort();
  fclose(f);
}

static void write_key(const char *name, EVP_PKEY *k, const char *passphrase)
{
  FILE *f = fopen(new_path(name), "w");
  const EVP_CIPHER *enc = passphrase ? EVP_aes_256_cbc() : NULL;
  if (!f || !PEM_write_PrivateKey(f, k, enc, (unsigned char *)passphrase,
                                  passphrase ? (int)strlen(passphrase) : 0, NULL, NULL))
    abort();
  fclose(f);
}

static EVP_PKEY *new_key(void)
{
  EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  if (!k)
    abort();
  return k;
}

static void setup(void)
{
  if (fixtures_ready)
    return;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/pgg_tls_XXXXXX");
  if (!mkdtemp(tmpdir))
    abort();
  atexit(remove_fixtures);

  const char *san = "DNS:localhost,IP:127.0.0.1";
  EVP_PKEY *ca_key = new_key(), *other_ca_key = new_key();
  X509 *ca = make_cert(ca_key, "pgguard test CA", NULL, NULL, true, NULL, -1, 3650);
  X509 *other_ca = make_cert(other_ca_key, "some other CA", NULL, NULL, true, NULL, -1, 3650);
  write_cert("ca.pem", ca);
  write_cert("other_ca.pem", other_ca);

  EVP_PKEY *k = new_key();
  X509 *good = make_cert(k, "localhost", ca, ca_key, false, san, -1, 365);
  X509 *expired = make_cert(k, "localhost", ca, ca_key, false, san, -30, -1);
  X509 *foreign = make_cert(k, "localhost", other_ca, other_ca_key, false, san, -1, 365);
  X509 *cn_only = make_cert(k, "db.internal", ca, ca_key, false, NULL, -1, 365);
  write_cert("server.pem", good);
  write_cert("expired.pem", expired);
  write_cert("foreign.pem", foreign);
  write_cert("cn_only.pem", cn_only);
  write_key("server.key", k, NULL);
  write_key("ca.key", ca_key, NULL);          /* a real key that fits none of the above */
  write_key("encrypted.key", k, "secret");

  FILE *f = fopen(new_path("garbage.pem"), "w");
  if (!f)
    abort();
  fputs("this is not a certificate\n", f);
  fclose(f);

  X509_free(ca);
  X509_free(other_ca);
  X509_free(good);
  X509_free(expired);
  X509_free(foreign);
  X509_free(cn_only);
  EVP_PKEY_free(k);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(other_ca_key);
  fixtures_ready = true;
}

/* ---- a TLS client and a TLS server wired back to back ----------------------- */

typedef struct {
  pgg_tls_ctx *sctx, *cctx;
  pgg_tls *srv;             /* pgguard's client leg: the TLS server */
  pgg_tls *cli;             /* pgguard's server leg: the TLS client */
  pgg_buf c2s, s2c;         /* ciphertext in flight */
  pgg_buf srv_plain, cli_plain;
  pgg_buf srv_err, cli_err;
  int srv_rc, cli_rc;
  size_t piece;             /* deliver ciphertext in pieces this big; 0 = whole */
} pair;

static void pair_init(pair *p)
{
  memset(p, 0, sizeof *p);
  pgg_buf_init(&p->c2s);
  pgg_buf_init(&p->s2c);
  pgg_buf_init(&p->srv_plain);
  pgg_buf_init(&p->cli_plain);
  pgg_buf_init(&p->srv_err);
  pgg_buf_init(&p->cli_err);
}

static void pair_free(pair *p)
{
  pgg_tls_free(p->srv);
  pgg_tls_free(p->cli);
  pgg_tls_ctx_free(p->sctx);
  pgg_tls_ctx_free(p->cctx);
  pgg_buf_free(&p->c2s);
  pgg_buf_free(&p->s2c);
  pgg_buf_free(&p->srv_plain);
  pgg_buf_free(&p->cli_plain);
  pgg_buf_free(&p->srv_err);
  pgg_buf_free(&p->cli_err);
}

/* Contexts for both ends; the client starts its handshake. 0 or the first failure. */
static int pair_open(pair *p, const char *cert, const char *key, pgg_sslmode mode,
                     const char *ca, const char *host)
{
  setup();
  pair_init(p);
  int rc = pgg_tls_server_ctx_new(path_of(cert), path_of(key), &p->sctx, &p->srv_err);
  if (!rc)
    rc = pgg_tls_client_ctx_new(mode, ca ? path_of(ca) : NULL, &p->cctx, &p->cli_err);
  return rc;
}

static int pair_start(pair *p, const char *host)
{
  int rc = pgg_tls_new(p->sctx, NULL, &p->srv);
  if (!rc)
    rc = pgg_tls_new(p->cctx, host, &p->cli);
  if (!rc)
    rc = p->cli_rc = pgg_tls_start(p->cli, &p->c2s, &p->cli_err);
  return rc;
}

/* Hand one side the bytes in flight toward it, in pieces; a failed side drops them. */
static void deliver(pgg_tls *t, pgg_buf *in_flight, size_t piece, pgg_buf *plain,
                    pgg_buf *out, pgg_buf *err, int *rc)
{
  pgg_buf in = *in_flight;
  pgg_buf_init(in_flight);
  size_t step = piece ? piece : in.len;
  for (size_t off = 0; off < in.len && !*rc; off += step) {
    size_t n = in.len - off < step ? in.len - off : step;
    *rc = pgg_tls_feed(t, in.data + off, n, plain, out, err);
  }
  pgg_buf_free(&in);
}

static void pump(pair *p)
{
  for (int round = 0; round < 10000 && (p->c2s.len || p->s2c.len); round++) {
    deliver(p->srv, &p->c2s, p->piece, &p->srv_plain, &p->s2c, &p->srv_err, &p->srv_rc);
    deliver(p->cli, &p->s2c, p->piece, &p->cli_plain, &p->c2s, &p->cli_err, &p->cli_rc);
  }
}

static int pair_handshake(pair *p, const char *cert, const char *key, pgg_sslmode mode,
                          const char *ca, const char *host)
{
  int rc = pair_open(p, cert, key, mode, ca, host);
  if (!rc)
    rc = pair_start(p, host);
  if (!rc)
    pump(p);
  return rc;
}

static const char *err_text(pgg_buf *b)
{
  if (pgg_buf_append_u8(b, 0))
    abort();
  b->len--;
  return (const char *)b->data;
}

static bool err_has(pgg_buf *b, const char *needle)
{
  bool ok = b->len && strstr(err_text(b), needle) != NULL;
  if (!ok)
    fprintf(stderr, "  expected \"%s\" in \"%s\"\n", needle, b->len ? err_text(b) : "");
  return ok;
}

static bool plain_is(const pgg_buf *b, const char *s)
{
  return b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

/* ---- handshake and data ------------------------------------------------------ */

TEST(verify_full_handshake_completes_and_bytes_round_trip_both_ways)
{
  pair p;
  REQUIRE(pair_handshake(&p, "server.pem", "server.key", PGG_SSLMODE_VERIFY_FULL,
                         "ca.pem", "localhost") == PGG_OK);
  CHECK_INT(p.cli_rc, PGG_OK);
  CHECK_INT(p.srv_rc, PGG_OK);
  CHECK(pgg_tls_established(p.cli));
  CHECK(pgg_tls_established(p.srv));
  CHECK_STR(pgg_tls_version(p.cli), "TLSv1.3");
  CHECK_STR(pgg_tls_version(p.srv), "TLSv1.3");
  CHECK(strlen(pgg_tls_cipher(p.srv)) > 0);
  CHECK_STR(pgg_tls_cipher(p.cli), pgg_tls_cipher(p.srv));
  /* SNI carries the host name to the server. */
  CHECK_STR(SSL_get_servername(p.srv->ssl, TLSEXT_NAMETYPE_host_name), "localhost");

  REQUIRE(pgg_tls_write(p.cli, (const uint8_t *)"hello server", 12, &p.c2s, &p.cli_err) == 0);
  CHECK(p.c2s.len > 12);
  CHECK(memmem(p.c2s.data, p.c2s.len, "hello", 5) == NULL);  /* it is encrypted */
  REQUIRE(pgg_tls_write(p.srv, (const uint8_t *)"hello client", 12, &p.s2c, &p.srv_err) == 0);
  pump(&p);
  CHECK(plain_is(&p.srv_plain, "hello server"));
  CHECK(plain_is(&p.cli_plain, "hello client"));
  CHECK_INT(p.cli_rc, PGG_OK);
  CHECK_INT(p.srv_rc, PGG_OK);
  pair_free(&p);
}

TEST(one_megabyte_round_trips_both_ways_in_odd_pieces)
{
  pair p;
  REQUIRE(pair_handshake(&p, "server.pem", "server.key", PGG_SSLMODE_VERIFY_FULL,
                         "ca.pem", "localhost") == PGG_OK);
  REQUIRE(pgg_tls_established(p.cli) && pgg_tls_established(p.srv));
  size_t total = 1 << 20;
  uint8_t *data = malloc(total);
  REQUIRE(data);
  for (size_t i = 0; i < total; i++)
    data[i] = (uint8_t)(i * 2654435761u >> 13);
  p.piece = 1460;  /* a TCP segment's worth at a time */
  for (size_t off = 0; off < total; off += 7919) {
    size_t n = total - off < 7919 ? total - off : 7919;
    CHECK_INT(pgg_tls_write(p.cli, data + off, n, &p.c2s, &p.cli_err), PGG_OK);
    CHECK_INT(pgg_tls_write(p.srv, data + off, n, &p.s2c, &p.srv_err), PGG_OK);
    if ((off / 7919) % 16 == 0)
      pump(&p);
  }
  pump(&p);
  CHECK_INT(p.srv_rc, PGG_OK);
  CHECK_INT(p.cli_rc, PGG_OK);
  CHECK_INT(p.srv_plain.len, total);
  CHECK_INT(p.cli_plain.len, total);
  CHECK(p.srv_plain.len == total && memcmp(p.srv_plain.data, data, total) == 0);
  CHECK(p.cli_plain.len == total && memcmp(p.cli_plain.data, data, total) == 0);
  free(data);
  pair_free(&p);
}

TEST(handshake_completes_when_fed_one_byte_at_a_time)
{
  pair p;
  REQUIRE(pair_open(&p, "server.pem", "server.key", PGG_SSLMODE_VERIFY_FULL, "ca.pem",
                    "localhost") == PGG_OK);
  p.piece = 1;
  REQUIRE(pair_start(&p, "localhost") == PGG_OK);
  pump(&p);
  CHECK(pgg_tls_established(p.cli));
  CHECK(pgg_tls_established(p.srv));
  REQUIRE(pgg_tls_write(p.cli, (const uint8_t *)"Q", 1, &p.c2s, &p.cli_err) == 0);
  pump(&p);
  CHECK(plain_is(&p.srv_plain, "Q"));
  pair_free(&p);
}

TEST(bytes_written_before_the_handshake_are_sent_once_it_completes)
{
  pair p;
  REQUIRE(pair_open(&p, "server.pem", "server.key", PGG_SSLMODE_REQUIRE, NULL,
                    "localhost") == PGG_OK);
  REQUIRE(pgg_tls_new(p.sctx, NULL, &p.srv) == PGG_OK);
  REQUIRE(pgg_tls_new(p.cctx, "localhost", &p.cli) == PGG_OK);
  /* The proxy may have the StartupMessage before TLS is up. */
  CHECK_INT(pgg_tls_write(p.cli, (const uint8_t *)"startup", 7, &p.c2s, &p.cli_err), PGG_OK);
  CHECK_INT(pgg_tls_write(p.cli, (const uint8_t *)"+more", 5, &p.c2s, &p.cli_err), PGG_OK);
  CHECK_INT(p.c2s.len, 0);
  CHECK(!pgg_tls_established(p.cli));
  REQUIRE(pgg_tls_start(p.cli, &p.c2s, &p.cli_err) == PGG_OK);
  CHECK(p.c2s.len > 0);
  CHECK_INT(p.c2s.data[0], 22);  /* a handshake record: the ClientHello */
  pump(&p);
  CHECK(pgg_tls_established(p.srv));
  CHECK(plain_is(&p.srv_plain, "startup+more"));
  pair_free(&p);
}

TEST(tls_1_2_client_is_accepted_with_a_forward_secret_aead_cipher)
{
  pair p;
  REQUIRE(pair_open(&p, "server.pem", "server.key", PGG_SSLMODE_REQUIRE, NULL, NULL) == 0);
  SSL_CTX_set_max_proto_version(p.cctx->ssl_ctx, TLS1_2_VERSION);
  REQUIRE(pair_start(&p, "localhost") == PGG_OK);
  pump(&p);
  REQUIRE(pgg_tls_established(p.srv));
  CHECK_STR(pgg_tls_version(p.srv), "TLSv1.2");
  const char *c = pgg_tls_cipher(p.srv);
  CHECK(strncmp(c, "ECDHE-", 6) == 0);
  CHECK(strstr(c, "GCM") || strstr(c, "CHACHA20"));
  pair_free(&p);
}

TEST(tls_1_1_client_is_refused_by_the_server)
{
  pair p;
  REQUIRE(pair_open(&p, "server.pem", "server.key", PGG_SSLMODE_REQUIRE, NULL, NULL) == 0);
  /* An old client: OpenSSL 3 only offers TLS 1.1 at security level 0. */
  SSL_CTX *old = p.cctx->ssl_ctx;
  SSL_CTX_set_security_level(old, 0);
  REQUIRE(SSL_CTX_set_cipher_list(old, "DEFAULT:@SECLEVEL=0") == 1);
  REQUIRE(SSL_CTX_set_min_proto_version(old, TLS1_VERSION) == 1);
  REQUIRE(SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION) == 1);
  REQUIRE(pair_start(&p, "localhost") == PGG_OK);
  /* The ClientHello really went out, asking for TLS 1.1 (3,2), so it is the server that refuses. */
  REQUIRE(p.c2s.len > 10);
  CHECK_INT(p.c2s.data[9], 3);
  CHECK_INT(p.c2s.data[10], 2);
  pump(&p);
  CHECK(!pgg_tls_established(p.srv));
  CHECK(!pgg_tls_established(p.cli));
  CHECK_INT(p.srv_rc, PGG_ERR_IO);
  CHECK(err_has(&p.srv_err, "TLS handshake failed: unsupported protocol "
                            "(pgguard requires TLS 1.2 or newer)"));
  CHECK_INT(p.cli_rc, PGG_ERR_IO);
  CHECK(err_has(&p.cli_err, "the peer sent alert \"protocol version\""));
  pair_free(&p);
}

/* ---- verification --------------------------------------------------------------- */

TEST(verify_full_matches_an_ip_address_in_the_certificate_and_sends_no_sni_for_it)
{
  pair p;
  REQUIRE(pair_handshake(&p, "server.pem", "server.key", PGG_SSLMODE_VERIFY_FULL,
                         "ca.pem", "127.0.0.1") == PGG_OK);
  CHECK_INT(p.cli_rc, PGG_OK);
  CHECK(pgg_tls_established(p.cli));
  CHECK(SSL_get_servername(p.srv->ssl, TLSEXT_NAMETYPE_host_name) == NULL);
  pair_free(&p);
}

TEST(verify_full_with_the_wrong_host_fails_naming_both_names)
{
  pair p;
  REQUIRE(pair_handshake(&p, "server.pem", "server.key", PGG_SSLMODE_VERIFY_FULL,
                         "ca.pem", "db.example") == PGG_OK);
  CHECK(!pgg_tls_established(p.cli));
  CHECK(!pgg_tls_established(p.srv));
  CHECK_INT(p.cli_rc, PGG_ERR_IO);
  CHECK(err_has(&p.cli_err, "server certificate for \"localhost\" (and 1 other name) "
                            "does not match host name \"db.example\""));
  /* The client's alert tells the server why. */
  CHECK_INT(p.srv_rc, PGG_ERR_IO);
  CHECK(err_has(&p.srv_err, "TLS handshake failed: "));
  pair_free(&p);
}

TEST(verify_full_with_the_wrong_ip_address_fails)
{
  pair p;
  REQUIRE(pair_handshake(&p, "server.pem", "server.key", PGG_SSLMODE_VERIFY_FULL,
                         "ca.pem", "10.1.2.3") == PGG_OK);
  CHECK_INT(p.cli_rc, PGG_ERR_IO);
  CHECK(err_has(&p.cli_err, "does not match host name \"10.1.2.3\""));
  pair_free(&p);
}

TEST(verify_full_falls_back_to_the_common_name_without_subject_alt_names)
{
  pair p;
  REQUIRE(pair_handshake(&p, "cn_only.pem", "server.key", PGG_SSLMODE_VERIFY_FULL,
                         "ca.pem", "db.internal") == PGG_OK);
  CHECK_INT(p.cli_rc, PGG_OK);
  CHECK(pgg_tls_established(p.cli));
  pair_free(&p);

  REQUIRE(pair_handshake(&p, "cn_only.pem", "server.key", PGG_SSLMODE_VERIFY_FULL,
                         "ca.pem", "localhost") == PGG_OK);
  CHECK_INT(p.cli_rc, PGG_ERR_IO);
  CHECK(err_has(&p.cli_err, "server certificate for \"db.internal\" does not match host "
                            "name \"localhost\""));
  pair_free(&p);
}

TEST(verify_ca_with_the_wrong_ca_fails_with_unknown_issuer)
{
  pair p;
  REQUIRE(pair_handshake(&p, "foreign.pem", "server.key", PGG_SSLMODE_VERIFY_CA,
                         "ca.pem", "localhost") == PGG_OK);
  CHECK(!pgg_tls_established(p.cli));
  CHECK_INT(p.cli_rc, PGG_ERR_IO);
  CHECK(err_has(&p.cli_err, "certificate verify failed: unable to get local issuer "
                            "certificate (server certificate \"CN=localhost\")"));
  CHECK_INT(p.srv_rc, PGG_ERR_IO);
  CHECK(err_has(&p.srv_err, "TLS handshake failed: the peer sent alert \"unknown ca\""));
  pair_free(&p);
}

TEST(verify_ca_does_not_check_the_host_name)
{
  pair p;
  REQUIRE(pair_handshake(&p, "server.pem", "server.key", PGG_SSLMODE_VERIFY_CA,
                         "ca.pem", "db.example") == PGG_OK);
  CHECK_INT(p.cli_rc, PGG_OK);
  CHECK(pgg_tls_established(p.cli));
  pair_free(&p);
}

TEST(expired_server_certificate_fails)
{
  pair p;
  REQUIRE(pair_handshake(&p, "expired.pem", "server.key", PGG_SSLMODE_VERIFY_FULL,
                         "ca.pem", "localhost") == PGG_OK);
  CHECK(!pgg_tls_established(p.cli));
  CHECK_INT(p.cli_rc, PGG_ERR_IO);
  CHECK(err_has(&p.cli_err, "certificate verify failed: certificate has expired"));
  pair_free(&p);
}

TEST(require_without_a_ca_accepts_any_certificate)
{
  const char *certs[] = {"foreign.pem", "expired.pem", "server.pem"};
  for (size_t i = 0; i < 3; i++) {
    pair p;
    REQUIRE(pair_handshake(&p, certs[i], "server.key", PGG_SSLMODE_REQUIRE, NULL,
                           "db.example") == PGG_OK);
    CHECK_INT(p.cli_rc, PGG_OK);
    CHECK(pgg_tls_established(p.cli));
    CHECK(pgg_tls_established(p.srv));
    pair_free(&p);
  }
}

TEST(require_with_a_ca_verifies_the_chain_like_libpq)
{
  pair p;
  REQUIRE(pair_handshake(&p, "foreign.pem", "server.key", PGG_SSLMODE_REQUIRE, "ca.pem",
                         "localhost") == PGG_OK);
  CHECK_INT(p.cli_rc, PGG_ERR_IO);
  CHECK(err_has(&p.cli_err, "unable to get local issuer certificate"));
  pair_free(&p);

  /* The chain only: a wrong host name is still fine below verify-full. */
  REQUIRE(pair_handshake(&p, "server.pem", "server.key", PGG_SSLMODE_REQUIRE, "ca.pem",
                         "db.example") == PGG_OK);
  CHECK_INT(p.cli_rc, PGG_OK);
  pair_free(&p);
}

/* ---- configuration errors ------------------------------------------------------- */

TEST(missing_certificate_or_key_file_error_names_the_file)
{
  setup();
  pgg_tls_ctx *c = NULL;
  pgg_buf err;
  pgg_buf_init(&err);
  CHECK_INT(pgg_tls_server_ctx_new("/nonexistent/cert.pem", path_of("server.key"), &c, &err),
            PGG_ERR_CONFIG);
  CHECK(c == NULL);
  CHECK(err_has(&err, "cannot read TLS certificate file \"/nonexistent/cert.pem\": "
                      "No such file or directory"));
  pgg_buf_reset(&err);
  CHECK_INT(pgg_tls_server_ctx_new(path_of("server.pem"), "/nonexistent/key.pem", &c, &err),
            PGG_ERR_CONFIG);
  CHECK(err_has(&err, "cannot read TLS key file \"/nonexistent/key.pem\""));
  pgg_buf_reset(&err);
  CHECK_INT(pgg_tls_server_ctx_new(NULL, NULL, &c, &err), PGG_ERR_CONFIG);
  CHECK(err_has(&err, "certificate file and a key file"));
  pgg_buf_free(&err);
}

TEST(unusable_certificate_or_key_content_error_names_the_file)
{
  setup();
  pgg_tls_ctx *c = NULL;
  pgg_buf err;
  pgg_buf_init(&err);
  const char *garbage = path_of("garbage.pem");
  CHECK_INT(pgg_tls_server_ctx_new(garbage, path_of("server.key"), &c, &err), PGG_ERR_CONFIG);
  CHECK(err_has(&err, "TLS certificate file \""));
  CHECK(err_has(&err, garbage));
  CHECK(err_has(&err, "holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" line)"));
  pgg_buf_reset(&err);

  CHECK_INT(pgg_tls_server_ctx_new(path_of("server.pem"), garbage, &c, &err), PGG_ERR_CONFIG);
  CHECK(err_has(&err, "holds no PEM private key"));
  pgg_buf_reset(&err);

  /* A key of its own, but not this certificate's. */
  CHECK_INT(pgg_tls_server_ctx_new(path_of("server.pem"), path_of("ca.key"), &c, &err),
            PGG_ERR_CONFIG);
  CHECK(err_has(&err, "does not match the certificate in"));
  CHECK(err_has(&err, path_of("ca.key")));
  pgg_buf_reset(&err);

  /* An encrypted key fails at once instead of prompting for a passphrase. */
  CHECK_INT(pgg_tls_server_ctx_new(path_of("server.pem"), path_of("encrypted.key"), &c, &err),
            PGG_ERR_CONFIG);
  CHECK(err_has(&err, path_of("encrypted.key")));
  CHECK(err_has(&err, "is passphrase-protected; pgguard needs it unencrypted"));
  CHECK(c == NULL);
  pgg_buf_free(&err);
}

TEST(client_context_needs_a_readable_ca_for_verifying_modes)
{
  setup();
  pgg_tls_ctx *c = NULL;
  pgg_buf err;
  pgg_buf_init(&err);
  CHECK_INT(pgg_tls_client_ctx_new(PGG_SSLMODE_VERIFY_FULL, NULL, &c, &err), PGG_ERR_CONFIG);
  CHECK(err_has(&err, "sslmode verify-full needs a root certificate file (sslrootcert)"));
  pgg_buf_reset(&err);
  CHECK_INT(pgg_tls_client_ctx_new(PGG_SSLMODE_VERIFY_CA, "", &c, &err), PGG_ERR_CONFIG);
  CHECK(err_has(&err, "sslmode verify-ca needs"));
  pgg_buf_reset(&err);
  CHECK_INT(pgg_tls_client_ctx_new(PGG_SSLMODE_VERIFY_CA, "/nonexistent/root.crt", &c, &err),
            PGG_ERR_CONFIG);
  CHECK(err_has(&err, "cannot read TLS root certificate file \"/nonexistent/root.crt\""));
  pgg_buf_reset(&err);
  CHECK_INT(pgg_tls_client_ctx_new(PGG_SSLMODE_VERIFY_CA, path_of("garbage.pem"), &c, &err),
            PGG_ERR_CONFIG);
  CHECK(err_has(&err, path_of("garbage.pem")));
  pgg_buf_reset(&err);
  CHECK_INT(pgg_tls_client_ctx_new(PGG_SSLMODE_DISABLE, NULL, &c, &err), PGG_ERR_CONFIG);
  CHECK(c == NULL);

  /* "system" is the system trust store, as libpq's sslrootcert=system. */
  CHECK_INT(pgg_tls_client_ctx_new(PGG_SSLMODE_VERIFY_FULL, "system", &c, &err), PGG_OK);
  REQUIRE(c != NULL);
  /* verify-full with no host to check would check nothing. */
  pgg_tls *t = NULL;
  CHECK_INT(pgg_tls_new(c, NULL, &t), PGG_ERR_CONFIG);
  CHECK(t == NULL);
  pgg_tls_ctx_free(c);
  pgg_buf_free(&err);
}

TEST(sslmode_parse_accepts_libpq_names_only)
{
  const char *names[] = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"};
  for (int i = 0; i < 6; i++) {
    pgg_sslmode m = PGG_SSLMODE_DISABLE;
    CHECK_INT(pgg_sslmode_parse(names[i], &m), PGG_OK);
    CHECK_INT(m, i);
    CHECK_STR(pgg_sslmode_name(m), names[i]);
  }
  pgg_sslmode m;
  CHECK_INT(pgg_sslmode_parse("verify_full", &m), PGG_ERR_CONFIG);
  CHECK_INT(pgg_sslmode_parse("Require", &m), PGG_ERR_CONFIG);
  CHECK_INT(pgg_sslmode_parse("", &m), PGG_ERR_CONFIG);
  CHECK_INT(pgg_sslmode_parse(NULL, &m), PGG_ERR_CONFIG);
}

/* ---- stream behaviour ---------------------------------------------------------- */

TEST(close_notify_reaches_the_peer)
{
  pair p;
  REQUIRE(pair_handshake(&p, "server.pem", "server.key", PGG_SSLMODE_REQUIRE, NULL,
                         "localhost") == PGG_OK);
  REQUIRE(pgg_tls_established(p.srv));
  REQUIRE(pgg_tls_write(p.cli, (const uint8_t *)"X", 1, &p.c2s, &p.cli_err) == 0);
  CHECK(!pgg_tls_peer_closed(p.srv));
  pgg_tls_shutdown(p.cli, &p.c2s);
  pump(&p);
  CHECK_INT(p.srv_rc, PGG_OK);
  CHECK(plain_is(&p.srv_plain, "X"));
  CHECK(pgg_tls_peer_closed(p.srv));
  CHECK(!pgg_tls_peer_closed(p.cli));
  pair_free(&p);
}

TEST(plaintext_instead_of_tls_fails_and_every_later_call_fails)
{
  pair p;
  REQUIRE(pair_open(&p, "server.pem", "server.key", PGG_SSLMODE_REQUIRE, NULL, NULL) == 0);
  REQUIRE(pgg_tls_new(p.sctx, NULL, &p.srv) == PGG_OK);
  CHECK_STR(pgg_tls_version(p.srv), "");
  CHECK_STR(pgg_tls_cipher(p.srv), "");
  /* A client that sent SSLRequest, got 'S', then spoke plaintext anyway. */
  static const uint8_t startup[] = {0, 0, 0, 8, 4, 210, 22, 47};
  CHECK_INT(pgg_tls_feed(p.srv, startup, sizeof startup, &p.srv_plain, &p.s2c, &p.srv_err),
            PGG_ERR_IO);
  CHECK(err_has(&p.srv_err, "TLS handshake failed: "));
  CHECK(err_has(&p.srv_err, "(is the peer speaking TLS?)"));
  CHECK_INT(p.srv_plain.len, 0);
  CHECK(!pgg_tls_established(p.srv));
  pgg_buf_reset(&p.srv_err);
  CHECK_INT(pgg_tls_feed(p.srv, startup, sizeof startup, &p.srv_plain, &p.s2c, &p.srv_err),
            PGG_ERR_IO);
  CHECK_INT(pgg_tls_write(p.srv, startup, 1, &p.s2c, &p.srv_err), PGG_ERR_IO);
  CHECK_INT(pgg_tls_start(p.srv, &p.s2c, &p.srv_err), PGG_ERR_IO);
  CHECK(err_has(&p.srv_err, "already failed"));
  pgg_tls_shutdown(p.srv, &p.s2c);  /* harmless */
  pair_free(&p);
}

TEST(a_tampered_record_fails_the_connection)
{
  pair p;
  REQUIRE(pair_handshake(&p, "server.pem", "server.key", PGG_SSLMODE_REQUIRE, NULL,
                         "localhost") == PGG_OK);
  REQUIRE(pgg_tls_established(p.srv));
  REQUIRE(pgg_tls_write(p.cli, (const uint8_t *)"SELECT 1", 8, &p.c2s, &p.cli_err) == 0);
  REQUIRE(p.c2s.len > 10);
  p.c2s.data[p.c2s.len - 3] ^= 0x40;
  pump(&p);
  CHECK_INT(p.srv_rc, PGG_ERR_IO);
  CHECK(err_has(&p.srv_err, "TLS read failed: "));
  CHECK_INT(p.srv_plain.len, 0);
  pair_free(&p);
}

/* ---- SCRAM -PLUS stripping ---------------------------------------------------- */

static size_t sasl_body(uint8_t *out, const char *const *names, int n, bool terminate)
{
  size_t len = 0;
  out[len++] = 0, out[len++] = 0, out[len++] = 0, out[len++] = 10;
  for (int i = 0; i < n; i++) {
    memcpy(out + len, names[i], strlen(names[i]) + 1);
    len += strlen(names[i]) + 1;
  }
  if (terminate)
    out[len++] = 0;
  return len;
}

TEST(sasl_strip_keeps_a_list_without_plus_unchanged)
{
  uint8_t in[64];
  const char *names[] = {"SCRAM-SHA-256"};
  size_t n = sasl_body(in, names, 1, true);
  pgg_buf out;
  pgg_buf_init(&out);
  bool changed = true;
  CHECK_INT(pgg_sasl_strip_plus(in, n, &out, &changed), PGG_OK);
  CHECK(!changed);
  CHECK(out.len == n && memcmp(out.data, in, n) == 0);
  pgg_buf_free(&out);
}

TEST(sasl_strip_removes_plus_mechanism_first_or_second)
{
  const char *plus_first[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"};
  const char *plus_second[] = {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"};
  const char *only[] = {"SCRAM-SHA-256"};
  uint8_t want[64];
  size_t want_len = sasl_body(want, only, 1, true);
  const char *const *cases[] = {plus_first, plus_second};
  for (int c = 0; c < 2; c++) {
    uint8_t in[64];
    size_t n = sasl_body(in, cases[c], 2, true);
    pgg_buf out;
    pgg_buf_init(&out);
    bool changed = false;
    CHECK_INT(pgg_sasl_strip_plus(in, n, &out, &changed), PGG_OK);
    CHECK(changed);
    CHECK_INT(out.len, want_len);
    CHECK(out.len == want_len && memcmp(out.data, want, want_len) == 0);
    pgg_buf_free(&out);
  }
}

TEST(sasl_strip_rejects_malformed_bodies_and_leaves_output_alone)
{
  const char *names[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"};
  uint8_t in[64];
  pgg_buf out;
  pgg_buf_init(&out);
  REQUIRE(pgg_buf_append(&out, "keep", 4) == 0);
  bool changed = true;

  size_t n = sasl_body(in, names, 2, false);               /* no terminator */
  CHECK_INT(pgg_sasl_strip_plus(in, n, &out, &changed), PGG_ERR_PROTO);
  CHECK_INT(pgg_sasl_strip_plus(in, n - 1, &out, &changed), PGG_ERR_PROTO); /* cut mid-name */

  n = sasl_body(in, names, 2, true);
  in[n++] = 'x';                                           /* bytes after the terminator */
  CHECK_INT(pgg_sasl_strip_plus(in, n, &out, &changed), PGG_ERR_PROTO);

  n = sasl_body(in, names, 2, true);
  in[3] = 11;                                              /* SASLContinue, not SASL */
  CHECK_INT(pgg_sasl_strip_plus(in, n, &out, &changed), PGG_ERR_PROTO);
  CHECK_INT(pgg_sasl_strip_plus(in, 3, &out, &changed), PGG_ERR_PROTO);

  CHECK(!changed);
  CHECK(out.len == 4 && memcmp(out.data, "keep", 4) == 0);
  pgg_buf_free(&out);
}

/* ---- SCRAM channel binding through pgguard ------------------------------------ */

TEST(channel_binding_passes_only_for_the_same_certificate_bytes_on_both_legs)
{
  static const uint8_t cert[] = {0x30, 0x82, 0x01, 0x0a, 0x02, 0x01, 0x07};
  static const uint8_t other[] = {0x30, 0x82, 0x01, 0x0a, 0x02, 0x01, 0x08};
  static const uint8_t longer[] = {0x30, 0x82, 0x01, 0x0a, 0x02, 0x01, 0x07, 0x00};
  struct {
    const char *why;
    const uint8_t *presented;
    size_t plen;
    const uint8_t *served;
    size_t slen;
    bool passes;
  } cases[] = {
    {"the same bytes", cert, sizeof cert, cert, sizeof cert, true},
    {"the last byte differs", cert, sizeof cert, other, sizeof other, false},
    {"the server's is longer", cert, sizeof cert, longer, sizeof longer, false},
    {"pgguard's is longer", longer, sizeof longer, cert, sizeof cert, false},
    {"plaintext client leg", NULL, 0, cert, sizeof cert, false},
    {"plaintext server leg", cert, sizeof cert, NULL, 0, false},
    {"both plaintext", NULL, 0, NULL, 0, false},
    {"empty certificates", cert, 0, cert, 0, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bool got = pgg_channel_binding_passes(cases[i].presented, cases[i].plen, cases[i].served,
                                          cases[i].slen);
    if (got != cases[i].passes)
      fprintf(stderr, "  case \"%s\": got %d\n", cases[i].why, got);
    CHECK(got == cases[i].passes);
  }
}

/*
 * pgguard's two legs as two pairs: on the client leg pgguard (p->srv)
 * presents pgguard_cert; on the server leg PostgreSQL (q->srv) presents
 * server_cert to pgguard (q->cli). All certificates share one key.
 */
static bool legs_pass(const char *pgguard_cert, const char *server_cert)
{
  pair p, q;
  int prc = pair_handshake(&p, pgguard_cert, "server.key", PGG_SSLMODE_REQUIRE, NULL,
                           "localhost");
  int qrc = pair_handshake(&q, server_cert, "server.key", PGG_SSLMODE_REQUIRE, NULL,
                           "localhost");
  bool ok = prc == PGG_OK && qrc == PGG_OK;
  CHECK(ok && pgg_tls_established(p.srv) && pgg_tls_established(q.cli));
  bool passes = ok && pgg_tls_binding_passes(p.srv, q.cli);
  pair_free(&p);
  pair_free(&q);
  return passes;
}

TEST(channel_binding_passes_when_pgguard_presents_the_servers_own_certificate)
{
  CHECK(legs_pass("server.pem", "server.pem"));
  CHECK(legs_pass("foreign.pem", "foreign.pem"));
}

TEST(channel_binding_is_stripped_for_another_certificate_even_with_the_same_key_and_name)
{
  /* Same key, subject and names, other issuer or dates: another hash. */
  CHECK(!legs_pass("server.pem", "foreign.pem"));
  CHECK(!legs_pass("foreign.pem", "server.pem"));
  CHECK(!legs_pass("server.pem", "expired.pem"));
}

TEST(channel_binding_does_not_pass_without_tls_or_before_the_handshakes)
{
  pair p;
  REQUIRE(pair_open(&p, "server.pem", "server.key", PGG_SSLMODE_REQUIRE, NULL,
                    "localhost") == PGG_OK);
  REQUIRE(pair_start(&p, "localhost") == PGG_OK);
  /* Both connections exist, but nothing was exchanged yet. */
  CHECK(!pgg_tls_binding_passes(p.srv, p.cli));
  pump(&p);
  REQUIRE(pgg_tls_established(p.srv) && pgg_tls_established(p.cli));
  /* Back to back, p.cli received exactly what p.srv presented. */
  CHECK(pgg_tls_binding_passes(p.srv, p.cli));
  CHECK(!pgg_tls_binding_passes(NULL, p.cli));
  CHECK(!pgg_tls_binding_passes(p.srv, NULL));
  CHECK(!pgg_tls_binding_passes(NULL, NULL));
  pair_free(&p);
}
