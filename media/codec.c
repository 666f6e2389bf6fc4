/* The codec interface (trunkline/codec.h): a table of functions per codec, chosen once in
 * tl_codec_create. G.711 is ours (g711.c), G.722 is spandsp's, Opus is libopus's. No
 * resampling here: the stream converts between the codec's PCM rate and the agent's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <opus/opus.h>
#include <spandsp/telephony.h>
#include <spandsp/g722.h>

#include "trunkline/codec.h"
#include "trunkline/g711.h"

struct tl_codec_ops {
	int (*decode)(struct tl_codec_ctx *c, const uint8_t *in, size_t len, int16_t *pcm,
	              size_t max);
	int (*conceal)(struct tl_codec_ctx *c, const uint8_t *next, size_t len, size_t n,
	               int16_t *pcm);
	int (*encode)(struct tl_codec_ctx *c, const int16_t *pcm, size_t n, uint8_t *out,
	              size_t max);
};

struct tl_codec_ctx {
	const struct tl_codec_ops *ops;
	enum tl_codec id;
	int rate;
	unsigned ticks_per_ms;
	size_t last_n; /* samples of the last packet decoded; 0 before the first */
	g722_encode_state_t *g722_enc;
	g722_decode_state_t *g722_dec;
	OpusEncoder *opus_enc;
	OpusDecoder *opus_dec;
};

/* ---- G.711 ---- */

static int ulaw_decode(struct tl_codec_ctx *c, const uint8_t *in, size_t len, int16_t *pcm,
                       size_t max)
{
	if (len > max)
		return -ENOSPC;
	tl_g711_ulaw_decode(pcm, in, len);
	return (int)len;
}

static int alaw_decode(struct tl_codec_ctx *c, const uint8_t *in, size_t len, int16_t *pcm,
                       size_t max)
{
	if (len > max)
		return -ENOSPC;
	tl_g711_alaw_decode(pcm, in, len);
	return (int)len;
}

static int ulaw_encode(struct tl_codec_ctx *c, const int16_t *pcm, size_t n, uint8_t *out,
                       size_t max)
{
	if (n > max)
		return -ENOSPC;
	tl_g711_ulaw_encode(out, pcm, n);
	return (int)n;
}

static int alaw_encode(struct tl_codec_ctx *c, const int16_t *pcm, size_t n, uint8_t *out,
                       size_t max)
{
	if (n > max)
		return -ENOSPC;
	tl_g711_alaw_encode(out, pcm, n);
	return (int)n;
}

/* G.711 and G.722 have no FEC; a lost packet is silence, as before the codec layer. */
static int silence_conceal(struct tl_codec_ctx *c, const uint8_t *next, size_t len, size_t n,
                           int16_t *pcm)
{
	memset(pcm, 0, n * sizeof(*pcm));
	return (int)n;
}

/* ---- G.722, 64 kbit/s: one byte per two 16 kHz samples ---- */

static int g722_dec(struct tl_codec_ctx *c, const uint8_t *in, size_t len, int16_t *pcm, size_t max)
{
	if (len * 2 > max || len > 4096)
		return -ENOSPC;
	return g722_decode(c->g722_dec, pcm, in, (int)len);
}

static int g722_enc(struct tl_codec_ctx *c, const int16_t *pcm, size_t n, uint8_t *out, size_t max)
{
	if (n / 2 > max || n > 8192 || n % 2)
		return n % 2 ? -EINVAL : -ENOSPC;
	return g722_encode(c->g722_enc, out, pcm, (int)n);
}

/* ---- Opus ---- */

static int opus_err(int e)
{
	return e == OPUS_BUFFER_TOO_SMALL ? -ENOSPC : e == OPUS_ALLOC_FAIL ? -ENOMEM : -EINVAL;
}

static int opus_dec(struct tl_codec_ctx *c, const uint8_t *in, size_t len, int16_t *pcm, size_t max)
{
	int n;

	if (len == 0 || len > 1275 * 3)
		return -EINVAL;
	n = opus_decode(c->opus_dec, in, (opus_int32)len, pcm, (int)max, 0);
	return n < 0 ? opus_err(n) : n;
}

/* FEC: the next packet carries a low-rate copy of the one lost; decode_fec=1 with the lost
 * packet's length in samples gives that copy (libopus: PLC when next has none). */
static int opus_conceal(struct tl_codec_ctx *c, const uint8_t *next, size_t len, size_t n,
                        int16_t *pcm)
{
	int r =
	    opus_decode(c->opus_dec, next, next ? (opus_int32)len : 0, pcm, (int)n, next != NULL);

	return r < 0 ? opus_err(r) : r;
}

static int opus_enc(struct tl_codec_ctx *c, const int16_t *pcm, size_t n, uint8_t *out, size_t max)
{
	int r = opus_encode(c->opus_enc, pcm, (int)n, out, (opus_int32)(max > 1275 ? 1275 : max));

	return r < 0 ? opus_err(r) : r;
}

static const struct tl_codec_ops ops_pcmu = {ulaw_decode, silence_conceal, ulaw_encode};
static const struct tl_codec_ops ops_pcma = {alaw_decode, silence_conceal, alaw_encode};
static const struct tl_codec_ops ops_g722 = {g722_dec, silence_conceal, g722_enc};
static const struct tl_codec_ops ops_opus = {opus_dec, opus_conceal, opus_enc};

/* maxplaybackrate -> the widest band worth coding (RFC 7587 §6.1). */
static int opus_band(int rate)
{
	return rate <= 8000    ? OPUS_BANDWIDTH_NARROWBAND
	       : rate <= 12000 ? OPUS_BANDWIDTH_MEDIUMBAND
	       : rate <= 16000 ? OPUS_BANDWIDTH_WIDEBAND
	       : rate <= 24000 ? OPUS_BANDWIDTH_SUPERWIDEBAND
	                       : OPUS_BANDWIDTH_FULLBAND;
}

static int opus_setup(struct tl_codec_ctx *c, const struct tl_codec_params *p)
{
	int e1 = 0, e2 = 0;

	c->rate = p->rate ? p->rate : 48000;
	if (c->rate != 8000 && c->rate != 12000 && c->rate != 16000 && c->rate != 24000 &&
	    c->rate != 48000)
		return -EINVAL;
	c->opus_dec = opus_decoder_create(c->rate, 1, &e1);
	c->opus_enc = opus_encoder_create(c->rate, 1, OPUS_APPLICATION_VOIP, &e2);
	if (!c->opus_dec || !c->opus_enc)
		return -ENOMEM;
	/* Telephony: voice, so SILK (which carries the FEC) is preferred. Without a bitrate from
	 * the peer, FEC gets 32 kbit/s: at libopus's default for 16 kHz it codes no FEC at all. */
	opus_encoder_ctl(c->opus_enc, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE));
	/* Complexity 5, not libopus's 10: encoding is almost all of an Opus call's cost, and 5
	 * halves it (measured here: 16 kHz with FEC, 334 -> 160 µs a 20 ms frame) for a small loss
	 * on speech. BENCHMARKS.md has the per-call figures. */
	opus_encoder_ctl(c->opus_enc, OPUS_SET_COMPLEXITY(5));
	if (p->bitrate >= 6000 && p->bitrate <= 510000)
		opus_encoder_ctl(c->opus_enc, OPUS_SET_BITRATE(p->bitrate));
	else if (p->fec)
		opus_encoder_ctl(c->opus_enc, OPUS_SET_BITRATE(32000));
	if (p->max_playback > 0)
		opus_encoder_ctl(c->opus_enc, OPUS_SET_MAX_BANDWIDTH(opus_band(p->max_playback)));
	if (p->fec) {
		opus_encoder_ctl(c->opus_enc, OPUS_SET_INBAND_FEC(1));
		opus_encoder_ctl(c->opus_enc, OPUS_SET_PACKET_LOSS_PERC(
		                                  p->expected_loss > 0 ? p->expected_loss : 10));
	}
	opus_encoder_ctl(c->opus_enc, OPUS_SET_DTX(p->dtx ? 1 : 0));
	return 0;
}

int tl_codec_create(struct tl_codec_ctx **out, const struct tl_codec_params *p)
{
	struct tl_codec_ctx *c = calloc(1, sizeof(*c));
	int err = 0;

	if (!c)
		return -ENOMEM;
	c->id = p->codec;
	c->rate = 8000;
	c->ticks_per_ms = 8;
	switch (p->codec) {
	case TL_CODEC_PCMU:
		c->ops = &ops_pcmu;
		break;
	case TL_CODEC_PCMA:
		c->ops = &ops_pcma;
		break;
	case TL_CODEC_G722:
		c->ops = &ops_g722;
		c->rate = 16000;
		c->g722_enc = g722_encode_init(NULL, 64000, 0);
		c->g722_dec = g722_decode_init(NULL, 64000, 0);
		err = c->g722_enc && c->g722_dec ? 0 : -ENOMEM;
		break;
	case TL_CODEC_OPUS:
		c->ops = &ops_opus;
		c->ticks_per_ms = 48;
		err = opus_setup(c, p);
		break;
	default:
		err = -EINVAL;
	}
	if (err < 0) {
		tl_codec_destroy(c);
		return err;
	}
	*out = c;
	return 0;
}

void tl_codec_destroy(struct tl_codec_ctx *c)
{
	if (!c)
		return;
	if (c->g722_enc)
		g722_encode_free(c->g722_enc);
	if (c->g722_dec)
		g722_decode_free(c->g722_dec);
	opus_encoder_destroy(c->opus_enc);
	opus_decoder_destroy(c->opus_dec);
	free(c);
}

enum tl_codec tl_codec_id(const struct tl_codec_ctx *c)
{
	return c->id;
}

int tl_codec_rate(const struct tl_codec_ctx *c)
{
	return c->rate;
}

uint32_t tl_codec_rtp_ticks(const struct tl_codec_ctx *c, unsigned ms)
{
	return c->ticks_per_ms * ms;
}

int tl_codec_has_fec(const struct tl_codec_ctx *c)
{
	return c->ops == &ops_opus;
}

int tl_codec_decode(struct tl_codec_ctx *c, const uint8_t *payload, size_t len, int16_t *pcm,
                    size_t max)
{
	int n = c->ops->decode(c, payload, len, pcm, max);

	if (n > 0)
		c->last_n = (size_t)n;
	return n;
}

int tl_codec_conceal(struct tl_codec_ctx *c, const uint8_t *next, size_t next_len, unsigned ms,
                     int16_t *pcm, size_t max)
{
	size_t n = c->last_n ? c->last_n : (size_t)c->rate / 1000 * ms;

	if (n > max)
		return -ENOSPC;
	return c->ops->conceal(c, next_len ? next : NULL, next_len, n, pcm);
}

int tl_codec_encode(struct tl_codec_ctx *c, const int16_t *pcm, size_t n, uint8_t *out, size_t max)
{
	return c->ops->encode(c, pcm, n, out, max);
}
