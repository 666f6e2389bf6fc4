/* The bounded cross-thread queue (include/trunkline/queue.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trunkline/queue.h"

struct tl_queue {
	pthread_mutex_t lock; /* guards head, count, wake_pending and the slots */
	size_t item_size;
	unsigned capacity, reserve;
	unsigned head, count; /* oldest item's slot; items queued */
	int wake_pending;     /* a wake-up was sent and the consumer has not yet seen empty */
	tl_queue_wake_f *wake;
	void *wake_arg;
	_Atomic uint64_t refused;
	_Atomic unsigned high_water;
	unsigned char *slots;
};

void tl_queue_eventfd_wake(void *arg)
{
	uint64_t one = 1;

	/* Fails only when the counter would overflow, and then the consumer wakes anyway. */
	if (write(*(int *)arg, &one, sizeof(one)) < 0) {
	}
}

int tl_queue_create(struct tl_queue **out, size_t item_size, unsigned capacity, unsigned reserve,
                    tl_queue_wake_f *wake, void *wake_arg)
{
	struct tl_queue *q;

	*out = NULL;
	if (item_size == 0 || capacity == 0 || reserve >= capacity)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->slots = calloc(capacity, item_size);
	if (!q->slots) {
		free(q);
		return -ENOMEM;
	}
	pthread_mutex_init(&q->lock, NULL);
	q->item_size = item_size;
	q->capacity = capacity;
	q->reserve = reserve;
	q->wake = wake;
	q->wake_arg = wake_arg;
	*out = q;
	return 0;
}

void tl_queue_destroy(struct tl_queue *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->lock);
	free(q->slots);
	free(q);
}

int tl_queue_push(struct tl_queue *q, const void *item, int flags)
{
	unsigned limit = flags & TL_QUEUE_URGENT ? q->capacity : q->capacity - q->reserve;
	int wake;

	pthread_mutex_lock(&q->lock);
	if (q->count >= limit) {
		pthread_mutex_unlock(&q->lock);
		atomic_fetch_add_explicit(&q->refused, 1, memory_order_relaxed);
		return -ENOBUFS;
	}
	memcpy(q->slots + (size_t)((q->head + q->count) % q->capacity) * q->item_size, item,
	       q->item_size);
	q->count++;
	if (q->count > atomic_load_explicit(&q->high_water, memory_order_relaxed))
		atomic_store_explicit(&q->high_water, q->count, memory_order_relaxed);
	wake = !q->wake_pending;
	q->wake_pending = 1;
	pthread_mutex_unlock(&q->lock);
	if (wake && q->wake)
		q->wake(q->wake_arg);
	return 0;
}

int tl_queue_pop(struct tl_queue *q, void *item)
{
	int got = 0;

	pthread_mutex_lock(&q->lock);
	if (q->count > 0) {
		memcpy(item, q->slots + (size_t)q->head * q->item_size, q->item_size);
		q->head = (q->head + 1) % q->capacity;
		q->count--;
		got = 1;
	} else {
		q->wake_pending = 0; /* the consumer saw empty: the next push wakes it */
	}
	pthread_mutex_unlock(&q->lock);
	return got;
}

uint64_t tl_queue_refused(const struct tl_queue *q)
{
	return atomic_load_explicit(&((struct tl_queue *)q)->refused, memory_order_relaxed);
}

unsigned tl_queue_high_water(const struct tl_queue *q)
{
	return atomic_load_explicit(&((struct tl_queue *)q)->high_water, memory_order_relaxed);
}
