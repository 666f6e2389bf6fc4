/* SRTP/SRTCP on libsrtp2 (trunkline/srtp.h): suite table, context set-up, in-place transforms.
 * srtp_init() runs once per process (pthread_once). No allocation, lock or log per packet. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <srtp2/srtp.h>

#include "media_int.h"
#include "trunkline/srtp.h"

struct tl_srtp {
	srtp_t in, out;
};

static const struct {
	const char *name;
	size_t key_len;
} suites[] = {
    [TL_SRTP_NONE] = {"", 0},
    [TL_SRTP_AES_CM_128_HMAC_SHA1_80] = {"AES_CM_128_HMAC_SHA1_80", 30},
    [TL_SRTP_AES_CM_128_HMAC_SHA1_32] = {"AES_CM_128_HMAC_SHA1_32", 30},
    [TL_SRTP_AES_256_CM_HMAC_SHA1_80] = {"AES_256_CM_HMAC_SHA1_80", 46},
    [TL_SRTP_AEAD_AES_128_GCM] = {"AEAD_AES_128_GCM", 28},
    [TL_SRTP_AEAD_AES_256_GCM] = {"AEAD_AES_256_GCM", 44},
};
#define N_SUITES (sizeof(suites) / sizeof(suites[0]))

enum tl_srtp_suite tl_srtp_suite_parse(const char *name, size_t len)
{
	for (size_t i = 1; i < N_SUITES; i++)
		if (strlen(suites[i].name) == len && memcmp(suites[i].name, name, len) == 0)
			return (enum tl_srtp_suite)i;
	return TL_SRTP_NONE;
}

const char *tl_srtp_suite_name(enum tl_srtp_suite suite)
{
	return (size_t)suite < N_SUITES ? suites[suite].name : "";
}

size_t tl_srtp_key_len(enum tl_srtp_suite suite)
{
	return (size_t)suite < N_SUITES ? suites[suite].key_len : 0;
}

int tl_srtp_random_key(uint8_t *key, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = getrandom(key + got, len - got, 0);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			got += (size_t)n;
	}
	return 0;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_status;

static void init_lib(void)
{
	init_status = srtp_init() == srtp_err_status_ok ? 0 : -EIO;
}

/* RFC 4568 §6.2: the _32 suite shortens the SRTP tag only; SRTCP keeps 80 bits. */
static int set_policy(srtp_policy_t *p, enum tl_srtp_suite suite)
{
	switch (suite) {
	case TL_SRTP_AES_CM_128_HMAC_SHA1_80:
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p->rtp);
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p->rtcp);
		return 0;
	case TL_SRTP_AES_CM_128_HMAC_SHA1_32:
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&p->rtp);
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p->rtcp);
		return 0;
	case TL_SRTP_AES_256_CM_HMAC_SHA1_80:
		srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&p->rtp);
		srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&p->rtcp);
		return 0;
	case TL_SRTP_AEAD_AES_128_GCM:
		srtp_crypto_policy_set_aes_gcm_128_16_auth(&p->rtp);
		srtp_crypto_policy_set_aes_gcm_128_16_auth(&p->rtcp);
		return 0;
	case TL_SRTP_AEAD_AES_256_GCM:
		srtp_crypto_policy_set_aes_gcm_256_16_auth(&p->rtp);
		srtp_crypto_policy_set_aes_gcm_256_16_auth(&p->rtcp);
		return 0;
	default:
		return -EINVAL;
	}
}

static int session(srtp_t *s, enum tl_srtp_suite suite, const uint8_t *key, int inbound)
{
	srtp_policy_t p;
	uint8_t k[TL_SRTP_KEY_MAX];
	srtp_err_status_t st;

	memset(&p, 0, sizeof(p));
	if (set_policy(&p, suite) < 0)
		return -EINVAL;
	memcpy(k, key, tl_srtp_key_len(suite));
	p.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
	p.key = k;
	p.window_size = 128;
	p.allow_repeat_tx = 0;
	st = srtp_create(s, &p);
	explicit_bzero(k, sizeof(k));
	return st == srtp_err_status_ok ? 0 : st == srtp_err_status_alloc_fail ? -ENOMEM : -EIO;
}

int tl_srtp_create(struct tl_srtp **out, const struct tl_srtp_keys *keys)
{
	struct tl_srtp *ctx;
	int err;

	*out = NULL;
	pthread_once(&init_once, init_lib);
	if (init_status < 0)
		return init_status;
	if (keys->suite == TL_SRTP_NONE || (size_t)keys->suite >= N_SUITES)
		return -EINVAL;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	err = session(&ctx->in, keys->suite, keys->remote, 1);
	if (err == 0)
		err = session(&ctx->out, keys->suite, keys->local, 0);
	if (err < 0) {
		tl_srtp_destroy(ctx);
		return err;
	}
	*out = ctx;
	return 0;
}

void tl_srtp_destroy(struct tl_srtp *ctx)
{
	if (!ctx)
		return;
	if (ctx->in)
		srtp_dealloc(ctx->in);
	if (ctx->out)
		srtp_dealloc(ctx->out);
	free(ctx);
}

static int status(srtp_err_status_t st)
{
	switch (st) {
	case srtp_err_status_ok:
		return 0;
	case srtp_err_status_auth_fail:
	case srtp_err_status_replay_fail:
	case srtp_err_status_replay_old:
	case srtp_err_status_bad_param:
	case srtp_err_status_parse_err:
		return -EBADMSG;
	default:
		return -EIO;
	}
}

int tl_srtp_protect(struct tl_srtp *ctx, uint8_t *pkt, size_t *len, size_t cap)
{
	int n = (int)*len;

	if (*len + TL_SRTP_TAIL > cap)
		return -ENOSPC;
	int err = status(srtp_protect(ctx->out, pkt, &n));
	*len = (size_t)n;
	return err;
}

int tl_srtp_unprotect(struct tl_srtp *ctx, uint8_t *pkt, size_t *len)
{
	int n = (int)*len;
	int err = status(srtp_unprotect(ctx->in, pkt, &n));

	*len = (size_t)n;
	return err;
}

int tl_srtcp_protect(struct tl_srtp *ctx, uint8_t *pkt, size_t *len, size_t cap)
{
	int n = (int)*len;

	if (*len + TL_SRTP_TAIL > cap)
		return -ENOSPC;
	int err = status(srtp_protect_rtcp(ctx->out, pkt, &n));
	*len = (size_t)n;
	return err;
}

int tl_srtcp_unprotect(struct tl_srtp *ctx, uint8_t *pkt, size_t *len)
{
	int n = (int)*len;
	int err = status(srtp_unprotect_rtcp(ctx->in, pkt, &n));

	*len = (size_t)n;
	return err;
}

/* ---- the stream's hooks (media_int.h) ---- */

void tl_stream_srtp_apply(struct tl_media_stream *s, const struct tl_srtp_keys *keys)
{
	s->srtp_on = keys->suite != TL_SRTP_NONE; /* with s->sdp, which the caller sets next */
	if (memcmp(&s->sdp.srtp, keys, sizeof(*keys)) == 0 && (s->srtp || !keys->suite))
		return;
	tl_srtp_destroy(s->srtp);
	s->srtp = NULL;
	/* On failure s->srtp stays NULL with a suite set: nothing is sent or taken in clear. */
	if (keys->suite != TL_SRTP_NONE)
		tl_srtp_create(&s->srtp, keys);
}

int tl_stream_srtp_in(struct tl_media_stream *s, uint8_t *pkt, size_t *len, int rtcp)
{
	int err;

	if (!s->srtp_on) /* the hot copy of s->sdp.srtp.suite */
		return 0;
	err = !s->srtp ? -EIO
	      : rtcp   ? tl_srtcp_unprotect(s->srtp, pkt, len)
	               : tl_srtp_unprotect(s->srtp, pkt, len);
	if (err < 0)
		atomic_fetch_add_explicit(&s->st_rx_srtp_fail, 1, memory_order_relaxed);
	return err;
}

int tl_stream_srtp_out(struct tl_media_stream *s, uint8_t *pkt, size_t *len, size_t cap, int rtcp)
{
	if (!s->srtp_on) /* the hot copy of s->sdp.srtp.suite */
		return 0;
	if (!s->srtp)
		return -EIO;
	return rtcp ? tl_srtcp_protect(s->srtp, pkt, len, cap)
	            : tl_srtp_protect(s->srtp, pkt, len, cap);
}
