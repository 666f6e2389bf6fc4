/* sip.tls and the listen URLs: the part of config validation that start-up would otherwise
 * discover later (TLS files, what Sofia can bind), so --check-config refuses the same.
 * The certificate checks use OpenSSL; nothing here keeps a TLS context. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "trunkline/config.h"
#include "trunkline/config_doc.h"

static const char *tp_name(enum tl_transport tp)
{
	return tp == TL_TRANSPORT_TCP ? "tcp" : tp == TL_TRANSPORT_TLS ? "tls" : "udp";
}

struct listen_group {
	char host[64];
	uint16_t port;
	int tls, plain;
	char tps[16];
};

static size_t group_listen(const struct tl_config *cfg, struct listen_group *g)
{
	size_t n = 0;

	for (size_t i = 0; i < cfg->n_listen; i++) {
		const struct tl_listen *l = &cfg->listen[i];
		size_t j;

		for (j = 0; j < n; j++) {
			int wild =
			    (strcmp(g[j].host, "0.0.0.0") == 0 && strcmp(l->host, "::") == 0) ||
			    (strcmp(g[j].host, "::") == 0 && strcmp(l->host, "0.0.0.0") == 0);
			if (g[j].port == l->port && (wild || strcmp(g[j].host, l->host) == 0 ||
			                             strcmp(g[j].host, "*") == 0)) {
				if (wild)
					snprintf(g[j].host, sizeof(g[j].host), "*");
				break;
			}
		}
		if (j == n) {
			memset(&g[n], 0, sizeof(g[n]));
			snprintf(g[n].host, sizeof(g[n].host), "%s", l->host);
			g[n].port = l->port;
			n++;
		}
		if (l->transport == TL_TRANSPORT_TLS)
			g[j].tls = 1;
		else
			g[j].plain = 1;
		if (!strstr(g[j].tps, tp_name(l->transport)))
			snprintf(g[j].tps + strlen(g[j].tps), sizeof(g[j].tps) - strlen(g[j].tps),
			         "%s%s", g[j].tps[0] ? "," : "", tp_name(l->transport));
	}
	return n;
}

/* 0 for "*" (both), 4 or 6. */
static int family_of(const char *host)
{
	return strcmp(host, "*") == 0 ? 0 : strchr(host, ':') ? 6 : 4;
}

static int is_wild(const char *host)
{
	return strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

static int is_literal(const char *host)
{
	unsigned char a[16];

	return strcmp(host, "*") == 0 || inet_pton(AF_INET, host, a) == 1 ||
	       inet_pton(AF_INET6, host, a) == 1;
}

/* Sofia binds a wildcard host on every address of its family, one socket each: a specific
 * host of that family on the same port and socket type is then bound twice. */
static int overlap(const struct listen_group *a, const struct listen_group *b, char *why,
                   size_t size)
{
	int fa = family_of(a->host), fb = family_of(b->host);
	int udp = strstr(a->tps, "udp") && strstr(b->tps, "udp");
	int stream = (strstr(a->tps, "tcp") || a->tls) && (strstr(b->tps, "tcp") || b->tls);

	/* A host name's addresses are Sofia's to resolve: not judged here. */
	if (!is_literal(a->host) || !is_literal(b->host))
		return 0;
	if (a->port != b->port || !(is_wild(a->host) || is_wild(b->host)) ||
	    (fa && fb && fa != fb) || (!udp && !stream))
		return 0;
	snprintf(why, size,
	         "listen %s and %s on port %u overlap (a wildcard binds every address of its "
	         "family)",
	         a->host, b->host, a->port);
	return 1;
}

int tl_config_listen_urls(const struct tl_config *cfg, char urls[][TL_CONFIG_URL_MAX], char *why,
                          size_t why_size)
{
	struct listen_group g[TL_CONFIG_MAX_LISTEN];
	size_t n = group_listen(cfg, g), order[TL_CONFIG_MAX_LISTEN], k = 0, plain = n, tls = n;

	for (size_t j = 0; j < n; j++) {
		if (g[j].tls && g[j].plain) {
			snprintf(why, why_size, "listen port %u cannot carry both TLS and %s",
			         g[j].port, strstr(g[j].tps, "udp") ? "UDP" : "TCP");
			return -EINVAL;
		}
		for (size_t i = 0; i < j; i++)
			if (overlap(&g[i], &g[j], why, why_size))
				return -EINVAL;
	}
	/* nua binds the first plain group (NUTAG_URL, first: it wants it so) and the first TLS
	 * one (NUTAG_SIPS_URL); the rest are added to its agent while it starts (listen.c). */
	for (size_t j = 0; j < n; j++)
		if (g[j].tls ? tls == n : plain == n)
			*(g[j].tls ? &tls : &plain) = j;
	if (plain < n)
		order[k++] = plain;
	if (tls < n)
		order[k++] = tls;
	for (size_t j = 0; j < n; j++)
		if (j != plain && j != tls)
			order[k++] = j;
	for (size_t i = 0; i < k; i++) {
		const struct listen_group *x = &g[order[i]];
		int v6 = strchr(x->host, ':') != NULL;
		/* "udp,tcp" is left out rather than written: Sofia 1.12.11 splits a transport list
		 * into a stack array it reads after return (fixed upstream later), and with no
		 * transport parameter it binds UDP and TCP anyway. */
		int both = strchr(x->tps, ',') != NULL;

		if (x->tls)
			snprintf(urls[i], TL_CONFIG_URL_MAX, "sips:%s%s%s:%u", v6 ? "[" : "",
			         x->host, v6 ? "]" : "", x->port);
		else
			snprintf(urls[i], TL_CONFIG_URL_MAX, "sip:%s%s%s:%u%s%s", v6 ? "[" : "",
			         x->host, v6 ? "]" : "", x->port,
			         both ? "" : ";transport=", both ? "" : x->tps);
	}
	return (int)k;
}

static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "not valid PEM";
}

static FILE *open_pem(const char *path, char *why, size_t size)
{
	FILE *f = fopen(path, "r");

	if (!f)
		snprintf(why, size, "%s: cannot read: %s", path, strerror(errno));
	return f;
}

static int check_dates(X509 *x, const char *path, char *why, size_t size)
{
	char when[64] = "";
	BIO *b = BIO_new(BIO_s_mem());

	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
		if (b && ASN1_TIME_print(b, X509_get0_notAfter(x)))
			BIO_read(b, when, sizeof(when) - 1);
		snprintf(why, size, "%s: certificate expired (not after %s)", path, when);
	} else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
		if (b && ASN1_TIME_print(b, X509_get0_notBefore(x)))
			BIO_read(b, when, sizeof(when) - 1);
		snprintf(why, size, "%s: certificate not valid before %s", path, when);
	}
	BIO_free(b);
	return why[0] ? -EINVAL : 0;
}

/* Every certificate of a PEM file must parse and be in date; at least one. */
static int check_certs(const char *path, X509 **first, char *why, size_t size)
{
	FILE *f = open_pem(path, why, size);
	X509 *x;
	int n = 0;

	if (!f)
		return -EINVAL;
	ERR_clear_error();
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		if (check_dates(x, path, why, size) < 0) {
			X509_free(x);
			break;
		}
		if (n++ == 0 && first)
			*first = x;
		else
			X509_free(x);
	}
	fclose(f);
	if (why[0])
		return -EINVAL;
	if (n == 0) {
		snprintf(why, size, "%s: no PEM certificate in the file (%s)", path, ssl_reason());
		return -EINVAL;
	}
	ERR_clear_error(); /* the end of file shows up as an error */
	return 0;
}

static int no_passphrase(char *buf, int size, int rw, void *u)
{
	return 0; /* an encrypted key is refused rather than prompted for */
}

int tl_config_tls_ctx_load(SSL_CTX *ctx, const struct tl_tls_config *tls, char *why, size_t size)
{
	why[0] = '\0';
	ERR_clear_error();
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	if (SSL_CTX_use_certificate_chain_file(ctx, tls->certificate) != 1)
		snprintf(why, size, "%s: not a usable certificate chain (%s)", tls->certificate,
		         ssl_reason());
	else if (SSL_CTX_use_PrivateKey_file(ctx, tls->private_key, SSL_FILETYPE_PEM) != 1 ||
	         SSL_CTX_check_private_key(ctx) != 1)
		snprintf(why, size, "%s: not a usable private key (%s)", tls->private_key,
		         ssl_reason());
	else if (tls->ca && SSL_CTX_load_verify_locations(ctx, tls->ca, NULL) != 1)
		snprintf(why, size, "%s: not usable as CA certificates (%s)", tls->ca,
		         ssl_reason());
	ERR_clear_error();
	return why[0] ? -EINVAL : 0;
}

/* The files loaded as the context SIP runs with loads them (tl_config_tls_ctx_load): what the
 * checks above do not see fails here as it would there, such as a key below OpenSSL's security
 * level (Debian 12: an RSA key under 2048 bits) or a broken certificate after the first of the
 * chain. */
static int ctx_check(const struct tl_tls_config *tls, char *why, size_t size)
{
	SSL_CTX *ctx;
	int rc;

	ERR_clear_error();
	if (!(ctx = SSL_CTX_new(TLS_method()))) {
		snprintf(why, size, "cannot create a TLS context (%s)", ssl_reason());
		return -ENOMEM;
	}
	rc = tl_config_tls_ctx_load(ctx, tls, why, size);
	SSL_CTX_free(ctx);
	return rc;
}

int tl_config_tls_check(const struct tl_tls_config *tls, char *why, size_t size)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	FILE *f;
	int rc = -EINVAL;

	why[0] = '\0';
	if (check_certs(tls->certificate, &cert, why, size) < 0)
		goto out;
	if (tls->ca && check_certs(tls->ca, NULL, why, size) < 0)
		goto out;
	if (!(f = open_pem(tls->private_key, why, size)))
		goto out;
	key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (!key) {
		snprintf(why, size, "%s: no unencrypted PEM private key (%s)", tls->private_key,
		         ssl_reason());
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		snprintf(why, size, "%s: private key does not match the certificate %s",
		         tls->private_key, tls->certificate);
		goto out;
	}
	rc = ctx_check(tls, why, size);
out:
	ERR_clear_error();
	EVP_PKEY_free(key);
	X509_free(cert);
	return rc;
}

static const char *const tls_keys[] = {"certificate",   "private_key", "ca",
                                       "verify_client", "min_version", NULL};

static int load_tls_keys(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *tls)
{
	json_t *v;
	int rc;

	if ((rc = tl_config_doc_keys(doc, tls, "/sip/tls", tls_keys)) < 0 ||
	    (rc = tl_config_doc_str(doc, tls, "/sip/tls", "certificate", &cfg->tls.certificate)) <
	        0 ||
	    (rc = tl_config_doc_str(doc, tls, "/sip/tls", "private_key", &cfg->tls.private_key)) <
	        0 ||
	    (rc = tl_config_doc_str(doc, tls, "/sip/tls", "ca", &cfg->tls.ca)) < 0)
		return rc;
	if (!cfg->tls.certificate || !cfg->tls.private_key)
		return tl_config_doc_fail(doc, "/sip/tls", 0,
		                          "\"tls\" needs \"certificate\" and \"private_key\"");
	v = json_object_get(tls, "verify_client");
	if (v && !json_is_boolean(v))
		return tl_config_doc_fail(doc, "/sip/tls/verify_client", 0,
		                          "expected true or false");
	cfg->tls.verify_client = json_is_true(v);
	if (cfg->tls.verify_client && !cfg->tls.ca)
		return tl_config_doc_fail(doc, "/sip/tls/verify_client", 0,
		                          "\"verify_client\" needs \"ca\" to verify the PBX with");
	v = json_object_get(tls, "min_version");
	/* Sofia-SIP 1.12 offers no way to raise the minimum above what OpenSSL's system policy
	 * allows (1.2 on Debian 12), so 1.2 is the only value we can honour. */
	if (v && !(json_is_string(v) && strcmp(json_string_value(v), "1.2") == 0))
		return tl_config_doc_fail(doc, "/sip/tls/min_version", 0,
		                          "\"min_version\" must be \"1.2\" (the only minimum "
		                          "Sofia-SIP 1.12 can enforce)");
	return 0;
}

static int load_tls(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *tls)
{
	char why[sizeof(doc->err->msg)];
	const char *at;
	int rc;

	if (!json_is_object(tls))
		return tl_config_doc_fail(doc, "/sip/tls", 0, "expected an object");
	if ((rc = load_tls_keys(doc, cfg, tls)) < 0)
		return rc;
	if (tl_config_doc_resolve(doc, &cfg->tls.certificate) < 0 ||
	    tl_config_doc_resolve(doc, &cfg->tls.private_key) < 0 ||
	    tl_config_doc_resolve(doc, &cfg->tls.ca) < 0)
		return -ENOMEM;
	if (tl_config_tls_check(&cfg->tls, why, sizeof(why)) == 0)
		return 0;
	at = strncmp(why, cfg->tls.private_key, strlen(cfg->tls.private_key)) == 0
	         ? "/sip/tls/private_key"
	     : cfg->tls.ca && strncmp(why, cfg->tls.ca, strlen(cfg->tls.ca)) == 0 &&
	             strncmp(why, cfg->tls.certificate, strlen(cfg->tls.certificate)) != 0
	         ? "/sip/tls/ca"
	         : "/sip/tls/certificate";
	return tl_config_doc_fail(doc, at, 0, "%s", why);
}

int tl_config_load_transport(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *sip)
{
	json_t *tls = sip ? json_object_get(sip, "tls") : NULL;
	char urls[TL_CONFIG_MAX_LISTEN][TL_CONFIG_URL_MAX], why[200];
	int has_tls = 0, rc;

	if (tls && (rc = load_tls(doc, cfg, tls)) < 0)
		return rc;
	for (size_t i = 0; i < cfg->n_listen; i++)
		has_tls |= cfg->listen[i].transport == TL_TRANSPORT_TLS;
	if (has_tls && !cfg->tls.certificate)
		return tl_config_doc_fail(doc, "/sip/listen", 0,
		                          "a tls: listener needs \"sip.tls\" with a certificate "
		                          "and private_key");
	if (tl_config_listen_urls(cfg, urls, why, sizeof(why)) < 0)
		return tl_config_doc_fail(doc, "/sip/listen", 0, "%s", why);
	return 0;
}
