/* HTTP/SIP digest authentication arithmetic (RFC 7616, RFC 8760 for SIP): MD5 and SHA-256,
 * qop=auth or none, and stateless nonces that carry their own issue time. Pure apart from
 * OpenSSL's digests; no SIP parsing (connector/sip/auth.c reads the headers). */
#ifndef TRUNKLINE_DIGEST_H
#define TRUNKLINE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

enum tl_digest_alg {
	TL_DIGEST_MD5,
	TL_DIGEST_SHA256,
};

/* Hex digest length + NUL: 64 for SHA-256, 32 for MD5. */
#define TL_DIGEST_HEX_MAX 65

/* "MD5" / "SHA-256" (case-insensitive) -> alg; absent (NULL) is MD5. -EINVAL otherwise. */
int tl_digest_alg_parse(const char *name, enum tl_digest_alg *alg);
const char *tl_digest_alg_name(enum tl_digest_alg alg);

struct tl_digest_input {
	enum tl_digest_alg alg;
	const char *user, *realm, *password;
	const char *method, *uri;
	const char *nonce;
	const char *qop;    /* "auth", or NULL (RFC 2069 form) */
	const char *nc;     /* with qop */
	const char *cnonce; /* with qop */
};

/* The expected "response" value as lowercase hex into out (TL_DIGEST_HEX_MAX bytes).
 * 0, -EINVAL (qop other than auth, or missing nc/cnonce), -ENOMEM/-EIO from OpenSSL. */
int tl_digest_response(const struct tl_digest_input *in, char out[TL_DIGEST_HEX_MAX]);

/* Nonces: "<issue time, hex seconds>-<HMAC-SHA-256(key, time) hex, 32 chars>". key: 32 bytes,
 * borrowed. out needs TL_DIGEST_NONCE_MAX bytes. */
#define TL_DIGEST_NONCE_MAX 64
int tl_digest_nonce_make(const uint8_t key[32], int64_t now, char out[TL_DIGEST_NONCE_MAX]);
/* 0 when nonce was made with key and is at most ttl seconds old; -ETIMEDOUT when it was made
 * with key but has expired (answer "stale=true"); -EINVAL when it is not ours. */
int tl_digest_nonce_check(const uint8_t key[32], const char *nonce, int64_t now, int ttl);

#endif
