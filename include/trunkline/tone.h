/* Single-frequency tone detection (Goertzel) and sine generation on int16 PCM, for tests and
 * the example agent ("did the 1 kHz test tone make it through?"). Pure, no allocation.
 * Not a DTMF detector: one frequency, no twist or duration checks. */
#ifndef TRUNKLINE_TONE_H
#define TRUNKLINE_TONE_H

#include <stddef.h>
#include <stdint.h>

/* Below this RMS (about -50 dBFS) a block counts as silence and tl_tone_detect says 0. */
#define TL_TONE_MIN_RMS 100.0

/* Share of the block's energy at freq, 0..1 (about 1 for a pure tone at freq; within about
 * 0.01 of the true share for blocks of 10 periods or more, e.g. 160 samples at 8 kHz for 1 kHz).
 * pcm: n samples, borrowed until return. Returns 0 for silence or bad arguments (rate 0, freq
 * not in (0, rate/2)). */
double tl_tone_power_ratio(const int16_t *pcm, size_t n, unsigned rate, double freq);

/* 1 when freq holds more than half the energy and the block is not silence, 0 when not,
 * -EINVAL for bad arguments. pcm borrowed until return. */
int tl_tone_detect(const int16_t *pcm, size_t n, unsigned rate, double freq);

/* Sine generator; the phase carries over between fills, so frames join without clicks. */
struct tl_tone_gen {
	double phase; /* radians, [0, 2 pi) */
	double step;  /* radians per sample */
	double amp;   /* peak, in int16 units */
};

/* amplitude: peak value, 0..32767. Returns 0 or -EINVAL. */
int tl_tone_gen_init(struct tl_tone_gen *g, unsigned rate, double freq, double amplitude);

/* Writes n samples into pcm (caller's buffer, borrowed until return). */
void tl_tone_gen_fill(struct tl_tone_gen *g, int16_t *pcm, size_t n);

#endif
