/* Tone tests: 1 kHz survives a µ-law round trip and is detected, 400 Hz and mixtures dominated
 * by 400 Hz are not taken for 1 kHz, silence and quiet tones are not detected, block lengths
 * that cut the wave, and phase continuity of the generator. Ringback: frequencies, level and
 * cadence of the US and EU tables, matching a direct sine sum sample for sample. */
#include "trunkline/g711.h"
#include "trunkline/tone.h"
#include "tl_test.h"

#include <errno.h>
#include <math.h>

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

/* Runs a cadence from its start over secs seconds in 20 ms frames; checks each frame is all
 * tone or all silence as the cadence says, and the tone's make-up in every tone frame. */
static void check_cadence(enum tl_tone_ringback kind, double f1, double f2, double on_s,
                          double cycle_s, double peak_min, double peak_max)
{
	struct tl_tone_cadence c;
	int16_t pcm[1600];
	uint32_t pos = 0;
	int frames = (int)(2 * cycle_s * 50) + 7;

	TL_CHECK_INT(tl_tone_cadence_init(&c, kind, 8000), 0);
	for (int f = 0; f < frames; f++) {
		double t = fmod(f * 0.02, cycle_s);
		int want_tone = t < on_s - 1e-9;
		size_t got = tl_tone_cadence_fill(&c, &pos, pcm, 160);
		int peak = 0;

		for (int i = 0; i < 160; i++)
			peak = abs(pcm[i]) > peak ? abs(pcm[i]) : peak;
		TL_CHECK_INT(got, want_tone ? 160 : 0);
		if (!want_tone) {
			TL_CHECK_INT(peak, 0);
			continue;
		}
		TL_CHECK(peak >= peak_min && peak <= peak_max);
	}
	/* 200 ms of a burst from its start: the frequencies (5 Hz resolution) and the exact
	 * samples of a sine sum. */
	pos = 0;
	TL_CHECK_INT(tl_tone_cadence_fill(&c, &pos, pcm, 1600), 1600);
	double r1 = tl_tone_power_ratio(pcm, 1600, 8000, f1);
	double r2 = f2 != f1 ? tl_tone_power_ratio(pcm, 1600, 8000, f2) : 0;
	if (f2 != f1)
		TL_CHECK(r1 > 0.45 && r2 > 0.45 && r1 + r2 > 0.98);
	else
		TL_CHECK(r1 > 0.98);
	TL_CHECK(tl_tone_power_ratio(pcm, 1600, 8000, 1000) < 0.01);
	TL_CHECK(tl_tone_power_ratio(pcm, 1600, 8000, f1 == 425 ? 440 : 425) < 0.05);
	for (int i = 0; i < 1600; i++) {
		double v =
		    sin(2 * M_PI * f1 * i / 8000) + (f2 != f1 ? sin(2 * M_PI * f2 * i / 8000) : 0);
		double amp = kind == TL_TONE_RINGBACK_US ? 32636.0 * pow(10, (-19 - 3.17) / 20)
		                                         : 32636.0 * pow(10, (-16 - 3.17) / 20);
		if (fabs(pcm[i] - amp * v) > 0.51) {
			TL_CHECK(fabs(pcm[i] - amp * v) <= 0.51);
			break;
		}
	}
	/* Bursts start at the wave's start: the first sample is 0, no click. */
	TL_CHECK_INT(pcm[0], 0);
}

static void test_ringback(void)
{
	struct tl_tone_cadence c;
	int16_t pcm[160];
	uint32_t pos;

	/* -19 dBm0 per component: each peaks near 2540, the sum below 5080. */
	check_cadence(TL_TONE_RINGBACK_US, 440, 480, 2.0, 6.0, 4000, 5080);
	/* -16 dBm0: a peak near 3590. */
	check_cadence(TL_TONE_RINGBACK_EU, 425, 425, 1.0, 5.0, 3580, 3600);
	TL_CHECK_INT(tl_tone_cadence_init(&c, TL_TONE_RINGBACK_US, 8000), 0);
	TL_CHECK_INT(c.wave_len, 200);
	TL_CHECK_INT(tl_tone_cadence_init(&c, TL_TONE_RINGBACK_EU, 8000), 0);
	TL_CHECK_INT(c.wave_len, 320);
	TL_CHECK_INT(tl_tone_cadence_init(&c, TL_TONE_RINGBACK_EU, 16000), 0);
	TL_CHECK_INT(c.wave_len, 640);
	/* A position far into the call keeps the cadence (EU at 16 kHz): 1000 cycles + 0.5 s is
	 * in a burst, + 1.01 s in the pause. */
	pos = 1000 * c.cycle + 8000;
	TL_CHECK_INT(tl_tone_cadence_fill(&c, &pos, pcm, 160), 160);
	pos = 1000 * c.cycle + 16000 + 160;
	TL_CHECK_INT(tl_tone_cadence_fill(&c, &pos, pcm, 160), 0);
	TL_CHECK_INT(tl_tone_cadence_init(&c, TL_TONE_RINGBACK_NONE, 8000), -EINVAL);
	TL_CHECK_INT(tl_tone_cadence_init(&c, TL_TONE_RINGBACK_US, 44100), -EINVAL);
	TL_CHECK_INT(tl_tone_ringback_parse("us"), TL_TONE_RINGBACK_US);
	TL_CHECK_INT(tl_tone_ringback_parse("eu"), TL_TONE_RINGBACK_EU);
	TL_CHECK_INT(tl_tone_ringback_parse("none"), TL_TONE_RINGBACK_NONE);
	TL_CHECK_INT(tl_tone_ringback_parse("uk"), -EINVAL);
	TL_CHECK_INT(tl_tone_ringback_parse(""), -EINVAL);
}

int main(void)
{
	TL_TEST_RUN(test_1k_through_ulaw);
	TL_TEST_RUN(test_400_is_not_1k);
	TL_TEST_RUN(test_mixtures);
	TL_TEST_RUN(test_silence_and_noise);
	TL_TEST_RUN(test_block_lengths);
	TL_TEST_RUN(test_generator);
	TL_TEST_RUN(test_ringback);
	return TL_TEST_END();
}
