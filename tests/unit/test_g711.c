/* G.711 tests: decode tables against the ITU-T formulas, exact known codes (incl. the digital
 * milliwatt sequences), round-trip error bounds and monotonicity over every 16-bit input. */
#include "trunkline/g711.h"
#include "tl_test.h"

#include <math.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ITU-T G.711 µ-law expansion, written from the spec independently of the code under test. */
static int ref_ulaw(uint8_t c)
{
	int u = (uint8_t)~c, exp = (u >> 4) & 7, mant = u & 15;
	int mag = ((2 * mant + 33) << exp) - 33; /* 14-bit magnitude */
	return (u & 0x80) ? -4 * mag : 4 * mag;
}

static int ref_alaw(uint8_t c)
{
	int a = c ^ 0x55, seg = (a >> 4) & 7, mant = a & 15;
	int mag = seg == 0 ? 2 * mant + 1 : (2 * mant + 33) << (seg - 1); /* 13-bit */
	return (a & 0x80) ? 8 * mag : -8 * mag;
}

static void test_decode_tables(void)
{
	int bad_u = 0, bad_a = 0;
	for (int c = 0; c < 256; c++) {
		bad_u += tl_g711_ulaw_decode1((uint8_t)c) != ref_ulaw((uint8_t)c);
		bad_a += tl_g711_alaw_decode1((uint8_t)c) != ref_alaw((uint8_t)c);
	}
	TL_CHECK_INT(bad_u, 0);
	TL_CHECK_INT(bad_a, 0);
}

static void test_known_codes(void)
{
	TL_CHECK_INT(tl_g711_ulaw_encode1(0), 0xFF);
	TL_CHECK_INT(tl_g711_ulaw_encode1(-1), 0x7F);
	TL_CHECK_INT(tl_g711_ulaw_decode1(0xFF), 0);
	TL_CHECK_INT(tl_g711_ulaw_decode1(0x7F), 0);
	TL_CHECK_INT(tl_g711_ulaw_decode1(0x80), 32124);
	TL_CHECK_INT(tl_g711_ulaw_decode1(0x00), -32124);
	TL_CHECK_INT(tl_g711_ulaw_encode1(32767), 0x80);
	TL_CHECK_INT(tl_g711_ulaw_encode1(-32768), 0x00);
	TL_CHECK_INT(tl_g711_ulaw_encode1(1000), 0xCE);
	TL_CHECK_INT(tl_g711_alaw_encode1(0), 0xD5);
	TL_CHECK_INT(tl_g711_alaw_encode1(-1), 0x55);
	TL_CHECK_INT(tl_g711_alaw_decode1(0xD5), 8);
	TL_CHECK_INT(tl_g711_alaw_decode1(0x55), -8);
	TL_CHECK_INT(tl_g711_alaw_decode1(0xAA), 32256);
	TL_CHECK_INT(tl_g711_alaw_decode1(0x2A), -32256);
	TL_CHECK_INT(tl_g711_alaw_encode1(32767), 0xAA);
	TL_CHECK_INT(tl_g711_alaw_encode1(-32768), 0x2A);
}

/* G.711 Table 5/6: the digital milliwatt, a 0 dBm0 1 kHz sine sampled at pi/8 + k*pi/4. */
static void test_digital_milliwatt(void)
{
	static const uint8_t dmw_u[8] = {0x9E, 0x8B, 0x8B, 0x9E, 0x1E, 0x0B, 0x0B, 0x1E};
	static const uint8_t dmw_a[8] = {0xB4, 0xA1, 0xA1, 0xB4, 0x34, 0x21, 0x21, 0x34};
	int16_t pu[8], pa[8];
	uint8_t cu[8], ca[8];

	for (int k = 0; k < 8; k++) {
		double s = sin(M_PI / 8 + k * M_PI / 4);
		pu[k] = (int16_t)lrint(4 * 5664.0 * s); /* 0 dBm0 peak, 14-bit units */
		pa[k] = (int16_t)lrint(8 * 2851.0 * s); /* 0 dBm0 peak, 13-bit units */
	}
	tl_g711_ulaw_encode(cu, pu, 8);
	tl_g711_alaw_encode(ca, pa, 8);
	TL_CHECK(memcmp(cu, dmw_u, 8) == 0);
	TL_CHECK(memcmp(ca, dmw_a, 8) == 0);
}

/* Error bound: half a quantization step, which is at most (|x| + 132) / 32 for µ-law and
 * max(8, (|x| + 32) / 32) for A-law; beyond the µ-law clip the code saturates at ±32124. */
static void test_roundtrip_bounds(void)
{
	int bad_u = 0, bad_a = 0, nonmono_u = 0, nonmono_a = 0, prev_u = -32768, prev_a = -32768;

	for (int x = -32768; x <= 32767; x++) {
		int du = tl_g711_ulaw_decode1(tl_g711_ulaw_encode1((int16_t)x));
		int da = tl_g711_alaw_decode1(tl_g711_alaw_encode1((int16_t)x));
		int ax = x < 0 ? -x : x, eu = abs(du - x), ea = abs(da - x);

		if (ax <= 32635)
			bad_u += eu * 32 > ax + 132;
		else
			bad_u += du != (x < 0 ? -32124 : 32124);
		bad_a += ea > 8 && ea * 32 > ax + 32;
		nonmono_u += du < prev_u;
		nonmono_a += da < prev_a;
		prev_u = du;
		prev_a = da;
	}
	TL_CHECK_INT(bad_u, 0);
	TL_CHECK_INT(bad_a, 0);
	TL_CHECK_INT(nonmono_u, 0);
	TL_CHECK_INT(nonmono_a, 0);
}

/* Every code is the encoding of its own decoded value (µ-law's negative zero excepted). */
static void test_codes_idempotent(void)
{
	int bad_u = 0, bad_a = 0;
	for (int c = 0; c < 256; c++) {
		uint8_t u = tl_g711_ulaw_encode1(tl_g711_ulaw_decode1((uint8_t)c));
		bad_u += u != (c == 0x7F ? 0xFF : c);
		bad_a += tl_g711_alaw_encode1(tl_g711_alaw_decode1((uint8_t)c)) != c;
	}
	TL_CHECK_INT(bad_u, 0);
	TL_CHECK_INT(bad_a, 0);
}

static void test_buffers(void)
{
	int16_t pcm[512], out_u[512], out_a[512];
	uint8_t cu[512], ca[512];
	int bad = 0;

	for (int i = 0; i < 512; i++)
		pcm[i] = (int16_t)(i * 128 - 32768);
	tl_g711_ulaw_encode(cu, pcm, 512);
	tl_g711_alaw_encode(ca, pcm, 512);
	tl_g711_ulaw_decode(out_u, cu, 512);
	tl_g711_alaw_decode(out_a, ca, 512);
	for (int i = 0; i < 512; i++) {
		bad +=
		    cu[i] != tl_g711_ulaw_encode1(pcm[i]) || ca[i] != tl_g711_alaw_encode1(pcm[i]);
		bad += out_u[i] != tl_g711_ulaw_decode1(cu[i]);
		bad += out_a[i] != tl_g711_alaw_decode1(ca[i]);
	}
	TL_CHECK_INT(bad, 0);
}

int main(void)
{
	TL_TEST_RUN(test_decode_tables);
	TL_TEST_RUN(test_known_codes);
	TL_TEST_RUN(test_digital_milliwatt);
	TL_TEST_RUN(test_roundtrip_bounds);
	TL_TEST_RUN(test_codes_idempotent);
	TL_TEST_RUN(test_buffers);
	return TL_TEST_END();
}
