/* Reorder stage: a ring of fixed-size slots indexed by seq & mask. Packets are handed on as soon
 * as they are next in sequence; a hole is reported as a gap once a later packet has waited
 * reorder_ms. All memory comes from one calloc at create; push/pop never allocate or block.
 * Does not pace output or conceal audio: the caller does both. */
#include "trunkline/reorder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS   1024
#define MAX_PAYLOAD 65535

struct slot {
	int64_t arrival_ms;
	size_t len;
	uint32_t ts;
	uint16_t seq;
	uint8_t used;
};

struct tl_reorder {
	uint8_t *data; /* slot i's payload at data + i * max_payload, after slots[] */
	size_t max_payload;
	unsigned mask;
	unsigned reorder_ms;
	unsigned count; /* buffered packets; all of them are after next */
	int started;
	uint16_t next; /* next sequence number to hand on */
	/* -ENOBUFS cut the wait short: gaps before force_until are due at once. */
	int force;
	uint16_t force_until;
	/* A very late packet may be a sender that restarted lower: its successor confirms. */
	int probing;
	uint16_t probe_seq;
	uint64_t history; /* bit i: next - 1 - i was forwarded (1), or concealed/unknown (0) */
	struct tl_reorder_stats st;
	struct slot slots[];
};

/* a is before b in 16-bit sequence space */
static int seq_before(uint16_t a, uint16_t b)
{
	return (uint16_t)(a - b) >= 0x8000;
}

int tl_reorder_create(struct tl_reorder **out, unsigned slots, size_t max_payload,
                      unsigned reorder_ms)
{
	struct tl_reorder *r;
	size_t head;

	if (slots < 2 || slots > MAX_SLOTS || (slots & (slots - 1)) || max_payload == 0 ||
	    max_payload > MAX_PAYLOAD)
		return -EINVAL;
	head = sizeof(*r) + slots * sizeof(struct slot);
	r = calloc(1, head + slots * max_payload);
	if (!r)
		return -ENOMEM;
	r->data = (uint8_t *)r + head;
	r->max_payload = max_payload;
	r->mask = slots - 1;
	r->reorder_ms = reorder_ms;
	*out = r;
	return 0;
}

void tl_reorder_destroy(struct tl_reorder *r)
{
	free(r);
}

size_t tl_reorder_max_payload(const struct tl_reorder *r)
{
	return r->max_payload;
}

int tl_reorder_resize(struct tl_reorder **rp, size_t max_payload)
{
	struct tl_reorder *o = *rp, *r;
	int err;

	if (max_payload == o->max_payload)
		return 0;
	err = tl_reorder_create(&r, o->mask + 1, max_payload, o->reorder_ms);
	if (err < 0)
		return err;
	/* Same state and counters; each buffered packet moves to its slot in the new payload area,
	 * unless it is larger than the new slots (a shrink): that one is flushed. */
	memcpy(r, o, sizeof(*r) + (o->mask + 1) * sizeof(struct slot));
	r->data = (uint8_t *)r + sizeof(*r) + (o->mask + 1) * sizeof(struct slot);
	r->max_payload = max_payload;
	for (unsigned i = 0; i <= r->mask; i++) {
		struct slot *s = &r->slots[i];
		if (!s->used)
			continue;
		if (s->len > max_payload) {
			s->used = 0;
			r->count--;
			r->st.flushed++;
			continue;
		}
		memcpy(r->data + (size_t)i * max_payload, o->data + (size_t)i * o->max_payload,
		       s->len);
	}
	free(o);
	*rp = r;
	return 0;
}

void tl_reorder_reset(struct tl_reorder *r)
{
	for (unsigned i = 0; i <= r->mask; i++)
		r->slots[i].used = 0;
	r->st.flushed += r->count;
	r->count = 0;
	r->started = 0;
	r->force = 0;
	r->probing = 0;
	r->history = 0;
}

static void start(struct tl_reorder *r, uint16_t seq)
{
	r->started = 1;
	r->next = seq;
}

static void resync(struct tl_reorder *r, uint16_t seq)
{
	tl_reorder_reset(r);
	r->st.resync++;
	start(r, seq);
}

/* A packet before next: a duplicate of one forwarded, late, or a restart being confirmed.
 * Returns 0 after a resync (store it), else the drop reason. */
static int classify_behind(struct tl_reorder *r, uint16_t seq)
{
	uint16_t back = (uint16_t)(r->next - seq);

	if (back <= 64 && ((r->history >> (back - 1)) & 1)) {
		r->st.duplicate++;
		return -EEXIST;
	}
	if (back > TL_REORDER_MAX_JUMP) {
		if (r->probing && seq == r->probe_seq) {
			resync(r, seq);
			return 0;
		}
		r->probing = 1;
		r->probe_seq = (uint16_t)(seq + 1);
	}
	r->st.late++;
	return -ESTALE;
}

/* Returns 0 when seq should be stored (after any restart), else the drop reason. */
static int classify(struct tl_reorder *r, uint16_t seq)
{
	uint16_t ahead;

	if (!r->started) {
		start(r, seq);
		return 0;
	}
	ahead = (uint16_t)(seq - r->next);
	if (ahead >= 0x8000)
		return classify_behind(r, seq);
	if (ahead > TL_REORDER_MAX_JUMP)
		resync(r, seq);
	r->probing = 0;
	return 0;
}

/* The slot holds another packet: if it is older, stop waiting for anything before it. */
static int refuse_busy(struct tl_reorder *r, const struct slot *s, uint16_t seq)
{
	uint16_t until = (uint16_t)(s->seq + 1);

	if (s->seq == seq) {
		r->st.duplicate++;
		return -EEXIST;
	}
	r->st.overflow++;
	if (seq_before(s->seq, seq) && (!r->force || seq_before(r->force_until, until))) {
		r->force = 1;
		r->force_until = until;
	}
	return -ENOBUFS;
}

int tl_reorder_push(struct tl_reorder *r, uint16_t seq, uint32_t ts, const uint8_t *payload,
                    size_t len, int64_t now_ms)
{
	unsigned i = seq & r->mask;
	struct slot *s = &r->slots[i];
	int err;

	r->st.received++;
	if (len > r->max_payload) {
		r->st.oversize++;
		return -EMSGSIZE;
	}
	err = classify(r, seq);
	if (err)
		return err;
	if (s->used)
		return refuse_busy(r, s, seq);
	if (len)
		memcpy(r->data + (size_t)i * r->max_payload, payload, len);
	s->arrival_ms = now_ms;
	s->len = len;
	s->ts = ts;
	s->seq = seq;
	s->used = 1;
	r->count++;
	return 0;
}

static int64_t earliest_arrival(const struct tl_reorder *r)
{
	int64_t t = INT64_MAX;

	for (unsigned i = 0; i <= r->mask; i++)
		if (r->slots[i].used && r->slots[i].arrival_ms < t)
			t = r->slots[i].arrival_ms;
	return t;
}

static struct slot *head(struct tl_reorder *r)
{
	struct slot *s = &r->slots[r->next & r->mask];

	return s->used && s->seq == r->next ? s : NULL;
}

static int forcing(const struct tl_reorder *r)
{
	return r->force && seq_before(r->next, r->force_until);
}

static void advance(struct tl_reorder *r, int forwarded)
{
	r->next++;
	r->history = r->history << 1 | (forwarded ? 1 : 0);
	if (r->force && !forcing(r))
		r->force = 0;
}

int tl_reorder_pass(struct tl_reorder *r, uint16_t seq, size_t len)
{
	/* What push and pop would do for it: classify finds it next (no probing left), the slot
	 * is free (count 0), pop hands it on at once. */
	if (!r->started || r->count != 0 || seq != r->next || len > r->max_payload)
		return 0;
	r->st.received++;
	r->st.forwarded++;
	r->probing = 0;
	advance(r, 1);
	return 1;
}

int tl_reorder_pop(struct tl_reorder *r, int64_t now_ms, struct tl_reorder_pkt *out)
{
	struct slot *s;

	if (!r->started || r->count == 0)
		return -EAGAIN;
	s = head(r);
	if (s) {
		out->seq = s->seq;
		out->ts = s->ts;
		out->payload = r->data + (size_t)(s - r->slots) * r->max_payload;
		out->len = s->len;
		out->gap = 0;
		s->used = 0;
		r->count--;
		r->st.forwarded++;
		advance(r, 1);
		return 0;
	}
	if (!forcing(r) && now_ms < earliest_arrival(r) + r->reorder_ms)
		return -EAGAIN;
	out->seq = r->next;
	out->ts = 0;
	out->payload = NULL;
	out->len = 0;
	out->gap = 1;
	r->st.lost++;
	advance(r, 0);
	return 0;
}

int64_t tl_reorder_next_deadline(const struct tl_reorder *r)
{
	const struct slot *s = &r->slots[r->next & r->mask];

	if (!r->started || r->count == 0)
		return -1;
	if ((s->used && s->seq == r->next) || forcing(r))
		return 0;
	return earliest_arrival(r) + r->reorder_ms;
}

void tl_reorder_stats_get(const struct tl_reorder *r, struct tl_reorder_stats *out)
{
	*out = r->st;
}
