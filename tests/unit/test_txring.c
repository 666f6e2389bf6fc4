/* A media worker's batched RTP sends (media/txring.c): queued packets stay queued until a
 * flush (or a full batch) submits them; each arrives once, whole, in order, from its own
 * socket; a send the kernel refuses is counted; TL_NO_IO_URING=1 turns the ring off and the
 * engine says so. UDP on 127.0.0.1 only; every wait is bounded. */
#include "media_int.h"
#include "tl_test.h"
#include "tl_udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

/* One datagram within timeout_ms: its length, 0 when none came; its source port in *port. */
static size_t udp_recv(int fd, uint8_t *buf, size_t cap, int timeout_ms, uint16_t *port)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	struct sockaddr_in from;
	socklen_t flen = sizeof(from);
	ssize_t n;

	if (poll(&p, 1, timeout_ms) != 1)
		return 0;
	n = recvfrom(fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
	if (n <= 0)
		return 0;
	if (port)
		*port = ntohs(from.sin_port);
	return (size_t)n;
}

/* A receiver (rx, at ra), three senders (tx, at sa) and a ring of 8 slots; NULL after a
 * failed check. */
static struct tl_txring *three_senders(int *rx, struct sockaddr_in *ra, int tx[3],
                                       struct sockaddr_in sa[3])
{
	struct tl_txring *r = NULL;

	TL_CHECK((*rx = tl_udp_bind(ra)) >= 0);
	for (int i = 0; i < 3; i++)
		TL_CHECK((tx[i] = tl_udp_bind(&sa[i])) >= 0);
	TL_CHECK_INT(tl_txring_create(&r, 8), 0);
	return r;
}

/* Packets k = 0, 1, 2, ... sent round-robin by three senders (k % 3): each must come from
 * its sender, whole, and in order per sender (next[i]: the k sender i's next packet must have;
 * advanced). Returns how many came before 200 ms without one. */
static int recv_three(int rx, const struct sockaddr_in sa[3], int next[3])
{
	uint8_t b[TL_PKT_MAX], in[TL_PKT_MAX];
	int got = 0;

	for (;;) {
		uint16_t port = 0;
		size_t n = udp_recv(rx, in, sizeof(in), 200, &port);
		int k, who = -1;
		if (n == 0)
			return got;
		k = in[0] << 8 | in[1];
		for (int i = 0; i < 3; i++)
			who = ntohs(sa[i].sin_port) == port ? i : who;
		TL_CHECK(who >= 0 && k % 3 == who); /* from the socket it was queued on */
		if (who >= 0) {
			TL_CHECK_INT(k, next[who]); /* in order per socket */
			next[who] = k + 3;
		}
		TL_CHECK_INT(n, tl_pkt_fill(b, k));
		TL_CHECK(memcmp(in, b, n) == 0);
		got++;
	}
}

/* 3 senders, 30 packets queued round-robin (under one batch): none has left before the flush,
 * all arrive after it, whole, each from its own sender, in order per sender. */
static void test_batch_and_flush(void)
{
	struct tl_txring_stats st;
	struct sockaddr_in ra, sa[3];
	int rx, tx[3], next[3] = {0, 1, 2};
	uint8_t b[TL_PKT_MAX], in[TL_PKT_MAX];
	struct tl_txring *r = three_senders(&rx, &ra, tx, sa);

	if (!r)
		return;
	for (int k = 0; k < 6; k++) { /* under one batch, and under the 8 slots */
		size_t len = tl_pkt_fill(b, k);
		TL_CHECK_INT(
		    tl_txring_send(r, tx[k % 3], b, len, (struct sockaddr *)&ra, sizeof(ra)), 0);
	}
	TL_CHECK_INT(tl_txring_pending(r), 6);
	TL_CHECK_INT(udp_recv(rx, in, sizeof(in), 50, NULL), 0); /* nothing before the flush */
	tl_txring_flush(r);
	TL_CHECK_INT(tl_txring_pending(r), 0);
	tl_txring_stats(r, &st);
	TL_CHECK_INT(st.batches, 1);
	TL_CHECK_INT(st.sent, 6);
	/* More than the slots, flushed as they go: the slots come back with the completions. */
	for (int k = 6; k < 30; k++) {
		size_t len = tl_pkt_fill(b, k);
		TL_CHECK_INT(
		    tl_txring_send(r, tx[k % 3], b, len, (struct sockaddr *)&ra, sizeof(ra)), 0);
		if (k % 4 == 1)
			tl_txring_flush(r);
	}
	tl_txring_flush(r);
	TL_CHECK_INT(recv_three(rx, sa, next), 30);
	tl_txring_stats(r, &st);
	TL_CHECK_INT(st.sent, 30);
	TL_CHECK_INT(st.failed, 0);
	TL_CHECK_INT(st.batches, 7); /* one a flush: not one a packet */
	/* A queue of one goes with sendmsg, no submit; a flush with nothing queued does nothing. */
	TL_CHECK_INT(
	    tl_txring_send(r, tx[1], b, tl_pkt_fill(b, 31), (struct sockaddr *)&ra, sizeof(ra)), 0);
	TL_CHECK_INT(udp_recv(rx, in, sizeof(in), 30, NULL), 0);
	tl_txring_flush(r);
	tl_txring_flush(r);
	TL_CHECK_INT(udp_recv(rx, in, sizeof(in), 200, NULL), tl_pkt_fill(b, 31));
	TL_CHECK(memcmp(in, b, tl_pkt_fill(b, 31)) == 0);
	TL_CHECK_INT(udp_recv(rx, in, sizeof(in), 30, NULL), 0);
	tl_txring_stats(r, &st);
	TL_CHECK_INT(st.sent, 31);
	TL_CHECK_INT(st.batches, 7);
	tl_txring_destroy(r);
	close(rx);
	for (int i = 0; i < 3; i++)
		close(tx[i]);
}

/* TL_TXRING_BATCH queued submit themselves; a packet too large is refused, not cut. */
static void test_full_batch(void)
{
	struct tl_txring *r = NULL;
	struct sockaddr_in ra, sa;
	int rx = tl_udp_bind(&ra), tx = tl_udp_bind(&sa), got = 0;
	uint8_t b[TL_PKT_MAX + 1], in[TL_PKT_MAX];

	TL_CHECK(rx >= 0 && tx >= 0);
	TL_CHECK_INT(tl_txring_create(&r, TL_TXRING_SLOTS), 0);
	if (!r)
		return;
	memset(b, 0, sizeof(b));
	TL_CHECK_INT(tl_txring_send(r, tx, b, sizeof(b), (struct sockaddr *)&ra, sizeof(ra)),
	             -EMSGSIZE);
	for (int k = 0; k < TL_TXRING_BATCH - 1; k++)
		tl_txring_send(r, tx, b, tl_pkt_fill(b, k), (struct sockaddr *)&ra, sizeof(ra));
	TL_CHECK_INT(udp_recv(rx, in, sizeof(in), 30, NULL), 0);
	tl_txring_send(r, tx, b, tl_pkt_fill(b, TL_TXRING_BATCH - 1), (struct sockaddr *)&ra,
	               sizeof(ra));
	TL_CHECK_INT(tl_txring_pending(r), 0);
	while (udp_recv(rx, in, sizeof(in), 200, NULL) > 0)
		got++;
	TL_CHECK_INT(got, TL_TXRING_BATCH);
	tl_txring_destroy(r);
	close(rx);
	close(tx);
}

/* A send the kernel refuses (a descriptor that is no socket) is counted, and its slot is back. */
static void test_refused_counted(void)
{
	struct tl_txring *r = NULL;
	struct tl_txring_stats st;
	struct sockaddr_in ra;
	int rx = tl_udp_bind(&ra), pfd[2];
	uint8_t b[64] = {0};

	TL_CHECK(rx >= 0 && pipe(pfd) == 0);
	TL_CHECK_INT(tl_txring_create(&r, 2), 0);
	if (!r)
		return;
	for (int k = 0; k < 5; k++) /* more than the slots */
		TL_CHECK_INT(
		    tl_txring_send(r, pfd[1], b, sizeof(b), (struct sockaddr *)&ra, sizeof(ra)), 0);
	tl_txring_flush(r);
	tl_txring_stats(r, &st);
	TL_CHECK_INT(st.failed, 5);
	TL_CHECK_INT(st.sent, 0);
	tl_txring_destroy(r);
	close(rx);
	close(pfd[0]);
	close(pfd[1]);
}

/* Registered files: packets sent by index leave from their own sockets, whole and in order,
 * beside packets sent by descriptor; a full table says so (the caller sends by descriptor);
 * a removed socket's index is free again, and once the descriptor is closed the socket is
 * gone (its port can be bound again: the ring keeps a registered socket open). */
static void test_files(void)
{
	struct sockaddr_in ra, sa[3];
	int rx, tx[3], file[3], next[3] = {0, 1, 2};
	uint8_t b[TL_PKT_MAX];
	struct tl_txring *r = three_senders(&rx, &ra, tx, sa);

	if (!r)
		return;
	TL_CHECK_INT(tl_txring_files(r, 2), 0);
	TL_CHECK_INT(tl_txring_files(r, 2), -EALREADY);
	file[0] = tl_txring_file_add(r, tx[0]);
	file[1] = tl_txring_file_add(r, tx[1]);
	file[2] = tl_txring_file_add(r, tx[2]);
	TL_CHECK(file[0] >= 0 && file[1] >= 0 && file[0] != file[1]);
	TL_CHECK_INT(file[2], -ENOSPC);
	for (int k = 0; k < 12; k++) { /* two by index, one by descriptor (-ENOSPC: -1 and less) */
		size_t len = tl_pkt_fill(b, k);
		TL_CHECK_INT(tl_txring_send_file(r, tx[k % 3], file[k % 3] >= 0 ? file[k % 3] : -1,
		                                 b, len, (struct sockaddr *)&ra, sizeof(ra)),
		             0);
		if (k % 6 == 5)
			tl_txring_flush(r);
	}
	TL_CHECK_INT(recv_three(rx, sa, next), 12);
	for (int i = 0; i < 3; i++)
		TL_CHECK_INT(next[i], 12 + i); /* four from each */
	/* Removed, then closed: the port is free; the index serves the next socket. */
	tl_txring_file_remove(r, file[0]);
	tl_txring_file_remove(r, -1); /* none: nothing happens */
	close(tx[0]);
	tx[0] = socket(AF_INET, SOCK_DGRAM, 0);
	TL_CHECK(tx[0] >= 0 && bind(tx[0], (struct sockaddr *)&sa[0], sizeof(sa[0])) == 0);
	TL_CHECK_INT(tl_txring_file_add(r, tx[0]), file[0]);
	tl_txring_destroy(r);
	close(rx);
	for (int i = 0; i < 3; i++)
		close(tx[i]);
}

/* The engine batches by default and says so; TL_NO_IO_URING=1 turns it off (sendto). */
static void test_engine_switch(void)
{
	struct tl_media_config mc = {.workers = 2, .max_streams = 4};
	struct tl_media *m = NULL;
	struct tl_txring *r = (struct tl_txring *)1;

	TL_CHECK_INT(tl_media_create(&m, &mc), 0);
	if (m) {
		TL_CHECK_INT(tl_media_tx_batched(m), 1);
		TL_CHECK_INT(tl_media_tx_files(m), 1);
	}
	tl_media_destroy(m);
	setenv("TL_NO_IO_URING", "1", 1);
	TL_CHECK_INT(tl_txring_create(&r, 4), -ENOSYS);
	TL_CHECK(r == (struct tl_txring *)1); /* untouched */
	m = NULL;
	TL_CHECK_INT(tl_media_create(&m, &mc), 0);
	if (m) {
		TL_CHECK_INT(tl_media_tx_batched(m), -ENOSYS);
		TL_CHECK_INT(tl_media_tx_files(m), -ENOSYS);
	}
	tl_media_destroy(m);
	unsetenv("TL_NO_IO_URING");
	tl_txring_flush(NULL); /* NULL is fine: the sendto path */
	tl_txring_destroy(NULL);
	TL_CHECK_INT(tl_txring_pending(NULL), 0);
}

int main(void)
{
	test_batch_and_flush();
	test_full_batch();
	test_refused_counted();
	test_files();
	test_engine_switch();
	fprintf(stderr, "%d checks, %d failed\n", tl_test_checks, tl_test_failures);
	return tl_test_failures != 0;
}
