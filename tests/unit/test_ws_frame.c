/* Client WebSocket frames we build ourselves (ws_frame.c): header bytes for each length form
 * (RFC 6455 5.2) at the edges 0, 125, 126, 65535, 65536, the MASK bit and key, masking that
 * unmasks back to the payload at every alignment, and the batch of masking keys. */
#include "ws_int.h"
#include "tl_test.h"

#include <stdint.h>

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Frames a payload of len bytes (byte i = i * 7 + 3) and checks the whole frame. */
static void check_frame(size_t len, int binary, size_t want_head)
{
	unsigned char *buf = malloc(TL_WSF_HEAD_MAX + len + 1);
	unsigned char *p = buf + TL_WSF_HEAD_MAX, *f;
	size_t ext = want_head - 6, got = 0;
	int ok = 1;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7 + 3);
	p[len] = 0xee; /* must stay untouched */
	f = tl_wsf_frame(p, len, binary, key);
	TL_CHECK_INT(p - f, want_head);
	TL_CHECK_INT(f[0], binary ? 0x82 : 0x81); /* FIN, no RSV, opcode */
	TL_CHECK_INT(f[1] & 0x80, 0x80);          /* MASK */
	if (ext == 0)
		got = f[1] & 0x7f;
	else {
		TL_CHECK_INT(f[1] & 0x7f, ext == 2 ? 126 : 127);
		if (ext == 8)
			TL_CHECK_INT(f[2] & 0x80, 0); /* the most significant bit must be 0 */
		for (size_t i = 0; i < ext; i++)
			got = got << 8 | f[2 + i];
	}
	TL_CHECK_INT(got, len);
	TL_CHECK(memcmp(f + 2 + ext, key, 4) == 0);
	for (size_t i = 0; i < len; i++)
		if ((p[i] ^ f[2 + ext + (i & 3)]) != (unsigned char)(i * 7 + 3))
			ok = 0;
	TL_CHECK(ok);
	if (len >= 8)
		TL_CHECK(memcmp(p, "\x03\x0a\x11\x18\x1f\x26\x2d\x34", 8) != 0); /* was masked */
	TL_CHECK_INT(p[len], 0xee);
	free(buf);
}

static void test_lengths(void)
{
	check_frame(0, 0, 6);
	check_frame(1, 1, 6);
	check_frame(125, 0, 6);
	check_frame(126, 1, 8);
	check_frame(65535, 0, 8);
	check_frame(65536, 1, 14);
	check_frame(70001, 0, 14);
}

/* The exact bytes of a short text frame (RFC 6455 5.7's masked "Hello", with its key). */
static void test_rfc_example(void)
{
	static const uint8_t k[4] = {0x37, 0xfa, 0x21, 0x3d};
	static const unsigned char want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
	                                     0x7f, 0x9f, 0x4d, 0x51, 0x58};
	unsigned char buf[TL_WSF_HEAD_MAX + 5];
	unsigned char *f;

	memcpy(buf + TL_WSF_HEAD_MAX, "Hello", 5);
	f = tl_wsf_frame(buf + TL_WSF_HEAD_MAX, 5, 0, k);
	TL_CHECK_INT(buf + sizeof(buf) - f, sizeof(want));
	TL_CHECK(memcmp(f, want, sizeof(want)) == 0);
}

/* The 64-bit loop and the byte tail agree with a byte-by-byte mask at every start alignment
 * and length around the word size. */
static void test_mask_alignment(void)
{
	unsigned char a[64], b[64];
	int ok = 1;

	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len + off <= 40; len++) {
			for (size_t i = 0; i < sizeof(a); i++)
				a[i] = b[i] = (unsigned char)(i * 13 + 1);
			tl_wsf_mask(a + off, len, key);
			for (size_t i = 0; i < len; i++)
				b[off + i] ^= key[i % 4];
			if (memcmp(a, b, sizeof(a)) != 0)
				ok = 0;
		}
	TL_CHECK(ok);
}

/* Keys come from the CSPRNG in batches: a batch's keys are not all the same, and taking more
 * than a batch refills. */
static void test_keys(void)
{
	struct tl_wsf_keys ks;
	uint8_t k[4], first[4];
	int differ = 0;

	memset(&ks, 0, sizeof(ks));
	TL_CHECK_INT(tl_wsf_key(&ks, first), 0);
	TL_CHECK_INT(ks.left, TL_WSF_KEYS - 1);
	for (int i = 1; i < TL_WSF_KEYS; i++) {
		TL_CHECK_INT(tl_wsf_key(&ks, k), 0);
		if (memcmp(k, first, 4) != 0)
			differ = 1;
	}
	TL_CHECK(differ);
	TL_CHECK_INT(ks.left, 0);
	TL_CHECK_INT(tl_wsf_key(&ks, k), 0);
	TL_CHECK_INT(ks.left, TL_WSF_KEYS - 1);
}

int main(void)
{
	TL_TEST_RUN(test_lengths);
	TL_TEST_RUN(test_rfc_example);
	TL_TEST_RUN(test_mask_alignment);
	TL_TEST_RUN(test_keys);
	return TL_TEST_END();
}
