/* SDP offer/answer (connector/sip/sdp.c) on arbitrary bytes: tl_sdp_answer with a roomy and a tight
 * output buffer, and tl_sdp_read_answer, under two local setups (IPv4 PCMU/PCMA, IPv6 with
 * every codec in a preference order, Opus first, and recvonly). Sofia's parser allocates on a
 * su_home, so leaks show as ASan leak reports; Sofia 1.12.11's endless loop on some m= lines (the
 * m_lines_ok guard) as a timeout. */
#include <string.h>

#include <errno.h>

#include "fuzz.h"
#include "sip_int.h"
#include "trunkline/sdp.h"

static void check_neg(const struct tl_sdp_media *neg)
{
	FUZZ_CHECK(memchr(neg->remote_addr, '\0', sizeof(neg->remote_addr)) != NULL);
	FUZZ_CHECK(neg->codec >= TL_CODEC_PCMU && neg->codec <= TL_CODEC_OPUS);
	FUZZ_CHECK(neg->pt <= 127);
	FUZZ_CHECK(neg->te_pt >= -1 && neg->te_pt <= 127);
	/* What we send: 10..60 ms in whole ticks (trunkline/sdp.h); Opus fmtp values in range. */
	FUZZ_CHECK(neg->ptime >= 10 && neg->ptime <= 60 && neg->ptime % 10 == 0);
	FUZZ_CHECK(neg->opus.maxaveragebitrate == 0 ||
	           (neg->opus.maxaveragebitrate >= 6000 && neg->opus.maxaveragebitrate <= 510000));
	FUZZ_CHECK(neg->opus.maxplaybackrate >= 0 && neg->opus.maxptime >= 0);
	FUZZ_CHECK(neg->dir >= TL_SDP_SENDRECV && neg->dir <= TL_SDP_INACTIVE);
}

/* SDES (sdp_crypto.c) on the same bytes under each media.srtp mode; a picked line's a=crypto
 * goes into the answer text. */
static void crypto(const char *text, size_t len, const char *answer, int n)
{
	static char out[16384 + 256];
	struct tl_srtp_keys none = {0};
	struct tl_sdp_crypto cr;

	for (int mode = TL_SRTP_MODE_OPTIONAL; mode <= TL_SRTP_MODE_OFF; mode++) {
		int rc = tl_sdp_crypto_pick(text, len, mode, &none, &cr);
		FUZZ_CHECK(rc == 0 || rc == 1 || rc == -EKEYREJECTED);
		FUZZ_CHECK(memchr(cr.offered, '\0', sizeof(cr.offered)) != NULL);
		if (rc == 1) {
			FUZZ_CHECK(cr.keys.suite != TL_SRTP_NONE);
			if (n >= 0) {
				memcpy(out, answer, (size_t)n + 1);
				int m = tl_sdp_crypto_add(out, sizeof(out), (size_t)n, &cr);
				FUZZ_CHECK(m < 0 || strlen(out) == (size_t)m);
			}
		}
	}
}

static void one(const char *text, size_t len, const struct tl_sdp_local *local, size_t tight)
{
	static char out[16384];
	char small[512];
	struct tl_sdp_media neg;
	int n;

	memset(&neg, 0x5a, sizeof(neg));
	n = tl_sdp_answer(text, len, local, &neg, out, sizeof(out));
	if (n >= 0) {
		FUZZ_CHECK((size_t)n < sizeof(out) && strlen(out) == (size_t)n);
		check_neg(&neg);
	} else {
		FUZZ_CHECK(out[0] == '\0');
	}
	crypto(text, len, out, n);
	/* The same offer into a buffer that may be too small: -ENOSPC, never an overrun. */
	n = tl_sdp_answer(text, len, local, &neg, small, tight);
	if (n >= 0)
		FUZZ_CHECK((size_t)n < tight && strlen(small) == (size_t)n);
	else
		FUZZ_CHECK(small[0] == '\0');

	memset(&neg, 0x5a, sizeof(neg));
	if (tl_sdp_read_answer(text, len, local, &neg) == 0)
		check_neg(&neg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct tl_sdp_local v4 = {.addr = "203.0.113.5",
	                                .port = 20000,
	                                .sess_id = 1,
	                                .sess_version = 1,
	                                .codecs = 0,
	                                .dir = TL_SDP_SENDRECV};
	const struct tl_sdp_local v6 = {
	    .addr = "2001:db8::5",
	    .port = 20002,
	    .sess_id = 2,
	    .sess_version = 3,
	    .codecs = (1u << TL_CODEC_PCMU) | (1u << TL_CODEC_PCMA) | (1u << TL_CODEC_G722) |
	              (1u << TL_CODEC_OPUS),
	    .dir = TL_SDP_RECVONLY,
	    .order = {TL_CODEC_OPUS, TL_CODEC_G722, TL_CODEC_PCMU, TL_CODEC_PCMA},
	    .opus_rate = 16000};
	size_t tight = 1 + (size % 511);

	one((const char *)data, size, &v4, tight);
	one((const char *)data, size, &v6, tight);
	return 0;
}
