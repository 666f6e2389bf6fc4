/* A media worker's incoming RTP and RTCP on an io_uring: one multishot recvmsg per socket, into
 * buffers the ring provides, so that the kernel receives each packet as it comes and the worker
 * collects a wake-up's packets from the completion queue without a system call per socket (a
 * recvmmsg each before; a system call costs about 1 µs on the benchmark's machine, BENCHMARKS.md
 * runs O and P). The ring's descriptor is readable when completions wait; the worker's poller
 * (its epoll, or its host's libev loop) watches it instead of every socket.
 *
 * A socket's request is named by its entry's index and generation: a completion still queued
 * for a socket removed meanwhile is recognised and dropped, and its buffer goes back. A request
 * the kernel ends (no buffer free, a completion queue full) is armed again at the end of the
 * pass; one that keeps failing is given up and its socket goes back to the poller (tl_rxring_run).
 * Where io_uring or multishot recvmsg (Linux 6.0) is missing, create fails and the worker reads
 * each socket as before. Used only by the ring's worker thread. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "media_int.h"

#define RX_NAME_LEN   ((socklen_t)sizeof(struct sockaddr_in6)) /* IPv4 and IPv6 sources */
#define RX_BUF_SIZE   1600u                                    /* header, name, TL_PKT_MAX */
#define RX_CANCEL_UD  UINT64_MAX                               /* a cancel's own completion */
#define RX_MAX_ERRORS 8 /* errors in a row before a socket goes back to the poller */
#define RX_BGID       0
#define RX_SQ_ENTRIES 64 /* re-arms beyond it submit as they go; the queue is at least this */

struct tl_rxent {
	uint64_t tag;
	int fd;
	uint32_t gen;
	unsigned errors; /* in a row, since its last packet */
	int live;
	int starved; /* ended for want of a buffer, not armed yet (tl_rxring_run) */
};

struct tl_rxring {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	unsigned n_bufs;
	struct msghdr mh; /* the template each request reads: the name's length, no control */
	struct tl_rxent *ents;
	unsigned *free; /* free entry indexes */
	unsigned n_ents, n_free;
	unsigned n_starved, starved_at; /* entries starved, where the next search starts */
	/* written by the worker only (tl_stat_add), read by tl_rxring_stats from any thread */
	_Atomic uint64_t packets, rearms, nobufs, given_up, failed, overflows;
};

static uint64_t ent_ud(const struct tl_rxring *r, unsigned i)
{
	return ((uint64_t)r->ents[i].gen << 32) | i;
}

/* An sqe, after submitting what is queued when the submission queue is full; NULL only if
 * that submit failed. */
static struct io_uring_sqe *get_sqe(struct tl_rxring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

	if (!sqe && io_uring_submit(&r->ring) >= 0)
		sqe = io_uring_get_sqe(&r->ring);
	return sqe;
}

static int arm(struct tl_rxring *r, int fd, uint64_t ud)
{
	struct io_uring_sqe *sqe = get_sqe(r);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_recvmsg_multishot(sqe, fd, &r->mh, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RX_BGID;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

static int cancel(struct tl_rxring *r, uint64_t ud)
{
	struct io_uring_sqe *sqe = get_sqe(r);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, RX_CANCEL_UD);
	return 0;
}

/* Whether this kernel takes a multishot recvmsg (6.0): one armed on a socket of our own and
 * cancelled ends with -ECANCELED, where an older kernel refuses it with -EINVAL. Bounded. */
static int probe(struct tl_rxring *r)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct __kernel_timespec ts = {.tv_sec = 1};
	int err = -ETIMEDOUT, seen = 0;

	if (fd < 0)
		return -errno;
	if (arm(r, fd, 0) < 0 || cancel(r, 0) < 0 || io_uring_submit(&r->ring) < 0) {
		close(fd);
		return -EIO;
	}
	while (seen < 2) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts) < 0)
			break;
		if (cqe->user_data == 0 && !(cqe->flags & IORING_CQE_F_MORE))
			err = cqe->res == -ECANCELED ? 0 : cqe->res < 0 ? cqe->res : -EIO;
		io_uring_cqe_seen(&r->ring, cqe);
		seen++;
	}
	close(fd);
	return err;
}

static void rx_free(struct tl_rxring *r)
{
	free(r->bufs);
	free(r->br);
	free(r->ents);
	free(r->free);
	free(r);
}

int tl_rxring_create(struct tl_rxring **out, unsigned bufs, unsigned sockets)
{
	struct io_uring_params p;
	struct io_uring_buf_reg reg;
	struct tl_rxring *r;
	unsigned cq;
	int err;

	*out = NULL;
	if ((getenv("TL_NO_IO_URING") && getenv("TL_NO_IO_URING")[0] == '1') ||
	    (getenv("TL_NO_IO_URING_RX") && getenv("TL_NO_IO_URING_RX")[0] == '1'))
		return -ENOSYS; /* each socket read by itself, for tests and to compare the two */
	if (bufs == 0 || bufs > 32768 || (bufs & (bufs - 1)))
		return -EINVAL; /* the buffer ring's size is a power of two */
	if (!(r = calloc(1, sizeof(*r))))
		return -ENOMEM;
	/* Touched now: the buffers are the worker's from the start, not a call's. */
	r->bufs = malloc((size_t)bufs * RX_BUF_SIZE);
	if (posix_memalign((void **)&r->br, 4096, bufs * sizeof(struct io_uring_buf)) != 0)
		r->br = NULL;
	if (!r->bufs || !r->br) {
		rx_free(r);
		return -ENOMEM;
	}
	memset(r->bufs, 0, (size_t)bufs * RX_BUF_SIZE);
	memset(r->br, 0, bufs * sizeof(struct io_uring_buf));
	/* Task work at our next system call (5.19). The completion queue has room for a packet in
	 * every buffer and the end of every socket's request (they all end when no buffer is
	 * free); should it overflow all the same, tl_rxring_run has the kernel hand over the
	 * rest. */
	cq = 2 * bufs + (sockets < 65536 ? sockets : 65536);
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
	p.cq_entries = cq > 64 ? cq : 64;
	err = io_uring_queue_init_params(RX_SQ_ENTRIES, &r->ring, &p);
	if (err == -EINVAL) {
		p.flags &= ~(unsigned)IORING_SETUP_COOP_TASKRUN;
		p.cq_entries = cq > 64 ? cq : 64;
		err = io_uring_queue_init_params(RX_SQ_ENTRIES, &r->ring, &p);
	}
	if (err < 0) {
		rx_free(r);
		return err;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)r->br;
	reg.ring_entries = bufs;
	reg.bgid = RX_BGID;
	err = io_uring_register_buf_ring(&r->ring, &reg, 0); /* 5.19 */
	if (err < 0) {
		io_uring_queue_exit(&r->ring);
		rx_free(r);
		return err;
	}
	io_uring_buf_ring_init(r->br);
	for (unsigned i = 0; i < bufs; i++)
		io_uring_buf_ring_add(r->br, r->bufs + (size_t)i * RX_BUF_SIZE, RX_BUF_SIZE,
		                      (unsigned short)i, io_uring_buf_ring_mask(bufs), (int)i);
	io_uring_buf_ring_advance(r->br, (int)bufs);
	r->n_bufs = bufs;
	r->mh.msg_namelen = RX_NAME_LEN;
	err = probe(r);
	if (err < 0) {
		io_uring_queue_exit(&r->ring);
		rx_free(r);
		return err;
	}
	*out = r;
	return 0;
}

int tl_rxring_fd(const struct tl_rxring *r)
{
	return r->ring.ring_fd;
}

int tl_rxring_add(struct tl_rxring *r, int fd, uint64_t tag)
{
	unsigned i;
	int err;

	if (r->n_free == 0) {
		unsigned n = r->n_ents ? 2 * r->n_ents : 64;
		struct tl_rxent *e = realloc(r->ents, n * sizeof(*e));
		unsigned *f;
		if (!e)
			return -ENOMEM;
		r->ents = e;
		f = realloc(r->free, n * sizeof(*f));
		if (!f)
			return -ENOMEM;
		r->free = f;
		memset(e + r->n_ents, 0, (n - r->n_ents) * sizeof(*e));
		for (unsigned k = n; k > r->n_ents; k--)
			r->free[r->n_free++] = k - 1;
		r->n_ents = n;
	}
	i = r->free[r->n_free - 1];
	r->ents[i].gen++;
	err = arm(r, fd, ent_ud(r, i));
	if (err < 0)
		return err;
	io_uring_submit(&r->ring); /* if it fails, the request goes with the next submit */
	r->n_free--;
	r->ents[i].tag = tag;
	r->ents[i].fd = fd;
	r->ents[i].errors = 0;
	r->ents[i].live = 1;
	return (int)i;
}

void tl_rxring_remove(struct tl_rxring *r, int id)
{
	struct tl_rxent *e;

	if (id < 0 || (unsigned)id >= r->n_ents || !r->ents[id].live)
		return;
	e = &r->ents[id];
	/* Before the socket closes: the request holds its own reference to the socket, which
	 * would keep the port bound. Its last completions, queued or to come, name a
	 * generation that is gone. */
	if (cancel(r, ent_ud(r, (unsigned)id)) == 0)
		io_uring_submit(&r->ring);
	if (e->starved) {
		e->starved = 0;
		r->n_starved--;
	}
	e->live = 0;
	e->gen++;
	r->free[r->n_free++] = (unsigned)id;
}

/* Sockets whose request ended for want of a buffer, armed again now that the run has given
 * the buffers back: at most half as many as there are buffers, the search going on where it
 * stopped. Each of them has a packet waiting, which its request takes at once: armed all
 * together, those beyond the buffers ended again at once, and a worker that fell behind spent
 * its time arming them (a dozen times a packet at 1000 calls, BENCHMARKS.md run P). The rest
 * wait in their sockets; the completions of those armed bring the next run. */
static unsigned rearm_starved(struct tl_rxring *r)
{
	unsigned budget = r->n_bufs / 2, armed = 0;

	for (unsigned k = 0; k < r->n_ents && r->n_starved > 0 && armed < budget; k++) {
		unsigned i = (r->starved_at + k) % r->n_ents;
		struct tl_rxent *e = &r->ents[i];
		if (!e->starved)
			continue;
		e->starved = 0;
		r->n_starved--;
		armed++;
		tl_stat_add(&r->rearms, 1);
		if (arm(r, e->fd, ent_ud(r, i)) < 0)
			tl_stat_add(&r->failed, 1);
		r->starved_at = i + 1;
	}
	return armed;
}

static unsigned run_once(struct tl_rxring *r, tl_rxring_fn fn, void *arg)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0, back = 0, rearm = 0;
	unsigned mask = (unsigned)io_uring_buf_ring_mask(r->n_bufs);

	io_uring_for_each_cqe(&r->ring, head, cqe)
	{
		uint64_t ud = cqe->user_data;
		unsigned i = (unsigned)ud;
		struct tl_rxent *e = i < r->n_ents && ud != RX_CANCEL_UD ? &r->ents[i] : NULL;
		int live = e && e->live && e->gen == (uint32_t)(ud >> 32);

		seen++;
		if (cqe->flags & IORING_CQE_F_BUFFER) {
			unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
			uint8_t *buf = r->bufs + (size_t)bid * RX_BUF_SIZE;
			struct io_uring_recvmsg_out *o =
			    cqe->res > 0 ? io_uring_recvmsg_validate(buf, cqe->res, &r->mh) : NULL;
			if (live && o && o->namelen <= RX_NAME_LEN) {
				struct sockaddr_storage from;
				memcpy(&from, io_uring_recvmsg_name(o), o->namelen);
				e->errors = 0;
				tl_stat_add(&r->packets, 1);
				fn(arg, e->tag, io_uring_recvmsg_payload(o, &r->mh),
				   io_uring_recvmsg_payload_length(o, cqe->res, &r->mh), &from,
				   (socklen_t)o->namelen);
			}
			io_uring_buf_ring_add(r->br, buf, RX_BUF_SIZE, (unsigned short)bid,
			                      (int)mask, (int)back++);
		}
		if (!live || (cqe->flags & IORING_CQE_F_MORE))
			continue;
		/* The kernel ended this socket's request: no buffer was free (-ENOBUFS), the
		 * completion queue was full (a result), or an error. Armed again below. */
		if (cqe->res == -ENOBUFS) {
			tl_stat_add(&r->nobufs, 1);
			e->starved = 1; /* armed again when buffers are back: rearm_starved */
			r->n_starved++;
			continue;
		} else if (cqe->res < 0 && ++e->errors > RX_MAX_ERRORS) {
			e->live = 0; /* given up: the caller watches the socket itself */
			e->gen++;
			r->free[r->n_free++] = i;
			tl_stat_add(&r->given_up, 1);
			fn(arg, e->tag, NULL, 0, NULL, 0);
			continue;
		}
		rearm++;
		tl_stat_add(&r->rearms, 1);
		if (arm(r, e->fd, ud) < 0)
			tl_stat_add(&r->failed, 1);
	}
	/* The buffers back before the requests are armed again. */
	io_uring_buf_ring_advance(r->br, (int)back);
	io_uring_cq_advance(&r->ring, seen);
	rearm += rearm_starved(r);
	if (rearm)
		io_uring_submit(&r->ring);
	return seen;
}

unsigned tl_rxring_run(struct tl_rxring *r, tl_rxring_fn fn, void *arg)
{
	unsigned seen = run_once(r, fn, arg);

	/* Completions the queue had no room for wait in the kernel, and with them the ends of
	 * requests that would never be armed again: fetched (one system call) and run, a few
	 * times at most; what is left the next run fetches. */
	for (int i = 0; i < 4 && io_uring_cq_has_overflow(&r->ring); i++) {
		tl_stat_add(&r->overflows, 1);
		io_uring_get_events(&r->ring);
		seen += run_once(r, fn, arg);
	}
	return seen;
}

void tl_rxring_stats(const struct tl_rxring *r, struct tl_rxring_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!r)
		return;
	st->packets = atomic_load_explicit(&r->packets, memory_order_relaxed);
	st->rearms = atomic_load_explicit(&r->rearms, memory_order_relaxed);
	st->nobufs = atomic_load_explicit(&r->nobufs, memory_order_relaxed);
	st->given_up = atomic_load_explicit(&r->given_up, memory_order_relaxed);
	st->failed = atomic_load_explicit(&r->failed, memory_order_relaxed);
	st->overflows = atomic_load_explicit(&r->overflows, memory_order_relaxed);
}

void tl_rxring_destroy(struct tl_rxring *r)
{
	if (!r)
		return;
	/* Every request ends with the ring, and with it its references to sockets and buffers. */
	io_uring_queue_exit(&r->ring);
	rx_free(r);
}
