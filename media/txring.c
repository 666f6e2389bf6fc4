/* A media worker's outgoing RTP in batches: a packet is copied into a slot and queued, and the
 * queue goes to the kernel with one io_uring submit at the end of the worker's wake-up (or when
 * TL_TXRING_BATCH are queued); a queue of one goes with sendmsg, which costs less than a
 * submit. Each call has its own socket, so sendmmsg cannot batch them; on the benchmark's
 * machine a system call costs about 1 µs, a third of a send (BENCHMARKS.md run O). Where
 * io_uring is refused (a container's seccomp profile), create fails and the worker sends with
 * sendto as before. Used only by the ring's worker thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>

#include "media_int.h"

struct tl_txslot {
	int fd;
	int file;              /* fd's index in the ring's registered files, or -1 */
	tl_media_sent_fn done; /* NULL for RTP: the ring counts the result */
	void *arg;
	struct msghdr mh;
	struct iovec iov;
	struct sockaddr_storage to;
	uint8_t buf[TL_PKT_MAX];
};

struct tl_txring {
	struct io_uring ring;
	struct tl_txslot *slots;
	unsigned *free;  /* a stack of free slot indexes */
	unsigned *queue; /* slots queued, in order, not yet submitted */
	unsigned n_free, n_slots;
	unsigned queued;
	/* Registered files (tl_txring_files): a send by index skips the kernel's per-request
	 * file lookup and reference (fget under the submits: 2.8 % of the samples at 1000 calls,
	 * BENCHMARKS.md run S). */
	int *files_free; /* a stack of free indexes */
	unsigned n_files, n_files_free;
	/* written by the worker only (tl_stat_add), read by tl_txring_stats from any thread */
	_Atomic uint64_t sent, failed, batches, alone, host_batched, host_alone;
};

int tl_txring_create(struct tl_txring **out, unsigned slots)
{
	struct tl_txring *r;
	int err;

	if (getenv("TL_NO_IO_URING") && getenv("TL_NO_IO_URING")[0] == '1')
		return -ENOSYS; /* the sendto path, for tests and to compare the two */
	if (slots == 0)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->slots = calloc(slots, sizeof(*r->slots));
	r->free = calloc(slots, sizeof(*r->free));
	r->queue = calloc(slots, sizeof(*r->queue));
	if (!r->slots || !r->free || !r->queue) {
		free(r->slots);
		free(r->free);
		free(r->queue);
		free(r);
		return -ENOMEM;
	}
	/* Task work at our next system call, not by an interrupt (5.19); older kernels refuse the
	 * flag, and get none. The completion queue has room for every slot. */
	err = io_uring_queue_init(slots, &r->ring, IORING_SETUP_COOP_TASKRUN);
	if (err == -EINVAL)
		err = io_uring_queue_init(slots, &r->ring, 0);
	if (err < 0) {
		free(r->slots);
		free(r->free);
		free(r->queue);
		free(r);
		return err;
	}
	for (unsigned i = 0; i < slots; i++) {
		struct tl_txslot *t = &r->slots[i];
		t->iov.iov_base = t->buf;
		t->mh.msg_iov = &t->iov;
		t->mh.msg_iovlen = 1;
		t->mh.msg_name = &t->to;
		r->free[i] = slots - 1 - i;
	}
	r->n_slots = r->n_free = slots;
	*out = r;
	return 0;
}

/* One slot's result: counted, told to its sender, and the slot back on the free stack. */
static void complete(struct tl_txring *r, unsigned i, int res, int alone)
{
	struct tl_txslot *t = &r->slots[i];

	tl_stat_add(res < 0 ? &r->failed : &r->sent, 1);
	if (alone)
		tl_stat_add(&r->alone, 1);
	if (t->done) {
		tl_stat_add(alone ? &r->host_alone : &r->host_batched, 1);
		t->done(t->arg, res, t->buf, t->iov.iov_len);
	}
	r->free[r->n_free++] = i;
}

/* Slot i sent by itself, as sendto would send it. */
static void send_one(struct tl_txring *r, unsigned i)
{
	struct tl_txslot *t = &r->slots[i];
	ssize_t res = sendmsg(t->fd, &t->mh, MSG_DONTWAIT | MSG_NOSIGNAL);

	complete(r, i, res < 0 ? -errno : (int)res, 1);
}

/* Completions, without a system call. One at a time: a sender's done may queue again. */
static void reap(struct tl_txring *r)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
		unsigned i = (unsigned)cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
		complete(r, i, res, 0);
	}
}

void tl_txring_flush(struct tl_txring *r)
{
	unsigned n;

	if (!r)
		return;
	n = r->queued;
	r->queued = 0;
	if (n == 1) {
		send_one(r, r->queue[0]); /* a submit would cost more than the sendmsg it saves */
	} else if (n > 1) {
		for (unsigned i = 0; i < n; i++) {
			/* The ring has room for every slot, unless a submit failed and left entries
			 * behind (they go with this one): then this packet goes by itself. */
			struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
			struct tl_txslot *t = &r->slots[r->queue[i]];
			if (!sqe) {
				send_one(r, r->queue[i]);
				continue;
			}
			io_uring_prep_sendmsg(sqe, t->file >= 0 ? t->file : t->fd, &t->mh,
			                      MSG_DONTWAIT | MSG_NOSIGNAL);
			if (t->file >= 0)
				io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
			io_uring_sqe_set_data64(sqe, r->queue[i]);
		}
		/* Each send is tried at once, in this call, and (MSG_DONTWAIT) completes in it:
		 * sent, or refused as sendto would refuse it; none is left waiting for room. */
		if (io_uring_submit(&r->ring) >= 0)
			tl_stat_add(&r->batches, 1);
	}
	reap(r);
}

int tl_txring_files(struct tl_txring *r, unsigned n)
{
	int err;

	if (!r || r->n_files || n == 0)
		return r && r->n_files ? -EALREADY : -EINVAL;
	r->files_free = calloc(n, sizeof(*r->files_free));
	if (!r->files_free)
		return -ENOMEM;
	/* Refused by a kernel before 5.19, or by a descriptor limit under n (RLIMIT_NOFILE):
	 * then every send names its descriptor, as before. */
	err = io_uring_register_files_sparse(&r->ring, n);
	if (err < 0) {
		free(r->files_free);
		r->files_free = NULL;
		return err;
	}
	for (unsigned i = 0; i < n; i++)
		r->files_free[i] = (int)(n - 1 - i);
	r->n_files = r->n_files_free = n;
	return 0;
}

int tl_txring_file_add(struct tl_txring *r, int fd)
{
	int i, err;

	if (!r || r->n_files_free == 0)
		return -ENOSPC;
	i = r->files_free[--r->n_files_free];
	err = io_uring_register_files_update(&r->ring, (unsigned)i, &fd, 1);
	if (err != 1) {
		r->files_free[r->n_files_free++] = i;
		return err < 0 ? err : -EIO;
	}
	return i;
}

void tl_txring_file_remove(struct tl_txring *r, int file)
{
	int none = -1;

	if (!r || file < 0 || (unsigned)file >= r->n_files)
		return;
	/* The ring drops its reference to the socket here: it closes with the descriptor. */
	io_uring_register_files_update(&r->ring, (unsigned)file, &none, 1);
	r->files_free[r->n_files_free++] = file;
}

static int queue(struct tl_txring *r, int fd, int file, const void *pkt, size_t len,
                 const struct sockaddr *to, socklen_t tolen, tl_media_sent_fn done, void *arg)
{
	struct tl_txslot *t;
	unsigned i;

	if (len > TL_PKT_MAX || tolen > sizeof(t->to))
		return -EMSGSIZE;
	if (r->n_free == 0) {
		tl_txring_flush(r);
		if (r->n_free == 0)
			return -ENOBUFS; /* all still in flight: the caller sends itself */
	}
	i = r->free[--r->n_free];
	t = &r->slots[i];
	memcpy(t->buf, pkt, len);
	if (to)
		memcpy(&t->to, to, tolen);
	t->fd = fd;
	t->file = file;
	t->done = done;
	t->arg = arg;
	t->iov.iov_len = len;
	t->mh.msg_name = to ? &t->to : NULL; /* none: a connected socket */
	t->mh.msg_namelen = to ? tolen : 0;
	r->queue[r->queued++] = i;
	if (r->queued >= TL_TXRING_BATCH)
		tl_txring_flush(r);
	return 0;
}

int tl_txring_send(struct tl_txring *r, int fd, const void *pkt, size_t len,
                   const struct sockaddr *to, socklen_t tolen)
{
	return queue(r, fd, -1, pkt, len, to, tolen, NULL, NULL);
}

int tl_txring_send_file(struct tl_txring *r, int fd, int file, const void *pkt, size_t len,
                        const struct sockaddr *to, socklen_t tolen)
{
	return queue(r, fd, file, pkt, len, to, tolen, NULL, NULL);
}

int tl_txring_send_cb(struct tl_txring *r, int fd, const void *pkt, size_t len,
                      const struct sockaddr *to, socklen_t tolen, tl_media_sent_fn done, void *arg)
{
	return queue(r, fd, -1, pkt, len, to, tolen, done, arg);
}

int tl_txring_pending(const struct tl_txring *r)
{
	return r ? (int)r->queued : 0;
}

void tl_txring_stats(const struct tl_txring *r, struct tl_txring_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!r)
		return;
	st->sent = atomic_load_explicit(&r->sent, memory_order_relaxed);
	st->failed = atomic_load_explicit(&r->failed, memory_order_relaxed);
	st->batches = atomic_load_explicit(&r->batches, memory_order_relaxed);
	st->alone = atomic_load_explicit(&r->alone, memory_order_relaxed);
	st->host_batched = atomic_load_explicit(&r->host_batched, memory_order_relaxed);
	st->host_alone = atomic_load_explicit(&r->host_alone, memory_order_relaxed);
}

void tl_txring_destroy(struct tl_txring *r)
{
	if (!r)
		return;
	tl_txring_flush(r);
	/* What is still in flight (a full socket) is cancelled with the ring: io_uring holds its
	 * own reference to each file and buffer until then. */
	io_uring_queue_exit(&r->ring);
	free(r->slots);
	free(r->free);
	free(r->queue);
	free(r->files_free);
	free(r);
}
