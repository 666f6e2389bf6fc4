/* Port pool tests: pairs handed out and released, the available count (what OPTIONS reports),
 * a released pair whose sockets are still open, and releases of ports the pool never gave. */
#include "trunkline/portpool.h"
#include "tl_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* An even port p with p..p+5 free for UDP on 127.0.0.1 (0 when none found). */
static uint16_t free_range(void)
{
	for (int tries = 0; tries < 200; tries++) {
		uint16_t base = (uint16_t)(30000 + 2 * (rand() % 10000));
		int fds[6], n = 0;
		for (; n < 6; n++) {
			struct sockaddr_in sa = {.sin_family = AF_INET,
			                         .sin_port = htons((uint16_t)(base + n))};
			sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			fds[n] = socket(AF_INET, SOCK_DGRAM, 0);
			if (bind(fds[n], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
				close(fds[n]);
				break;
			}
		}
		for (int i = 0; i < n; i++)
			close(fds[i]);
		if (n == 6)
			return base;
	}
	return 0;
}

static void test_bind_release_available(void)
{
	struct tl_portpool *pool = NULL;
	int rtp[4], rtcp[4];
	uint16_t port[4], base = free_range();

	TL_CHECK(base != 0);
	TL_CHECK_INT(tl_portpool_create(&pool, "127.0.0.1", base, (uint16_t)(base + 5)), 0);
	TL_CHECK_INT(tl_portpool_capacity(pool), 3);
	TL_CHECK_INT(tl_portpool_available(pool), 3);
	for (int i = 0; i < 3; i++) {
		TL_CHECK_INT(tl_portpool_bind(pool, &rtp[i], &rtcp[i], &port[i]), 0);
		TL_CHECK_INT(tl_portpool_available(pool), 2 - i);
	}
	TL_CHECK(port[0] != port[1] && port[1] != port[2] && port[0] != port[2]);
	TL_CHECK_INT(tl_portpool_bind(pool, &rtp[3], &rtcp[3], &port[3]), -EADDRINUSE);
	TL_CHECK_INT(tl_portpool_available(pool), 0);

	/* Released, but its sockets are still open (the media engine closes them later): the
	 * count says free, the next bind skips the pair and finds nothing. */
	tl_portpool_release(pool, port[1]);
	TL_CHECK_INT(tl_portpool_available(pool), 1);
	tl_portpool_release(pool, port[1]); /* twice: no effect */
	TL_CHECK_INT(tl_portpool_available(pool), 1);
	TL_CHECK_INT(tl_portpool_bind(pool, &rtp[3], &rtcp[3], &port[3]), -EADDRINUSE);
	close(rtp[1]);
	close(rtcp[1]);
	TL_CHECK_INT(tl_portpool_bind(pool, &rtp[3], &rtcp[3], &port[3]), 0);
	TL_CHECK_INT(port[3], port[1]);
	TL_CHECK_INT(tl_portpool_available(pool), 0);

	/* Ports the pool did not hand out change nothing. */
	tl_portpool_release(pool, (uint16_t)(port[0] + 1));
	tl_portpool_release(pool, (uint16_t)(base - 2));
	tl_portpool_release(pool, (uint16_t)(base + 6));
	tl_portpool_release(pool, 0);
	TL_CHECK_INT(tl_portpool_available(pool), 0);

	for (int i = 0; i < 4; i++) {
		if (i == 1)
			continue;
		tl_portpool_release(pool, port[i]);
		close(rtp[i]);
		close(rtcp[i]);
	}
	TL_CHECK_INT(tl_portpool_available(pool), 3);
	tl_portpool_destroy(pool);
}

static void test_create_invalid(void)
{
	struct tl_portpool *pool = NULL;

	TL_CHECK_INT(tl_portpool_create(&pool, "127.0.0.1", 30001, 30010), -EINVAL);
	TL_CHECK_INT(tl_portpool_create(&pool, "127.0.0.1", 30000, 30000), -EINVAL);
	TL_CHECK_INT(tl_portpool_create(&pool, "not an address", 30000, 30001), -EINVAL);
	TL_CHECK_INT(tl_portpool_create(&pool, "::1", 30000, 30001), 0);
	TL_CHECK_INT(tl_portpool_capacity(pool), 1);
	TL_CHECK_INT(tl_portpool_available(pool), 1);
	tl_portpool_destroy(pool);
}

int main(void)
{
	srand((unsigned)getpid());
	TL_TEST_RUN(test_bind_release_available);
	TL_TEST_RUN(test_create_invalid);
	return TL_TEST_END();
}
