/* Tone tests: 1 kHz survives a µ-law round trip and is detected, 400 Hz and mixtures dominated
 * by 400 Hz are not taken for 1 kHz, silence and quiet tones are not detected, block lengths
 * that cut the wave, and phase continuity of the generator. */
#include "trunkline/g711.h"
#include "trunkline/tone.h"
#include "tl_test.h"

#include <errno.h>

static void gen(int16_t *pcm, size_t n, unsigned rate, double freq, double amp)
{
	struct tl_tone_gen g;
	TL_CHECK_INT(tl_tone_gen_init(&g, rate, freq, amp), 0);
	tl_tone_gen_fill(&g, pcm, n);
}

static void test_1k_through_ulaw(void)
{
	int16_t pcm[160], out[160];
	uint8_t enc[160];

	gen(pcm, 160, 8000, 1000, 16000);
	tl_g711_ulaw_encode(enc, pcm, 160);
	tl_g711_ulaw_decode(out, enc, 160);
	TL_CHECK(tl_tone_power_ratio(out, 160, 8000, 1000) > 0.99);
	TL_CHECK_INT(tl_tone_detect(out, 160, 8000, 1000), 1);
	TL_CHECK(tl_tone_power_ratio(out, 160, 8000, 400) < 0.01);
	TL_CHECK_INT(tl_tone_detect(out, 160, 8000, 400), 0);
}

static void test_400_is_not_1k(void)
{
	int16_t pcm[160];

	gen(pcm, 160, 8000, 400, 16000);
	TL_CHECK(tl_tone_power_ratio(pcm, 160, 8000, 1000) < 0.01);
	TL_CHECK_INT(tl_tone_detect(pcm, 160, 8000, 1000), 0);
	TL_CHECK_INT(tl_tone_detect(pcm, 160, 8000, 400), 1);
	/* 1100 Hz is not 1 kHz either: the detector is a narrow filter */
	gen(pcm, 160, 8000, 1100, 16000);
	TL_CHECK_INT(tl_tone_detect(pcm, 160, 8000, 1000), 0);
}

static void test_mixtures(void)
{
	int16_t a[160], b[160], mix[160];
	double r;

	gen(a, 160, 8000, 1000, 12000);
	gen(b, 160, 8000, 400, 6000);
	for (int i = 0; i < 160; i++)
		mix[i] = (int16_t)(a[i] + b[i]);
	r = tl_tone_power_ratio(mix, 160, 8000, 1000);
	TL_CHECK(r > 0.78 && r < 0.82); /* 12000^2 / (12000^2 + 6000^2) = 0.8 */
	TL_CHECK_INT(tl_tone_detect(mix, 160, 8000, 1000), 1);
	gen(a, 160, 8000, 1000, 6000);
	gen(b, 160, 8000, 400, 12000);
	for (int i = 0; i < 160; i++)
		mix[i] = (int16_t)(a[i] + b[i]);
	r = tl_tone_power_ratio(mix, 160, 8000, 1000);
	TL_CHECK(r > 0.18 && r < 0.22);
	TL_CHECK_INT(tl_tone_detect(mix, 160, 8000, 1000), 0);
}

static void test_silence_and_noise(void)
{
	int16_t pcm[160] = {0};
	uint32_t x = 12345;

	TL_CHECK_INT(tl_tone_detect(pcm, 160, 8000, 1000), 0);
	TL_CHECK(tl_tone_power_ratio(pcm, 160, 8000, 1000) == 0);
	gen(pcm, 160, 8000, 1000, 50); /* a pure but very quiet tone: silence */
	TL_CHECK(tl_tone_power_ratio(pcm, 160, 8000, 1000) > 0.9);
	TL_CHECK_INT(tl_tone_detect(pcm, 160, 8000, 1000), 0);
	for (int i = 0; i < 160; i++) { /* white noise */
		x = x * 1103515245u + 12345u;
		pcm[i] = (int16_t)((x >> 16) & 0x3FFF) - 0x2000;
	}
	TL_CHECK_INT(tl_tone_detect(pcm, 160, 8000, 1000), 0);
}

static void test_block_lengths(void)
{
	int16_t pcm[480];

	gen(pcm, 480, 8000, 1000, 16000);
	TL_CHECK(tl_tone_power_ratio(pcm, 150, 8000, 1000) > 0.99); /* 18.75 periods */
	TL_CHECK(tl_tone_power_ratio(pcm, 5, 8000, 1000) <= 1);     /* clamped */
	gen(pcm, 480, 24000, 1000, 16000);
	TL_CHECK(tl_tone_power_ratio(pcm, 470, 24000, 1000) > 0.99);
	gen(pcm, 441, 44100, 440, 16000); /* 4.4 periods */
	TL_CHECK(tl_tone_power_ratio(pcm, 441, 44100, 440) > 0.99);
	TL_CHECK_INT(tl_tone_detect(pcm, 441, 44100, 440), 1);
}

static void test_generator(void)
{
	struct tl_tone_gen g;
	int16_t one[160], two[160];
	int peak = 0;

	gen(one, 160, 8000, 1000, 16000);
	TL_CHECK_INT(tl_tone_gen_init(&g, 8000, 1000, 16000), 0);
	tl_tone_gen_fill(&g, two, 70);
	tl_tone_gen_fill(&g, two + 70, 90);
	TL_CHECK(memcmp(one, two, sizeof(one)) == 0);
	TL_CHECK_INT(one[0], 0);
	TL_CHECK_INT(one[2], 16000); /* quarter period at 8 samples per period */
	for (int i = 0; i < 160; i++)
		peak = one[i] > peak ? one[i] : peak;
	TL_CHECK_INT(peak, 16000);
	TL_CHECK_INT(tl_tone_gen_init(&g, 8000, 0, 100), -EINVAL);
	TL_CHECK_INT(tl_tone_gen_init(&g, 8000, 4000, 100), -EINVAL);
	TL_CHECK_INT(tl_tone_gen_init(&g, 0, 1000, 100), -EINVAL);
	TL_CHECK_INT(tl_tone_gen_init(&g, 8000, 1000, 40000), -EINVAL);
	TL_CHECK_INT(tl_tone_detect(one, 160, 0, 1000), -EINVAL);
}

int main(void)
{
	TL_TEST_RUN(test_1k_through_ulaw);
	TL_TEST_RUN(test_400_is_not_1k);
	TL_TEST_RUN(test_mixtures);
	TL_TEST_RUN(test_silence_and_noise);
	TL_TEST_RUN(test_block_lengths);
	TL_TEST_RUN(test_generator);
	return TL_TEST_END();
}
