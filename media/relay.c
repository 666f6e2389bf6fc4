/* The relay between two bridged streams (a caller and the leg trunkline placed to a person):
 * each 20 ms frame one stream receives goes, in order, into a small byte ring in the other's
 * codec, and the other's tick sends it instead of agent audio or ringback. Both streams live on
 * one worker, so the ring and the link are plain worker-owned fields: no lock, no allocation,
 * no copy beyond the ring. Same codec both sides: payload bytes pass through untouched;
 * PCMU <-> PCMA: transcoded through 16-bit PCM. Only G.711 (8 kHz, a byte a sample). RFC 4733
 * digits are played on to the peer as new events (when it negotiated telephone-event). */
#include <errno.h>
#include <string.h>

#include "media_int.h"
#include "trunkline/g711.h"

#define TL_RELAY_FRAME 160u /* 20 ms at 8 kHz, one byte a sample */
#define TL_RELAY_PRIME 2u   /* frames buffered before the first is sent (arrival jitter) */

static size_t fill_level(const struct tl_relay *r)
{
	return (size_t)(r->wr - r->rd);
}

void tl_relay_link(struct tl_media_stream *a, struct tl_media_stream *b)
{
	tl_relay_unlink(a);
	tl_relay_unlink(b);
	a->relay.rd = a->relay.wr = b->relay.rd = b->relay.wr = 0;
	a->relay.primed = b->relay.primed = 0;
	a->relay.peer = b;
	b->relay.peer = a;
}

void tl_relay_unlink(struct tl_media_stream *s)
{
	struct tl_media_stream *p = s->relay.peer;

	if (p && p->relay.peer == s)
		p->relay.peer = NULL;
	s->relay.peer = NULL;
}

/* n bytes into the ring of r; the oldest bytes go when it is full (latency stays bounded). */
static void ring_put(struct tl_relay *r, const uint8_t *src, size_t n)
{
	if (fill_level(r) + n > TL_RELAY_BYTES) {
		size_t drop = fill_level(r) + n - TL_RELAY_BYTES;
		r->rd += (uint32_t)drop;
		atomic_fetch_add_explicit(&r->st_dropped,
		                          (drop + TL_RELAY_FRAME - 1) / TL_RELAY_FRAME,
		                          memory_order_relaxed);
	}
	for (size_t i = 0; i < n;) {
		size_t at = r->wr % TL_RELAY_BYTES;
		size_t k = TL_RELAY_BYTES - at < n - i ? TL_RELAY_BYTES - at : n - i;
		memcpy(r->buf + at, src + i, k);
		r->wr += (uint32_t)k;
		i += k;
	}
}

void tl_relay_push(struct tl_media_stream *s, const uint8_t *payload, size_t n)
{
	struct tl_media_stream *p = s->relay.peer;
	enum tl_codec from = s->sdp.codec, to;
	uint8_t conv[TL_RELAY_FRAME];
	int16_t pcm[TL_RELAY_FRAME];

	if (!p || n == 0)
		return;
	to = p->sdp.codec;
	if (n > TL_RELAY_FRAME)
		n = TL_RELAY_FRAME;
	if (!payload) { /* lost or comfort noise: silence in the peer's codec */
		memset(conv, to == TL_CODEC_PCMA ? 0xD5 : 0xFF, n);
		payload = conv;
	} else if (from != to) {
		if (from == TL_CODEC_PCMA)
			tl_g711_alaw_decode(pcm, payload, n);
		else
			tl_g711_ulaw_decode(pcm, payload, n);
		if (to == TL_CODEC_PCMA)
			tl_g711_alaw_encode(conv, pcm, n);
		else
			tl_g711_ulaw_encode(conv, pcm, n);
		payload = conv;
	}
	ring_put(&p->relay, payload, n);
}

int tl_relay_frame(struct tl_media_stream *s, uint8_t *payload)
{
	struct tl_relay *r = &s->relay;
	size_t at;

	if (!r->primed && fill_level(r) >= TL_RELAY_PRIME * TL_RELAY_FRAME)
		r->primed = 1;
	if (!r->primed || fill_level(r) < TL_RELAY_FRAME) {
		r->primed = 0; /* ran dry: buffer again before sending on */
		memset(payload, s->sdp.codec == TL_CODEC_PCMA ? 0xD5 : 0xFF, TL_RELAY_FRAME);
		return 0;
	}
	at = r->rd % TL_RELAY_BYTES;
	if (TL_RELAY_BYTES - at >= TL_RELAY_FRAME) {
		memcpy(payload, r->buf + at, TL_RELAY_FRAME);
	} else {
		memcpy(payload, r->buf + at, TL_RELAY_BYTES - at);
		memcpy(payload + (TL_RELAY_BYTES - at), r->buf,
		       TL_RELAY_FRAME - (TL_RELAY_BYTES - at));
	}
	r->rd += TL_RELAY_FRAME;
	atomic_fetch_add_explicit(&r->st_relayed, 1, memory_order_relaxed);
	return 1;
}

void tl_relay_dtmf(struct tl_media_stream *s, char digit)
{
	/* The peer's digit queue has one producer: this worker. Its agent connection, the other
	 * producer tl_media_stream_dtmf allows, was closed before the bridge was linked. A peer
	 * without telephone-event (-ENOTSUP) or a full queue drops the digit. */
	if (s->relay.peer)
		tl_media_stream_dtmf(s->relay.peer, digit);
}
