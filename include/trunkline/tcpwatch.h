/* Descriptor watch for the SIP thread: counts this process's open descriptors against its
 * limit, and shuts down TCP connections accepted on the SIP ports that never sent a byte (Sofia-
 * SIP 1.12.11 arms its idle timer only after traffic). Linux only (/proc/self/fd, TCP_INFO).
 * Not thread-safe: one owner thread, the one that runs the SIP stack. */
#ifndef TRUNKLINE_TCPWATCH_H
#define TRUNKLINE_TCPWATCH_H

#include <stddef.h>
#include <stdint.h>

struct tl_tcpwatch;

/* Below this many descriptors possibly free, open_fds is an exact count. */
#define TL_TCPWATCH_EXACT_BELOW 256

struct tl_tcpwatch_stats {
	unsigned open_fds;     /* descriptors open in the process (threads share them), or, when
	                        * open_exact is 0, a bound (the table size) at least
	                        * TL_TCPWATCH_EXACT_BELOW below the limit */
	int open_exact;        /* open_fds was counted */
	unsigned long limit;   /* the soft RLIMIT_NOFILE */
	int passed;            /* this scan looked at each socket (conns, closed, shed are set) */
	unsigned conns;        /* established TCP connections on the watched ports */
	unsigned closed;       /* of those, shut down by this scan for silence */
	unsigned shed;         /* pending connections accepted and closed: no descriptor left */
	unsigned long scan_ns; /* time the scan took */
};

/* ports: the local ports of the SIP TCP/TLS listeners, borrowed until return (up to 16).
 * idle_ms: how long an accepted connection may stay silent. Returns 0, -EINVAL or -errno. */
int tl_tcpwatch_create(struct tl_tcpwatch **out, const uint16_t *ports, size_t n_ports,
                       int idle_ms);
void tl_tcpwatch_destroy(struct tl_tcpwatch *w);

/* Call every second or so. Each call reads the descriptor count (cheaply while far from the
 * limit); every idle_ms / 4 (at most 5 s), and whenever no descriptor is left, it also looks at
 * each socket: a connection on a watched port that is established, has received no byte, and
 * has had no data either way for idle_ms is shut down (SHUT_RDWR, not closed: its owner, Sofia,
 * reads end-of-stream and frees it on its own). With no descriptor left, connections waiting in
 * the listen queues are accepted and closed at once, so the listener stops signalling a
 * connection nobody can accept. Returns 0 or -errno; stats is filled either way. */
int tl_tcpwatch_scan(struct tl_tcpwatch *w, struct tl_tcpwatch_stats *stats);

/* Raises the soft RLIMIT_NOFILE to the hard limit (capped at fs.nr_open). *from and *to get the
 * soft limit before and after. Returns 0 or -errno (the limit is then unchanged). */
int tl_tcpwatch_raise_nofile(unsigned long *from, unsigned long *to);

#endif
