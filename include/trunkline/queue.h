/* The one cross-thread hand-off: a bounded ring of fixed-size items with a coalesced wake-up.
 * Every thread boundary uses it: SIP -> agent loop (connect, close, DTMF), agent loop -> SIP
 * (agent events), SIP -> media workers (add, update, release a stream).
 *
 * Many producers, one consumer. No allocation after tl_queue_create; a short mutex guards the
 * ring (hand-offs are per call event, never per packet). The consumer is woken through the
 * wake callback once per batch: only the push that finds no wake-up pending calls it, and the
 * consumer re-arms it by draining with tl_queue_pop until it returns 0.
 *
 * A full queue refuses the item (-ENOBUFS) and counts it. Items that must never be lost (a
 * hang-up, a close, a stream release) are pushed with TL_QUEUE_URGENT: they may use the
 * reserve, which ordinary items leave free. Size the reserve for the most urgent items that
 * can be in flight at once (one per call), and an urgent push cannot fail. */
#ifndef TRUNKLINE_QUEUE_H
#define TRUNKLINE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct tl_queue;

#define TL_QUEUE_URGENT 1

/* Wakes the consumer: called by a producer outside the queue's lock, at most once per batch.
 * tl_queue_eventfd_wake writes to the eventfd in arg (an int * that outlives the queue). */
typedef void(tl_queue_wake_f)(void *arg);
void tl_queue_eventfd_wake(void *arg);

/* capacity items of item_size bytes, of which reserve are kept for urgent pushes
 * (reserve < capacity). wake may be NULL (the consumer polls). Returns 0, -EINVAL or -ENOMEM. */
int tl_queue_create(struct tl_queue **out, size_t item_size, unsigned capacity, unsigned reserve,
                    tl_queue_wake_f *wake, void *wake_arg);
/* NULL-safe. Items still queued are dropped: the owner drains first if they hold resources. */
void tl_queue_destroy(struct tl_queue *q);

/* Any thread. Copies item (item_size bytes) in. 0, or -ENOBUFS when full (counted). */
int tl_queue_push(struct tl_queue *q, const void *item, int flags);
/* The consumer thread. Copies the oldest item into item: 1, or 0 when empty (which also
 * re-arms the wake-up for the next push). */
int tl_queue_pop(struct tl_queue *q, void *item);

/* Counters, any thread: items refused because the queue was full, and the most ever queued. */
uint64_t tl_queue_refused(const struct tl_queue *q);
unsigned tl_queue_high_water(const struct tl_queue *q);

#endif
