/* Caller->agent reorder stage: puts RTP packets back in sequence order with a short, bounded
 * wait, then hands them on at once (no playout clock: that is the consumer's business).
 * One owner thread, no locks; all memory is allocated by tl_reorder_create.
 * Does not decode, time-stretch or conceal: it only tells the caller where a frame is missing. */
#ifndef TRUNKLINE_REORDER_H
#define TRUNKLINE_REORDER_H

#include <stddef.h>
#include <stdint.h>

#define TL_REORDER_DEFAULT_MS 40
/* A packet further ahead than this (in sequence numbers) restarts the stream instead of
 * producing that many gaps. */
#define TL_REORDER_MAX_JUMP 100

struct tl_reorder;

struct tl_reorder_stats {
	uint64_t received;  /* every push */
	uint64_t forwarded; /* packets popped */
	uint64_t late;      /* arrived after their turn (forwarded past or concealed) */
	uint64_t duplicate; /* same seq already buffered or forwarded */
	uint64_t lost;      /* gaps reported by pop: frames the caller concealed */
	uint64_t resync;    /* restarts on a big sequence jump */
	uint64_t flushed;   /* buffered packets dropped by a reset or resync */
	uint64_t oversize;  /* payload larger than the slot size */
	uint64_t overflow;  /* refused with -ENOBUFS (slot still held by an older packet) */
};

/* One pop result. A gap has payload NULL, len 0 and ts 0: conceal one frame for seq. */
struct tl_reorder_pkt {
	uint16_t seq;
	uint32_t ts;
	const uint8_t *payload; /* borrowed: valid until the next call on the reorder stage */
	size_t len;
	int gap;
};

/* slots: a power of two, 2..1024 (16 is plenty at 20 ms); max_payload: bytes per slot, > 0;
 * reorder_ms: longest wait for a missing packet (TL_REORDER_DEFAULT_MS; 0 = none).
 * Returns 0 or -EINVAL/-ENOMEM; caller destroys. */
int tl_reorder_create(struct tl_reorder **out, unsigned slots, size_t max_payload,
                      unsigned reorder_ms);
void tl_reorder_destroy(struct tl_reorder *r);
/* The slot size in force. */
size_t tl_reorder_max_payload(const struct tl_reorder *r);
/* New slot size (same rules as create), keeping the sequence state, the counters and every
 * buffered packet that fits (one larger than the new size is dropped, counted as flushed).
 * *r is replaced; on failure (-EINVAL/-ENOMEM) it is left as it was. Allocates: call it when the
 * negotiation changes, or once for a packet longer than the slots, never per packet. */
int tl_reorder_resize(struct tl_reorder **r, size_t max_payload);

/* Stores a packet; payload (len bytes) is copied, borrowed until return. now_ms: a monotonic
 * clock. The first packet after create/reset sets the expected sequence number.
 * Returns 0, or (packet dropped and counted):
 *   -EEXIST   duplicate;  -ESTALE  late (its turn has passed);  -EMSGSIZE  len > max_payload;
 *   -ENOBUFS  its slot still holds an older packet: the wait for everything before that one
 *             is cut short, so pop until -EAGAIN and push this packet again. */
int tl_reorder_push(struct tl_reorder *r, uint16_t seq, uint32_t ts, const uint8_t *payload,
                    size_t len, int64_t now_ms);

/* The usual case without the copy: seq is the next to hand on, nothing is buffered and len fits
 * a slot. Then it is counted as pushed and popped (forwarded), and 1 is returned: the caller
 * hands the packet on itself, now. Otherwise 0, nothing changed: push it as usual. */
int tl_reorder_pass(struct tl_reorder *r, uint16_t seq, size_t len);

/* Next in-sequence packet or gap into *out. Returns 0, or -EAGAIN when there is nothing to hand
 * on yet. A missing packet is reported as a gap once reorder_ms have passed since the earliest
 * arrival of any packet buffered behind it; nothing is reported while nothing later arrived.
 * Call after each push and at tl_reorder_next_deadline, until -EAGAIN. */
int tl_reorder_pop(struct tl_reorder *r, int64_t now_ms, struct tl_reorder_pkt *out);

/* When pop has something next: an absolute now_ms value (<= now means call pop now), or -1
 * when nothing is buffered. */
int64_t tl_reorder_next_deadline(const struct tl_reorder *r);

/* Drops buffered packets (counted as flushed); the next push starts a new sequence. For SSRC
 * changes. Statistics are kept. */
void tl_reorder_reset(struct tl_reorder *r);

void tl_reorder_stats_get(const struct tl_reorder *r, struct tl_reorder_stats *out);

#endif
