/* RTP/RTCP port pair allocation by binding: the kernel is the source of truth for what is free,
 * so ports taken by other processes are skipped rather than tracked. */
#include "trunkline/portpool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct tl_portpool {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	uint16_t port_min;
	unsigned n_pairs;
	unsigned next;   /* pair index to try first */
	unsigned n_held; /* pairs handed out and not released */
	uint8_t held[];  /* one bit per pair */
};

static int is_held(const struct tl_portpool *pool, unsigned idx)
{
	return pool->held[idx / 8] & (1u << (idx % 8));
}

int tl_portpool_create(struct tl_portpool **out, const char *bind_addr, uint16_t port_min,
                       uint16_t port_max)
{
	struct tl_portpool *pool;
	struct sockaddr_in *in4;
	struct sockaddr_in6 *in6;
	unsigned n_pairs = ((unsigned)port_max - port_min + 1) / 2;

	if ((port_min & 1) || port_max <= port_min)
		return -EINVAL;
	pool = calloc(1, sizeof(*pool) + (n_pairs + 7) / 8);
	if (!pool)
		return -ENOMEM;
	in4 = (struct sockaddr_in *)&pool->addr;
	in6 = (struct sockaddr_in6 *)&pool->addr;
	if (inet_pton(AF_INET, bind_addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		pool->addr_len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, bind_addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		pool->addr_len = sizeof(*in6);
	} else {
		free(pool);
		return -EINVAL;
	}
	pool->port_min = port_min;
	pool->n_pairs = n_pairs;
	*out = pool;
	return 0;
}

void tl_portpool_destroy(struct tl_portpool *pool)
{
	free(pool);
}

unsigned tl_portpool_capacity(const struct tl_portpool *pool)
{
	return pool->n_pairs;
}

unsigned tl_portpool_available(const struct tl_portpool *pool)
{
	return pool->n_pairs - pool->n_held;
}

void tl_portpool_release(struct tl_portpool *pool, uint16_t rtp_port)
{
	unsigned idx;

	if (rtp_port < pool->port_min || (rtp_port - pool->port_min) % 2)
		return;
	idx = (unsigned)(rtp_port - pool->port_min) / 2;
	if (idx >= pool->n_pairs || !is_held(pool, idx))
		return;
	pool->held[idx / 8] &= (uint8_t) ~(1u << (idx % 8));
	pool->n_held--;
}

static int bind_one(const struct tl_portpool *pool, uint16_t port)
{
	struct sockaddr_storage sa = pool->addr;
	int fd;

	if (sa.ss_family == AF_INET)
		((struct sockaddr_in *)&sa)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&sa)->sin6_port = htons(port);
	fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, pool->addr_len) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int tl_portpool_bind(struct tl_portpool *pool, int *rtp_fd, int *rtcp_fd, uint16_t *rtp_port)
{
	for (unsigned i = 0; i < pool->n_pairs; i++) {
		unsigned idx = (pool->next + i) % pool->n_pairs;
		uint16_t port = (uint16_t)(pool->port_min + 2 * idx);
		int a, b;

		a = bind_one(pool, port);
		if (a < 0) {
			if (a == -EADDRINUSE)
				continue;
			return a;
		}
		b = bind_one(pool, (uint16_t)(port + 1));
		if (b < 0) {
			close(a);
			if (b == -EADDRINUSE)
				continue;
			return b;
		}
		pool->next = (idx + 1) % pool->n_pairs;
		if (!is_held(pool, idx)) {
			pool->held[idx / 8] |= (uint8_t)(1u << (idx % 8));
			pool->n_held++;
		}
		*rtp_fd = a;
		*rtcp_fd = b;
		*rtp_port = port;
		return 0;
	}
	return -EADDRINUSE;
}
