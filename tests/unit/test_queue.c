/* The cross-thread queue: FIFO order, the bound and its reserve for urgent items, refusal
 * counting, one wake-up per batch, eventfd wake-ups, and many producers against one consumer
 * (run under ThreadSanitizer by the test command). */
#include "trunkline/queue.h"
#include "tl_test.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct item {
	uint32_t producer, seq;
};

static int wakes;
static void count_wake(void *arg)
{
	(void)arg;
	wakes++;
}

static void test_fifo_and_bound(void)
{
	struct tl_queue *q;
	struct item it;

	TL_CHECK_INT(tl_queue_create(&q, sizeof(it), 4, 1, NULL, NULL), 0);
	for (uint32_t i = 0; i < 3; i++) {
		it = (struct item){0, i};
		TL_CHECK_INT(tl_queue_push(q, &it, 0), 0);
	}
	it.seq = 3;
	TL_CHECK_INT(tl_queue_push(q, &it, 0), -ENOBUFS); /* the last slot is the reserve */
	TL_CHECK_INT(tl_queue_push(q, &it, TL_QUEUE_URGENT), 0);
	TL_CHECK_INT(tl_queue_push(q, &it, TL_QUEUE_URGENT), -ENOBUFS);
	TL_CHECK_INT(tl_queue_refused(q), 2);
	TL_CHECK_INT(tl_queue_high_water(q), 4);
	for (uint32_t i = 0; i < 4; i++) {
		TL_CHECK_INT(tl_queue_pop(q, &it), 1);
		TL_CHECK_INT(it.seq, i);
	}
	TL_CHECK_INT(tl_queue_pop(q, &it), 0);
	/* Around the end of the ring many times. */
	for (uint32_t i = 0; i < 25; i++) {
		it.seq = i;
		TL_CHECK_INT(tl_queue_push(q, &it, 0), 0);
		TL_CHECK_INT(tl_queue_push(q, &it, 0), 0);
		TL_CHECK_INT(tl_queue_pop(q, &it), 1);
		TL_CHECK_INT(tl_queue_pop(q, &it), 1);
		TL_CHECK_INT(it.seq, i);
	}
	tl_queue_destroy(q);
	TL_CHECK_INT(tl_queue_create(&q, sizeof(it), 4, 4, NULL, NULL), -EINVAL);
	TL_CHECK_INT(tl_queue_create(&q, 0, 4, 0, NULL, NULL), -EINVAL);
	tl_queue_destroy(NULL);
}

static void test_coalesced_wake(void)
{
	struct tl_queue *q;
	struct item it = {0, 0};

	wakes = 0;
	TL_CHECK_INT(tl_queue_create(&q, sizeof(it), 8, 0, count_wake, NULL), 0);
	for (int i = 0; i < 5; i++)
		TL_CHECK_INT(tl_queue_push(q, &it, 0), 0);
	TL_CHECK_INT(wakes, 1); /* one batch, one wake-up */
	TL_CHECK_INT(tl_queue_pop(q, &it), 1);
	TL_CHECK_INT(tl_queue_push(q, &it, 0), 0);
	TL_CHECK_INT(wakes, 1); /* the consumer has not seen empty yet */
	while (tl_queue_pop(q, &it))
		;
	TL_CHECK_INT(tl_queue_push(q, &it, 0), 0);
	TL_CHECK_INT(wakes, 2);
	tl_queue_destroy(q);
}

static void test_eventfd_wake(void)
{
	struct tl_queue *q;
	struct item it = {0, 0};
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint64_t v = 0;

	TL_CHECK(efd >= 0);
	TL_CHECK_INT(tl_queue_create(&q, sizeof(it), 8, 0, tl_queue_eventfd_wake, &efd), 0);
	TL_CHECK_INT(read(efd, &v, sizeof(v)), -1); /* nothing yet */
	TL_CHECK_INT(tl_queue_push(q, &it, 0), 0);
	TL_CHECK_INT(tl_queue_push(q, &it, 0), 0);
	TL_CHECK_INT(read(efd, &v, sizeof(v)), sizeof(v));
	TL_CHECK_INT(v, 1);
	tl_queue_destroy(q);
	close(efd);
}

#define PRODUCERS    4
#define PER_PRODUCER 20000

static struct tl_queue *mq;

static void *producer(void *arg)
{
	struct item it = {(uint32_t)(uintptr_t)arg, 0};

	while (it.seq < PER_PRODUCER) {
		if (tl_queue_push(mq, &it, 0) == 0)
			it.seq++;
		else
			sched_yield();
	}
	return NULL;
}

static void test_many_producers(void)
{
	pthread_t t[PRODUCERS];
	uint32_t next[PRODUCERS] = {0};
	unsigned got = 0, order_errors = 0, spins = 0;
	struct item it;

	TL_CHECK_INT(tl_queue_create(&mq, sizeof(it), 64, 8, NULL, NULL), 0);
	for (uintptr_t i = 0; i < PRODUCERS; i++)
		pthread_create(&t[i], NULL, producer, (void *)i);
	while (got < PRODUCERS * PER_PRODUCER && spins < 200000000u) {
		if (!tl_queue_pop(mq, &it)) {
			spins++;
			continue;
		}
		if (it.producer >= PRODUCERS || it.seq != next[it.producer])
			order_errors++;
		else
			next[it.producer]++;
		got++;
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(t[i], NULL);
	TL_CHECK_INT(got, PRODUCERS * PER_PRODUCER);
	TL_CHECK_INT(order_errors, 0);
	TL_CHECK(tl_queue_high_water(mq) <= 56); /* ordinary pushes never take the reserve */
	tl_queue_destroy(mq);
}

int main(void)
{
	TL_TEST_RUN(test_fifo_and_bound);
	TL_TEST_RUN(test_coalesced_wake);
	TL_TEST_RUN(test_eventfd_wake);
	TL_TEST_RUN(test_many_producers);
	return TL_TEST_END();
}
