/* RTP/RTCP port pairs from the configured range: binds an even RTP port and the odd RTCP port
 * above it, round-robin so a port just released is not reused at once (late packets of the old
 * call would reach the new one). It remembers which pairs it handed out until they are
 * released, so it can say how many are left. One owner thread; no locking. */
#ifndef TRUNKLINE_PORTPOOL_H
#define TRUNKLINE_PORTPOOL_H

#include <stdint.h>

struct tl_portpool;

/* bind_addr: IPv4 or IPv6 literal, borrowed until return. port_min even, port_max >= min+1. */
int tl_portpool_create(struct tl_portpool **out, const char *bind_addr, uint16_t port_min,
                       uint16_t port_max);
void tl_portpool_destroy(struct tl_portpool *pool);

/* Number of pairs in the range (the concurrency cap the range implies). */
unsigned tl_portpool_capacity(const struct tl_portpool *pool);

/* Binds the next free pair: non-blocking, close-on-exec UDP sockets. The caller owns both fds
 * and closes them, and releases the pair with tl_portpool_release. Returns 0, -EADDRINUSE
 * when every pair in the range is taken, or socket()'s error (-EMFILE, -ENFILE, -ENOBUFS). */
int tl_portpool_bind(struct tl_portpool *pool, int *rtp_fd, int *rtcp_fd, uint16_t *rtp_port);

/* The pair of rtp_port (from tl_portpool_bind) is no longer held by its call. Ports outside
 * the range, or not held, are ignored. The sockets may close later (the media engine). */
void tl_portpool_release(struct tl_portpool *pool, uint16_t rtp_port);

/* Pairs not held by a call: 0 when the next call cannot get media ports. Pairs another
 * process has bound count as available (only a bind finds them taken). */
unsigned tl_portpool_available(const struct tl_portpool *pool);

#endif
