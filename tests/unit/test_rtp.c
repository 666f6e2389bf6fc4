/* RTP/RTCP tests: header parse of a captured PCMU packet, CSRC/extension/padding, malformed and
 * truncated input, header write, jitter against the RFC 3550 formula, SR/RR+SDES byte layout
 * and SR parsing of compound packets. */
#include "trunkline/rtp.h"
#include "tl_test.h"

#include <errno.h>

/* PCMU packet header as captured from a PBX (marker set on the first packet of a talkspurt). */
static const uint8_t pcmu_hdr[12] = {0x80, 0x80, 0x5d, 0x2c, 0x00, 0x01,
                                     0xe2, 0x40, 0x3a, 0x1f, 0x9c, 0x07};

static void test_parse_basic(void)
{
	uint8_t pkt[12 + 160];
	struct tl_rtp_hdr h;

	memcpy(pkt, pcmu_hdr, 12);
	memset(pkt + 12, 0xFF, 160);
	TL_CHECK_INT(tl_rtp_parse(&h, pkt, sizeof(pkt)), 0);
	TL_CHECK_INT(h.pt, 0);
	TL_CHECK_INT(h.marker, 1);
	TL_CHECK_INT(h.seq, 0x5d2c);
	TL_CHECK_INT(h.ts, 0x0001e240);
	TL_CHECK_INT(h.ssrc, 0x3a1f9c07);
	TL_CHECK_INT(h.cc, 0);
	TL_CHECK(h.csrc == NULL && h.ext == NULL);
	TL_CHECK(h.payload == pkt + 12);
	TL_CHECK_INT(h.payload_len, 160);
	/* header only: empty payload is valid */
	TL_CHECK_INT(tl_rtp_parse(&h, pkt, 12), 0);
	TL_CHECK_INT(h.payload_len, 0);
}

static void test_parse_csrc_ext_pad(void)
{
	/* V=2 P=1 X=1 CC=2, pt 8; 2 CSRCs; extension profile 0xBEDE with 1 word; 3 payload
	 * bytes; 4 bytes padding (last byte says 4). */
	uint8_t pkt[] = {0xB2, 0x08, 0x00, 0x01, 0,   0,   0,   160, 0,    0,    0,    7,
	                 0,    0,    0,    1,    0,   0,   0,   2,   0xBE, 0xDE, 0x00, 0x01,
	                 0x10, 0xAA, 0,    0,    'a', 'b', 'c', 0,   0,    0,    4};
	struct tl_rtp_hdr h;

	TL_CHECK_INT(tl_rtp_parse(&h, pkt, sizeof(pkt)), 0);
	TL_CHECK_INT(h.cc, 2);
	TL_CHECK(h.csrc == pkt + 12);
	TL_CHECK_INT(h.ext_profile, 0xBEDE);
	TL_CHECK(h.ext == pkt + 24);
	TL_CHECK_INT(h.ext_len, 4);
	TL_CHECK(h.payload == pkt + 28);
	TL_CHECK_INT(h.payload_len, 3);
	TL_CHECK_INT(h.pad_len, 4);
	TL_CHECK(memcmp(h.payload, "abc", 3) == 0);

	/* padding count 0, or larger than what follows the header: malformed */
	pkt[sizeof(pkt) - 1] = 0;
	TL_CHECK_INT(tl_rtp_parse(&h, pkt, sizeof(pkt)), -EPROTO);
	pkt[sizeof(pkt) - 1] = 8;
	TL_CHECK_INT(tl_rtp_parse(&h, pkt, sizeof(pkt)), -EPROTO);
	pkt[sizeof(pkt) - 1] = 7; /* exactly the payload + padding: empty payload */
	TL_CHECK_INT(tl_rtp_parse(&h, pkt, sizeof(pkt)), 0);
	TL_CHECK_INT(h.payload_len, 0);
}

static void test_parse_malformed(void)
{
	uint8_t pkt[] = {0x92, 0x00, 0, 1, 0,    0,    0,    0,    0, 0, 0, 1, 0, 0, 0, 1,
	                 0,    0,    0, 2, 0xBE, 0xDE, 0x00, 0x02, 1, 2, 3, 4, 5, 6, 7, 8};
	struct tl_rtp_hdr h;
	size_t n;

	TL_CHECK_INT(tl_rtp_parse(&h, pkt, sizeof(pkt)), 0); /* X=1, CC=2: exactly fits */
	TL_CHECK_INT(h.payload_len, 0);
	for (n = 0; n < sizeof(pkt); n++) /* every truncation is caught */
		TL_CHECK_INT(tl_rtp_parse(&h, pkt, n), -EPROTO);
	pkt[0] = 0x40; /* version 1 */
	TL_CHECK_INT(tl_rtp_parse(&h, pkt, sizeof(pkt)), -EPROTO);
	pkt[0] = 0xC0; /* version 3 */
	TL_CHECK_INT(tl_rtp_parse(&h, pkt, sizeof(pkt)), -EPROTO);
	pkt[0] = 0x8F; /* CC=15 needs 72 bytes */
	TL_CHECK_INT(tl_rtp_parse(&h, pkt, sizeof(pkt)), -EPROTO);
}

static void test_write(void)
{
	struct tl_rtp_hdr h = {
	    .pt = 0, .marker = 1, .seq = 0x5d2c, .ts = 0x1e240, .ssrc = 0x3a1f9c07};
	uint8_t buf[16];

	TL_CHECK_INT(tl_rtp_write(buf, 11, &h), -ENOSPC);
	TL_CHECK_INT(tl_rtp_write(buf, sizeof(buf), &h), 12);
	TL_CHECK(memcmp(buf, pcmu_hdr, 12) == 0);
	h.pt = 128;
	TL_CHECK_INT(tl_rtp_write(buf, sizeof(buf), &h), -EINVAL);
	h.pt = 101;
	h.marker = 0;
	TL_CHECK_INT(tl_rtp_write(buf, sizeof(buf), &h), 12);
	TL_CHECK_INT(buf[1], 101);
	TL_CHECK_INT(tl_rtp_is_rtcp(buf, 12), 0);
	buf[1] = 200;
	TL_CHECK_INT(tl_rtp_is_rtcp(buf, 12), 1);
	TL_CHECK_INT(tl_rtp_is_rtcp(buf, 1), 0);
}

static void test_jitter(void)
{
	struct tl_rtp_jitter j = {0};
	double ref = 0;

	tl_rtp_jitter_update(&j, 0, 1000);
	TL_CHECK_INT(tl_rtp_jitter_get(&j), 0);
	tl_rtp_jitter_update(&j, 160, 1000 + 160 + 160); /* 160 units late: J = 160/16 */
	TL_CHECK_INT(tl_rtp_jitter_get(&j), 10);
	tl_rtp_jitter_update(&j, 320, 1000 + 320); /* 160 early again: 10 + 150/16 */
	TL_CHECK_INT(tl_rtp_jitter_get(&j), 19);

	/* the RFC's integer version rounds: two 8-unit changes give 8 + 8 - 1, not 16 */
	memset(&j, 0, sizeof(j));
	tl_rtp_jitter_update(&j, 0, 0);
	tl_rtp_jitter_update(&j, 160, 168);
	tl_rtp_jitter_update(&j, 320, 320);
	TL_CHECK_INT(j.jitter_q4, 15);
	TL_CHECK_INT(tl_rtp_jitter_get(&j), 0);

	/* alternating +-80 transit converges on 160 like the floating-point formula */
	memset(&j, 0, sizeof(j));
	for (uint32_t i = 0; i < 400; i++) {
		uint32_t ts = 0xFFFFF000u + i * 160; /* crosses the 32-bit wrap */
		tl_rtp_jitter_update(&j, ts, ts + 5000 + (i & 1 ? 80 : -80));
		if (i > 0)
			ref += (160 - ref) / 16;
	}
	TL_CHECK(tl_rtp_jitter_get(&j) >= (uint32_t)ref - 1 && tl_rtp_jitter_get(&j) <= 160);
	TL_CHECK(ref > 159);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_rtcp_sr_layout(void)
{
	struct tl_rtcp_report r = {.ssrc = 0x11223344,
	                           .sender = 1,
	                           .ntp = 0xE1234567890ABCDEull,
	                           .rtp_ts = 8000,
	                           .packets_sent = 50,
	                           .octets_sent = 8000,
	                           .have_block = 1,
	                           .remote_ssrc = 0x3a1f9c07,
	                           .fraction_lost = 64,
	                           .cum_lost = -1,
	                           .ext_highest_seq = 0x00015d2c,
	                           .jitter = 19,
	                           .lsr = 0x4567890A,
	                           .dlsr = 65536};
	uint8_t buf[128];
	struct tl_rtcp_sr sr;

	TL_CHECK_INT(tl_rtcp_build(buf, sizeof(buf), &r, "abc"), 52 + 16);
	TL_CHECK_INT(buf[0], 0x81);
	TL_CHECK_INT(buf[1], 200);
	TL_CHECK_INT(buf[2] << 8 | buf[3], 12);
	TL_CHECK_INT(rd32(buf + 4), 0x11223344);
	TL_CHECK_INT(rd32(buf + 8), 0xE1234567);
	TL_CHECK_INT(rd32(buf + 12), 0x890ABCDE);
	TL_CHECK_INT(rd32(buf + 16), 8000);
	TL_CHECK_INT(rd32(buf + 20), 50);
	TL_CHECK_INT(rd32(buf + 24), 8000);
	TL_CHECK_INT(rd32(buf + 28), 0x3a1f9c07);
	TL_CHECK_INT(rd32(buf + 32), 0x40FFFFFF); /* fraction 64, cum lost -1 in 24 bits */
	TL_CHECK_INT(rd32(buf + 36), 0x00015d2c);
	TL_CHECK_INT(rd32(buf + 40), 19);
	TL_CHECK_INT(rd32(buf + 44), 0x4567890A);
	TL_CHECK_INT(rd32(buf + 48), 65536);
	/* SDES: 0x81 202 len 3, SSRC, CNAME(1) len 3 "abc", END + pad */
	static const uint8_t sdes[16] = {0x81, 202, 0,   3,   0x11, 0x22, 0x33, 0x44,
	                                 1,    3,   'a', 'b', 'c',  0,    0,    0};
	TL_CHECK(memcmp(buf + 52, sdes, 16) == 0);

	TL_CHECK_INT(tl_rtcp_parse_sr(buf, 68, &sr), 0);
	TL_CHECK_INT(sr.ssrc, 0x11223344);
	TL_CHECK(sr.ntp == 0xE1234567890ABCDEull);
	TL_CHECK_INT(tl_rtcp_ntp_mid(sr.ntp), 0x4567890A);
	TL_CHECK_INT(sr.rtp_ts, 8000);
	TL_CHECK_INT(sr.packets, 50);
	TL_CHECK_INT(sr.octets, 8000);
	TL_CHECK_INT(tl_rtcp_build(buf, 67, &r, "abc"), -ENOSPC);
}

static void test_rtcp_rr(void)
{
	struct tl_rtcp_report r = {.ssrc = 7, .cum_lost = 0x12345678};
	char cname[257];
	uint8_t buf[400];
	struct tl_rtcp_sr sr;

	TL_CHECK_INT(tl_rtcp_build(buf, sizeof(buf), &r, "abcd"), 8 + 16);
	TL_CHECK_INT(buf[0], 0x80);
	TL_CHECK_INT(buf[1], 201);
	TL_CHECK_INT(buf[3], 1);
	TL_CHECK_INT(buf[8 + 3], 3); /* 4-byte CNAME still needs an END octet: 16 bytes */
	TL_CHECK_INT(tl_rtcp_parse_sr(buf, 24, &sr), -ENOENT);
	r.have_block = 1;
	TL_CHECK_INT(tl_rtcp_build(buf, sizeof(buf), &r, "abcd"), 32 + 16);
	TL_CHECK_INT(buf[0], 0x81);
	TL_CHECK_INT(rd32(buf + 12), 0x007FFFFF); /* cumulative lost clamped */
	r.cum_lost = -0x12345678;
	TL_CHECK_INT(tl_rtcp_build(buf, sizeof(buf), &r, "abcd"), 32 + 16);
	TL_CHECK_INT(rd32(buf + 12), 0x00800000);

	memset(cname, 'x', 256);
	cname[256] = '\0';
	TL_CHECK_INT(tl_rtcp_build(buf, sizeof(buf), &r, cname), -EINVAL);
	cname[255] = '\0';
	TL_CHECK_INT(tl_rtcp_build(buf, sizeof(buf), &r, cname), 32 + 268);
	TL_CHECK_INT(tl_rtcp_build(buf, sizeof(buf), &r, ""), -EINVAL);
}

static void test_rtcp_parse_compound(void)
{
	struct tl_rtcp_report rr = {.ssrc = 1, .have_block = 1};
	struct tl_rtcp_report s = {.ssrc = 2, .sender = 1, .ntp = 0x0000123456789ABCull};
	uint8_t buf[256];
	struct tl_rtcp_sr sr;
	ssize_t a, b;

	a = tl_rtcp_build(buf, sizeof(buf), &rr, "rr");
	b = tl_rtcp_build(buf + a, sizeof(buf) - (size_t)a, &s, "sr");
	TL_CHECK(a > 0 && b > 0);
	TL_CHECK_INT(tl_rtcp_parse_sr(buf, (size_t)(a + b), &sr), 0); /* SR not first */
	TL_CHECK_INT(sr.ssrc, 2);
	TL_CHECK_INT(tl_rtcp_ntp_mid(sr.ntp), 0x12345678);
	s.ssrc = 3; /* a second SR in the same compound is not the one reported */
	TL_CHECK_INT(tl_rtcp_build(buf + a + b, sizeof(buf) - (size_t)(a + b), &s, "sr"), b);
	TL_CHECK_INT(tl_rtcp_parse_sr(buf, (size_t)(a + 2 * b), &sr), 0);
	TL_CHECK_INT(sr.ssrc, 2);
	TL_CHECK_INT(tl_rtcp_parse_sr(buf, (size_t)(a + b) - 4, &sr), -EPROTO);
	TL_CHECK_INT(tl_rtcp_parse_sr(buf, (size_t)(a + b) + 2, &sr), -EPROTO);
	TL_CHECK_INT(tl_rtcp_parse_sr(buf, 3, &sr), -EPROTO);
	buf[a + 3] = 5; /* an SR claiming 24 bytes cannot hold sender info */
	TL_CHECK_INT(tl_rtcp_parse_sr(buf, (size_t)a + 24, &sr), -EPROTO);
	buf[0] = 0x41; /* version 1 */
	TL_CHECK_INT(tl_rtcp_parse_sr(buf, (size_t)(a + b), &sr), -EPROTO);
}

static void test_rtcp_helpers(void)
{
	struct timespec t0 = {0, 0}, t1 = {1, 500000000};

	TL_CHECK(tl_rtcp_ntp(&t0) == (uint64_t)2208988800u << 32);
	TL_CHECK(tl_rtcp_ntp(&t1) == ((uint64_t)2208988801u << 32 | 0x80000000u));
	TL_CHECK_INT(tl_rtcp_ntp_mid(0x0123456789ABCDEFull), 0x456789AB);
	TL_CHECK_INT(tl_rtcp_dlsr(1000), 65536);
	TL_CHECK_INT(tl_rtcp_dlsr(1500), 98304);
	TL_CHECK_INT(tl_rtcp_dlsr(-5), 0);
	TL_CHECK_INT(tl_rtcp_dlsr(100000000), UINT32_MAX);
	TL_CHECK_INT(tl_rtcp_fraction_lost(100, 75), 64);
	TL_CHECK_INT(tl_rtcp_fraction_lost(10, 0), 255);
	TL_CHECK_INT(tl_rtcp_fraction_lost(10, 11), 0);
	TL_CHECK_INT(tl_rtcp_fraction_lost(0, 0), 0);
}

int main(void)
{
	TL_TEST_RUN(test_parse_basic);
	TL_TEST_RUN(test_parse_csrc_ext_pad);
	TL_TEST_RUN(test_parse_malformed);
	TL_TEST_RUN(test_write);
	TL_TEST_RUN(test_jitter);
	TL_TEST_RUN(test_rtcp_sr_layout);
	TL_TEST_RUN(test_rtcp_rr);
	TL_TEST_RUN(test_rtcp_parse_compound);
	TL_TEST_RUN(test_rtcp_helpers);
	return TL_TEST_END();
}
