/* A UDP socket on 127.0.0.1 for the unit tests (test_relay, test_txring). */
#ifndef TL_UDP_H
#define TL_UDP_H

#include <arpa/inet.h>
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

#endif
