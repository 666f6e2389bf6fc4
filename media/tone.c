/* Goertzel single-bin power over total energy, and a phase-continuous sine generator.
 * Floating point, a block at a time; meant for checks, not for the per-packet media path. */
#include "trunkline/tone.h"

#include <errno.h>
#include <math.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static int bad_args(unsigned rate, double freq)
{
	return rate == 0 || !(freq > 0) || !(freq < rate / 2.0);
}

/* |X(freq)|^2 over n samples, generalized Goertzel (freq need not be a DFT bin). */
static double goertzel(const int16_t *pcm, size_t n, double w)
{
	double coeff = 2 * cos(w), s1 = 0, s2 = 0, s0;

	for (size_t i = 0; i < n; i++) {
		s0 = pcm[i] + coeff * s1 - s2;
		s2 = s1;
		s1 = s0;
	}
	return s1 * s1 + s2 * s2 - coeff * s1 * s2;
}

static double energy(const int16_t *pcm, size_t n)
{
	double e = 0;

	for (size_t i = 0; i < n; i++)
		e += (double)pcm[i] * pcm[i];
	return e;
}

double tl_tone_power_ratio(const int16_t *pcm, size_t n, unsigned rate, double freq)
{
	double e, p;

	if (bad_args(rate, freq) || n == 0)
		return 0;
	e = energy(pcm, n);
	if (e == 0)
		return 0;
	/* Parseval: a pure sine of peak A gives |X|^2 = (A n / 2)^2 and e = A^2 n / 2. Blocks of
	 * a few periods leak a little and can exceed 1. */
	p = 2 * goertzel(pcm, n, 2 * M_PI * freq / rate) / ((double)n * e);
	return p > 1 ? 1 : p;
}

int tl_tone_detect(const int16_t *pcm, size_t n, unsigned rate, double freq)
{
	if (bad_args(rate, freq))
		return -EINVAL;
	if (n == 0 || sqrt(energy(pcm, n) / (double)n) < TL_TONE_MIN_RMS)
		return 0;
	return tl_tone_power_ratio(pcm, n, rate, freq) > 0.5;
}

int tl_tone_gen_init(struct tl_tone_gen *g, unsigned rate, double freq, double amplitude)
{
	if (bad_args(rate, freq) || !(amplitude >= 0) || amplitude > 32767)
		return -EINVAL;
	g->phase = 0;
	g->step = 2 * M_PI * freq / rate;
	g->amp = amplitude;
	return 0;
}

void tl_tone_gen_fill(struct tl_tone_gen *g, int16_t *pcm, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		pcm[i] = (int16_t)lrint(g->amp * sin(g->phase));
		g->phase += g->step;
		if (g->phase >= 2 * M_PI)
			g->phase -= 2 * M_PI;
	}
}
