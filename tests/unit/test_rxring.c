/* A media worker's receives on an io_uring (media/rxring.c): every packet of every socket
 * added is delivered once, whole, with its source, in order per socket; none of a socket
 * removed is delivered, and its port is free at once; a request the kernel ends for want of
 * buffers is armed again and loses nothing; a socket that keeps failing is handed back; IPv6
 * sources; TL_NO_IO_URING_RX=1 turns the ring off and the engine says so. UDP on 127.0.0.1 and
 * ::1 only; every wait is bounded. */
#include "media_int.h"
#include "tl_test.h"
#include "tl_udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#define MAX_GOT 128

struct got {
	int n, handed_back;
	uint64_t tag[MAX_GOT];
	size_t len[MAX_GOT];
	uint8_t first[MAX_GOT][2];
	int ok[MAX_GOT]; /* the bytes after the first two are the pattern */
	struct sockaddr_storage from[MAX_GOT];
	socklen_t fromlen[MAX_GOT];
};

static void on_packet(void *arg, uint64_t tag, uint8_t *buf, size_t len,
                      struct sockaddr_storage *from, socklen_t fromlen)
{
	struct got *g = arg;
	int k, ok = 1;

	if (!buf) {
		g->handed_back++;
		return;
	}
	if (g->n >= MAX_GOT)
		return;
	k = buf[0] << 8 | buf[1];
	for (size_t i = 2; i < len; i++)
		ok &= buf[i] == (uint8_t)(k * 7 + (int)i);
	g->tag[g->n] = tag;
	g->len[g->n] = len;
	g->first[g->n][0] = buf[0];
	g->first[g->n][1] = buf[1];
	g->ok[g->n] = ok && len == 20 + (size_t)(k % 150);
	memcpy(&g->from[g->n], from, fromlen);
	g->fromlen[g->n] = fromlen;
	g->n++;
}

static double mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Runs the ring as a worker would (its descriptor polled) until want packets (or hand-backs)
 * came or ms passed. */
static void collect(struct tl_rxring *r, struct got *g, int want, double ms)
{
	double t0 = mono_ms();

	while (g->n + g->handed_back < want && mono_ms() - t0 < ms) {
		struct pollfd p = {.fd = tl_rxring_fd(r), .events = POLLIN};
		if (poll(&p, 1, 50) == 1)
			tl_rxring_run(r, on_packet, g);
	}
}

/* Packets k0..k1-1 (tl_pkt_fill) from tx to to, each sent whole. */
static void send_pkts(int tx, const struct sockaddr_in *to, int k0, int k1)
{
	uint8_t b[TL_PKT_MAX];

	for (int k = k0; k < k1; k++) {
		size_t len = tl_pkt_fill(b, k);
		TL_CHECK(sendto(tx, b, len, 0, (const struct sockaddr *)to, sizeof(*to)) ==
		         (ssize_t)len);
	}
}

static uint16_t port_of(const struct sockaddr_storage *a)
{
	return ntohs(a->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)a)->sin6_port
	                                      : ((const struct sockaddr_in *)a)->sin_port);
}

/* Two sockets, two senders: 20 packets interleaved arrive once each, whole, tagged with their
 * socket, from their sender, in order per socket; nothing before they are sent. */
static void test_delivers(void)
{
	struct tl_rxring *r = NULL;
	struct sockaddr_in ra[2], sa[2];
	int rx[2], tx[2], next[2] = {0, 1}, in_order = 1, whole = 0;
	struct got g = {0};
	uint8_t b[TL_PKT_MAX];

	for (int i = 0; i < 2; i++) {
		TL_CHECK((rx[i] = tl_udp_bind(&ra[i])) >= 0);
		TL_CHECK((tx[i] = tl_udp_bind(&sa[i])) >= 0);
	}
	TL_CHECK_INT(tl_rxring_create(&r, 8, 4), 0);
	if (!r)
		return;
	TL_CHECK_INT(tl_rxring_add(r, rx[0], 0x1000), 0);
	TL_CHECK_INT(tl_rxring_add(r, rx[1], 0x2001), 1);
	TL_CHECK_INT(tl_rxring_run(r, on_packet, &g), 0);
	for (int k = 0; k < 20; k++) {
		size_t len = tl_pkt_fill(b, k);
		TL_CHECK(sendto(tx[k % 2], b, len, 0, (struct sockaddr *)&ra[k % 2],
		                sizeof(ra[0])) == (ssize_t)len);
		if (k % 4 == 3)
			collect(r, &g, k + 1, 1000); /* the ring has 8 buffers */
	}
	collect(r, &g, 20, 1000);
	TL_CHECK_INT(g.n, 20);
	for (int i = 0; i < g.n; i++) {
		int k = g.first[i][0] << 8 | g.first[i][1], s = k % 2;
		whole += g.ok[i];
		in_order &= k == next[s];
		next[s] = k + 2;
		TL_CHECK(g.tag[i] == (s ? 0x2001u : 0x1000u));
		TL_CHECK_INT(g.fromlen[i], (int)sizeof(struct sockaddr_in));
		TL_CHECK_INT(port_of(&g.from[i]), ntohs(sa[s].sin_port));
	}
	TL_CHECK_INT(whole, 20);
	TL_CHECK(in_order);
	tl_rxring_destroy(r);
	for (int i = 0; i < 2; i++) {
		close(rx[i]);
		close(tx[i]);
	}
}

/* Packets waiting for a socket when it is removed are not delivered; the ring's hold on the
 * socket ends with the removal, so its port can be bound again as soon as it is closed; a
 * socket added afterwards (the same entry again) gets its own packets only. */
static void test_removed(void)
{
	struct tl_rxring *r = NULL;
	struct sockaddr_in ra, sa, rb;
	int rx = tl_udp_bind(&ra), tx = tl_udp_bind(&sa), id, again;
	struct got g = {0};

	TL_CHECK(rx >= 0 && tx >= 0);
	TL_CHECK_INT(tl_rxring_create(&r, 8, 4), 0);
	if (!r)
		return;
	id = tl_rxring_add(r, rx, 0x1000);
	TL_CHECK(id >= 0);
	send_pkts(tx, &ra, 0, 3);
	{
		struct pollfd p = {.fd = tl_rxring_fd(r), .events = POLLIN};
		TL_CHECK(poll(&p, 1, 1000) == 1); /* they are on the ring */
	}
	tl_rxring_remove(r, id);
	tl_rxring_remove(r, id); /* twice is fine */
	close(rx);
	/* The port is free: bind it again and add it again before the ring is run. The old
	 * socket's packets, still on the ring, are not delivered under the new one's tag; only
	 * the new packets come. */
	rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	rb = ra;
	TL_CHECK_INT(bind(rx, (struct sockaddr *)&rb, sizeof(rb)), 0);
	again = tl_rxring_add(r, rx, 0x3000);
	TL_CHECK_INT(again, id); /* the same entry, a new generation */
	send_pkts(tx, &ra, 10, 12);
	collect(r, &g, 2, 1000);
	tl_rxring_run(r, on_packet, &g); /* and anything after them */
	TL_CHECK_INT(g.n, 2);
	for (int i = 0; i < g.n; i++)
		TL_CHECK(g.tag[i] == 0x3000 && g.first[i][1] == 10 + i && g.ok[i]);
	tl_rxring_destroy(r);
	close(rx);
	close(tx);
}

/* A ring of 4 buffers and 40 packets sent at once: the kernel ends the request when the
 * buffers run out, the run gives them back and arms it again, and every packet comes, in
 * order (they waited in the socket). */
static void test_out_of_buffers(void)
{
	struct tl_rxring *r = NULL;
	struct tl_rxring_stats st;
	struct sockaddr_in ra, sa;
	int rx = tl_udp_bind(&ra), tx = tl_udp_bind(&sa), in_order = 1, whole = 0;
	struct got g = {0};

	TL_CHECK(rx >= 0 && tx >= 0);
	TL_CHECK_INT(tl_rxring_create(&r, 4, 4), 0);
	if (!r)
		return;
	TL_CHECK(tl_rxring_add(r, rx, 7) >= 0);
	send_pkts(tx, &ra, 0, 40);
	collect(r, &g, 40, 2000);
	TL_CHECK_INT(g.n, 40);
	for (int i = 0; i < g.n; i++) {
		in_order &= g.first[i][1] == i;
		whole += g.ok[i];
	}
	TL_CHECK(in_order);
	TL_CHECK_INT(whole, g.n);
	tl_rxring_stats(r, &st);
	TL_CHECK_INT((int)st.packets, 40);
	TL_CHECK(st.nobufs >= 1 && st.rearms >= st.nobufs);
	fprintf(stderr, "  4 buffers, 40 packets: %d delivered, %llu ended without a buffer\n", g.n,
	        (unsigned long long)st.nobufs);
	tl_rxring_destroy(r);
	close(rx);
	close(tx);
}

/* 80 sockets, one packet each, on a ring of 4 buffers and a completion queue of 64: the
 * requests that end for want of a buffer do not all fit in the queue. The kernel keeps the
 * rest and hands them over at the next submit (or tl_rxring_run fetches them); those sockets
 * are armed again, a few at a time, and every packet comes. */
static void test_queue_overflow(void)
{
	enum { N = 80 };
	struct tl_rxring *r = NULL;
	struct tl_rxring_stats st;
	struct sockaddr_in ra[N], sa;
	int rx[N], tx = tl_udp_bind(&sa), per[N] = {0}, once = 1;
	struct got g = {0};

	TL_CHECK(tx >= 0);
	TL_CHECK_INT(tl_rxring_create(&r, 4, 8), 0);
	for (int i = 0; i < N; i++) {
		rx[i] = tl_udp_bind(&ra[i]);
		TL_CHECK(rx[i] >= 0);
		if (r)
			TL_CHECK(tl_rxring_add(r, rx[i], (uint64_t)i) >= 0);
	}
	if (!r)
		goto out;
	for (int i = 0; i < N; i++)
		send_pkts(tx, &ra[i], i, i + 1);
	collect(r, &g, N, 2000);
	for (int i = 0; i < g.n; i++)
		per[g.tag[i]]++;
	for (int i = 0; i < N; i++)
		once &= per[i] == 1;
	TL_CHECK(once);
	tl_rxring_stats(r, &st);
	TL_CHECK_INT((int)st.packets, N);
	/* Starved sockets are armed again a few at a time: armed all at once, those beyond the
	 * buffers end again at once, run after run (some 700 ends for 80 packets). */
	TL_CHECK(st.nobufs >= N - 4 && st.nobufs <= 2 * N);
	fprintf(stderr,
	        "  80 sockets, 4 buffers: %llu packets, %llu ended without a buffer, %llu runs "
	        "found an overflow\n",
	        (unsigned long long)st.packets, (unsigned long long)st.nobufs,
	        (unsigned long long)st.overflows);
	tl_rxring_destroy(r);
out:
	for (int i = 0; i < N; i++)
		close(rx[i]);
	close(tx);
}

/* A connected socket whose peer's port is closed: each send brings an ICMP error that ends the
 * request (ECONNREFUSED). It is armed again after each, and handed back after 9 in a row. */
static void test_errors_hand_back(void)
{
	struct tl_rxring *r = NULL;
	struct tl_rxring_stats st;
	struct sockaddr_in ra, gone;
	int rx = tl_udp_bind(&ra), dead = tl_udp_bind(&gone);
	struct got g = {0};
	uint8_t b[32] = {0};

	TL_CHECK(rx >= 0 && dead >= 0);
	close(dead); /* its port is now closed */
	TL_CHECK_INT(connect(rx, (struct sockaddr *)&gone, sizeof(gone)), 0);
	TL_CHECK_INT(tl_rxring_create(&r, 8, 4), 0);
	if (!r)
		return;
	TL_CHECK(tl_rxring_add(r, rx, 9) >= 0);
	for (int k = 0; k < 12 && !g.handed_back; k++) {
		struct tl_rxring_stats before;
		tl_rxring_stats(r, &before);
		TL_CHECK(send(rx, b, sizeof(b), 0) == (ssize_t)sizeof(b));
		/* until this error's completion has been seen */
		for (double t0 = mono_ms(); mono_ms() - t0 < 1000;) {
			struct pollfd p = {.fd = tl_rxring_fd(r), .events = POLLIN};
			tl_rxring_stats(r, &st);
			if (st.rearms > before.rearms || g.handed_back)
				break;
			if (poll(&p, 1, 50) == 1)
				tl_rxring_run(r, on_packet, &g);
		}
	}
	tl_rxring_stats(r, &st);
	TL_CHECK_INT(g.handed_back, 1);
	TL_CHECK_INT((int)st.given_up, 1);
	TL_CHECK_INT((int)st.rearms, 8);
	TL_CHECK_INT(g.n, 0);
	tl_rxring_destroy(r);
	close(rx);
}

/* An IPv6 source comes whole, with its port. */
static void test_ipv6(void)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT}, s;
	socklen_t alen = sizeof(a);
	int rx = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int tx = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct tl_rxring *r = NULL;
	struct got g = {0};
	uint8_t b[TL_PKT_MAX];
	size_t len = tl_pkt_fill(b, 5);

	s = a;
	if (rx < 0 || tx < 0 || bind(rx, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    bind(tx, (struct sockaddr *)&s, sizeof(s)) < 0) {
		fprintf(stderr, "  no ::1 here: skipped\n");
		close(rx);
		close(tx);
		return;
	}
	TL_CHECK_INT(getsockname(rx, (struct sockaddr *)&a, &alen), 0);
	alen = sizeof(s);
	TL_CHECK_INT(getsockname(tx, (struct sockaddr *)&s, &alen), 0);
	TL_CHECK_INT(tl_rxring_create(&r, 8, 4), 0);
	if (r) {
		TL_CHECK(tl_rxring_add(r, rx, 6) >= 0);
		TL_CHECK(sendto(tx, b, len, 0, (struct sockaddr *)&a, sizeof(a)) == (ssize_t)len);
		collect(r, &g, 1, 1000);
		TL_CHECK_INT(g.n, 1);
		TL_CHECK(g.n == 1 && g.ok[0] && g.from[0].ss_family == AF_INET6);
		TL_CHECK_INT(g.fromlen[0], (int)sizeof(struct sockaddr_in6));
		TL_CHECK_INT(port_of(&g.from[0]), ntohs(s.sin6_port));
		tl_rxring_destroy(r);
	}
	close(rx);
	close(tx);
}

/* The engine receives on rings by default and says so; TL_NO_IO_URING_RX=1 turns that off
 * (each socket read with recvmmsg) and leaves the send batch on. */
static void test_engine_switch(void)
{
	struct tl_media_config mc = {.workers = 2, .max_streams = 4};
	struct tl_media *m = NULL;
	struct tl_rxring *r = (struct tl_rxring *)1;

	TL_CHECK_INT(tl_media_create(&m, &mc), 0);
	if (m)
		TL_CHECK_INT(tl_media_rx_batched(m), 1);
	tl_media_destroy(m);
	TL_CHECK_INT(tl_rxring_create(&r, 3, 4), -EINVAL); /* not a power of two */
	setenv("TL_NO_IO_URING_RX", "1", 1);
	TL_CHECK_INT(tl_rxring_create(&r, 4, 4), -ENOSYS);
	TL_CHECK(r == NULL);
	m = NULL;
	TL_CHECK_INT(tl_media_create(&m, &mc), 0);
	if (m) {
		TL_CHECK_INT(tl_media_rx_batched(m), -ENOSYS);
		TL_CHECK_INT(tl_media_tx_batched(m), 1);
	}
	tl_media_destroy(m);
	unsetenv("TL_NO_IO_URING_RX");
	tl_rxring_destroy(NULL);
}

int main(void)
{
	alarm(60); /* a hang fails the run instead of stalling it */
	test_delivers();
	test_removed();
	test_out_of_buffers();
	test_queue_overflow();
	test_errors_hand_back();
	test_ipv6();
	test_engine_switch();
	fprintf(stderr, "%d checks, %d failed\n", tl_test_checks, tl_test_failures);
	return tl_test_failures != 0;
}
