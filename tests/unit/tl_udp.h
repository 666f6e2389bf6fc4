/* A UDP socket on 127.0.0.1 and numbered packets for the unit tests (test_relay, test_txring,
 * test_rxring). */
#ifndef TL_UDP_H
#define TL_UDP_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bound to 127.0.0.1, the port the kernel picked in *a; -1 on failure. */
static inline int tl_udp_bind(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && (bind(fd, (struct sockaddr *)a, sizeof(*a)) < 0 ||
	                getsockname(fd, (struct sockaddr *)a, &len) < 0)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Packet k: 20 + k % 150 bytes, k in the first two, then a pattern of k. */
static inline size_t tl_pkt_fill(uint8_t *b, int k)
{
	size_t len = 20 + (size_t)(k % 150);

	b[0] = (uint8_t)(k >> 8);
	b[1] = (uint8_t)k;
	for (size_t i = 2; i < len; i++)
		b[i] = (uint8_t)(k * 7 + (int)i);
	return len;
}

#endif
