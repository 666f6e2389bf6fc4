/* Single-frequency tone detection (Goertzel) and sine generation on int16 PCM, for tests and
 * the example agent ("did the 1 kHz test tone make it through?"), and the ringback played to a
 * caller while a transfer rings. Pure, no allocation.
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

/* Ringback ("the other end is ringing"), played to the caller while a transfer is pending. */
enum tl_tone_ringback {
	TL_TONE_RINGBACK_NONE = 0,
	TL_TONE_RINGBACK_US, /* 440 + 480 Hz, -19 dBm0 each, 2 s on, 4 s off (North America) */
	TL_TONE_RINGBACK_EU, /* 425 Hz, -16 dBm0, 1 s on, 4 s off (ITU-T E.180, most of Europe) */
};

/* "none", "us", "eu" -> the enum; -EINVAL for anything else (s borrowed until return). */
int tl_tone_ringback_parse(const char *s);

/* One period of the (dual) tone, computed once, so that playing it costs a table look-up per
 * sample and no trigonometry: 200 samples for US, 320 for EU at 8 kHz. On and off periods are
 * whole periods of the wave, so bursts start and end at a zero crossing (no clicks). */
#define TL_TONE_WAVE_MAX 640
struct tl_tone_cadence {
	enum tl_tone_ringback kind;
	uint32_t wave_len;  /* samples in wave */
	uint32_t on, cycle; /* samples of tone, and of tone + pause */
	int16_t wave[TL_TONE_WAVE_MAX];
};

/* kind US or EU at rate 8000 or 16000 Hz; 0, or -EINVAL (kind NONE, or another rate). */
int tl_tone_cadence_init(struct tl_tone_cadence *c, enum tl_tone_ringback kind, unsigned rate);

/* Writes n samples of the cadence from *pos (samples since the ringback began; 0 to start
 * with a tone burst) into pcm (caller's buffer, borrowed until return) and advances *pos.
 * Returns how many of them are tone rather than pause (0: all silence). */
size_t tl_tone_cadence_fill(const struct tl_tone_cadence *c, uint32_t *pos, int16_t *pcm, size_t n);

#endif
