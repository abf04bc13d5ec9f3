/*
 * tls.h — TLS for both legs with OpenSSL over memory BIOs: ciphertext in,
 * plaintext out and back, no sockets, so the event loop owns all I/O.
 */
#ifndef PGG_TLS_H
#define PGG_TLS_H

#include "pgg.h"

typedef struct pgg_tls_ctx pgg_tls_ctx;   /* one SSL_CTX and its settings */
typedef struct pgg_tls pgg_tls;           /* one connection's TLS state */

/* libpq's sslmode, for the leg toward PostgreSQL. */
typedef enum {
  PGG_SSLMODE_DISABLE,
  PGG_SSLMODE_ALLOW,
  PGG_SSLMODE_PREFER,
  PGG_SSLMODE_REQUIRE,
  PGG_SSLMODE_VERIFY_CA,
  PGG_SSLMODE_VERIFY_FULL,
} pgg_sslmode;

/* "disable" … "verify-full", as libpq spells them; anything else is PGG_ERR_CONFIG. */
int pgg_sslmode_parse(const char *s, pgg_sslmode *out);
const char *pgg_sslmode_name(pgg_sslmode m);

/*
 * Errors: PGG_ERR_CONFIG for files and settings (the message names the
 * file), PGG_ERR_IO for a handshake, verification or record failure on a
 * connection, PGG_ERR_NOMEM. Every message is appended to err (which may be
 * NULL) and reads as a sentence a person can act on.
 */

/*
 * Client leg (pgguard is the TLS server): a PEM certificate chain (leaf
 * first) and its PEM private key, unencrypted. TLS 1.2 minimum, forward-secret
 * AEAD ciphers only, no session resumption.
 */
int pgg_tls_server_ctx_new(const char *cert_file, const char *key_file,
                           pgg_tls_ctx **out, pgg_buf *err);

/*
 * Server leg (pgguard is the TLS client), with libpq's meaning of sslmode:
 * allow/prefer/require encrypt without verifying unless ca_file is given,
 * then the chain is verified as for verify-ca (libpq does the same when a
 * root certificate exists); verify-ca verifies the chain against ca_file;
 * verify-full also checks that the certificate (SAN, else CN) names the host
 * passed to pgg_tls_new, DNS name or IP address. ca_file "system" means the
 * system's trust store, as libpq's sslrootcert=system. verify-ca and
 * verify-full without ca_file, and disable, are PGG_ERR_CONFIG.
 */
int pgg_tls_client_ctx_new(pgg_sslmode mode, const char *ca_file,
                           pgg_tls_ctx **out, pgg_buf *err);
void pgg_tls_ctx_free(pgg_tls_ctx *ctx);

/*
 * One connection. host: the server's name or address on the server leg (for
 * verify-full and SNI, which is not sent for an IP address); NULL on the
 * client leg. The ctx must outlive the connection.
 */
int pgg_tls_new(pgg_tls_ctx *ctx, const char *host, pgg_tls **out);
void pgg_tls_free(pgg_tls *t);

/*
 * Start the handshake. On the server leg (the TLS client speaks first) this
 * puts the ClientHello into cipher_out; on the client leg it writes nothing.
 */
int pgg_tls_start(pgg_tls *t, pgg_buf *cipher_out, pgg_buf *err);

/*
 * Bytes that arrived from the socket, any chunking. Drives the handshake as
 * needed; decrypted application bytes are appended to plain, and bytes to
 * send to the socket (handshake, alerts, key updates) to cipher_out. On
 * error cipher_out may still hold an alert for the peer: send it, then
 * close. After an error every call fails.
 */
int pgg_tls_feed(pgg_tls *t, const uint8_t *in, size_t n, pgg_buf *plain,
                 pgg_buf *cipher_out, pgg_buf *err);

/*
 * Encrypt application bytes into cipher_out. Before the handshake completes
 * the bytes are kept and encrypted, in order, once it does (into the
 * cipher_out of the pgg_tls_feed call that completes it).
 */
int pgg_tls_write(pgg_tls *t, const uint8_t *p, size_t n, pgg_buf *cipher_out,
                  pgg_buf *err);

bool pgg_tls_established(const pgg_tls *t);
/* The peer sent close_notify: no more application bytes will come. */
bool pgg_tls_peer_closed(const pgg_tls *t);

/* Our close_notify into cipher_out (nothing if the handshake never finished). */
void pgg_tls_shutdown(pgg_tls *t, pgg_buf *cipher_out);

/* For logs and metrics: "TLSv1.3", "TLS_AES_256_GCM_SHA384"; "" before the handshake. */
const char *pgg_tls_version(const pgg_tls *t);
const char *pgg_tls_cipher(const pgg_tls *t);

/*
 * SCRAM channel binding cannot work when TLS is terminated at the proxy (the
 * client binds to pgguard's certificate, the server to its own; but see the
 * exception below), so the AuthenticationSASL body (int32 10, then
 * NUL-terminated mechanism names and an empty one) is rewritten into
 * out_body without any "-PLUS" mechanism;
 * clients then fall back to plain SCRAM-SHA-256. The rewritten body is
 * appended to out_body (the caller frames it: 'R' and the new length);
 * *changed says whether anything was removed. A body that is not a
 * well-formed AuthenticationSASL is PGG_ERR_PROTO.
 */
int pgg_sasl_strip_plus(const uint8_t *body, size_t len, pgg_buf *out_body,
                        bool *changed);

/*
 * The exception: channel binding type tls-server-end-point (RFC 5929), the
 * only one PostgreSQL offers, binds to a hash of the server's certificate
 * alone. When the certificate pgguard presents to the client is
 * byte-for-byte the one PostgreSQL presents to pgguard, the client's binding
 * data is what PostgreSQL expects, and SCRAM-SHA-256-PLUS can pass through
 * untouched.
 *
 * The decision, pure: presented is the DER certificate pgguard showed this
 * client, served the one PostgreSQL showed pgguard; NULL or empty for a leg
 * without TLS. True only when both are there and equal.
 */
bool pgg_channel_binding_passes(const uint8_t *presented, size_t presented_len,
                                const uint8_t *served, size_t served_len);

/*
 * The same for two connections: client_leg (pgguard the TLS server) and
 * server_leg (pgguard the TLS client), either NULL for a plaintext leg.
 * False until both handshakes completed, and when memory runs out.
 */
bool pgg_tls_binding_passes(const pgg_tls *client_leg, const pgg_tls *server_leg);

#endif
