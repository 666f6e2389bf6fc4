/* Audio codecs of a call's RTP payload: G.711 µ-law/A-law, G.722 (spandsp) and Opus (libopus),
 * behind one interface whose functions are picked when the codec is created (at negotiation or
 * a re-INVITE that changes the codec), so the packet path makes one indirect call, no switch.
 * PCM is 16-bit mono at the codec's PCM rate: 8000 for G.711, 16000 for G.722, and for Opus the
 * rate it was created with (8/12/16/24/48 kHz: libopus decodes and encodes there, no resampler).
 * One owner thread per codec object; create allocates everything, the packet calls never do. */
#ifndef TRUNKLINE_CODEC_H
#define TRUNKLINE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "trunkline/sdp.h"

struct tl_codec_ctx;

struct tl_codec_params {
	enum tl_codec codec;
	int rate; /* Opus: PCM rate, 8000/12000/16000/24000/48000 (0: 48000); others ignore it */
	/* Opus encoder, from the peer's fmtp (RFC 7587 §6.1); 0 = libopus default / off. */
	int bitrate;       /* maxaveragebitrate, bits/s (6000..510000) */
	int max_playback;  /* maxplaybackrate: caps the coded bandwidth */
	int fec;           /* useinbandfec=1: add in-band FEC */
	int dtx;           /* usedtx=1 */
	int expected_loss; /* percent, tunes FEC; 0 = 10 when fec */
};

/* Returns 0, -EINVAL (unknown codec, bad rate) or -ENOMEM; caller destroys. */
int tl_codec_create(struct tl_codec_ctx **out, const struct tl_codec_params *p);
void tl_codec_destroy(struct tl_codec_ctx *c); /* NULL-safe */

enum tl_codec tl_codec_id(const struct tl_codec_ctx *c);
int tl_codec_rate(const struct tl_codec_ctx *c); /* PCM rate */
/* RTP timestamp units per PCM sample run of ms milliseconds: 8 per ms for G.711 and G.722
 * (RFC 3551 keeps G.722's RTP clock at 8000 although it samples at 16 kHz), 48 for Opus
 * (RFC 7587: always 48000, whatever the PCM rate). */
uint32_t tl_codec_rtp_ticks(const struct tl_codec_ctx *c, unsigned ms);
/* 1 when conceal can use the next packet's in-band FEC (Opus). */
int tl_codec_has_fec(const struct tl_codec_ctx *c);

/* Decodes one RTP payload into pcm (room for max samples). Returns samples written, or
 * -EINVAL for a payload the codec refuses, -ENOSPC when it would not fit. Buffers borrowed. */
int tl_codec_decode(struct tl_codec_ctx *c, const uint8_t *payload, size_t len, int16_t *pcm,
                    size_t max);
/* Fills one lost packet's worth of audio (as long as the last packet decoded, else ms) into
 * pcm (room for max samples): from next's in-band FEC when next is not NULL and the codec has
 * FEC, else by the codec's loss concealment (Opus PLC; silence for G.711 and G.722).
 * next: the payload that followed the loss, borrowed. Returns samples written or -errno. */
int tl_codec_conceal(struct tl_codec_ctx *c, const uint8_t *next, size_t next_len, unsigned ms,
                     int16_t *pcm, size_t max);
/* Encodes n samples (n = rate * ms / 1000 for ms in 10, 20, 40, 60; G.711 and G.722 take any
 * n) into out (room for max bytes). Returns payload bytes (Opus DTX may give 1-2), or -errno. */
int tl_codec_encode(struct tl_codec_ctx *c, const int16_t *pcm, size_t n, uint8_t *out, size_t max);

#endif
