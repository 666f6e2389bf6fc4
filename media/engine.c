/* Media workers: each owns an epoll set with its streams' RTP/RTCP sockets, a timerfd armed to
 * the next packet due (playout.c paces every stream at its ptime, each in its own phase), and an
 * eventfd for control commands (add, update, release) and talk-spurt kicks from the producer.
 * Streams are pinned round-robin. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "media_int.h"

#define TL_TAG_RTCP  1u
#define TL_TAG_TIMER ((uint64_t)1)
#define TL_TAG_CMD   ((uint64_t)2)
#define TL_TAG_RX    ((uint64_t)3) /* the receive ring; a stream's tag is its address */
#define TL_RX_ROUNDS 4             /* recvmmsg batches per wake-up before others get their turn */

/* The worker whose host thread this is (tl_media_worker_attach), else NULL. */
_Thread_local struct tl_media_worker *tl_media_self;

int64_t tl_media_now_ms(const struct tl_media *m)
{
	struct timespec ts;

	if (m && m->cfg.clock_ms)
		return m->cfg.clock_ms(m->cfg.clock_arg);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Queued, or -ENOBUFS when the worker's queue is full. A release is urgent: the queue keeps
 * room for one per stream, so it cannot be refused (a refused one would leak the stream). */
static int post(struct tl_media_worker *w, const struct tl_media_cmd *cmd)
{
	return tl_queue_push(w->cmdq, cmd, cmd->kind == TL_CMD_RELEASE ? TL_QUEUE_URGENT : 0);
}

/* Reading fd, reported with tag: the worker's epoll, or a hosted worker's host. */
static int watch(struct tl_media_worker *w, int fd, uint64_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

	if (w->ops)
		return w->ops->watch(w->host, fd, tag);
	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void unwatch(struct tl_media_worker *w, int fd)
{
	if (w->ops)
		w->ops->unwatch(w->host, fd);
	else
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* A stream's socket (rtcp 0 or 1): on the receive ring while the worker uses it, else (or
 * when the ring refuses it) watched by the poller. */
static int watch_stream(struct tl_media_worker *w, struct tl_media_stream *s, int rtcp)
{
	int fd = rtcp ? s->rtcp_fd : s->rtp_fd;
	uint64_t tag = (uint64_t)(uintptr_t)s | (rtcp ? TL_TAG_RTCP : 0);

	s->rx_id[rtcp] = w->rx_on ? tl_rxring_add(w->rx, fd, tag) : -1;
	if (s->rx_id[rtcp] >= 0)
		return 0;
	s->rx_id[rtcp] = -1;
	return watch(w, fd, tag);
}

static void unwatch_stream(struct tl_media_worker *w, struct tl_media_stream *s, int rtcp)
{
	if (s->rx_id[rtcp] >= 0)
		tl_rxring_remove(w->rx, s->rx_id[rtcp]);
	else
		unwatch(w, rtcp ? s->rtcp_fd : s->rtp_fd);
	s->rx_id[rtcp] = -1;
}

static void on_rx(struct tl_media_worker *w, int64_t now);

/* Every stream's sockets to the receive ring (on) or back to the poller. The ring pays where
 * a wake-up collects many packets: with a few it cost more than a recvmmsg each (the kernel
 * runs its receives as task work, which interrupts the worker's epoll_wait; BENCHMARKS.md run
 * P), so a worker uses it from rx_up streams and leaves it below half that. What the ring
 * holds is delivered before its sockets leave it. */
static void rx_switch(struct tl_media_worker *w, int on)
{
	if (!w->rx || on == w->rx_on || w->stop)
		return; /* not while tl_media_destroy releases what is left */
	if (!on)
		on_rx(w, tl_media_now_ms(w->m));
	for (size_t i = 0; i < w->n_streams; i++)
		for (int rtcp = 0; rtcp < 2; rtcp++)
			unwatch_stream(w, w->streams[i], rtcp);
	w->rx_on = on;
	/* A socket that cannot be watched (out of memory only) leaves its stream silent until
	 * it is released. */
	for (size_t i = 0; i < w->n_streams; i++)
		for (int rtcp = 0; rtcp < 2; rtcp++)
			(void)watch_stream(w, w->streams[i], rtcp);
}

static int add_stream(struct tl_media_worker *w, struct tl_media_stream *s)
{
	int err;

	if (w->n_streams == w->cap_streams) {
		size_t cap = w->cap_streams ? w->cap_streams * 2 : 64;
		struct tl_media_stream **a = realloc(w->streams, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		w->streams = a;
		w->cap_streams = cap;
	}
	err = watch_stream(w, s, 0);
	if (err < 0)
		return err;
	err = watch_stream(w, s, 1);
	if (err < 0) {
		unwatch_stream(w, s, 0);
		return err;
	}
	s->registered = 1;
	s->tx_file = tl_txring_file_add(w->tx, s->rtp_fd); /* -1 and less: sent by descriptor */
	s->index = (int)w->n_streams;
	w->streams[w->n_streams++] = s;
	tl_playout_add(w, s, tl_media_now_ms(w->m));
	if (w->n_streams >= w->rx_up)
		rx_switch(w, 1);
	return 0;
}

static void remove_stream(struct tl_media_worker *w, struct tl_media_stream *s)
{
	if (s->registered) {
		tl_playout_remove(w, s);
		unwatch_stream(w, s, 0);
		unwatch_stream(w, s, 1);
		w->streams[s->index] = w->streams[--w->n_streams];
		w->streams[s->index]->index = s->index;
		if (w->n_streams < w->rx_up / 2)
			rx_switch(w, 0);
	}
	/* A packet queued for this stream names its socket: out before the socket closes, and
	 * before the ring lets go of the socket (which else stays open, its port bound). */
	if (tl_txring_pending(w->tx))
		tl_txring_flush(w->tx);
	tl_txring_file_remove(w->tx, s->tx_file);
	s->tx_file = -1;
	tl_stream_free(s);
}

static void run_commands(struct tl_media_worker *w)
{
	struct tl_media_cmd cmd;
	uint64_t v;

	if (read(w->cmdfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	/* Kicks first: a stream on the kick stack may be released by a command below. */
	tl_playout_kicks(w);
	/* Until empty: the queue wakes us again only after it has been seen empty. */
	while (tl_queue_pop(w->cmdq, &cmd)) {
		struct tl_media_stream *s = cmd.s;
		if (cmd.kind == TL_CMD_ADD && add_stream(w, s) < 0)
			s->registered = 0; /* stays silent; freed at release */
		else if (cmd.kind == TL_CMD_UPDATE)
			tl_stream_apply(s, &cmd.remote, &cmd.sdp);
		else if (cmd.kind == TL_CMD_RELEASE)
			remove_stream(w, s);
		else if (cmd.kind == TL_CMD_RELAY)
			tl_relay_link(s, cmd.peer);
	}
}

/* The receive headers, once: recvmmsg then changes only msg_len, msg_namelen and msg_flags of
 * those it fills, and on_readable puts those back (resetting all TL_BATCH headers per packet
 * was about 2 % of a worker at 500 calls, perf). */
static void rx_headers_init(struct tl_media_worker *w)
{
	for (int i = 0; i < TL_BATCH; i++) {
		w->in_iov[i].iov_base = w->in_buf[i];
		w->in_iov[i].iov_len = TL_PKT_MAX;
		memset(&w->in_msgs[i].msg_hdr, 0, sizeof(w->in_msgs[i].msg_hdr));
		w->in_msgs[i].msg_hdr.msg_iov = &w->in_iov[i];
		w->in_msgs[i].msg_hdr.msg_iovlen = 1;
		w->in_msgs[i].msg_hdr.msg_name = &w->in_addr[i];
		w->in_msgs[i].msg_hdr.msg_namelen = sizeof(w->in_addr[i]);
	}
}

static void on_readable(struct tl_media_worker *w, struct tl_media_stream *s, int rtcp, int64_t now)
{
	int fd = rtcp ? s->rtcp_fd : s->rtp_fd;

	for (int round = 0; round < TL_RX_ROUNDS; round++) {
		int n = recvmmsg(fd, w->in_msgs, TL_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			size_t len = w->in_msgs[i].msg_len;
			socklen_t alen = w->in_msgs[i].msg_hdr.msg_namelen;
			/* recvmmsg changed only these of the headers it filled (rx_headers_init) */
			w->in_msgs[i].msg_hdr.msg_namelen = sizeof(w->in_addr[i]);
			w->in_msgs[i].msg_hdr.msg_flags = 0;
			if (tl_stream_srtp_in(s, w->in_buf[i], &len, rtcp) < 0)
				continue;
			if (rtcp)
				tl_stream_on_rtcp(s, w->in_buf[i], len, &w->in_addr[i], alen, now);
			else
				tl_stream_on_rtp(s, w->in_buf[i], len, &w->in_addr[i], alen, now);
		}
		if (n < TL_BATCH)
			return;
	}
}

/* One packet from the receive ring (tl_rxring_fn); arg is the worker. */
static void on_rx_packet(void *arg, uint64_t tag, uint8_t *buf, size_t len,
                         struct sockaddr_storage *from, socklen_t fromlen)
{
	struct tl_media_worker *w = arg;
	struct tl_media_stream *s =
	    (struct tl_media_stream *)(uintptr_t)(tag & ~(uint64_t)TL_TAG_RTCP);
	int rtcp = (int)(tag & TL_TAG_RTCP);

	if (!buf) {
		/* The ring gave this socket up after errors in a row: the poller watches it (out
		 * of memory, nothing does: the stream is silent until released). */
		s->rx_id[rtcp] = -1;
		(void)watch(w, rtcp ? s->rtcp_fd : s->rtp_fd, tag);
		return;
	}
	if (tl_stream_srtp_in(s, buf, &len, rtcp) < 0)
		return;
	if (rtcp)
		tl_stream_on_rtcp(s, buf, len, from, fromlen, w->rx_now);
	else
		tl_stream_on_rtp(s, buf, len, from, fromlen, w->rx_now);
}

static void on_rx(struct tl_media_worker *w, int64_t now)
{
	w->rx_now = now;
	tl_rxring_run(w->rx, on_rx_packet, w);
}

static void on_timer(struct tl_media_worker *w)
{
	uint64_t expirations;

	if (read(w->timerfd, &expirations, sizeof(expirations)) < 0) {
		/* EAGAIN: a re-arm raced the expiry; tl_playout_run looks at the clock anyway */
	}
	w->armed_ms = 0; /* one-shot: fired */
}

/* One turn of a worker: what epoll reports within timeout_ms (-1: wait), then commands, kicks
 * and every packet due. */
static void worker_turn(struct tl_media_worker *w, int timeout_ms)
{
	struct epoll_event evs[256];
	int n = epoll_wait(w->epfd, evs, 256, timeout_ms), cmds = 0;
	int64_t now = tl_media_now_ms(w->m);

	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		if (tag == TL_TAG_TIMER)
			on_timer(w);
		else if (tag == TL_TAG_CMD)
			cmds = 1;
		else if (tag == TL_TAG_RX)
			on_rx(w, now);
		else
			on_readable(
			    w, (struct tl_media_stream *)(uintptr_t)(tag & ~(uint64_t)TL_TAG_RTCP),
			    (int)(tag & TL_TAG_RTCP), now);
	}
	/* After the batch: a release frees a stream other events may still name. */
	if (cmds)
		run_commands(w);
	/* Every packet due by now, all streams in one pass; then the timer re-armed. */
	tl_playout_run(w);
	tl_txring_flush(w->tx); /* the wake-up's packets: one system call */
}

static void *worker_main(void *arg)
{
	struct tl_media_worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "tl-media-%d", (int)(w - w->m->workers));
	pthread_setname_np(pthread_self(), name); /* top -H, the bench's per-thread CPU */
	while (!w->stop)
		worker_turn(w, -1);
	return NULL;
}

int tl_media_tx_batched(const struct tl_media *m)
{
	for (int i = 0; i < m->n_workers; i++)
		if (!m->workers[i].tx)
			return m->workers[i].tx_err < 0 ? m->workers[i].tx_err : -ENOSYS;
	return m->n_workers > 0;
}

int tl_media_tx_files(const struct tl_media *m)
{
	for (int i = 0; i < m->n_workers; i++)
		if (!m->workers[i].tx || m->workers[i].tx_files_err < 0)
			return m->workers[i].tx ? m->workers[i].tx_files_err : -ENOSYS;
	return m->n_workers > 0;
}

int tl_media_rx_batched(const struct tl_media *m)
{
	for (int i = 0; i < m->n_workers; i++)
		if (!m->workers[i].rx)
			return m->workers[i].rx_err < 0 ? m->workers[i].rx_err : -ENOSYS;
	return m->n_workers > 0;
}

void tl_media_io_stats(const struct tl_media *m, struct tl_media_io_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < m->n_workers; i++) {
		struct tl_txring_stats t;
		struct tl_rxring_stats r;
		tl_rxring_stats(m->workers[i].rx, &r);
		st->ring_received += r.packets;
		st->ring_starved += r.nobufs;
		tl_txring_stats(m->workers[i].tx, &t);
		st->sent += t.sent;
		st->failed += t.failed;
		st->submits += t.batches;
		st->alone += t.alone;
		st->host_batched += t.host_batched;
		st->host_alone += t.host_alone;
	}
}

int tl_media_worker_send(struct tl_media *m, unsigned worker, int fd, const void *buf, size_t len,
                         tl_media_sent_fn done, void *arg)
{
	struct tl_media_worker *w = &m->workers[worker];

	if (!w->tx)
		return -ENOSYS;
	return tl_txring_send_cb(w->tx, fd, buf, len, NULL, 0, done, arg);
}

void tl_media_worker_send_flush(struct tl_media *m, unsigned worker)
{
	tl_txring_flush(m->workers[worker].tx);
}

unsigned tl_media_workers(const struct tl_media *m)
{
	return (unsigned)m->n_workers;
}

int tl_media_worker_host(struct tl_media *m, unsigned worker, const struct tl_media_host_ops *ops,
                         void *host)
{
	struct tl_media_worker *w = &m->workers[worker];
	int err;

	w->ops = ops;
	w->host = host;
	if (!ops)
		return 0; /* the host is gone: streams freed later unwatch nothing */
	/* Its commands; no timerfd: the host times the deadlines flush returns. */
	err = watch(w, w->cmdfd, TL_TAG_CMD);
	if (err == 0 && w->rx) {
		err = watch(w, tl_rxring_fd(w->rx), TL_TAG_RX);
		if (err < 0)
			ops->unwatch(host, w->cmdfd);
	}
	if (err < 0)
		w->ops = NULL;
	return err;
}

void tl_media_worker_attach(struct tl_media *m, unsigned worker)
{
	tl_media_self = &m->workers[worker];
}

void tl_media_worker_event(struct tl_media *m, unsigned worker, uint64_t tag)
{
	struct tl_media_worker *w = &m->workers[worker];

	w->events = 1;
	if (tag == TL_TAG_TIMER)
		on_timer(w);
	else if (tag == TL_TAG_CMD)
		w->cmds = 1;
	else if (tag == TL_TAG_RX)
		on_rx(w, tl_media_now_ms(m));
	else
		on_readable(w, (struct tl_media_stream *)(uintptr_t)(tag & ~(uint64_t)TL_TAG_RTCP),
		            (int)(tag & TL_TAG_RTCP), tl_media_now_ms(m));
}

void tl_media_worker_timer(struct tl_media *m, unsigned worker)
{
	struct tl_media_worker *w = &m->workers[worker];

	w->events = 1;
	w->armed_ms = 0; /* fired: the flush after it arms the next */
}

int64_t tl_media_worker_flush(struct tl_media *m, unsigned worker)
{
	struct tl_media_worker *w = &m->workers[worker];

	/* As at the end of a worker's own turn: commands after the events (a release frees a
	 * stream they named; the host has delivered them all), kicks, every packet due. */
	if (w->cmds) {
		w->cmds = 0;
		run_commands(w);
	} else if (w->events || atomic_load_explicit(&w->kicks, memory_order_relaxed)) {
		tl_playout_kicks(w);
	} else {
		return w->armed_ms; /* nothing happened: the deadline stands */
	}
	w->events = 0;
	tl_playout_run(w);
	tl_txring_flush(w->tx); /* the wake-up's packets: one system call */
	return w->armed_ms;
}

void tl_media_worker_kick(struct tl_media *m, unsigned worker)
{
	struct tl_media_worker *w = &m->workers[worker];

	if (!atomic_load_explicit(&w->kicks, memory_order_relaxed))
		return;
	/* Not the commands: a release among them would free a stream that an event still
	 * pending in this wake-up names. Counted as an event, so that the flush runs the
	 * playout and returns the deadline the kicks may have moved. */
	tl_playout_kicks(w);
	w->events++;
}

static int worker_init(struct tl_media_worker *w, struct tl_media *m)
{
	struct epoll_event ev = {.events = EPOLLIN};
	const char *env;

	unsigned max = (unsigned)m->cfg.max_streams;
	int err;

	w->m = m;
	rx_headers_init(w);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	w->cmdfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->epfd < 0 || w->timerfd < 0 || w->cmdfd < 0)
		return -errno;
	/* Refused (seccomp, an old kernel, TL_NO_IO_URING=1): each packet goes with sendto. */
	w->tx_err = tl_txring_create(&w->tx, TL_TXRING_SLOTS);
	if (w->tx_err < 0)
		w->tx = NULL;
	/* Each stream's RTP socket by index (a worker may have them all); refused, by fd. */
	w->tx_files_err = w->tx ? tl_txring_files(w->tx, max) : 0;
	/* Refused (as above, or a kernel before 6.0): the poller watches each socket. */
	w->rx_err = tl_rxring_create(&w->rx, TL_RXRING_BUFS, 2 * max);
	/* TL_RX_RING_STREAMS=n: the ring from n streams (0: always; tests and the benchmark). */
	env = getenv("TL_RX_RING_STREAMS");
	w->rx_up = env ? (unsigned)atoi(env) : TL_RX_STREAMS;
	w->rx_on = w->rx && w->rx_up == 0;
	/* Per stream: an add, a release (urgent, in the reserve) and now and then an update. */
	err = tl_queue_create(&w->cmdq, sizeof(struct tl_media_cmd), 2 * max + 256, max + 16,
	                      tl_queue_eventfd_wake, &w->cmdfd);
	if (err < 0)
		return err;
	w->hosted = m->cfg.hosted != 0;
	/* TL_PLAYOUT_SLOT_WAKE=1: a spurt's slot wakes the worker even with nothing queued, as
	 * before early_grace (playout.c; for comparing the two). */
	w->no_early_grace =
	    getenv("TL_PLAYOUT_SLOT_WAKE") && getenv("TL_PLAYOUT_SLOT_WAKE")[0] == '1';
	if (w->hosted)
		return 0; /* the host watches its descriptors: tl_media_worker_host */
	ev.data.u64 = TL_TAG_TIMER;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->timerfd, &ev) < 0)
		return -errno;
	ev.data.u64 = TL_TAG_CMD;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->cmdfd, &ev) < 0)
		return -errno;
	ev.data.u64 = TL_TAG_RX;
	if (w->rx && epoll_ctl(w->epfd, EPOLL_CTL_ADD, tl_rxring_fd(w->rx), &ev) < 0)
		return -errno;
	err = -pthread_create(&w->thread, NULL, worker_main, w);
	w->started = err == 0;
	return err;
}

int tl_media_create(struct tl_media **out, const struct tl_media_config *cfg)
{
	struct tl_media *m = calloc(1, sizeof(*m));
	int err = 0;

	/* A clock of the caller's own: only for hosted workers, whose host keeps the deadlines
	 * (a worker's own timerfd runs on CLOCK_MONOTONIC). */
	if (cfg->clock_ms && !cfg->hosted) {
		free(m);
		return -EINVAL;
	}
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	if (m->cfg.workers <= 0)
		m->cfg.workers = 1;
	if (m->cfg.playout_max_ms <= 0)
		m->cfg.playout_max_ms = 60000;
	if (m->cfg.playout_backlog_ms < 0)
		m->cfg.playout_backlog_ms = 0;
	if (m->cfg.max_streams <= 0)
		m->cfg.max_streams = 1000;
	m->workers = calloc((size_t)m->cfg.workers, sizeof(*m->workers));
	if (!m->workers) {
		free(m);
		return -ENOMEM;
	}
	/* All of them: destroy after a failure closes every worker's fds, reached or not. */
	for (int i = 0; i < m->cfg.workers; i++)
		m->workers[i].epfd = m->workers[i].timerfd = m->workers[i].cmdfd = -1;
	for (int i = 0; i < m->cfg.workers; i++) {
		err = worker_init(&m->workers[i], m);
		if (err < 0)
			break;
		m->n_workers++;
	}
	if (err < 0) {
		tl_media_destroy(m);
		return err;
	}
	*out = m;
	return 0;
}

void tl_media_destroy(struct tl_media *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->n_workers; i++) {
		struct tl_media_worker *w = &m->workers[i];
		uint64_t one = 1;
		w->stop = 1;
		if (write(w->cmdfd, &one, sizeof(one)) < 0) {
			/* the worker also wakes on its next tick */
		}
		if (w->started) /* a hosted worker's host has stopped before this */
			pthread_join(w->thread, NULL);
		if (w->cmdq)
			run_commands(w);
		while (w->n_streams > 0)
			remove_stream(w, w->streams[w->n_streams - 1]);
		free(w->streams);
	}
	for (int i = 0; i < m->cfg.workers; i++) {
		struct tl_media_worker *w = &m->workers[i];
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->timerfd >= 0)
			close(w->timerfd);
		if (w->cmdfd >= 0)
			close(w->cmdfd);
		tl_queue_destroy(w->cmdq);
		tl_txring_destroy(w->tx);
		tl_rxring_destroy(w->rx);
	}
	free(m->workers);
	free(m);
}

static int create_on(struct tl_media_stream **out, struct tl_media *m,
                     const struct tl_media_stream_params *p, struct tl_media_worker *w)
{
	struct tl_media_stream *s;
	struct tl_media_cmd cmd = {.kind = TL_CMD_ADD};
	int err = tl_stream_alloc(&s, m, p);

	if (err < 0)
		return err;
	s->w = w;
	cmd.s = s;
	err = post(s->w, &cmd);
	if (err < 0) {
		/* The caller still owns the fds and notify_arg on failure. */
		s->rtp_fd = s->rtcp_fd = -1;
		s->notify_release = NULL;
		tl_stream_free(s);
		return err;
	}
	*out = s;
	return 0;
}

int tl_media_stream_create(struct tl_media_stream **out, struct tl_media *m,
                           const struct tl_media_stream_params *p)
{
	return create_on(out, m, p, &m->workers[m->next_worker++ % (unsigned)m->n_workers]);
}

int tl_media_stream_create_on(struct tl_media_stream **out, struct tl_media *m,
                              const struct tl_media_stream_params *p, unsigned worker)
{
	if (worker >= (unsigned)m->n_workers)
		return -EINVAL;
	return create_on(out, m, p, &m->workers[worker]);
}

int tl_media_stream_create_beside(struct tl_media_stream **out, struct tl_media *m,
                                  const struct tl_media_stream_params *p,
                                  const struct tl_media_stream *peer)
{
	return create_on(out, m, p, peer->w);
}

int tl_media_stream_relay(struct tl_media_stream *a, struct tl_media_stream *b)
{
	struct tl_media_cmd cmd = {.kind = TL_CMD_RELAY, .s = a, .peer = b};

	if (a == b || a->w != b->w)
		return -EXDEV; /* the relay's ring is worker-owned: one worker for both */
	return post(a->w, &cmd);
}

void tl_media_stream_ref(struct tl_media_stream *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void tl_media_stream_unref(struct tl_media_stream *s)
{
	struct tl_media_cmd cmd = {.kind = TL_CMD_RELEASE, .s = s};

	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (post(s->w, &cmd) < 0) {
		/* Cannot happen while streams stay within max_streams (the reserve); if it does,
		 * leak the stream rather than free it under the worker's feet. */
	}
}

int tl_media_stream_update(struct tl_media_stream *s, const struct sockaddr_storage *remote,
                           const struct tl_sdp_media *sdp)
{
	struct tl_media_cmd cmd = {.kind = TL_CMD_UPDATE, .s = s, .remote = *remote, .sdp = *sdp};

	return post(s->w, &cmd);
}
