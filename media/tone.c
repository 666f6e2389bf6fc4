/* Goertzel single-bin power over total energy, a phase-continuous sine generator (floating
 * point, a block at a time; meant for checks, not for the per-packet media path), and ringback
 * cadences, whose wave table is computed once so the media path only copies samples. */
#include "trunkline/tone.h"

#include <errno.h>
#include <math.h>
#include <string.h>

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

int tl_tone_ringback_parse(const char *s)
{
	if (strcmp(s, "none") == 0)
		return TL_TONE_RINGBACK_NONE;
	if (strcmp(s, "us") == 0)
		return TL_TONE_RINGBACK_US;
	if (strcmp(s, "eu") == 0)
		return TL_TONE_RINGBACK_EU;
	return -EINVAL;
}

static unsigned gcd(unsigned a, unsigned b)
{
	while (b) {
		unsigned t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* Peak of a sine at dbm0 in 16-bit linear: G.711's full-scale sine (peak 8159 of 14 bits,
 * 32636 here) is +3.17 dBm0 (ITU-T G.711), so 0 dBm0 peaks at about 22660. */
static double dbm0_peak(double dbm0)
{
	return 32636.0 * pow(10.0, (dbm0 - 3.17) / 20.0);
}

int tl_tone_cadence_init(struct tl_tone_cadence *c, enum tl_tone_ringback kind, unsigned rate)
{
	unsigned f1, f2, on_ms, off_ms, base;
	double a;

	if (rate != 8000 && rate != 16000)
		return -EINVAL;
	if (kind == TL_TONE_RINGBACK_US) {
		f1 = 440, f2 = 480, on_ms = 2000, off_ms = 4000, a = dbm0_peak(-19);
	} else if (kind == TL_TONE_RINGBACK_EU) {
		f1 = f2 = 425, on_ms = 1000, off_ms = 4000, a = dbm0_peak(-16);
	} else {
		return -EINVAL;
	}
	/* The sum of sines at f1 and f2 repeats every rate / gcd(rate, f1, f2) samples. */
	base = gcd(rate, gcd(f1, f2));
	c->kind = kind;
	c->wave_len = rate / base;
	c->on = rate / 1000 * on_ms;
	c->cycle = c->on + rate / 1000 * off_ms;
	if (c->wave_len > TL_TONE_WAVE_MAX || c->on % c->wave_len || c->cycle % c->wave_len)
		return -EINVAL;
	for (uint32_t i = 0; i < c->wave_len; i++) {
		double v = sin(2 * M_PI * f1 * i / rate);
		if (f2 != f1)
			v += sin(2 * M_PI * f2 * i / rate);
		c->wave[i] = (int16_t)lrint(a * v);
	}
	return 0;
}

size_t tl_tone_cadence_fill(const struct tl_tone_cadence *c, uint32_t *pos, int16_t *pcm, size_t n)
{
	uint32_t p = *pos % c->cycle;
	size_t tone = 0;

	for (size_t i = 0; i < n; i++) {
		if (p < c->on) {
			pcm[i] = c->wave[p % c->wave_len];
			tone++;
		} else {
			pcm[i] = 0;
		}
		if (++p == c->cycle)
			p = 0;
	}
	*pos = p;
	return tone;
}
