/* SRTP tests: each suite protects and unprotects RTP and RTCP in place (tail room, no copy),
 * with the peer's context keyed the other way round; a flipped bit and a replayed packet are
 * refused; and the SDES picker (sdp_crypto.c) takes the first usable a=crypto line, skipping
 * unknown suites, MKIs, several keys, wrong key lengths and session parameters. */
#include "sip_int.h"
#include "tl_test.h"
#include "trunkline/b64.h"
#include "trunkline/srtp.h"

#include <errno.h>

static const enum tl_srtp_suite all[] = {
    TL_SRTP_AES_CM_128_HMAC_SHA1_80, TL_SRTP_AES_CM_128_HMAC_SHA1_32,
    TL_SRTP_AES_256_CM_HMAC_SHA1_80, TL_SRTP_AEAD_AES_128_GCM, TL_SRTP_AEAD_AES_256_GCM};

static size_t rtp_packet(uint8_t *p, uint16_t seq)
{
	memset(p, 0, 12 + 160);
	p[0] = 0x80;
	p[2] = (uint8_t)(seq >> 8);
	p[3] = (uint8_t)seq;
	p[7] = 160;
	p[8] = 0x12, p[9] = 0x34, p[10] = 0x56, p[11] = 0x78;
	for (int i = 0; i < 160; i++)
		p[12 + i] = (uint8_t)(i * 7);
	return 12 + 160;
}

static void test_roundtrip_each_suite(void)
{
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		struct tl_srtp_keys a = {.suite = all[i]}, b = {.suite = all[i]};
		struct tl_srtp *ca = NULL, *cb = NULL;
		uint8_t pkt[12 + 160 + TL_SRTP_TAIL], copy[sizeof(pkt)], plain[sizeof(pkt)];
		size_t len, n = tl_srtp_key_len(all[i]);

		TL_CHECK(n >= 28 && n <= TL_SRTP_KEY_MAX);
		TL_CHECK_INT(tl_srtp_random_key(a.local, n), 0);
		TL_CHECK_INT(tl_srtp_random_key(a.remote, n), 0);
		memcpy(b.local, a.remote, n);
		memcpy(b.remote, a.local, n);
		TL_CHECK_INT(tl_srtp_create(&ca, &a), 0);
		TL_CHECK_INT(tl_srtp_create(&cb, &b), 0);
		if (!ca || !cb)
			goto next;
		len = rtp_packet(pkt, 1000);
		memcpy(plain, pkt, len);
		TL_CHECK_INT(tl_srtp_protect(ca, pkt, &len, len + TL_SRTP_TAIL - 1), -ENOSPC);
		TL_CHECK_INT(tl_srtp_protect(ca, pkt, &len, sizeof(pkt)), 0);
		TL_CHECK(len > 172 && memcmp(pkt + 12, plain + 12, 160) != 0);
		memcpy(copy, pkt, len);
		/* A flipped bit in the payload: refused, and the packet is still good after. */
		copy[30] ^= 1;
		size_t clen = len;
		TL_CHECK_INT(tl_srtp_unprotect(cb, copy, &clen), -EBADMSG);
		TL_CHECK_INT(tl_srtp_unprotect(cb, pkt, &len), 0);
		TL_CHECK_INT(len, 172);
		TL_CHECK(memcmp(pkt, plain, 172) == 0);
		/* The same packet again (a fresh sender with the same key makes it): a replay. */
		{
			uint8_t again[sizeof(pkt)];
			size_t alen = rtp_packet(again, 1000);
			struct tl_srtp *cc = NULL;
			TL_CHECK_INT(tl_srtp_create(&cc, &a), 0);
			if (cc) {
				TL_CHECK_INT(tl_srtp_protect(cc, again, &alen, sizeof(again)), 0);
				TL_CHECK_INT(tl_srtp_unprotect(cb, again, &alen), -EBADMSG);
			}
			tl_srtp_destroy(cc);
		}
		/* SRTCP: a receiver report both ways. */
		{
			uint8_t rr[8 + TL_SRTP_TAIL] = {0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78};
			size_t rlen = 8;
			TL_CHECK_INT(tl_srtcp_protect(ca, rr, &rlen, sizeof(rr)), 0);
			TL_CHECK(rlen > 8);
			TL_CHECK_INT(tl_srtcp_unprotect(cb, rr, &rlen), 0);
			TL_CHECK_INT(rlen, 8);
			TL_CHECK_INT(rr[1], 201);
		}
	next:
		tl_srtp_destroy(ca);
		tl_srtp_destroy(cb);
	}
	tl_srtp_destroy(NULL);
}

static void test_suite_names(void)
{
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *name = tl_srtp_suite_name(all[i]);
		TL_CHECK_INT(tl_srtp_suite_parse(name, strlen(name)), all[i]);
	}
	TL_CHECK_INT(tl_srtp_suite_parse("F8_128_HMAC_SHA1_80", 19), TL_SRTP_NONE);
	TL_CHECK_INT(tl_srtp_suite_parse("AES_CM_128_HMAC_SHA1_8", 22), TL_SRTP_NONE);
}

static char key28[48], key30[48], key46[72];

static void offer(char *out, size_t size, const char *proto, const char *lines)
{
	snprintf(out, size,
	         "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
	         "m=audio 4000 %s 0\r\na=rtpmap:0 PCMU/8000\r\n%s",
	         proto, lines);
}

static int pick(const char *proto, const char *lines, int mode, struct tl_sdp_crypto *cr)
{
	char sdp[2048];
	struct tl_srtp_keys none = {0};

	offer(sdp, sizeof(sdp), proto, lines);
	return tl_sdp_crypto_pick(sdp, strlen(sdp), mode, &none, cr);
}

static void test_sdes_pick(void)
{
	struct tl_sdp_crypto cr;
	char lines[1024];
	uint8_t raw[46];

	for (int i = 0; i < 46; i++)
		raw[i] = (uint8_t)i;
	key28[tl_b64_encode(key28, sizeof(key28) - 1, raw, 28)] = '\0';
	key30[tl_b64_encode(key30, sizeof(key30) - 1, raw, 30)] = '\0';
	key46[tl_b64_encode(key46, sizeof(key46) - 1, raw, 46)] = '\0';

	snprintf(lines, sizeof(lines), "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%s\r\n", key30);
	TL_CHECK_INT(pick("RTP/SAVP", lines, TL_SRTP_MODE_OPTIONAL, &cr), 1);
	TL_CHECK_INT(cr.savp, 1);
	TL_CHECK_INT(cr.tag, 1);
	TL_CHECK_INT(cr.keys.suite, TL_SRTP_AES_CM_128_HMAC_SHA1_80);
	TL_CHECK(memcmp(cr.keys.remote, raw, 30) == 0);
	TL_CHECK(memcmp(cr.keys.local, raw, 30) != 0);

	/* Skipped in turn: unknown suite, MKI, two keys, wrong length, session parameter;
	 * a lifetime and WSH are fine. */
	snprintf(lines, sizeof(lines),
	         "a=crypto:1 F8_128_HMAC_SHA1_80 inline:%s\r\n"
	         "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:%s|2^20|1:4\r\n"
	         "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:%s;inline:%s\r\n"
	         "a=crypto:4 AES_256_CM_HMAC_SHA1_80 inline:%s\r\n"
	         "a=crypto:5 AES_CM_128_HMAC_SHA1_32 inline:%s UNENCRYPTED_SRTP\r\n"
	         "a=crypto:6 AES_256_CM_HMAC_SHA1_80 inline:%s|2^31 WSH=128\r\n",
	         key30, key30, key30, key30, key30, key30, key46);
	TL_CHECK_INT(pick("RTP/SAVP", lines, TL_SRTP_MODE_OPTIONAL, &cr), 1);
	TL_CHECK_INT(cr.tag, 6);
	TL_CHECK_INT(cr.keys.suite, TL_SRTP_AES_256_CM_HMAC_SHA1_80);
	TL_CHECK(strstr(cr.offered, "F8_128_HMAC_SHA1_80") != NULL);

	/* Nothing usable: 488 under SAVP; RTP/AVP without crypto is plain unless required. */
	snprintf(lines, sizeof(lines), "a=crypto:1 F8_128_HMAC_SHA1_80 inline:%s\r\n", key30);
	TL_CHECK_INT(pick("RTP/SAVP", lines, TL_SRTP_MODE_OPTIONAL, &cr), -EKEYREJECTED);
	TL_CHECK(strstr(cr.why, "F8_128_HMAC_SHA1_80") != NULL);
	TL_CHECK_INT(pick("RTP/AVP", "", TL_SRTP_MODE_OPTIONAL, &cr), 0);
	TL_CHECK_INT(pick("RTP/AVP", "", TL_SRTP_MODE_REQUIRED, &cr), -EKEYREJECTED);
	TL_CHECK(strstr(cr.why, "SRTP required") != NULL);
	/* Best effort: RTP/AVP with a crypto line gets SRTP; off ignores it, refuses SAVP. */
	snprintf(lines, sizeof(lines), "a=crypto:7 AEAD_AES_128_GCM inline:%s\r\n", key28);
	TL_CHECK_INT(pick("RTP/AVP", lines, TL_SRTP_MODE_OPTIONAL, &cr), 1);
	TL_CHECK_INT(cr.savp, 0);
	TL_CHECK_INT(cr.keys.suite, TL_SRTP_AEAD_AES_128_GCM);
	TL_CHECK_INT(pick("RTP/AVP", lines, TL_SRTP_MODE_OFF, &cr), 0);
	TL_CHECK_INT(cr.keys.suite, TL_SRTP_NONE);
	TL_CHECK_INT(pick("RTP/SAVP", lines, TL_SRTP_MODE_OFF, &cr), -EKEYREJECTED);
}

int main(void)
{
	TL_TEST_RUN(test_suite_names);
	TL_TEST_RUN(test_roundtrip_each_suite);
	TL_TEST_RUN(test_sdes_pick);
	return TL_TEST_END();
}
