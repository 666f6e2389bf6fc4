/* The relay between two bridged streams (a caller and the leg trunkline placed to a person):
 * what one stream receives, decoded by its codec (stream_codec.c) and brought to 8 kHz, goes
 * in order into a small PCM ring of the other, whose tick encodes it in its own codec instead
 * of agent audio or ringback. Any codec pair works (G.711, G.722, Opus): the person is on a
 * telephone leg, so 8 kHz carries all the bridge needs. Both streams live on one worker, so the
 * ring and the link are plain worker-owned fields: no lock; the rings are allocated when the two
 * are linked (most calls are never bridged) and freed on unlink, never per packet. RFC 4733
 * digits are played on to the peer as new events (when it negotiated telephone-event). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "media_int.h"

#define TL_RELAY_FRAME 160u /* 20 ms at 8 kHz */
#define TL_RELAY_PRIME 2u   /* frames buffered before the first is sent (arrival jitter) */

static size_t fill_level(const struct tl_relay *r)
{
	return (size_t)(r->wr - r->rd);
}

void tl_relay_link(struct tl_media_stream *a, struct tl_media_stream *b)
{
	tl_relay_unlink(a);
	tl_relay_unlink(b);
	a->relay.buf = calloc(TL_RELAY_SAMPLES, sizeof(int16_t));
	b->relay.buf = calloc(TL_RELAY_SAMPLES, sizeof(int16_t));
	if (!a->relay.buf || !b->relay.buf) { /* no bridge: both stay as they were */
		tl_relay_unlink(a);
		tl_relay_unlink(b);
		return;
	}
	a->relay.rd = a->relay.wr = b->relay.rd = b->relay.wr = 0;
	a->relay.primed = b->relay.primed = 0;
	a->relay.peer = b;
	b->relay.peer = a;
}

void tl_relay_unlink(struct tl_media_stream *s)
{
	struct tl_media_stream *p = s->relay.peer;

	if (p && p->relay.peer == s)
		p->relay.peer = NULL; /* p keeps its ring until it is unlinked itself */
	s->relay.peer = NULL;
	free(s->relay.buf);
	s->relay.buf = NULL;
}

/* n samples into the ring of r; the oldest go when it is full (latency stays bounded). */
static void ring_put(struct tl_relay *r, const int16_t *src, size_t n)
{
	if (fill_level(r) + n > TL_RELAY_SAMPLES) {
		size_t drop = fill_level(r) + n - TL_RELAY_SAMPLES;
		r->rd += (uint32_t)drop;
		tl_stat_add(&r->st_dropped, (drop + TL_RELAY_FRAME - 1) / TL_RELAY_FRAME);
	}
	for (size_t i = 0; i < n; i++)
		r->buf[(r->wr + i) % TL_RELAY_SAMPLES] = src[i];
	r->wr += (uint32_t)n;
}

void tl_relay_push(struct tl_media_stream *s, const int16_t *pcm, size_t n, unsigned rate)
{
	struct tl_media_stream *p = s->relay.peer;
	unsigned k = rate >= 8000 ? rate / 8000 : 1;
	int16_t pcm8[TL_RELAY_FRAME];

	if (!p)
		return;
	while (n >= k) { /* down to 8 kHz: the mean of each k samples (a plain low-pass) */
		size_t m = 0;
		for (; m < TL_RELAY_FRAME && n >= k; m++, pcm += k, n -= k) {
			int32_t sum = 0;
			for (unsigned j = 0; j < k; j++)
				sum += pcm[j];
			pcm8[m] = (int16_t)(sum / (int32_t)k);
		}
		ring_put(&p->relay, pcm8, m);
	}
}

int tl_relay_take(struct tl_media_stream *s, int16_t *pcm8, size_t n)
{
	struct tl_relay *r = &s->relay;

	if (!r->primed && fill_level(r) >= TL_RELAY_PRIME * TL_RELAY_FRAME)
		r->primed = 1;
	if (!r->primed || fill_level(r) < n) {
		r->primed = 0; /* ran dry: buffer again before sending on */
		memset(pcm8, 0, n * sizeof(*pcm8));
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		pcm8[i] = r->buf[(r->rd + i) % TL_RELAY_SAMPLES];
	r->rd += (uint32_t)n;
	tl_stat_add(&r->st_relayed, (n + TL_RELAY_FRAME / 2) / TL_RELAY_FRAME);
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
