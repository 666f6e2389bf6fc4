/* The certificate, key and CA that new SIP TLS connections use, reloadable on SIGHUP. Sofia-SIP
 * 1.12.11 builds one SSL_CTX per TLS listener while binding and has no way to change it. So
 * this file interposes OpenSSL's SSL_CTX_new (the executable's definition wins for libsofia
 * too, as gate.c's recvmsg does) to learn which contexts are Sofia's, those made on the SIP
 * thread while tl_sip_tls_capture is on, and SSL_new, to move each new connection of those
 * contexts onto the current generation with SSL_set_SSL_CTX (what an SNI callback does): a
 * context of ours holding sip.tls's certificate chain, key and CA store, rebuilt from the files
 * at start and on SIGHUP. A connection keeps the certificate it was made with (OpenSSL copies
 * it into the SSL), so calls on it go on. Sofia's context still sets the verify mode, its
 * verify callback and the protocol versions, copied into each SSL at SSL_new. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sip_int.h"

#include "trunkline/log.h"

/* Sofia-SIP 1.12.11's cipher list (tls_set_default in tport_tls.c), kept for our contexts. */
#define TLS_CTX_CIPHERS "ALL:!ADH:!LOW:!EXP:!MD5:@STRENGTH"

typedef SSL_CTX *(*ctx_new_fn)(const SSL_METHOD *);
typedef SSL *(*ssl_new_fn)(SSL_CTX *);

static ctx_new_fn real_ctx_new;
static ssl_new_fn real_ssl_new;
/* The SIP thread writes under the lock; lws's thread makes SSL objects too, so reads lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Sofia's: one per TLS listener socket (a wildcard host makes one per address). One reference
 * each, dropped at release. */
static SSL_CTX **sofia_ctx;
static size_t n_sofia, cap_sofia, missed;
static SSL_CTX *current; /* one reference; NULL until the first load */
static unsigned char current_sum[SHA256_DIGEST_LENGTH]; /* of the files it was built from */
static _Thread_local int capturing;

__attribute__((constructor)) static void tls_ctx_init(void)
{
	real_ctx_new = (ctx_new_fn)tl_sip_next_sym("SSL_CTX_new");
	real_ssl_new = (ssl_new_fn)tl_sip_next_sym("SSL_new");
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)
{
	SSL_CTX *ctx = real_ctx_new(method);

	if (!ctx || !capturing)
		return ctx;
	pthread_mutex_lock(&lock);
	if (n_sofia == cap_sofia) {
		size_t cap = cap_sofia ? cap_sofia * 2 : 8;
		SSL_CTX **a = realloc(sofia_ctx, cap * sizeof(*a));
		if (a)
			sofia_ctx = a, cap_sofia = cap;
	}
	/* Out of memory: that listener keeps the certificate of the start (start_tls warns). */
	if (n_sofia < cap_sofia && SSL_CTX_up_ref(ctx))
		sofia_ctx[n_sofia++] = ctx;
	else
		missed++;
	pthread_mutex_unlock(&lock);
	return ctx;
}

SSL *SSL_new(SSL_CTX *ctx)
{
	SSL *s = real_ssl_new(ctx);
	SSL_CTX *gen = NULL;
	STACK_OF(X509_NAME) * names;

	if (!s)
		return s;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; current && i < n_sofia; i++)
		if (sofia_ctx[i] == ctx && SSL_CTX_up_ref(current)) {
			gen = current;
			break;
		}
	pthread_mutex_unlock(&lock);
	if (!gen)
		return s;
	/* The SSL copied Sofia's client CA names (the CertificateRequest hint) at SSL_new. */
	names = SSL_CTX_get_client_CA_list(gen);
	/* On failure (memory) the connection keeps Sofia's context: the certificate of the start.
	 */
	if (SSL_set_SSL_CTX(s, gen) == gen && names)
		SSL_set_client_CA_list(s, SSL_dup_CA_list(names));
	SSL_CTX_free(gen);
	return s;
}

void tl_sip_tls_capture(int on)
{
	capturing = on;
}

size_t tl_sip_tls_captured(void)
{
	size_t n;

	pthread_mutex_lock(&lock);
	n = missed ? 0 : n_sofia;
	pthread_mutex_unlock(&lock);
	return n;
}

static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : "cannot be loaded";
}

/* A context holding tls's files, or NULL with "path: reason" in why. */
static SSL_CTX *build(const struct tl_tls_config *tls, char *why, size_t size)
{
	unsigned char sid[32];
	SSL_CTX *ctx;

	ERR_clear_error();
	if (!(ctx = real_ctx_new(TLS_method()))) {
		snprintf(why, size, "cannot create a TLS context: %s", ssl_reason());
		return NULL;
	}
	/* the files as --check-config loads them (connector/config/config_tls.c); fills why */
	if (tl_config_tls_ctx_load(ctx, tls, why, size) == 0 &&
	    SSL_CTX_set_cipher_list(ctx, TLS_CTX_CIPHERS) != 1)
		snprintf(why, size, "cipher list: %s", ssl_reason());
	if (!why[0] && tls->ca) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(tls->ca);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
	}
	/* Sessions resumed with client certificates need a session id context. */
	if (!why[0] && (RAND_bytes(sid, sizeof(sid)) != 1 ||
	                SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid)) != 1))
		snprintf(why, size, "session id context: %s", ssl_reason());
	ERR_clear_error();
	if (why[0]) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* "CN=..., serial 1A2B, not after Dec  7 03:59:49 2026 GMT" for the log: public parts only. */
static void describe(SSL_CTX *ctx, char *out, size_t size)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	BIGNUM *bn = x ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL) : NULL;
	char *serial = bn ? BN_bn2hex(bn) : NULL, subject[160] = "", until[64] = "";
	BIO *b = BIO_new(BIO_s_mem());

	if (x)
		X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
	if (x && b && ASN1_TIME_print(b, X509_get0_notAfter(x)))
		BIO_read(b, until, sizeof(until) - 1);
	snprintf(out, size, "%s, serial %s, not after %s", subject, serial ? serial : "?", until);
	BIO_free(b);
	OPENSSL_free(serial);
	BN_free(bn);
}

/* SHA-256 over the three files' bytes: 0, or -errno when one cannot be read. */
static int files_sum(const struct tl_tls_config *tls, unsigned char sum[SHA256_DIGEST_LENGTH])
{
	const char *paths[] = {tls->certificate, tls->private_key, tls->ca};
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char buf[4096];
	int rc = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < sizeof(paths) / sizeof(paths[0]); i++) {
		FILE *f = paths[i] ? fopen(paths[i], "rb") : NULL;
		size_t n;

		if (paths[i] && !f)
			rc = -errno;
		while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0)
			EVP_DigestUpdate(md, buf, n);
		EVP_DigestUpdate(md, "\n--\n",
		                 4); /* files apart: a byte moved across is a change */
		if (f)
			fclose(f);
	}
	if (rc == 0 && EVP_DigestFinal_ex(md, sum, NULL) != 1)
		rc = -ENOMEM;
	explicit_bzero(buf, sizeof(buf)); /* key bytes */
	EVP_MD_CTX_free(md);
	return rc;
}

int tl_sip_tls_load(const struct tl_tls_config *tls, char *what, size_t size)
{
	unsigned char sum[SHA256_DIGEST_LENGTH];
	SSL_CTX *ctx, *old;

	/* A SIGHUP for log rotation finds the same files: the context in use stays (each one
	 * lives as long as a connection made with it, and Sofia never frees those). */
	if (current && files_sum(tls, sum) == 0 && memcmp(sum, current_sum, sizeof(sum)) == 0) {
		describe(current, what, size);
		return 1;
	}
	/* The config checks first: dates and the messages --check-config gives. */
	if (tl_config_tls_check(tls, what, size) < 0)
		return -EINVAL;
	if (files_sum(tls, sum) < 0) {
		snprintf(what, size, "%s: the files changed while being read", tls->certificate);
		return -EIO;
	}
	if (!(ctx = build(tls, what, size)))
		return -EINVAL;
	describe(ctx, what, size);
	pthread_mutex_lock(&lock);
	old = current;
	current = ctx;
	memcpy(current_sum, sum, sizeof(sum));
	pthread_mutex_unlock(&lock);
	SSL_CTX_free(old); /* connections made with it hold their own reference */
	return 0;
}

void tl_sip_tls_release(void)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < n_sofia; i++)
		SSL_CTX_free(sofia_ctx[i]);
	free(sofia_ctx);
	sofia_ctx = NULL;
	n_sofia = cap_sofia = missed = 0;
	SSL_CTX_free(current);
	current = NULL;
	pthread_mutex_unlock(&lock);
}
