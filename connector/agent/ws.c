/* The agent WebSocket client: agent.threads loops (ws_loop.c), each a thread with its own
 * client-only lws_context, carry the calls' agent connections and move audio between the socket
 * and the call's media stream. Each call is placed on the least-loaded loop when its cell is
 * made, and everything for it goes there: the control thread's commands through that loop's
 * bounded queue woken by lws_cancel_service(), the media workers' wake-ups through per-call
 * cells on that loop's lock-free stack. Events come back through one bounded event queue +
 * eventfd shared by the loops (trunkline/queue.h: many producers, one consumer).
 * Per-connection I/O is ws_conn.c and ws_recv.c, message formats ws_dialect.c. */
#include "trunkline/ws.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "trunkline/log.h"
#include "ws_int.h"

/* ---- shell and cells ---- */

static void ws_unref(struct tl_ws *ws)
{
	if (atomic_fetch_sub_explicit(&ws->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned i = 0; ws->loops && i < ws->n_loops; i++)
		free(ws->loops[i]);
	free(ws->loops);
	free(ws);
}

void tl_wsc_cell_unref(struct tl_ws_cell *cell)
{
	struct tl_ws *ws = cell->loop->ws;

	if (atomic_fetch_sub_explicit(&cell->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(cell);
	ws_unref(ws);
}

/* Least loaded: the loop carrying the fewest connections; among equals, the first from where
 * the last search left off, so that calls set up in a row alternate. */
static struct tl_ws_loop *pick_loop(struct tl_ws *ws)
{
	unsigned best = ws->next % ws->n_loops, best_live = UINT32_MAX;

	for (unsigned k = 0; k < ws->n_loops; k++) {
		unsigned i = (ws->next + k) % ws->n_loops;
		unsigned live = atomic_load_explicit(&ws->loops[i]->live, memory_order_relaxed);
		if (live < best_live) {
			best = i;
			best_live = live;
		}
	}
	ws->next = best + 1;
	return ws->loops[best];
}

int tl_ws_cell_create(struct tl_ws *ws, uint64_t call, void **out)
{
	struct tl_ws_cell *cell = calloc(1, sizeof(*cell));

	if (!cell)
		return -ENOMEM;
	cell->loop = pick_loop(ws);
	cell->call = call;
	atomic_init(&cell->refs, 1);
	atomic_init(&cell->queued, 0);
	atomic_fetch_add_explicit(&ws->refs, 1, memory_order_relaxed);
	*out = cell;
	return 0;
}

void tl_ws_notify(void *arg)
{
	struct tl_ws_cell *cell = arg, *old;
	struct tl_ws_loop *ws = cell->loop;

	if (atomic_exchange_explicit(&cell->queued, 1, memory_order_acq_rel))
		return;
	/* in_notify and dead pair up (seq_cst) so tl_ws_destroy never frees the context under
	 * us and never misses a cell we pushed. */
	atomic_fetch_add(&ws->in_notify, 1);
	if (!atomic_load(&ws->dead)) {
		atomic_fetch_add_explicit(&cell->refs, 1, memory_order_relaxed);
		old = atomic_load_explicit(&ws->ready, memory_order_relaxed);
		do
			cell->next = old;
		while (!atomic_compare_exchange_weak_explicit(
		    &ws->ready, &old, cell, memory_order_release, memory_order_relaxed));
		/* Otherwise a wake-up is already on its way; and none on the loop's own thread
		 * (hosted), which looks at the cells after the media worker's turn. */
		if (!old && !tl_wsc_on_loop(ws))
			lws_cancel_service(ws->ctx);
	}
	atomic_fetch_sub(&ws->in_notify, 1);
}

void tl_ws_notify_release(void *arg)
{
	if (arg)
		tl_wsc_cell_unref(arg);
}

/* ---- events to the control thread ---- */

void tl_wsc_emit(struct tl_ws_conn *c, enum tl_ws_event_kind kind, const char *text)
{
	struct tl_ws_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = kind;
	ev.call = c->call;
	if (kind == TL_WS_EV_TRANSFER)
		snprintf(ev.target, sizeof(ev.target), "%s", text ? text : "");
	else if (text)
		snprintf(ev.reason, sizeof(ev.reason), "%s", text);
	if (tl_queue_push(c->loop->ws->evq, &ev, TL_QUEUE_URGENT) < 0)
		tl_log_error(c->d.call_sid, "agent event lost: the event queue is full");
}

void tl_ws_bytes(const struct tl_ws *ws, uint64_t *sent, uint64_t *received)
{
	*sent = *received = 0;
	for (unsigned i = 0; i < ws->n_loops; i++) {
		*sent += atomic_load_explicit(&ws->loops[i]->tx_bytes, memory_order_relaxed);
		*received += atomic_load_explicit(&ws->loops[i]->rx_bytes, memory_order_relaxed);
	}
}

unsigned tl_ws_loops(const struct tl_ws *ws)
{
	return ws ? ws->n_loops : 0;
}

unsigned tl_ws_loop_connections(const struct tl_ws *ws, unsigned loop)
{
	if (!ws || loop >= ws->n_loops)
		return 0;
	return atomic_load_explicit(&ws->loops[loop]->live, memory_order_relaxed);
}

unsigned tl_ws_default_threads(unsigned media_workers)
{
	cpu_set_t set;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n;

	/* The CPUs we may run on (taskset, cpusets), else the online ones. */
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		cpus = CPU_COUNT(&set);
	n = cpus > 0 ? (unsigned)cpus : 1;

	if (n > TL_WS_THREADS_DEFAULT_MAX)
		n = TL_WS_THREADS_DEFAULT_MAX;
	if (media_workers && n > 2 * media_workers)
		n = 2 * media_workers;
	return n ? n : 1;
}

int tl_ws_event_fd(const struct tl_ws *ws)
{
	return ws->efd;
}

int tl_ws_drain(struct tl_ws *ws, void (*cb)(void *arg, const struct tl_ws_event *ev), void *arg)
{
	struct tl_ws_event ev;
	uint64_t v;
	int count = 0;

	if (read(ws->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	while (ws->evq && tl_queue_pop(ws->evq, &ev)) {
		if (cb)
			cb(arg, &ev);
		count++;
	}
	return count;
}

/* ---- buffers ---- */

int tl_wsc_grow(unsigned char **buf, size_t *cap, size_t need, size_t extra)
{
	size_t n = *cap ? *cap : 512; /* a 20 ms µ-law frame's message fits */
	unsigned char *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	p = realloc(*buf, n + extra);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

/* ---- connections: setting up and freeing ---- */

void tl_wsc_free(struct tl_ws_conn *c)
{
	struct tl_ws_loop *ws = c->loop;

	if (c->ring_pending) /* before the socket closes and before c is gone */
		tl_wsc_ring_flush(c->loop);
	if (c->wsi)
		lws_set_opaque_user_data(c->wsi, NULL);
	tl_wsc_rd_release(c, c->wsi != NULL); /* polite close: it reads on for the agent's close */
	tl_wsc_rd_unlist(c);
	lws_sul_cancel(&c->sul_connect);
	lws_sul_cancel(&c->sul_idle);
	lws_sul_cancel(&c->sul_play);
	lws_sul_cancel(&c->sul_turn);
	lws_sul_cancel(&c->sul_choked);
	if (c->linked) {
		if (c->prev)
			c->prev->next = c->next;
		else
			ws->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		if (ws->shutting_down && !ws->conns)
			ws->quit = 1;
	}
	if (c->st_bad || c->st_marks_refused || c->st_audio_dropped || c->st_ctl_dropped)
		tl_log_info(
		    c->d.call_sid,
		    "agent connection: %llu bad messages, %llu marks refused, %llu bytes of "
		    "agent audio dropped, %llu control messages dropped (over the rate)",
		    (unsigned long long)c->st_bad, (unsigned long long)c->st_marks_refused,
		    (unsigned long long)c->st_audio_dropped, (unsigned long long)c->st_ctl_dropped);
	if (c->cell) {
		c->cell->conn = NULL;
		tl_wsc_cell_unref(c->cell);
	}
	if (c->counted)
		atomic_fetch_sub_explicit(&ws->live, 1, memory_order_relaxed);
	if (c->stream)
		tl_media_stream_unref(c->stream);
	tl_wsd_marks_reset(&c->marks);
	tl_wsd_fini(&c->d);
	json_decref(c->headers);
	free(c->ca);
	free(c->url);
	free(c->path);
	free(c->host);
	free(c->rx);
	free(c->dec);
	free(c->bl);
	free(c);
}

/* Splits the agent URL; lws_parse_uri cuts c->url in place. */
static int conn_parse_url(struct tl_ws_conn *c, const char *url)
{
	const char *prot, *path;
	size_t n;

	c->url = strdup(url);
	if (!c->url)
		return -ENOMEM;
	if (lws_parse_uri(c->url, &prot, &c->address, &c->port, &path) || !*c->address)
		return -EINVAL;
	if (strcmp(prot, "wss") == 0)
		c->ssl = 1;
	else if (strcmp(prot, "ws") != 0)
		return -EINVAL;
	n = strlen(path) + 2;
	c->path = malloc(n);
	n = strlen(c->address) + 16;
	c->host = malloc(n);
	if (!c->path || !c->host)
		return -ENOMEM;
	snprintf(c->path, strlen(path) + 2, "/%s", path);
	if (c->port == (c->ssl ? 443 : 80))
		snprintf(c->host, n, strchr(c->address, ':') ? "[%s]" : "%s", c->address);
	else
		snprintf(c->host, n, strchr(c->address, ':') ? "[%s]:%d" : "%s:%d", c->address,
		         c->port);
	return 0;
}

static int conn_new(struct tl_ws_conn **out, struct tl_ws_loop *loop,
                    const struct tl_ws_conn_params *p)
{
	const struct tl_agent *a = p->agent;
	/* Aligned to a cache line: its fields are grouped by use (ws_int.h). */
	struct tl_ws_conn *c = aligned_alloc(_Alignof(struct tl_ws_conn), sizeof(*c));
	int err;

	if (!c)
		return -ENOMEM;
	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->ring_fd = -1;
	c->lws_out = 1;
	c->call = p->call;
	c->connect_timeout_ms = a->connect_timeout_ms > 0 ? a->connect_timeout_ms : 1500;
	c->idle_timeout_ms = a->idle_timeout_ms;
	err = tl_wsd_init(&c->d, a->dialect, a->sample_rate, p->call_sid, p->stream_sid,
	                  p->meta_json);
	if (err < 0)
		goto out;
	if (p->account_sid)
		snprintf(c->d.account_sid, sizeof(c->d.account_sid), "%s", p->account_sid);
	c->d.codec = p->codec;
	err = conn_parse_url(c, a->url);
	if (err < 0)
		goto out;
	c->headers = a->headers ? json_deep_copy(a->headers) : json_object();
	c->insecure = a->tls_insecure;
	c->ca = a->ca ? strdup(a->ca) : NULL;
	err = -ENOMEM;
	if (!c->headers || (a->ca && !c->ca))
		goto out;
	*out = c;
	return 0;
out:
	tl_wsc_free(c);
	return err;
}

int tl_ws_connect(struct tl_ws *ws, const struct tl_ws_conn_params *p)
{
	struct tl_ws_conn *c;
	struct tl_ws_loop *loop;
	struct tl_wsc_cmd cmd = {.kind = TL_WSC_CMD_CONNECT};
	int err;

	if (!ws || !p || !p->cell || !p->agent || !p->agent->url || !p->stream)
		return -EINVAL;
	loop = ((struct tl_ws_cell *)p->cell)->loop;
	if (loop->ws != ws)
		return -EINVAL;
	err = conn_new(&c, loop, p);
	if (err < 0) {
		tl_log_warn(p->call_sid, "agent URL \"%s\" or call data unusable: %s",
		            p->agent->url, strerror(-err));
		return err;
	}
	c->cell = p->cell;
	atomic_fetch_add_explicit(&c->cell->refs, 1, memory_order_relaxed);
	c->stream = p->stream;
	tl_media_stream_ref(c->stream);
	c->counted = 1;
	atomic_fetch_add_explicit(&loop->live, 1, memory_order_relaxed);
	cmd.call = p->call;
	cmd.conn = c;
	err = tl_queue_push(loop->cmdq, &cmd, 0);
	if (err < 0) {
		tl_log_warn(p->call_sid, "agent connection not started: command queue full");
		tl_wsc_free(c); /* drops the cell's and the stream's references taken above */
		return err;
	}
	return (int)loop->index;
}

/* A close is urgent: the queue keeps room for one per call, so it is never refused. */
static void post_cmd(struct tl_ws *ws, unsigned loop, enum tl_wsc_cmd_kind kind, uint64_t call,
                     char digit)
{
	struct tl_wsc_cmd cmd = {.kind = kind, .call = call, .digit = digit};

	if (!ws || loop >= ws->n_loops)
		return;
	if (tl_queue_push(ws->loops[loop]->cmdq, &cmd,
	                  kind == TL_WSC_CMD_CLOSE ? TL_QUEUE_URGENT : 0) < 0)
		tl_log_warn(NULL, "agent %s for call %llu dropped: command queue full",
		            kind == TL_WSC_CMD_CLOSE ? "close" : "DTMF", (unsigned long long)call);
}

void tl_ws_close(struct tl_ws *ws, unsigned loop, uint64_t call)
{
	post_cmd(ws, loop, TL_WSC_CMD_CLOSE, call, 0);
}

void tl_ws_dtmf(struct tl_ws *ws, unsigned loop, uint64_t call, char digit)
{
	post_cmd(ws, loop, TL_WSC_CMD_DTMF, call, digit);
}

/* ---- the client ---- */

static void lws_log_emit(int level, const char *line)
{
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (level == LLL_ERR)
		tl_log_warn(NULL, "libwebsockets: %.*s", (int)n, line);
	else
		tl_log_debug(NULL, "libwebsockets: %.*s", (int)n, line);
}

int tl_ws_cell_worker(const void *cell)
{
	const struct tl_ws_loop *loop = ((const struct tl_ws_cell *)cell)->loop;

	return loop->ws->media ? (int)loop->index : -1;
}

static int ws_create(struct tl_ws **out, unsigned max_calls, unsigned threads,
                     struct tl_media *media)
{
	const char *insecure = getenv("TL_WS_INSECURE");
	struct tl_ws *ws = calloc(1, sizeof(*ws));
	int err = -ENOMEM;

	if (!ws)
		return -ENOMEM;
	atomic_init(&ws->refs, 1);
	ws->max_calls = max_calls ? max_calls : 1000;
	ws->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ws->efd < 0) {
		err = -errno;
		goto out;
	}
	/* Events: at most three per connection, connections at most two per call (one closing
	 * while the next call's opens), whichever loop they are on. */
	err = tl_queue_create(&ws->evq, sizeof(struct tl_ws_event), 6 * ws->max_calls + 64, 0,
	                      tl_queue_eventfd_wake, &ws->efd);
	if (err < 0)
		goto out;
	err = -ENOMEM;
	ws->loops = calloc(threads ? threads : 1, sizeof(*ws->loops));
	if (!ws->loops)
		goto out;
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
	ws->media = media;
	for (unsigned i = 0; i < (threads ? threads : 1); i++) {
		struct tl_ws_loop *loop = calloc(1, sizeof(*loop));
		if (!loop) {
			err = -ENOMEM;
			goto out;
		}
		loop->ws = ws;
		loop->index = i;
		loop->insecure = insecure && strcmp(insecure, "1") == 0;
		ws->loops[ws->n_loops++] = loop;
		err = tl_wsc_loop_start(loop);
		if (err < 0)
			goto out;
	}
	if (insecure && strcmp(insecure, "1") == 0)
		tl_log_warn(NULL, "TL_WS_INSECURE=1: agent TLS certificates are not checked");
	*out = ws;
	return 0;
out:
	tl_ws_destroy(ws);
	return err;
}

int tl_ws_create(struct tl_ws **out, unsigned max_calls, unsigned threads)
{
	return ws_create(out, max_calls, threads, NULL);
}

int tl_ws_create_hosted(struct tl_ws **out, unsigned max_calls, struct tl_media *media)
{
	return ws_create(out, max_calls, tl_media_workers(media), media);
}

void tl_ws_destroy(struct tl_ws *ws)
{
	if (!ws)
		return;
	tl_wsc_loops_ask_stop(ws); /* all at once: they close their calls in parallel */
	for (unsigned i = ws->n_loops; i-- > 0;) /* loop 0 last: see tl_wsc_loop_start */
		tl_wsc_loop_stop(ws->loops[i]);
	tl_ws_drain(ws, NULL, NULL);
	if (ws->efd >= 0)
		close(ws->efd);
	tl_queue_destroy(ws->evq);
	ws_unref(ws);
}
