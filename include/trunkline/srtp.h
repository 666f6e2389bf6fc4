/* SRTP and SRTCP (RFC 3711) with SDES keys (RFC 4568) on libsrtp2: one context per call, an
 * inbound session keyed with the peer's key and an outbound one keyed with ours. Packets are
 * transformed in place; the caller's buffer keeps TL_SRTP_TAIL bytes of room after the packet
 * for the tag (and SRTCP index), so nothing is copied. Not thread-safe: one media worker uses a
 * context. Key material never leaves through logs. */
#ifndef TRUNKLINE_SRTP_H
#define TRUNKLINE_SRTP_H

#include <stddef.h>
#include <stdint.h>

enum tl_srtp_suite {
	TL_SRTP_NONE = 0,
	TL_SRTP_AES_CM_128_HMAC_SHA1_80,
	TL_SRTP_AES_CM_128_HMAC_SHA1_32,
	TL_SRTP_AES_256_CM_HMAC_SHA1_80,
	TL_SRTP_AEAD_AES_128_GCM,
	TL_SRTP_AEAD_AES_256_GCM,
};

#define TL_SRTP_KEY_MAX 46 /* master key + salt, AES-256-CM: 32 + 14 */
#define TL_SRTP_TAIL    20 /* longest SRTCP trailer: 4-byte index + 16-byte GCM tag */

struct tl_srtp_keys {
	enum tl_srtp_suite suite;        /* TL_SRTP_NONE: plain RTP */
	uint8_t local[TL_SRTP_KEY_MAX];  /* ours: what we send is protected with it */
	uint8_t remote[TL_SRTP_KEY_MAX]; /* the peer's: what we receive is checked with it */
};

struct tl_srtp;

/* "AES_CM_128_HMAC_SHA1_80", ... -> suite, or TL_SRTP_NONE when unknown. */
enum tl_srtp_suite tl_srtp_suite_parse(const char *name, size_t len);
const char *tl_srtp_suite_name(enum tl_srtp_suite suite);
/* Master key + salt length of suite in bytes (0 for TL_SRTP_NONE). */
size_t tl_srtp_key_len(enum tl_srtp_suite suite);
/* Fills key with len random bytes (getrandom): 0 or -errno. */
int tl_srtp_random_key(uint8_t *key, size_t len);

/* keys is borrowed until return. 0, -EINVAL (suite) or -ENOMEM / -EIO (libsrtp). */
int tl_srtp_create(struct tl_srtp **out, const struct tl_srtp_keys *keys);
void tl_srtp_destroy(struct tl_srtp *ctx);

/* In place: *len grows by the tag (cap is the buffer size, at least *len + TL_SRTP_TAIL) or
 * shrinks by it. 0, or -EBADMSG when a received packet fails authentication or the replay
 * check (drop it), -ENOSPC, -EIO. */
int tl_srtp_protect(struct tl_srtp *ctx, uint8_t *pkt, size_t *len, size_t cap);
int tl_srtp_unprotect(struct tl_srtp *ctx, uint8_t *pkt, size_t *len);
int tl_srtcp_protect(struct tl_srtp *ctx, uint8_t *pkt, size_t *len, size_t cap);
int tl_srtcp_unprotect(struct tl_srtp *ctx, uint8_t *pkt, size_t *len);

#endif
