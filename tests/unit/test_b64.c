/* Base64 tests: RFC 4648 section 10 vectors both ways (padded and unpadded), the '+' '/'
 * characters, buffer limits, strictness on invalid input, round trip of every byte value. */
#include "trunkline/b64.h"
#include "tl_test.h"

#include <errno.h>

static const char *const vec[][2] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_vectors(void)
{
	char enc[16];
	uint8_t dec[16];

	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		size_t n = strlen(vec[i][0]), m = strlen(vec[i][1]), unpadded = m;
		ssize_t k = tl_b64_encode(enc, sizeof(enc), (const uint8_t *)vec[i][0], n);

		TL_CHECK_INT(k, m);
		TL_CHECK(k >= 0 && memcmp(enc, vec[i][1], m) == 0);
		TL_CHECK_INT(TL_B64_ENC_LEN(n), m);
		TL_CHECK_INT(tl_b64_decode(dec, sizeof(dec), vec[i][1], m), n);
		TL_CHECK(memcmp(dec, vec[i][0], n) == 0);
		while (unpadded && vec[i][1][unpadded - 1] == '=')
			unpadded--;
		memset(dec, 0, sizeof(dec));
		TL_CHECK_INT(tl_b64_decode(dec, sizeof(dec), vec[i][1], unpadded), n);
		TL_CHECK(memcmp(dec, vec[i][0], n) == 0);
	}
}

static void test_alphabet_ends(void)
{
	const uint8_t in[3] = {0xFB, 0xEF, 0xFF};
	char enc[8];
	uint8_t dec[4];

	TL_CHECK_INT(tl_b64_encode(enc, sizeof(enc), in, 3), 4);
	TL_CHECK(memcmp(enc, "++//", 4) == 0);
	TL_CHECK_INT(tl_b64_encode(enc, sizeof(enc), in, 2), 4);
	TL_CHECK(memcmp(enc, "++8=", 4) == 0);
	TL_CHECK_INT(tl_b64_decode(dec, sizeof(dec), "++//", 4), 3);
	TL_CHECK(memcmp(dec, in, 3) == 0);
	TL_CHECK_INT(tl_b64_decode(dec, sizeof(dec), "AAAA", 4), 3);
	TL_CHECK(dec[0] == 0 && dec[1] == 0 && dec[2] == 0);
}

static void test_limits(void)
{
	char enc[8];
	uint8_t dec[8];

	TL_CHECK_INT(tl_b64_encode(enc, 7, (const uint8_t *)"foob", 4), -ENOSPC);
	TL_CHECK_INT(tl_b64_encode(enc, 8, (const uint8_t *)"foob", 4), 8);
	TL_CHECK_INT(tl_b64_encode(enc, 0, (const uint8_t *)"", 0), 0);
	TL_CHECK_INT(tl_b64_decode(dec, 5, "Zm9vYmFy", 8), -ENOSPC);
	TL_CHECK_INT(tl_b64_decode(dec, 6, "Zm9vYmFy", 8), 6);
	TL_CHECK_INT(tl_b64_decode(dec, 3, "Zm9vYg==", 8), -ENOSPC);
	TL_CHECK_INT(tl_b64_decode(dec, 4, "Zm9vYg==", 8), 4);
	TL_CHECK_INT(tl_b64_decode(dec, 4, "Zm9vYmE", 7), -ENOSPC);
	TL_CHECK_INT(tl_b64_decode(dec, 5, "Zm9vYmE", 7), 5);
	TL_CHECK_INT(TL_B64_DEC_MAX(8), 6);
	TL_CHECK_INT(TL_B64_DEC_MAX(7), 6);
}

static void test_invalid(void)
{
	static const char *const bad[] = {
	    "Z",        "Zg=",       "Zg===",   "Z===",        "====", "=Zg=",
	    "Zg==Zg==", "Zm9v YmFy", "Zm9v\n",  "Zm-v",        "Zm_v", "Zh==",
	    "Zm9=",     "Zm9vY",     "Zm\x80v", "Zm9vYmF\xff", "Z=g=",
	};
	uint8_t dec[16];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ssize_t k = tl_b64_decode(dec, sizeof(dec), bad[i], strlen(bad[i]));
		if (k != -EINVAL)
			fprintf(stderr, "accepted \"%s\"\n", bad[i]);
		TL_CHECK_INT(k, -EINVAL);
	}
	TL_CHECK_INT(tl_b64_decode(dec, sizeof(dec), "Zm9v\0", 5), -EINVAL); /* embedded NUL */
	TL_CHECK_INT(tl_b64_decode(dec, sizeof(dec), "AAAAAA", 5),
	             -EINVAL); /* 4k+1, not NUL-ended */
}

static void test_roundtrip(void)
{
	uint8_t in[300], out[300];
	char enc[TL_B64_ENC_LEN(300)];
	int bad = 0;

	for (int i = 0; i < 300; i++)
		in[i] = (uint8_t)(i * 7 + (i >> 8)); /* every byte value */
	for (size_t n = 0; n <= 300; n++) {
		ssize_t e = tl_b64_encode(enc, sizeof(enc), in, n);
		ssize_t d = e < 0 ? e : tl_b64_decode(out, sizeof(out), enc, (size_t)e);
		bad +=
		    e != (ssize_t)TL_B64_ENC_LEN(n) || d != (ssize_t)n || memcmp(in, out, n) != 0;
	}
	TL_CHECK_INT(bad, 0);
}

int main(void)
{
	TL_TEST_RUN(test_rfc4648_vectors);
	TL_TEST_RUN(test_alphabet_ends);
	TL_TEST_RUN(test_limits);
	TL_TEST_RUN(test_invalid);
	TL_TEST_RUN(test_roundtrip);
	return TL_TEST_END();
}
