/*
 * tls.c — TLS for both legs over OpenSSL memory BIOs: OpenSSL never touches a
 * socket; the connection code feeds it ciphertext and sends what it produces.
 */
#include "tls.h"
#include "protocol.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Forward-secret AEAD suites for TLS 1.2 (TLS 1.3 suites are all fine). */
#define SERVER_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"
/* Toward PostgreSQL be as lenient as libpq with TLS 1.2 servers, minus the broken. */
#define CLIENT_CIPHERS "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES"

/* How much plaintext one SSL_read may produce; a TLS record holds at most 16 KiB. */
#define READ_CHUNK 16384

#define ERRF(err, ...)                  \
  do {                                  \
    if (err)                            \
      pgg_buf_printf(err, __VA_ARGS__); \
  } while (0)

struct pgg_tls_ctx {
  SSL_CTX *ssl_ctx;
  bool server;          /* pgguard is the TLS server: the client leg */
  pgg_sslmode mode;
  bool verify_chain;
  bool verify_host;
};

struct pgg_tls {
  pgg_tls_ctx *ctx;
  SSL *ssl;
  BIO *rbio;            /* ciphertext from the socket; owned by ssl */
  BIO *wbio;            /* ciphertext for the socket; owned by ssl */
  char *host;           /* server leg: the name the certificate must carry */
  pgg_buf pending;      /* application bytes written before the handshake ended */
  bool established;
  bool failed;
  bool peer_closed;
  bool shut;
  /* The first verification failure, kept for the message: OpenSSL does not
   * keep a rejected peer certificate. */
  int bad_error;
  int bad_depth;
  X509 *bad_cert;
};

/* ---- sslmode ------------------------------------------------------------ */

static const char *const sslmode_names[] = {
  [PGG_SSLMODE_DISABLE] = "disable",
  [PGG_SSLMODE_ALLOW] = "allow",
  [PGG_SSLMODE_PREFER] = "prefer",
  [PGG_SSLMODE_REQUIRE] = "require",
  [PGG_SSLMODE_VERIFY_CA] = "verify-ca",
  [PGG_SSLMODE_VERIFY_FULL] = "verify-full",
};

int pgg_sslmode_parse(const char *s, pgg_sslmode *out)
{
  if (!s)
    return PGG_ERR_CONFIG;
  for (size_t i = 0; i < sizeof sslmode_names / sizeof sslmode_names[0]; i++) {
    if (strcmp(s, sslmode_names[i]) == 0) {
      *out = (pgg_sslmode)i;
      return PGG_OK;
    }
  }
  return PGG_ERR_CONFIG;
}

const char *pgg_sslmode_name(pgg_sslmode m)
{
  if ((size_t)m >= sizeof sslmode_names / sizeof sslmode_names[0])
    return "unknown";
  return sslmode_names[m];
}

/* ---- OpenSSL errors ------------------------------------------------------ */

/*
 * The first reason on OpenSSL's (thread-local) error queue, which names the
 * cause rather than the call chain, then an empty queue so the next
 * connection's message is not polluted by this one.
 */
static const char *take_ssl_reason(void)
{
  unsigned long e = ERR_get_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  if (!e)
    return "no OpenSSL error recorded";
  return r ? r : "unknown OpenSSL error";
}

/* OpenSSL checks a key against the loaded certificate as it loads it. */
static bool is_key_mismatch(unsigned long e)
{
  return ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
}

static bool key_mismatch(void)
{
  return is_key_mismatch(ERR_peek_error()) || is_key_mismatch(ERR_peek_last_error());
}

/* Whether the start of a file holds needle: enough to tell what a PEM file is. */
static bool file_mentions(const char *path, const char *needle)
{
  char buf[16384];
  FILE *f = fopen(path, "r");
  if (!f)
    return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  /* A NUL inside would hide what follows from strstr; a PEM file has none. */
  for (size_t i = 0; i < n; i++)
    if (!buf[i])
      buf[i] = ' ';
  return strstr(buf, needle) != NULL;
}

/*
 * A handshake failure as a person reads it: the peer's alert said as such
 * (it is the peer's verdict, not ours), and a hint when the bytes were not
 * TLS at all, as when a peer ignored the 'S' answer.
 */
static void describe_failure(const char *doing, pgg_buf *err)
{
  unsigned long e = ERR_peek_error();
  int reason = ERR_GET_REASON(e);
  bool ssl = ERR_GET_LIB(e) == ERR_LIB_SSL;
  const char *text = take_ssl_reason();
  if (ssl && reason >= SSL_AD_REASON_OFFSET) {
    const char *alert = strstr(text, " alert ");
    ERRF(err, "%s: the peer sent alert \"%s\"", doing, alert ? alert + 7 : text);
  } else if (ssl && (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
                     reason == SSL_R_PACKET_LENGTH_TOO_LONG)) {
    ERRF(err, "%s: %s (is the peer speaking TLS?)", doing, text);
  } else if (ssl && reason == SSL_R_UNSUPPORTED_PROTOCOL) {
    ERRF(err, "%s: %s (pgguard requires TLS 1.2 or newer)", doing, text);
  } else {
    ERRF(err, "%s: %s", doing, text);
  }
}

static int check_readable(const char *what, const char *path, pgg_buf *err)
{
  FILE *f = fopen(path, "r");
  if (!f) {
    ERRF(err, "cannot read %s \"%s\": %s", what, path, strerror(errno));
    return PGG_ERR_CONFIG;
  }
  fclose(f);
  return PGG_OK;
}

/* ---- contexts ------------------------------------------------------------- */

/* A passphrase prompt would block the event loop on a terminal nobody
 * watches; an encrypted key fails to load instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
  return 0;
}

static int verify_cb(int ok, X509_STORE_CTX *sc)
{
  if (ok)
    return 1;
  SSL *ssl = X509_STORE_CTX_get_ex_data(sc, SSL_get_ex_data_X509_STORE_CTX_idx());
  pgg_tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
  if (t && !t->bad_error) {
    t->bad_error = X509_STORE_CTX_get_error(sc);
    t->bad_depth = X509_STORE_CTX_get_error_depth(sc);
    X509 *x = X509_STORE_CTX_get_current_cert(sc);
    if (x && X509_up_ref(x))
      t->bad_cert = x;
  }
  return 0;
}

static SSL_CTX *new_ssl_ctx(const SSL_METHOD *method, const char *ciphers)
{
  SSL_CTX *sc = SSL_CTX_new(method);
  if (!sc)
    return NULL;
  if (!SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) ||
      !SSL_CTX_set_cipher_list(sc, ciphers)) {
    SSL_CTX_free(sc);
    return NULL;
  }
  /* Renegotiation and compression only ever brought attacks (CRIME,
   * renegotiation DoS); PostgreSQL disables both too. */
  SSL_CTX_set_options(sc, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  /* Idle connections are the common case; do not hold 2 x 16 KiB each. */
  SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_default_passwd_cb(sc, no_passphrase);
  return sc;
}

static int wrap_ctx(SSL_CTX *sc, bool server, pgg_sslmode mode, bool chain, bool host,
                    pgg_tls_ctx **out)
{
  pgg_tls_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    SSL_CTX_free(sc);
    return PGG_ERR_NOMEM;
  }
  c->ssl_ctx = sc;
  c->server = server;
  c->mode = mode;
  c->verify_chain = chain;
  c->verify_host = host;
  *out = c;
  return PGG_OK;
}

int pgg_tls_server_ctx_new(const char *cert_file, const char *key_file,
                           pgg_tls_ctx **out, pgg_buf *err)
{
  *out = NULL;
  if (!cert_file || !*cert_file || !key_file || !*key_file) {
    ERRF(err, "TLS toward clients needs both a certificate file and a key file");
    return PGG_ERR_CONFIG;
  }
  int rc = check_readable("TLS certificate file", cert_file, err);
  if (!rc)
    rc = check_readable("TLS key file", key_file, err);
  if (rc)
    return rc;

  ERR_clear_error();
  SSL_CTX *sc = new_ssl_ctx(TLS_server_method(), SERVER_CIPHERS);
  if (!sc) {
    ERRF(err, "cannot create a TLS context: %s", take_ssl_reason());
    return PGG_ERR_NOMEM;
  }
  /* No resumption: PostgreSQL clients do not resume, and tickets would need
   * a key shared and rotated across processes. */
  SSL_CTX_set_options(sc, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_num_tickets(sc, 0);
  SSL_CTX_set_dh_auto(sc, 1);

  if (SSL_CTX_use_certificate_chain_file(sc, cert_file) != 1) {
    if (!file_mentions(cert_file, "CERTIFICATE-----"))
      ERRF(err, "TLS certificate file \"%s\" holds no PEM certificate "
                "(no \"-----BEGIN CERTIFICATE-----\" line)", cert_file);
    else
      ERRF(err, "TLS certificate file \"%s\" holds no usable PEM certificate: %s",
           cert_file, take_ssl_reason());
    ERR_clear_error();
    SSL_CTX_free(sc);
    return PGG_ERR_CONFIG;
  }
  if (SSL_CTX_use_PrivateKey_file(sc, key_file, SSL_FILETYPE_PEM) != 1) {
    if (key_mismatch()) {
      ERRF(err, "TLS key file \"%s\" does not match the certificate in \"%s\"", key_file,
           cert_file);
      ERR_clear_error();
      SSL_CTX_free(sc);
      return PGG_ERR_CONFIG;
    }
    if (file_mentions(key_file, "ENCRYPTED"))
      ERRF(err, "TLS key file \"%s\" is passphrase-protected; pgguard needs it unencrypted "
                "(openssl pkey -in KEY -out PLAIN_KEY)", key_file);
    else if (!file_mentions(key_file, "PRIVATE KEY-----"))
      ERRF(err, "TLS key file \"%s\" holds no PEM private key "
                "(no \"-----BEGIN ... PRIVATE KEY-----\" line)", key_file);
    else
      ERRF(err, "TLS key file \"%s\" holds no usable PEM private key: %s", key_file,
           take_ssl_reason());
    ERR_clear_error();
    SSL_CTX_free(sc);
    return PGG_ERR_CONFIG;
  }
  if (SSL_CTX_check_private_key(sc) != 1) {
    ERRF(err, "TLS key file \"%s\" does not match the certificate in \"%s\": %s",
         key_file, cert_file, take_ssl_reason());
    SSL_CTX_free(sc);
    return PGG_ERR_CONFIG;
  }
  return wrap_ctx(sc, true, PGG_SSLMODE_REQUIRE, false, false, out);
}

int pgg_tls_client_ctx_new(pgg_sslmode mode, const char *ca_file,
                           pgg_tls_ctx **out, pgg_buf *err)
{
  *out = NULL;
  bool has_ca = ca_file && *ca_file;
  bool system = has_ca && strcmp(ca_file, "system") == 0;
  if (mode == PGG_SSLMODE_DISABLE || (size_t)mode > PGG_SSLMODE_VERIFY_FULL) {
    ERRF(err, "no TLS context is needed for sslmode %s", pgg_sslmode_name(mode));
    return PGG_ERR_CONFIG;
  }
  if ((mode == PGG_SSLMODE_VERIFY_CA || mode == PGG_SSLMODE_VERIFY_FULL) && !has_ca) {
    ERRF(err, "sslmode %s needs a root certificate file (sslrootcert) to verify the "
              "server against, or \"system\" for the system's trust store",
         pgg_sslmode_name(mode));
    return PGG_ERR_CONFIG;
  }
  if (has_ca && !system) {
    int rc = check_readable("TLS root certificate file", ca_file, err);
    if (rc)
      return rc;
  }

  ERR_clear_error();
  SSL_CTX *sc = new_ssl_ctx(TLS_client_method(), CLIENT_CIPHERS);
  if (!sc) {
    ERRF(err, "cannot create a TLS context: %s", take_ssl_reason());
    return PGG_ERR_NOMEM;
  }
  if (system && SSL_CTX_set_default_verify_paths(sc) != 1) {
    ERRF(err, "cannot load the system's trusted certificates: %s", take_ssl_reason());
    SSL_CTX_free(sc);
    return PGG_ERR_CONFIG;
  }
  if (has_ca && !system && SSL_CTX_load_verify_locations(sc, ca_file, NULL) != 1) {
    ERRF(err, "TLS root certificate file \"%s\" holds no usable PEM certificate: %s",
         ca_file, take_ssl_reason());
    SSL_CTX_free(sc);
    return PGG_ERR_CONFIG;
  }
  /* As libpq: a root certificate, once given, is always checked, whatever
   * the mode; without one, require means encryption only. */
  SSL_CTX_set_verify(sc, has_ca ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                     has_ca ? verify_cb : NULL);
  return wrap_ctx(sc, false, mode, has_ca, mode == PGG_SSLMODE_VERIFY_FULL, out);
}

void pgg_tls_ctx_free(pgg_tls_ctx *ctx)
{
  if (!ctx)
    return;
  SSL_CTX_free(ctx->ssl_ctx);
  free(ctx);
}

/* ---- connections ---------------------------------------------------------- */

static bool is_ip_literal(const char *host)
{
  unsigned char a[16];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* The server leg: SNI and, for verify-full, the name or address to match. */
static int set_peer_name(pgg_tls *t, const char *host)
{
  bool ip = is_ip_literal(host);
  /* RFC 6066 forbids IP literals in SNI; libpq does not send them either. */
  if (!ip && !SSL_set_tlsext_host_name(t->ssl, host))
    return PGG_ERR_NOMEM;
  if (!t->ctx->verify_host)
    return PGG_OK;
  X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
  /* libpq accepts a wildcard only as the whole leftmost label. */
  X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host)
              : X509_VERIFY_PARAM_set1_host(vp, host, 0);
  return ok == 1 ? PGG_OK : PGG_ERR_CONFIG;
}

int pgg_tls_new(pgg_tls_ctx *ctx, const char *host, pgg_tls **out)
{
  *out = NULL;
  bool has_host = host && *host;
  /* verify-full without a name would verify nothing: refuse rather than pass. */
  if (ctx->verify_host && !has_host)
    return PGG_ERR_CONFIG;
  pgg_tls *t = calloc(1, sizeof *t);
  if (!t)
    return PGG_ERR_NOMEM;
  t->ctx = ctx;
  pgg_buf_init(&t->pending);
  ERR_clear_error();
  t->ssl = SSL_new(ctx->ssl_ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->rbio || !t->wbio) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return PGG_ERR_NOMEM;
  }
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_app_data(t->ssl, t);
  if (ctx->server)
    SSL_set_accept_state(t->ssl);
  else
    SSL_set_connect_state(t->ssl);

  int rc = PGG_OK;
  if (!ctx->server && has_host) {
    t->host = strdup(host);
    rc = t->host ? set_peer_name(t, host) : PGG_ERR_NOMEM;
  }
  ERR_clear_error();
  if (rc) {
    pgg_tls_free(t);
    return rc;
  }
  *out = t;
  return PGG_OK;
}

void pgg_tls_free(pgg_tls *t)
{
  if (!t)
    return;
  SSL_free(t->ssl);
  X509_free(t->bad_cert);
  free(t->host);
  pgg_buf_free(&t->pending);
  free(t);
}

/* Move everything OpenSSL wrote for the socket into out. */
static int drain(pgg_tls *t, pgg_buf *out)
{
  for (;;) {
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0)
      return PGG_OK;
    if (n > INT_MAX)
      n = INT_MAX;
    if (pgg_buf_reserve(out, n))
      return PGG_ERR_NOMEM;
    int r = BIO_read(t->wbio, out->data + out->len, (int)n);
    if (r <= 0)
      return PGG_ERR_IO;
    out->len += (size_t)r;
  }
}

/* Printable text for a name taken from a certificate, which an attacker may have chosen. */
static void put_clean(char *dst, size_t cap, const unsigned char *s, size_t n)
{
  size_t j = 0;
  for (size_t i = 0; i < n && j + 1 < cap; i++)
    dst[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
  dst[j] = 0;
}

/* The first name a certificate is for (SAN DNS or IP, else CN) and how many more it has. */
static void cert_names(X509 *x, char *first, size_t cap, int *others)
{
  int count = 0;
  first[0] = 0;
  GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
    char buf[INET6_ADDRSTRLEN] = "";
    if (g->type == GEN_DNS) {
      if (count == 0)
        put_clean(first, cap, ASN1_STRING_get0_data(g->d.dNSName),
                  (size_t)ASN1_STRING_length(g->d.dNSName));
    } else if (g->type == GEN_IPADD) {
      int len = ASN1_STRING_length(g->d.iPAddress);
      const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
      if (len != 4 && len != 16)
        continue;
      inet_ntop(len == 4 ? AF_INET : AF_INET6, a, buf, sizeof buf);
      if (count == 0)
        put_clean(first, cap, (const unsigned char *)buf, strlen(buf));
    } else {
      continue;
    }
    count++;
  }
  GENERAL_NAMES_free(sans);
  if (count == 0) {
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    if (n > 0) {
      put_clean(first, cap, (const unsigned char *)cn, (size_t)n);
      count = 1;
    }
  }
  *others = count > 0 ? count - 1 : 0;
}

static void verify_message(pgg_tls *t, pgg_buf *err)
{
  int code = t->bad_error;
  X509 *x = t->bad_cert;
  if ((code == X509_V_ERR_HOSTNAME_MISMATCH || code == X509_V_ERR_IP_ADDRESS_MISMATCH) && x) {
    char first[256];
    int others;
    cert_names(x, first, sizeof first, &others);
    if (!first[0]) {
      ERRF(err, "server certificate names no host, so it cannot match host name \"%s\"",
           t->host ? t->host : "");
    } else if (others > 0) {
      ERRF(err, "server certificate for \"%s\" (and %d other name%s) does not match "
                "host name \"%s\"",
           first, others, others == 1 ? "" : "s", t->host ? t->host : "");
    } else {
      ERRF(err, "server certificate for \"%s\" does not match host name \"%s\"", first,
           t->host ? t->host : "");
    }
    return;
  }
  char subject[256] = "";
  if (x) {
    BIO *b = BIO_new(BIO_s_mem());
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
      char raw[256];
      int n = BIO_read(b, raw, sizeof raw);
      if (n > 0)
        put_clean(subject, sizeof subject, (const unsigned char *)raw, (size_t)n);
    }
    BIO_free(b);
  }
  if (!subject[0])
    ERRF(err, "certificate verify failed: %s", X509_verify_cert_error_string(code));
  else if (t->bad_depth == 0)
    ERRF(err, "certificate verify failed: %s (server certificate \"%s\")",
         X509_verify_cert_error_string(code), subject);
  else
    ERRF(err, "certificate verify failed: %s (certificate \"%s\", %d up the server's chain)",
         X509_verify_cert_error_string(code), subject, t->bad_depth);
}

/* Record a failure on the connection and say why. */
static int fail(pgg_tls *t, const char *doing, int ssl_error, pgg_buf *err)
{
  t->failed = true;
  if (t->bad_error) {
    verify_message(t, err);
  } else if (ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
    ERRF(err, "%s: the peer's TLS stream ended unexpectedly", doing);
  } else {
    describe_failure(doing, err);
  }
  ERR_clear_error();
  return PGG_ERR_IO;
}

static int write_all(pgg_tls *t, const uint8_t *p, size_t n, pgg_buf *err)
{
  while (n > 0) {
    /* With memory BIOs a write never waits, so it takes the whole chunk. */
    int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
    int w = SSL_write(t->ssl, p, chunk);
    if (w <= 0)
      return fail(t, "TLS write failed", SSL_get_error(t->ssl, w), err);
    p += w;
    n -= (size_t)w;
  }
  return PGG_OK;
}

static int handshake(pgg_tls *t, pgg_buf *err)
{
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->established = true;
    int rc = write_all(t, t->pending.data, t->pending.len, err);
    pgg_buf_free(&t->pending);
    return rc;
  }
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return PGG_OK;
  return fail(t, "TLS handshake failed", e, err);
}

static int read_all(pgg_tls *t, pgg_buf *plain, pgg_buf *err)
{
  while (!t->peer_closed) {
    if (pgg_buf_reserve(plain, READ_CHUNK))
      return PGG_ERR_NOMEM;
    int r = SSL_read(t->ssl, plain->data + plain->len, READ_CHUNK);
    if (r > 0) {
      plain->len += (size_t)r;
      continue;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
      return PGG_OK;
    if (e == SSL_ERROR_ZERO_RETURN) {
      t->peer_closed = true;
      return PGG_OK;
    }
    return fail(t, "TLS read failed", e, err);
  }
  return PGG_OK;
}

int pgg_tls_start(pgg_tls *t, pgg_buf *cipher_out, pgg_buf *err)
{
  if (t->failed) {
    ERRF(err, "TLS connection already failed");
    return PGG_ERR_IO;
  }
  if (t->established)
    return PGG_OK;
  ERR_clear_error();
  int rc = handshake(t, err);
  int drc = drain(t, cipher_out);
  return rc ? rc : drc;
}

int pgg_tls_feed(pgg_tls *t, const uint8_t *in, size_t n, pgg_buf *plain,
                 pgg_buf *cipher_out, pgg_buf *err)
{
  if (t->failed) {
    ERRF(err, "TLS connection already failed");
    return PGG_ERR_IO;
  }
  ERR_clear_error();
  while (n > 0) {
    int chunk = n > INT_MAX ? INT_MAX : (int)n;
    int w = BIO_write(t->rbio, in, chunk);
    if (w <= 0) {
      t->failed = true;
      ERR_clear_error();
      return PGG_ERR_NOMEM;
    }
    in += w;
    n -= (size_t)w;
  }
  int rc = PGG_OK;
  if (!t->established)
    rc = handshake(t, err);
  /* The handshake's last flight may carry application bytes right behind it. */
  if (!rc && t->established)
    rc = read_all(t, plain, err);
  /* Even after a failure: what OpenSSL wrote is the alert that tells the peer why. */
  int drc = drain(t, cipher_out);
  return rc ? rc : drc;
}

int pgg_tls_write(pgg_tls *t, const uint8_t *p, size_t n, pgg_buf *cipher_out,
                  pgg_buf *err)
{
  if (t->failed) {
    ERRF(err, "TLS connection already failed");
    return PGG_ERR_IO;
  }
  if (n == 0)
    return PGG_OK;
  if (!t->established)
    return pgg_buf_append(&t->pending, p, n);
  ERR_clear_error();
  int rc = write_all(t, p, n, err);
  int drc = drain(t, cipher_out);
  return rc ? rc : drc;
}

bool pgg_tls_established(const pgg_tls *t)
{
  return t->established && !t->failed;
}

bool pgg_tls_peer_closed(const pgg_tls *t)
{
  return t->peer_closed;
}

void pgg_tls_shutdown(pgg_tls *t, pgg_buf *cipher_out)
{
  if (!t->established || t->failed || t->shut)
    return;
  t->shut = true;
  ERR_clear_error();
  /* 0 means "sent, the peer's close_notify not yet seen": that is all we need,
   * the socket closes next. */
  SSL_shutdown(t->ssl);
  drain(t, cipher_out);
  ERR_clear_error();
}

const char *pgg_tls_version(const pgg_tls *t)
{
  return t->established ? SSL_get_version(t->ssl) : "";
}

const char *pgg_tls_cipher(const pgg_tls *t)
{
  const char *c = t->established ? SSL_get_cipher_name(t->ssl) : NULL;
  return c ? c : "";
}

/* ---- SCRAM channel binding behind a TLS-terminating proxy ----------------- */

static bool is_plus(const char *s, size_t n)
{
  return n >= 5 && memcmp(s + n - 5, "-PLUS", 5) == 0;
}

int pgg_sasl_strip_plus(const uint8_t *body, size_t len, pgg_buf *out_body,
                        bool *changed)
{
  *changed = false;
  pgg_reader r;
  pgg_reader_init(&r, body, len);
  uint32_t code;
  if (!pgg_rd_u32(&r, &code) || code != 10)
    return PGG_ERR_PROTO;
  size_t start = out_body->len;
  bool removed = false;
  int rc = pgg_buf_append_u32be(out_body, code);
  for (;;) {
    const char *name;
    size_t n;
    if (rc)
      break;
    if (!pgg_rd_cstr(&r, &name, &n)) {
      rc = PGG_ERR_PROTO;
      break;
    }
    if (n == 0) {
      rc = pgg_rd_left(&r) == 0 ? pgg_buf_append_u8(out_body, 0) : PGG_ERR_PROTO;
      break;
    }
    if (is_plus(name, n))
      removed = true;
    else
      rc = pgg_buf_append(out_body, name, n + 1);
  }
  if (rc) {
    out_body->len = start;  /* leave out_body as it came */
    return rc;
  }
  *changed = removed;
  return PGG_OK;
}

bool pgg_channel_binding_passes(const uint8_t *presented, size_t presented_len,
                                const uint8_t *served, size_t served_len)
{
  if (!presented || !served || presented_len == 0 || presented_len != served_len)
    return false;
  return memcmp(presented, served, presented_len) == 0;
}

/* A certificate's DER encoding in a fresh allocation (OPENSSL_free it), or NULL. */
static uint8_t *cert_der(X509 *x, size_t *len)
{
  *len = 0;
  if (!x)
    return NULL;
  uint8_t *der = NULL;
  int n = i2d_X509(x, &der);
  if (n <= 0) {
    ERR_clear_error();
    return NULL;
  }
  *len = (size_t)n;
  return der;
}

bool pgg_tls_binding_passes(const pgg_tls *client_leg, const pgg_tls *server_leg)
{
  if (!client_leg || !server_leg || !pgg_tls_established(client_leg) ||
      !pgg_tls_established(server_leg))
    return false;
  assert(client_leg->ctx->server && !server_leg->ctx->server);
  size_t plen, slen;
  /* What this handshake actually sent the client, and what PostgreSQL sent us. */
  uint8_t *presented = cert_der(SSL_get_certificate(client_leg->ssl), &plen);
  uint8_t *served = cert_der(SSL_get0_peer_certificate(server_leg->ssl), &slen);
  bool passes = pgg_channel_binding_passes(presented, plen, served, slen);
  OPENSSL_free(presented);
  OPENSSL_free(served);
  return passes;
}
