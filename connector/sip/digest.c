/* Digest arithmetic of RFC 7616 (SIP: RFC 8760) with OpenSSL's EVP digests, and stateless
 * nonces (issue time + HMAC), so no nonce table grows with the callers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "trunkline/digest.h"

int tl_digest_alg_parse(const char *name, enum tl_digest_alg *alg)
{
	if (!name || strcasecmp(name, "MD5") == 0)
		*alg = TL_DIGEST_MD5;
	else if (strcasecmp(name, "SHA-256") == 0)
		*alg = TL_DIGEST_SHA256;
	else
		return -EINVAL;
	return 0;
}

const char *tl_digest_alg_name(enum tl_digest_alg alg)
{
	return alg == TL_DIGEST_SHA256 ? "SHA-256" : "MD5";
}

static void to_hex(const unsigned char *b, unsigned n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* H(p[0] ":" p[1] ":" ... ) as hex. */
static int hash_joined(enum tl_digest_alg alg, const char *const *parts, size_t n,
                       char out[TL_DIGEST_HEX_MAX])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	int ok;

	if (!ctx)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(ctx, alg == TL_DIGEST_SHA256 ? EVP_sha256() : EVP_md5(), NULL);
	for (size_t i = 0; ok && i < n; i++)
		ok = (i == 0 || EVP_DigestUpdate(ctx, ":", 1)) &&
		     EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]));
	ok = ok && EVP_DigestFinal_ex(ctx, md, &len);
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -EIO;
	to_hex(md, len, out);
	return 0;
}

int tl_digest_response(const struct tl_digest_input *in, char out[TL_DIGEST_HEX_MAX])
{
	char ha1[TL_DIGEST_HEX_MAX], ha2[TL_DIGEST_HEX_MAX];
	const char *a1[] = {in->user, in->realm, in->password};
	const char *a2[] = {in->method, in->uri};
	int rc;

	if (!in->user || !in->realm || !in->password || !in->method || !in->uri || !in->nonce)
		return -EINVAL;
	if (in->qop && (strcmp(in->qop, "auth") != 0 || !in->nc || !in->cnonce))
		return -EINVAL;
	if ((rc = hash_joined(in->alg, a1, 3, ha1)) < 0 ||
	    (rc = hash_joined(in->alg, a2, 2, ha2)) < 0)
		return rc;
	if (in->qop) {
		const char *r[] = {ha1, in->nonce, in->nc, in->cnonce, in->qop, ha2};
		return hash_joined(in->alg, r, 6, out);
	}
	const char *r[] = {ha1, in->nonce, ha2};
	return hash_joined(in->alg, r, 3, out);
}

static int nonce_mac(const uint8_t key[32], const char *stamp, char out[33])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;

	if (!HMAC(EVP_sha256(), key, 32, (const unsigned char *)stamp, strlen(stamp), md, &len) ||
	    len < 16)
		return -EIO;
	to_hex(md, 16, out);
	return 0;
}

int tl_digest_nonce_make(const uint8_t key[32], int64_t now, char out[TL_DIGEST_NONCE_MAX])
{
	char stamp[24], mac[33];
	int rc;

	snprintf(stamp, sizeof(stamp), "%llx", (unsigned long long)now);
	if ((rc = nonce_mac(key, stamp, mac)) < 0)
		return rc;
	snprintf(out, TL_DIGEST_NONCE_MAX, "%s-%s", stamp, mac);
	return 0;
}

int tl_digest_nonce_check(const uint8_t key[32], const char *nonce, int64_t now, int ttl)
{
	const char *dash = strchr(nonce, '-');
	char stamp[24], mac[33];
	unsigned long long t;
	char *end;

	if (!dash || dash == nonce || (size_t)(dash - nonce) >= sizeof(stamp) ||
	    strlen(dash + 1) != 32)
		return -EINVAL;
	memcpy(stamp, nonce, (size_t)(dash - nonce));
	stamp[dash - nonce] = '\0';
	t = strtoull(stamp, &end, 16);
	if (*end || nonce_mac(key, stamp, mac) < 0 || CRYPTO_memcmp(mac, dash + 1, 32) != 0)
		return -EINVAL;
	if ((int64_t)t > now + 5 || now - (int64_t)t > ttl)
		return -ETIMEDOUT;
	return 0;
}
