/* The agent WebSocket client: one thread runs a client-only lws_context for every call's agent
 * connection and moves audio between the socket and the call's media stream. The control
 * thread talks to it through a bounded command queue woken by lws_cancel_service(), and hears
 * back through a bounded event queue + eventfd (both trunkline/queue.h); media workers wake it
 * through per-call cells on a lock-free stack.
 * Per-connection I/O is ws_conn.c, message formats ws_dialect.c. */
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
	if (atomic_fetch_sub_explicit(&ws->refs, 1, memory_order_acq_rel) == 1)
		free(ws);
}

static void cell_unref(struct tl_ws_cell *cell)
{
	struct tl_ws *ws = cell->ws;

	if (atomic_fetch_sub_explicit(&cell->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(cell);
	ws_unref(ws);
}

int tl_ws_cell_create(struct tl_ws *ws, uint64_t call, void **out)
{
	struct tl_ws_cell *cell = calloc(1, sizeof(*cell));

	if (!cell)
		return -ENOMEM;
	cell->ws = ws;
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
	struct tl_ws *ws = cell->ws;

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
		if (!old) /* otherwise a wake-up is already on its way */
			lws_cancel_service(ws->ctx);
	}
	atomic_fetch_sub(&ws->in_notify, 1);
}

void tl_ws_notify_release(void *arg)
{
	if (arg)
		cell_unref(arg);
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
	if (tl_queue_push(c->ws->evq, &ev, TL_QUEUE_URGENT) < 0)
		tl_log_error(c->d.call_sid, "agent event lost: the event queue is full");
}

void tl_ws_bytes(const struct tl_ws *ws, uint64_t *sent, uint64_t *received)
{
	*sent = atomic_load_explicit(&ws->tx_bytes, memory_order_relaxed);
	*received = atomic_load_explicit(&ws->rx_bytes, memory_order_relaxed);
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

/* ---- the WS thread ---- */

static struct tl_ws_conn *conn_by_call(struct tl_ws *ws, uint64_t call)
{
	for (struct tl_ws_conn *c = ws->conns; c; c = c->next)
		if (c->call == call)
			return c;
	return NULL;
}

static void on_shutdown_deadline(lws_sorted_usec_list_t *sul)
{
	struct tl_ws *ws = lws_container_of(sul, struct tl_ws, sul_shutdown);

	ws->quit = 1;
}

void tl_wsc_cancelled(struct tl_ws *ws)
{
	struct tl_ws_cell *cell, *next;
	struct tl_wsc_cmd cmd;
	struct tl_ws_conn *c, *cn;

	/* Until empty: the queue wakes us again only after it has been seen empty. */
	while (tl_queue_pop(ws->cmdq, &cmd)) {
		if (cmd.kind == TL_WSC_CMD_CONNECT)
			tl_wsc_start(cmd.conn);
		else if (!(c = conn_by_call(ws, cmd.call)))
			;
		else if (cmd.kind == TL_WSC_CMD_CLOSE)
			tl_wsc_close(c);
		else if (c->n_info_dtmf < sizeof(c->info_dtmf)) {
			c->info_dtmf[c->n_info_dtmf++] = cmd.digit;
			if (c->state == TL_WSC_OPEN && c->sent_start)
				lws_callback_on_writable(c->wsi);
		}
	}

	cell = atomic_exchange_explicit(&ws->ready, NULL, memory_order_acquire);
	for (; cell; cell = next) {
		next = cell->next;
		atomic_store_explicit(&cell->queued, 0, memory_order_seq_cst);
		c = cell->conn;
		if (c && c->state == TL_WSC_OPEN && c->sent_start)
			lws_callback_on_writable(c->wsi);
		cell_unref(cell);
	}

	if (atomic_load(&ws->stop) && !ws->shutting_down) {
		ws->shutting_down = 1;
		for (c = ws->conns; c; c = cn) {
			cn = c->next;
			tl_wsc_close(c);
		}
		if (!ws->conns)
			ws->quit = 1;
		lws_sul_schedule(ws->ctx, 0, &ws->sul_shutdown, on_shutdown_deadline,
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

struct lws_vhost *tl_wsc_ca_vhost(struct tl_ws *ws, const char *ca)
{
	struct lws_context_creation_info info;
	size_t i, n = sizeof(ws->ca_vhosts) / sizeof(ws->ca_vhosts[0]);
	char name[32];

	for (i = 0; i < n && ws->ca_vhosts[i].ca; i++)
		if (strcmp(ws->ca_vhosts[i].ca, ca) == 0)
			return ws->ca_vhosts[i].vh;
	if (i == n || !(ws->ca_vhosts[i].ca = strdup(ca)))
		return NULL;
	memset(&info, 0, sizeof(info));
	snprintf(name, sizeof(name), "ca%zu", i);
	info.vhost_name = name;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.client_ssl_ca_filepath = ca;
	ws->ca_vhosts[i].vh = lws_create_vhost(ws->ctx, &info);
	if (!ws->ca_vhosts[i].vh)
		tl_log_warn(NULL, "agent CA %s: cannot make a TLS client context with it", ca);
	return ws->ca_vhosts[i].vh;
}

static void *ws_main(void *arg)
{
	struct tl_ws *ws = arg;

	while (!ws->quit) {
		ws->turn++;
		if (lws_service(ws->ctx, 0) < 0)
			usleep(10000); /* not expected; do not spin */
	}
	return NULL;
}

/* ---- connections: setting up and freeing ---- */

void tl_wsc_free(struct tl_ws_conn *c)
{
	struct tl_ws *ws = c->ws;

	if (c->wsi)
		lws_set_opaque_user_data(c->wsi, NULL);
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
		cell_unref(c->cell);
	}
	if (c->stream)
		tl_media_stream_unref(c->stream);
	tl_wsd_marks_reset(&c->marks);
	tl_wsd_fini(&c->d);
	json_decref(c->headers);
	free(c->ca);
	free(c->url);
	free(c->path);
	free(c->host);
	free(c->tx);
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

static int conn_new(struct tl_ws_conn **out, struct tl_ws *ws, const struct tl_ws_conn_params *p)
{
	const struct tl_agent *a = p->agent;
	struct tl_ws_conn *c = calloc(1, sizeof(*c));
	int err;

	if (!c)
		return -ENOMEM;
	c->ws = ws;
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
	/* Room for this call's 20 ms frame (µ-law, or L16 at the native rate); anything longer
	 * grows it once (ws_conn.c). */
	if (tl_wsc_grow(&c->tx, &c->tx_cap,
	                tl_wsd_media_max(&c->d, c->d.dialect == TL_DIALECT_NATIVE
	                                            ? (size_t)c->d.sample_rate / 50 * 2
	                                            : 160),
	                LWS_PRE) < 0)
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
	struct tl_wsc_cmd cmd = {.kind = TL_WSC_CMD_CONNECT};
	int err;

	if (!ws || !p || !p->cell || !p->agent || !p->agent->url || !p->stream)
		return -EINVAL;
	err = conn_new(&c, ws, p);
	if (err < 0) {
		tl_log_warn(p->call_sid, "agent URL \"%s\" or call data unusable: %s",
		            p->agent->url, strerror(-err));
		return err;
	}
	c->cell = p->cell;
	atomic_fetch_add_explicit(&c->cell->refs, 1, memory_order_relaxed);
	c->stream = p->stream;
	tl_media_stream_ref(c->stream);
	cmd.call = p->call;
	cmd.conn = c;
	err = tl_queue_push(ws->cmdq, &cmd, 0);
	if (err < 0) {
		tl_log_warn(p->call_sid, "agent connection not started: command queue full");
		tl_wsc_free(c); /* drops the cell's and the stream's references taken above */
		return err;
	}
	return 0;
}

/* A close is urgent: the queue keeps room for one per call, so it is never refused. */
static void post_cmd(struct tl_ws *ws, enum tl_wsc_cmd_kind kind, uint64_t call, char digit)
{
	struct tl_wsc_cmd cmd = {.kind = kind, .call = call, .digit = digit};

	if (!ws)
		return;
	if (tl_queue_push(ws->cmdq, &cmd, kind == TL_WSC_CMD_CLOSE ? TL_QUEUE_URGENT : 0) < 0)
		tl_log_warn(NULL, "agent %s for call %llu dropped: command queue full",
		            kind == TL_WSC_CMD_CLOSE ? "close" : "DTMF", (unsigned long long)call);
}

static void wake_ws(void *arg)
{
	struct tl_ws *ws = arg;

	lws_cancel_service(ws->ctx);
}

void tl_ws_close(struct tl_ws *ws, uint64_t call)
{
	post_cmd(ws, TL_WSC_CMD_CLOSE, call, 0);
}

void tl_ws_dtmf(struct tl_ws *ws, uint64_t call, char digit)
{
	post_cmd(ws, TL_WSC_CMD_DTMF, call, digit);
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

int tl_ws_create(struct tl_ws **out, unsigned max_calls)
{
	struct lws_context_creation_info info;
	const char *insecure = getenv("TL_WS_INSECURE");
	struct tl_ws *ws = calloc(1, sizeof(*ws));
	int err = -ENOMEM;

	if (!ws)
		return -ENOMEM;
	atomic_init(&ws->refs, 1);
	ws->max_calls = max_calls ? max_calls : 1000;
	ws->insecure = insecure && strcmp(insecure, "1") == 0;
	ws->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ws->efd < 0) {
		err = -errno;
		goto out;
	}
	/* Commands per call: connect and DTMF (ordinary), one close (urgent, in the reserve).
	 * Events: at most three per connection, connections at most two per call (one closing
	 * while the next call's opens). */
	err = tl_queue_create(&ws->cmdq, sizeof(struct tl_wsc_cmd), 2 * ws->max_calls + 256,
	                      ws->max_calls + 16, wake_ws, ws);
	if (err == 0)
		err = tl_queue_create(&ws->evq, sizeof(struct tl_ws_event), 6 * ws->max_calls + 64,
		                      0, tl_queue_eventfd_wake, &ws->efd);
	if (err < 0)
		goto out;
	err = -ENOMEM;
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.user = ws;
	info.uid = -1;
	info.gid = -1;
	ws->ctx = lws_create_context(&info);
	if (!ws->ctx) {
		err = -EIO;
		goto out;
	}
	err = -pthread_create(&ws->thread, NULL, ws_main, ws);
	if (err)
		goto out;
	ws->thread_started = 1;
	if (ws->insecure)
		tl_log_warn(NULL, "TL_WS_INSECURE=1: agent TLS certificates are not checked");
	*out = ws;
	return 0;
out:
	tl_ws_destroy(ws);
	return err;
}

void tl_ws_destroy(struct tl_ws *ws)
{
	struct tl_ws_cell *cell, *next;
	struct tl_wsc_cmd cmd;

	if (!ws)
		return;
	if (ws->thread_started) {
		atomic_store(&ws->stop, 1);
		lws_cancel_service(ws->ctx);
		pthread_join(ws->thread, NULL);
	}
	/* The WS thread is gone: lws is ours now. Fence off tl_ws_notify first. */
	atomic_store(&ws->dead, 1);
	while (atomic_load(&ws->in_notify))
		sched_yield();
	cell = atomic_exchange(&ws->ready, NULL);
	for (; cell; cell = next) {
		next = cell->next;
		cell_unref(cell);
	}
	while (ws->cmdq && tl_queue_pop(ws->cmdq, &cmd))
		if (cmd.kind == TL_WSC_CMD_CONNECT)
			tl_wsc_free(cmd.conn);
	while (ws->conns)
		tl_wsc_kill(ws->conns);
	if (ws->ctx)
		lws_context_destroy(ws->ctx);
	for (size_t i = 0; i < sizeof(ws->ca_vhosts) / sizeof(ws->ca_vhosts[0]); i++)
		free(ws->ca_vhosts[i].ca);
	tl_ws_drain(ws, NULL, NULL);
	if (ws->efd >= 0)
		close(ws->efd);
	tl_queue_destroy(ws->cmdq);
	tl_queue_destroy(ws->evq);
	ws_unref(ws);
}
