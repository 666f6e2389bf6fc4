/* One call's codec path (stream.c's audio in and out): RTP payload -> codec PCM -> agent rate
 * -> agent format on the uplink, and back on the downlink, plus loss concealment with Opus FEC.
 * The codec, the resamplers and whether µ-law passes straight through are set up once per
 * negotiated codec (tl_stream_codec_setup), never decided per packet. */
#include <errno.h>
#include <string.h>

#include "media_int.h"
#include "trunkline/g711.h"

#define TL_PCM_MAX 5760 /* 120 ms at 48 kHz: the longest Opus packet */

/* The send packet length: ptime as offered, in whole 10 ms ticks between 10 and 60; for Opus
 * one of its frame sizes (10, 20, 40, 60: a 30 ms ask gets 20). */
static unsigned tx_ms(const struct tl_sdp_media *sdp)
{
	int ms = sdp->ptime > 0 ? sdp->ptime : 20;

	ms = ms < 10 ? 10 : ms > 60 ? 60 : ms / 10 * 10;
	if (sdp->codec == TL_CODEC_OPUS && (ms == 30 || ms == 50))
		ms = ms == 30 ? 20 : 40;
	return (unsigned)ms;
}

size_t tl_stream_rx_slot(const struct tl_sdp_media *sdp)
{
	size_t ms = sdp->ptime > 20 ? (size_t)sdp->ptime : 20, n;

	/* G.711 and G.722 carry 8 bytes a ms; an Opus packet may be any size up to the largest. */
	n = sdp->codec == TL_CODEC_OPUS ? TL_RX_PAYLOAD : 8 * ms;
	return (n < TL_RX_PAYLOAD ? n : TL_RX_PAYLOAD) + 1; /* + the payload type byte */
}

unsigned tl_stream_rx_slots(unsigned reorder_ms)
{
	unsigned need = reorder_ms / 10 + 4, n = 8; /* the wait in 10 ms packets, and slack */

	while (n < need && n < 128)
		n *= 2;
	return n;
}

static void drop_resamplers(struct tl_media_stream *s)
{
	if (s->up_rs)
		speex_resampler_destroy(s->up_rs);
	if (s->down_rs)
		speex_resampler_destroy(s->down_rs);
	s->up_rs = s->down_rs = NULL;
}

void tl_stream_codec_free(struct tl_media_stream *s)
{
	drop_resamplers(s);
	tl_codec_destroy(s->codec);
	s->codec = NULL;
}

int tl_stream_codec_setup(struct tl_media_stream *s)
{
	struct tl_codec_params p = {
	    .codec = s->sdp.codec,
	    .rate = s->agent_rate, /* Opus decodes and encodes at the agent's rate */
	    .bitrate = s->sdp.opus.maxaveragebitrate,
	    .max_playback = s->sdp.opus.maxplaybackrate,
	    .fec = s->sdp.opus.useinbandfec,
	    .dtx = s->sdp.opus.usedtx,
	};
	struct tl_codec_ctx *c = NULL;
	int err = 0, rate;

	s->tx_ms = tx_ms(&s->sdp);
	if (s->codec && tl_codec_id(s->codec) == s->sdp.codec)
		return 0; /* same codec: keep its state (a hold, a new address) */
	tl_stream_codec_free(s);
	s->gaps_pending = 0;
	memset(&s->jitter, 0, sizeof(s->jitter)); /* the RTP clock may change with the codec */
	if (tl_codec_create(&c, &p) < 0)
		return -ENOMEM; /* audio stops rather than being misdecoded */
	s->codec = c;
	s->clock_khz = tl_codec_rtp_ticks(c, 1);
	s->codec_rate = (unsigned)tl_codec_rate(c);
	s->codec_fec = tl_codec_has_fec(c);
	rate = tl_codec_rate(c);
	s->passthrough = s->fmt == TL_MEDIA_AGENT_ULAW && s->sdp.codec == TL_CODEC_PCMU;
	if (rate != s->agent_rate) {
		s->up_rs = speex_resampler_init(1, (spx_uint32_t)rate, (spx_uint32_t)s->agent_rate,
		                                3, &err);
		s->down_rs = speex_resampler_init(1, (spx_uint32_t)s->agent_rate,
		                                  (spx_uint32_t)rate, 3, &err);
		/* No speex_resampler_skip_zeros: it makes the first frame short (17 ms up, a 3 ms
		 * hole down); keeping the filter's 3 ms delay keeps every frame whole. */
		if (!s->up_rs || !s->down_rs) {
			tl_stream_codec_free(s);
			return -ENOMEM;
		}
	}
	return 0;
}

/* ---- uplink ---- */

/* At most 20 ms of codec PCM (n samples) as one uplink event in the agent format. */
static void up_frame(struct tl_media_stream *s, const int16_t *pcm, size_t n)
{
	int16_t tmp[TL_MEDIA_FRAME_MAX / 2];
	uint32_t ms = (uint32_t)(n * 1000 / (size_t)s->codec_rate);
	struct tl_media_event *ev = tl_stream_up_slot(s);

	s->up_ms += ms;
	if (!ev)
		return;
	ev->kind = TL_MEDIA_EV_AUDIO;
	ev->seq = ++s->up_seq;
	ev->ts_ms = s->up_ms - ms;
	if (s->up_rs) {
		spx_uint32_t in_len = (spx_uint32_t)n, out_len = TL_MEDIA_FRAME_MAX / 2;
		speex_resampler_process_int(s->up_rs, 0, pcm, &in_len, tmp, &out_len);
		pcm = tmp;
		n = out_len;
	}
	if (s->fmt == TL_MEDIA_AGENT_ULAW) {
		tl_g711_ulaw_encode(ev->data, pcm, n);
		ev->len = (uint16_t)n;
	} else {
		memcpy(ev->data, pcm, n * 2);
		ev->len = (uint16_t)(n * 2);
	}
	tl_stream_up_commit(s);
}

static void up_pcm(struct tl_media_stream *s, const int16_t *pcm, size_t n)
{
	size_t frame = (size_t)s->codec_rate / 50;

	if (s->relay.peer) { /* bridged (relay.c): the audio is the peer's to send */
		tl_relay_push(s, pcm, n, s->codec_rate);
		return;
	}

	while (n > 0) {
		size_t k = n < frame ? n : frame;
		up_frame(s, pcm, k);
		pcm += k;
		n -= k;
	}
}

/* µ-law caller to a µ-law agent: the payload as it came, in 20 ms events. */
static void up_passthrough(struct tl_media_stream *s, const uint8_t *payload, size_t len)
{
	while (len > 0) {
		size_t k = len < 160 ? len : 160;
		struct tl_media_event *ev = tl_stream_up_slot(s);
		s->up_ms += (uint32_t)(k / 8);
		if (ev) {
			ev->kind = TL_MEDIA_EV_AUDIO;
			ev->seq = ++s->up_seq;
			ev->ts_ms = s->up_ms - (uint32_t)(k / 8);
			memcpy(ev->data, payload, k);
			ev->len = (uint16_t)k;
			tl_stream_up_commit(s);
		}
		payload += k;
		len -= k;
	}
}

void tl_stream_uplink_audio(struct tl_media_stream *s, const uint8_t *payload, size_t len)
{
	int16_t pcm[TL_PCM_MAX];
	int n;

	if (len == 0 || !s->codec)
		return;
	if (s->passthrough && !s->relay.peer) {
		up_passthrough(s, payload, len);
		return;
	}
	n = tl_codec_decode(s->codec, payload, len, pcm, TL_PCM_MAX);
	if (n <= 0) {
		atomic_fetch_add_explicit(&s->st_rx_bad, 1, memory_order_relaxed);
		return;
	}
	up_pcm(s, pcm, (size_t)n);
}

/* One lost packet: from next's FEC when given (Opus), else concealed (silence for G.711). */
void tl_stream_uplink_lost(struct tl_media_stream *s, const uint8_t *next, size_t next_len)
{
	int16_t pcm[TL_PCM_MAX];
	int n;

	if (!s->codec)
		return;
	/* µ-law caller to a µ-law agent: G.711's concealment is silence, µ-law 0xFF, without an
	 * encode of a silent frame (frequent when a late worker loses packets, perf at 1200
	 * calls). */
	if (s->passthrough && !s->relay.peer) {
		size_t len = (size_t)(s->sdp.ptime > 0 ? s->sdp.ptime : 20) * 8;
		uint8_t sil[TL_PCM_MAX];
		if (len > sizeof(sil))
			len = sizeof(sil);
		memset(sil, 0xFF, len);
		up_passthrough(s, sil, len);
		return;
	}
	n = tl_codec_conceal(s->codec, next, next_len,
	                     s->sdp.ptime > 0 ? (unsigned)s->sdp.ptime : 20, pcm, TL_PCM_MAX);
	if (n > 0)
		up_pcm(s, pcm, (size_t)n);
}

/* Gaps held back for Opus FEC: all but the last are concealed, the last is rebuilt from next
 * (the packet after the loss), or concealed too when next is NULL. */
void tl_stream_flush_gaps(struct tl_media_stream *s, const uint8_t *next, size_t next_len)
{
	while (s->gaps_pending > 0) {
		s->gaps_pending--;
		if (s->gaps_pending == 0 && next)
			atomic_fetch_add_explicit(&s->st_rx_fec, 1, memory_order_relaxed);
		tl_stream_uplink_lost(s, s->gaps_pending == 0 ? next : NULL,
		                      s->gaps_pending == 0 ? next_len : 0);
	}
}

/* ---- downlink ---- */

/* Ringback is kept at 8 kHz; a wideband codec gets it by linear interpolation (440-480 Hz
 * tones: plenty). n8 samples of pcm8 -> n8 * k samples of out. */
static void upsample(const int16_t *pcm8, size_t n8, unsigned k, int16_t *out)
{
	for (size_t i = 0; i < n8; i++) {
		int a = pcm8[i], b = i + 1 < n8 ? pcm8[i + 1] : pcm8[i];
		for (unsigned j = 0; j < k; j++)
			out[i * k + j] = (int16_t)(a + (b - a) * (int)j / (int)k);
	}
}

/* ms of ringback as codec PCM into pcm when it is on; returns samples (0: off or a pause). */
static size_t ring_pcm(struct tl_media_stream *s, unsigned ms, int16_t *pcm)
{
	unsigned on = atomic_load_explicit(&s->ring_on, memory_order_acquire);
	int16_t pcm8[480];
	unsigned k = s->codec_rate / 8000;

	if (!on)
		return 0;
	if (on != s->ring_seen) {
		s->ring_seen = on;
		s->ring_pos = 0;
	}
	if (tl_tone_cadence_fill(s->ring, &s->ring_pos, pcm8, ms * 8) == 0)
		return 0;
	if (k <= 1) {
		memcpy(pcm, pcm8, ms * 8 * sizeof(int16_t));
		return ms * 8;
	}
	upsample(pcm8, ms * 8, k, pcm);
	return ms * 8 * k;
}

/* Agent audio (n bytes in the agent format) as codec PCM; returns samples. */
static size_t agent_to_pcm(struct tl_media_stream *s, const uint8_t *agent, size_t n, int16_t *pcm)
{
	int16_t tmp[TL_PCM_MAX];
	const int16_t *in = (const int16_t *)agent;
	size_t samples = s->fmt == TL_MEDIA_AGENT_ULAW ? n : n / 2;
	spx_uint32_t in_len, out_len = TL_PCM_MAX;

	if (s->fmt == TL_MEDIA_AGENT_ULAW) {
		tl_g711_ulaw_decode(s->down_rs ? tmp : pcm, agent, n);
		in = tmp;
	} else if (!s->down_rs) {
		memcpy(pcm, agent, n);
	} else {
		memcpy(tmp, agent, n); /* alignment: agent is a byte buffer */
		in = tmp;
	}
	if (!s->down_rs)
		return samples;
	in_len = (spx_uint32_t)samples;
	speex_resampler_process_int(s->down_rs, 0, in, &in_len, pcm, &out_len);
	return out_len;
}

/* tx_ms of the bridged peer's audio (8 kHz, relay.c) in this stream's codec. */
static int relay_payload(struct tl_media_stream *s, uint8_t *payload, size_t max, size_t *len)
{
	int16_t pcm8[TL_PCM_MAX], pcm[TL_PCM_MAX];
	unsigned k = s->codec_rate / 8000;
	size_t n8 = (size_t)s->tx_ms * 8;
	int audio, r;

	if (k == 0 || n8 * k > TL_PCM_MAX)
		return -1;
	audio = tl_relay_take(s, pcm8, n8);
	if (k == 1)
		memcpy(pcm, pcm8, n8 * sizeof(int16_t));
	else
		upsample(pcm8, n8, k, pcm);
	r = tl_codec_encode(s->codec, pcm, n8 * k, payload, max);
	*len = r > 0 ? (size_t)r : 0;
	return r > 0 ? audio : -1;
}

int tl_stream_next_payload(struct tl_media_stream *s, uint8_t *payload, size_t max, size_t *len)
{
	uint8_t agent[TL_PCM_MAX];
	int16_t pcm[TL_PCM_MAX];
	size_t want = s->agent_frame * s->tx_ms / 20, got, n;
	size_t need = (size_t)s->codec_rate / 1000 * s->tx_ms;
	int audio = 1, r;

	if (s->relay.peer) /* bridged: the peer's audio, instead of agent audio or ringback */
		return relay_payload(s, payload, max, len);
	got = tl_stream_dl_take(s, agent, want);
	if (got > 0 && got < want) /* a short tail: pad with silence */
		memset(agent + got, s->fmt == TL_MEDIA_AGENT_ULAW ? 0xFF : 0, want - got);
	if (got > 0 && s->passthrough) {
		memcpy(payload, agent, want);
		*len = want;
		return 1;
	}
	n = got > 0 ? agent_to_pcm(s, agent, want, pcm) : ring_pcm(s, s->tx_ms, pcm);
	if (got == 0 && n == 0)
		audio = 0;
	if (n < need) /* silence, or a resampler a few samples short */
		memset(pcm + n, 0, (need - n) * sizeof(int16_t));
	r = tl_codec_encode(s->codec, pcm, need, payload, max);
	*len = r > 0 ? (size_t)r : 0;
	return r > 0 ? audio : -1;
}
