/* One agent loop (tl_ws_loop): a client-only lws_context serviced by its own thread, with a
 * bounded command queue from the control thread woken by lws_cancel_service() and the ready
 * stack of cells the media workers push. A loop owns its connections; ws.c places each call on
 * one loop and routes everything for that call there. Per-connection I/O is ws_conn.c (what we
 * send) and ws_recv.c (what the agent sends). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "trunkline/log.h"
#include "ws_int.h"

static struct tl_ws_conn *conn_by_call(struct tl_ws_loop *loop, uint64_t call)
{
	for (struct tl_ws_conn *c = loop->conns; c; c = c->next)
		if (c->call == call)
			return c;
	return NULL;
}

static void on_shutdown_deadline(lws_sorted_usec_list_t *sul)
{
	struct tl_ws_loop *loop = lws_container_of(sul, struct tl_ws_loop, sul_shutdown);

	loop->quit = 1;
}

static void run_commands(struct tl_ws_loop *loop)
{
	struct tl_wsc_cmd cmd;
	struct tl_ws_conn *c;

	/* Until empty: the queue wakes us again only after it has been seen empty. */
	while (tl_queue_pop(loop->cmdq, &cmd)) {
		if (cmd.kind == TL_WSC_CMD_CONNECT)
			tl_wsc_start(cmd.conn);
		else if (!(c = conn_by_call(loop, cmd.call)))
			;
		else if (cmd.kind == TL_WSC_CMD_CLOSE)
			tl_wsc_close(c);
		else if (c->n_info_dtmf < sizeof(c->info_dtmf)) {
			c->info_dtmf[c->n_info_dtmf++] = cmd.digit;
			if (c->state == TL_WSC_OPEN && c->sent_start)
				lws_callback_on_writable(c->wsi);
		}
	}
}

/* The loop whose thread this is (set once by the thread itself). */
static _Thread_local const struct tl_ws_loop *ws_self;

int tl_wsc_on_loop(const struct tl_ws_loop *loop)
{
	return ws_self == loop;
}

/* Every call with uplink audio since the last look, in one batch. */
static void flush_ready(struct tl_ws_loop *loop)
{
	struct tl_ws_cell *cell, *next;
	struct tl_ws_conn *c;

	if (!atomic_load_explicit(&loop->ready, memory_order_relaxed))
		return;
	cell = atomic_exchange_explicit(&loop->ready, NULL, memory_order_acquire);
	for (; cell; cell = next) {
		next = cell->next;
		atomic_store_explicit(&cell->queued, 0, memory_order_seq_cst);
		c = cell->conn;
		if (c && c->state == TL_WSC_OPEN && c->sent_start) {
			/* Straight out, without a WRITEABLE round trip through poll(), unless
			 * digits go first; a failed write is retried (and fails) in WRITEABLE,
			 * which closes the connection. */
			if (c->n_info_dtmf > 0 || tl_wsc_send_uplink(c) < 0)
				lws_callback_on_writable(c->wsi);
		}
		tl_wsc_cell_unref(cell);
	}
}

void tl_wsc_cancelled(struct tl_ws_loop *loop)
{
	struct tl_ws_conn *c, *cn;

	run_commands(loop);
	flush_ready(loop);

	if (atomic_load(&loop->stop) && !loop->shutting_down) {
		loop->shutting_down = 1;
		for (c = loop->conns; c; c = cn) {
			cn = c->next;
			tl_wsc_close(c);
		}
		if (!loop->conns)
			loop->quit = 1;
		lws_sul_schedule(loop->ctx, 0, &loop->sul_shutdown, on_shutdown_deadline,
		                 TL_WSC_SHUTDOWN_US);
	}
}

/* rx 1 KiB a connection (lws's default is 4 KiB, allocated per connection): a 20 ms µ-law
 * frame's JSON is about 350 bytes and a longer message arrives in pieces that ws_conn.c joins.
 * tx stays at 4 KiB a send(), as before, so that no frame we write is split. */
#define TL_WSC_RX_BUFFER 1024
#define TL_WSC_TX_PACKET 4096

static const struct lws_protocols protocols[] = {
    {"tl-agent", tl_wsc_callback, 0, TL_WSC_RX_BUFFER, 0, NULL, TL_WSC_TX_PACKET},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

struct lws_vhost *tl_wsc_ca_vhost(struct tl_ws_loop *loop, const char *ca)
{
	struct lws_context_creation_info info;
	size_t i, n = sizeof(loop->ca_vhosts) / sizeof(loop->ca_vhosts[0]);
	char name[32];

	for (i = 0; i < n && loop->ca_vhosts[i].ca; i++)
		if (strcmp(loop->ca_vhosts[i].ca, ca) == 0)
			return loop->ca_vhosts[i].vh;
	if (i == n || !(loop->ca_vhosts[i].ca = strdup(ca)))
		return NULL;
	memset(&info, 0, sizeof(info));
	snprintf(name, sizeof(name), "ca%zu", i);
	info.vhost_name = name;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.client_ssl_ca_filepath = ca;
	loop->ca_vhosts[i].vh = lws_create_vhost(loop->ctx, &info);
	if (!loop->ca_vhosts[i].vh)
		tl_log_warn(NULL, "agent CA %s: cannot make a TLS client context with it", ca);
	return loop->ca_vhosts[i].vh;
}

/* Hosted: the media worker's descriptors (its timer, its commands, each stream's RTP and
 * RTCP) are watched on this loop itself, one ev_io each, indexed by descriptor. */
struct tl_ws_mio {
	ev_io io;
	uint64_t tag;
	struct tl_ws_loop *loop;
};

static void on_media_io(struct ev_loop *evl, ev_io *io, int revents)
{
	struct tl_ws_mio *m = (struct tl_ws_mio *)io;

	(void)evl;
	(void)revents;
	/* The caller's audio this makes goes to the agents with the rest of the wake-up's, in
	 * one submit before the loop waits again (on_prepare). Sent after each event (run M,
	 * beside an echo agent that was slow to answer), it cost 1.15-1.31x the CPU at 500
	 * calls beside today's agent, in three A/B runs; within the noise at 100 and 1000
	 * (BENCHMARKS.md run U). */
	tl_media_worker_event(m->loop->ws->media, m->loop->index, m->tag);
}

void tl_wsc_loop_kick(struct tl_ws_loop *loop)
{
	/* The same for the agent's audio: it goes to the caller now (hosted loops only). */
	if (loop->evl)
		tl_media_worker_kick(loop->ws->media, loop->index);
}

static int media_watch(void *host, int fd, uint64_t tag)
{
	struct tl_ws_loop *loop = host;
	struct tl_ws_mio *m;

	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= loop->n_mio) {
		size_t n = (size_t)fd + 64;
		struct tl_ws_mio **a = realloc(loop->mio, n * sizeof(*a));
		if (!a)
			return -ENOMEM;
		memset(a + loop->n_mio, 0, (n - loop->n_mio) * sizeof(*a));
		loop->mio = a;
		loop->n_mio = n;
	}
	if (loop->mio[fd])
		return -EEXIST;
	if (!(m = calloc(1, sizeof(*m))))
		return -ENOMEM;
	m->tag = tag;
	m->loop = loop;
	ev_io_init(&m->io, on_media_io, fd, EV_READ);
	ev_io_start(loop->evl, &m->io);
	loop->mio[fd] = m;
	return 0;
}

static void media_unwatch(void *host, int fd)
{
	struct tl_ws_loop *loop = host;

	if (fd < 0 || (size_t)fd >= loop->n_mio || !loop->mio[fd])
		return;
	ev_io_stop(loop->evl, &loop->mio[fd]->io);
	free(loop->mio[fd]);
	loop->mio[fd] = NULL;
}

static const struct tl_media_host_ops media_host = {media_watch, media_unwatch};

/* Hosted, before every wait: agent audio lws's callbacks queued goes out (a talk spurt's first
 * frame at once), and what the worker produced meanwhile goes to the agents. The uplink's
 * frames are queued first, so that the worker's flush submits them with its packets: one
 * system call; what its playout produced (marks) then goes in a second. */
static void on_prepare(struct ev_loop *evl, ev_prepare *w, int revents)
{
	struct tl_ws_loop *loop = w->data;
	int64_t due;

	(void)revents;
	flush_ready(loop);
	due = tl_media_worker_flush(loop->ws->media, loop->index);
	flush_ready(loop);
	tl_wsc_ring_flush(loop); /* nothing queued waits past this wait */
	/* The worker's next deadline on a libev timer: no timerfd_settime and no read of a
	 * timerfd per deadline (libev folds it into epoll_wait's timeout). */
	if (due == loop->media_due)
		return;
	loop->media_due = due;
	ev_timer_stop(evl, &loop->media_timer);
	if (due) {
		struct timespec ts;
		double left;
		clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock of tl_media's deadlines */
		left = (double)due / 1e3 - ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
		ev_now_update(evl); /* libev counts the delay from its own idea of now */
		ev_timer_set(&loop->media_timer, left > 0 ? left : 0, 0);
		ev_timer_start(evl, &loop->media_timer);
	}
}

static void on_media_timer(struct ev_loop *evl, ev_timer *t, int revents)
{
	struct tl_ws_loop *loop = t->data;

	(void)evl;
	(void)revents;
	loop->media_due = 0;
	tl_media_worker_timer(loop->ws->media, loop->index);
}

/* Hosted: lws 4.1.6's libev glue re-arms its one timer with ev_timer_set on the running
 * watcher, which libev ignores, so an lws timer set sooner than the armed one (an agent's idle
 * timeout after the connect timeout, the choked warning) waited for the later one: seconds.
 * This tick keeps the armed deadline at most TL_WSC_TICK_US away, so every timer runs at most
 * that late (test_agent_hostile's truncated frame: the idle timeout did not fire without it). */
#define TL_WSC_TICK_US (50 * LWS_US_PER_MS)

static void on_tick(lws_sorted_usec_list_t *sul)
{
	struct tl_ws_loop *loop = lws_container_of(sul, struct tl_ws_loop, sul_tick);

	lws_sul_schedule(loop->ctx, 0, &loop->sul_tick, on_tick, TL_WSC_TICK_US);
}

static void *loop_main(void *arg)
{
	struct tl_ws_loop *loop = arg;

	ws_self = loop;
	if (loop->evl) {
		tl_media_worker_attach(loop->ws->media, loop->index);
		while (!loop->quit) {
			loop->turn++;
			ev_run(loop->evl, EVRUN_ONCE);
		}
		return NULL;
	}
	while (!loop->quit) {
		loop->turn++;
		if (lws_service(loop->ctx, 0) < 0)
			usleep(10000); /* not expected; do not spin */
	}
	return NULL;
}

static void wake_loop(void *arg)
{
	struct tl_ws_loop *loop = arg;

	lws_cancel_service(loop->ctx);
}

int tl_wsc_loop_start(struct tl_ws_loop *loop)
{
	struct lws_context_creation_info info;
	unsigned max_calls = loop->ws->max_calls;
	void *foreign[1];
	char name[16];
	int err;

	/* Commands per call: connect and DTMF (ordinary), one close (urgent, in the reserve). */
	err = tl_queue_create(&loop->cmdq, sizeof(struct tl_wsc_cmd), 2 * max_calls + 256,
	                      max_calls + 16, wake_loop, loop);
	if (err < 0)
		return err;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	/* OpenSSL's global set-up and clean-up by one context only, loop 0's, destroyed last:
	 * with it on every loop's context (lws 4.1.6) ASan finds OpenSSL's objects leaked. */
	info.options = loop->index == 0 ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
	info.user = loop;
	info.uid = -1;
	info.gid = -1;
	/* TL_WS_LWS_RX=1: lws reads every agent socket (see ws_read.c; for comparing the two). */
	loop->lws_rx_only = getenv("TL_WS_LWS_RX") && getenv("TL_WS_LWS_RX")[0] == '1';
	if (loop->ws->media) {
		/* epoll through libev: lws's own loop poll()s every connection per wake-up */
		loop->evl = ev_loop_new(EVBACKEND_EPOLL);
		if (!loop->evl)
			return -ENOMEM;
		foreign[0] = loop->evl;
		info.foreign_loops = foreign;
		info.options |= LWS_SERVER_OPTION_LIBEV;
	}
	loop->ctx = lws_create_context(&info);
	if (!loop->ctx)
		return -EIO;
	if (loop->evl) {
		err = tl_media_worker_host(loop->ws->media, loop->index, &media_host, loop);
		if (err < 0)
			return err;
		ev_timer_init(&loop->media_timer, on_media_timer, 0, 0);
		loop->media_timer.data = loop;
		ev_prepare_init(&loop->prepare, on_prepare);
		loop->prepare.data = loop;
		ev_prepare_start(loop->evl, &loop->prepare);
		lws_sul_schedule(loop->ctx, 0, &loop->sul_tick, on_tick, TL_WSC_TICK_US);
	}
	err = -pthread_create(&loop->thread, NULL, loop_main, loop);
	if (err)
		return err;
	loop->thread_started = 1;
	snprintf(name, sizeof(name), loop->evl ? "tl-worker-%u" : "tl-agent-%u", loop->index);
	pthread_setname_np(loop->thread, name); /* top -H, the bench's per-thread CPU */
	return 0;
}

/* Asks the loop to close its connections politely; tl_wsc_loop_stop then waits for it. */
static void loop_ask_stop(struct tl_ws_loop *loop)
{
	if (loop->thread_started) {
		atomic_store(&loop->stop, 1);
		lws_cancel_service(loop->ctx);
	}
}

void tl_wsc_loop_stop(struct tl_ws_loop *loop)
{
	struct tl_ws_cell *cell, *next;
	struct tl_wsc_cmd cmd;

	loop_ask_stop(loop);
	if (loop->thread_started)
		pthread_join(loop->thread, NULL);
	loop->thread_started = 0;
	/* The thread is gone: lws is ours now. Fence off tl_ws_notify first. */
	atomic_store(&loop->dead, 1);
	while (atomic_load(&loop->in_notify))
		sched_yield();
	cell = atomic_exchange(&loop->ready, NULL);
	for (; cell; cell = next) {
		next = cell->next;
		tl_wsc_cell_unref(cell);
	}
	while (loop->cmdq && tl_queue_pop(loop->cmdq, &cmd))
		if (cmd.kind == TL_WSC_CMD_CONNECT)
			tl_wsc_free(cmd.conn);
	while (loop->conns)
		tl_wsc_kill(loop->conns);
	if (loop->evl) {
		ev_prepare_stop(loop->evl, &loop->prepare);
		ev_timer_stop(loop->evl, &loop->media_timer);
	}
	if (loop->ctx)
		lws_context_destroy(loop->ctx);
	loop->ctx = NULL;
	tl_wsc_rd_free_all(loop); /* lws's WSI_DESTROY freed them; any left over, before the loop */
	/* The media worker's watchers; streams freed later (tl_media_destroy, after every loop
	 * has stopped) unwatch nothing, and this struct may be gone by then. */
	if (loop->evl)
		tl_media_worker_host(loop->ws->media, loop->index, NULL, NULL);
	for (size_t fd = 0; fd < loop->n_mio; fd++)
		media_unwatch(loop, (int)fd);
	free(loop->mio);
	loop->mio = NULL;
	free(loop->tx);
	loop->tx = NULL;
	loop->tx_cap = 0;
	loop->n_mio = 0;
	if (loop->evl)
		ev_loop_destroy(loop->evl);
	loop->evl = NULL;
	for (size_t i = 0; i < sizeof(loop->ca_vhosts) / sizeof(loop->ca_vhosts[0]); i++) {
		free(loop->ca_vhosts[i].ca);
		loop->ca_vhosts[i].ca = NULL;
	}
	tl_queue_destroy(loop->cmdq);
	loop->cmdq = NULL;
}

void tl_wsc_loops_ask_stop(struct tl_ws *ws)
{
	for (unsigned i = 0; i < ws->n_loops; i++)
		loop_ask_stop(ws->loops[i]);
}
