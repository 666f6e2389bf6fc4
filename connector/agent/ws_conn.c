/* The agent WebSocket client: one thread runs a client-only lws_context for every call's agent
 * connection (ws.c: threads, queues, cells, set-up; this file: one connection's lws callbacks,
 * sending media events; what the agent sends is played by ws_recv.c). Message formats are in
 * ws_dialect.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/x509.h>

#include "trunkline/b64.h"
#include "trunkline/log.h"
#include "ws_int.h"

/* The opaque user data of a wsi whose close our WRITEABLE has started (returned -1 on): lws
 * sends the close frame and reads on until the agent's; it still calls WRITEABLE, which must
 * then return 0, since -1 cuts the socket at once and the RST can take the close frame (and
 * `stop`) from an agent that has not read them yet. Only the address is used. */
static char wsc_closing;

/* WRITEABLE of a wsi we are done with: lws closes it, politely when a close reason is set. */
static int close_started(struct lws *wsi)
{
	lws_set_opaque_user_data(wsi, &wsc_closing);
	return -1;
}

int64_t tl_wsc_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
	return tl_wsc_now_us() / 1000;
}

/* ---- connection life ---- */

/* The call's one terminal event, FAILED before `start` went out (the call is not answered yet)
 * or CLOSED after: the control thread forwards the call to the route's fallback. None once
 * tl_ws_close asked for the close, or after the first. */
void tl_wsc_end(struct tl_ws_conn *c, const char *why)
{
	if (c->ended)
		return;
	c->ended = 1;
	tl_wsc_emit(c, c->opened ? TL_WS_EV_CLOSED : TL_WS_EV_FAILED, why);
}

/* Drops the connection without a word: lws closes the socket on its next turn. */
void tl_wsc_kill(struct tl_ws_conn *c)
{
	if (c->wsi) {
		lws_set_opaque_user_data(c->wsi, NULL);
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		c->wsi = NULL;
	}
	tl_wsc_free(c);
}

/* Frees c now; its socket, detached, sends the close frame on its next WRITEABLE (our callback
 * returns -1 for a wsi without a connection) or is cut after the grace time. Open only. */
static void conn_drop(struct tl_ws_conn *c, enum lws_close_status code, const char *why)
{
	struct lws *wsi = c->wsi;

	lws_close_reason(wsi, code, (unsigned char *)why, strlen(why));
	lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, TL_WSC_CLOSE_GRACE);
	lws_callback_on_writable(wsi);
	tl_wsc_free(c);
}

static void on_connect_timeout(lws_sorted_usec_list_t *sul)
{
	struct tl_ws_conn *c = lws_container_of(sul, struct tl_ws_conn, sul_connect);

	tl_wsc_end(c, "connect timeout");
	tl_wsc_kill(c);
}

static void on_idle(lws_sorted_usec_list_t *sul)
{
	struct tl_ws_conn *c = lws_container_of(sul, struct tl_ws_conn, sul_idle);
	int64_t left = c->last_rx_ms + c->idle_timeout_ms - now_ms();

	if (left > 0) {
		lws_sul_schedule(c->loop->ctx, 0, &c->sul_idle, on_idle, left * LWS_US_PER_MS);
		return;
	}
	tl_wsc_end(c, "agent idle");
	conn_drop(c, LWS_CLOSE_STATUS_GOINGAWAY, "idle");
}

void tl_wsc_start(struct tl_ws_conn *c)
{
	struct tl_ws_loop *ws = c->loop;
	struct lws_client_connect_info i;
	struct lws *wsi;

	c->next = ws->conns;
	if (ws->conns)
		ws->conns->prev = c;
	ws->conns = c;
	c->linked = 1;
	c->cell->conn = c;

	memset(&i, 0, sizeof(i));
	i.context = ws->ctx;
	i.address = c->address;
	i.port = c->port;
	i.path = c->path;
	i.host = c->host;
	i.origin = c->host;
	i.ietf_version_or_minus_one = -1;
	i.local_protocol_name = "tl-agent";
	i.opaque_user_data = c;
	i.pwsi = &c->wsi;
	if (c->ssl)
		i.ssl_connection =
		    LCCSCF_USE_SSL |
		    (ws->insecure || c->insecure
		         ? LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
		               LCCSCF_ALLOW_EXPIRED
		         : 0);
	if (c->ssl && c->ca && !(i.vhost = tl_wsc_ca_vhost(ws, c->ca))) {
		tl_wsc_end(c, "cannot load the agent's CA file");
		tl_wsc_kill(c);
		return;
	}
	c->in_connect = 1;
	wsi = lws_client_connect_via_info(&i);
	c->in_connect = 0;
	if (!wsi || c->sync_failed) {
		c->wsi = c->wsi_gone ? NULL : wsi;
		tl_wsc_end(c, c->reason[0] ? c->reason : "cannot start connecting");
		tl_wsc_kill(c);
		return;
	}
	c->wsi = wsi;
	lws_sul_schedule(ws->ctx, 0, &c->sul_connect, on_connect_timeout,
	                 (lws_usec_t)c->connect_timeout_ms * LWS_US_PER_MS);
}

/* tl_ws_close on the WS thread. */
void tl_wsc_close(struct tl_ws_conn *c)
{
	if (c->state == TL_WSC_CLOSING || c->state == TL_WSC_REFUSING)
		return; /* closing already; REFUSING has sent its event, which the call ignores */
	if (c->state == TL_WSC_CONNECTING) {
		tl_wsc_kill(c);
		return;
	}
	c->state = TL_WSC_CLOSING;
	c->ended = 1;
	lws_sul_cancel(&c->sul_idle);
	lws_sul_cancel(&c->sul_play);
	/* If the socket never drains, lws cuts it and CLIENT_CLOSED frees us. */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, TL_WSC_CLOSE_GRACE);
	lws_callback_on_writable(c->wsi);
}

static void conn_failed(struct tl_ws_conn *c, struct lws *wsi, const char *why)
{
	snprintf(c->reason, sizeof(c->reason), "%s", why && *why ? why : "connection error");
	if (c->in_connect) {
		c->sync_failed = 1; /* tl_wsc_start reports it */
		return;
	}
	if (c->state != TL_WSC_CLOSING)
		tl_wsc_end(c, c->reason);
	tl_wsc_rd_release(c, 0);
	c->wsi = wsi; /* so that it is detached */
	tl_wsc_free(c);
}

/* The socket is gone (CLIENT_CLOSED or WSI_DESTROY) while we still held it. */
static void conn_gone(struct tl_ws_conn *c, struct lws *wsi)
{
	if (c->in_connect) {
		/* Destroyed inside lws_client_connect_via_info: tl_wsc_start reports and frees us
		 * once it returns, and must not touch the wsi, which is gone. */
		if (!c->reason[0])
			snprintf(c->reason, sizeof(c->reason), "connection lost while connecting");
		c->sync_failed = 1;
		c->wsi_gone = 1;
		return;
	}
	if (c->state != TL_WSC_CLOSING)
		tl_wsc_end(c, c->reason[0] ? c->reason : "connection lost");
	tl_wsc_rd_release(c, 0);
	c->wsi = wsi;
	tl_wsc_free(c);
}

static int conn_established(struct tl_ws_conn *c)
{
	const char *sndbuf = getenv("TL_WS_SNDBUF");

	lws_sul_cancel(&c->sul_connect);
	c->state = TL_WSC_OPEN;
	c->lws_out = 1; /* the first check asks lws */
	c->net_own = lws_get_network_wsi(c->wsi) == c->wsi;
	c->ring_fd =
	    c->loop->evl && !lws_is_ssl(c->wsi) && c->net_own ? (int)lws_get_socket_fd(c->wsi) : -1;
	c->last_rx_ms = now_ms();
	/* Tests: a send buffer this small (bytes) fills within a second of an agent that stops
	 * reading, instead of after tcp_wmem's 4 MB (test_agent_hostile's slow reader). */
	if (sndbuf && atoi(sndbuf) > 0) {
		int v = atoi(sndbuf);
		setsockopt(lws_get_socket_fd(c->wsi), SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	}
	tl_wsd_bucket_init(&c->ctl, TL_WSC_CTL_RATE, TL_WSC_CTL_BURST, tl_wsc_now_us());
	if (c->idle_timeout_ms > 0)
		lws_sul_schedule(c->loop->ctx, 0, &c->sul_idle, on_idle,
		                 (lws_usec_t)c->idle_timeout_ms * LWS_US_PER_MS);
	if (c->loop->evl && !c->loop->lws_rx_only)
		tl_wsc_rd_schedule(c); /* our reader takes the socket over next turn, if it can */
	lws_callback_on_writable(c->wsi);
	return 0;
}

static int add_headers(struct tl_ws_conn *c, unsigned char **p, size_t len)
{
	unsigned char *end = *p + len;
	const char *key;
	json_t *v;

	json_object_foreach(c->headers, key, v)
	{
		char name[128];
		const char *s = json_string_value(v);
		size_t k = strlen(key);

		if (!s || k + 2 > sizeof(name))
			continue;
		for (size_t j = 0; j < k; j++)
			name[j] = key[j] >= 'A' && key[j] <= 'Z' ? (char)(key[j] + 32) : key[j];
		name[k] = ':';
		name[k + 1] = '\0';
		if (lws_add_http_header_by_name(c->wsi, (const unsigned char *)name,
		                                (const unsigned char *)s, (int)strlen(s), p, end)) {
			snprintf(c->reason, sizeof(c->reason), "agent headers too long");
			return -1;
		}
	}
	return 0;
}

/* ---- sending ---- */

static void on_choked(lws_sorted_usec_list_t *sul)
{
	struct tl_ws_conn *c = lws_container_of(sul, struct tl_ws_conn, sul_choked);

	if (c->warned_choked)
		return;
	c->warned_choked = 1;
	tl_log_warn(c->d.call_sid,
	            "the agent has not read from its connection for over %d ms: caller audio for "
	            "it is being dropped (logged once per call)",
	            TL_WSC_CHOKED_WARN_MS);
}

/* Our send pipe to the agent is full (choked) or not: lws calls WRITEABLE again only once it
 * has drained, so a pipe choked for TL_WSC_CHOKED_WARN_MS means the agent stopped reading. */
static void set_choked(struct tl_ws_conn *c, int choked)
{
	if (!choked) {
		if (c->choked_since_ms)
			lws_sul_cancel(&c->sul_choked);
		c->choked_since_ms = 0;
	} else if (!c->choked_since_ms) {
		c->choked_since_ms = now_ms();
		lws_sul_schedule(c->loop->ctx, 0, &c->sul_choked, on_choked,
		                 (lws_usec_t)TL_WSC_CHOKED_WARN_MS * LWS_US_PER_MS);
	}
}

/* WRITEABLE while CLOSING (`stop`, then close 1000) or REFUSING (close with close_code): frees
 * c; lws sends the close frame and reads on, dropping what comes, until the agent's close. */
static int conn_finish(struct tl_ws_conn *c)
{
	struct lws *wsi = c->wsi;

	if (c->state == TL_WSC_REFUSING)
		lws_close_reason(wsi, c->close_code, (unsigned char *)c->close_why,
		                 strlen(c->close_why));
	else if (c->sent_start && tl_wsc_send(c, TL_WSC_MSG_STOP, NULL) == 0)
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
	c->blocked = c->turn_paused = 0;
	tl_wsc_rx_flow(c);
	tl_wsc_free(c);
	return close_started(wsi);
}

static int conn_writeable(struct tl_ws_conn *c)
{
	/* lws calls this once what it held has gone; a frame of ours still on the worker's batch
	 * may leave it holding some again: then the next WRITEABLE. */
	if (tl_wsc_buffered(c)) {
		lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (c->state == TL_WSC_CLOSING || c->state == TL_WSC_REFUSING)
		return conn_finish(c);
	set_choked(c, 0);
	if (!c->sent_connected) {
		c->sent_connected = 1;
		if (tl_wsc_send(c, TL_WSC_MSG_CONNECTED, NULL) < 0)
			return -1;
		lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (!c->sent_start) {
		c->sent_start = 1;
		if (tl_wsc_send(c, TL_WSC_MSG_START, NULL) < 0)
			return -1;
		/* Once per connection: the call's metadata and the handshake's headers are not
		 * needed again (about 1 KiB a call). */
		tl_wsd_started(&c->d);
		json_decref(c->headers);
		c->headers = NULL;
		c->opened = 1;
		tl_wsc_emit(c, TL_WS_EV_OPEN, NULL);
		lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (c->n_info_dtmf > 0) { /* digits the PBX sent by SIP INFO */
		char digit = c->info_dtmf[0];
		memmove(c->info_dtmf, c->info_dtmf + 1, --c->n_info_dtmf);
		if (tl_wsc_send(c, TL_WSC_MSG_DTMF, &digit) < 0)
			return -1;
		lws_callback_on_writable(c->wsi);
		return 0;
	}
	return tl_wsc_send_uplink(c);
}

/* Everything queued, while the socket takes it: a WRITEABLE (a poll round trip) per 20 ms frame
 * is what limited the first benchmark. Called from WRITEABLE, and directly from the loop's
 * wake-up (tl_wsc_cancelled) when nothing else is due first: no poll() round trip per frame.
 * lws buffers a partial write itself and lws_partial_buffered says so without a system call
 * (lws_send_pipe_choked polls the socket: two poll() per frame, measured); then WRITEABLE,
 * once lws has drained it, takes over. -1: the connection is broken (close it). */
int tl_wsc_send_uplink(struct tl_ws_conn *c)
{
	for (int sent = 0; sent < TL_WSC_WRITES_PER_CALLBACK;) {
		struct tl_media_event mev; /* sent before the next is taken: not kept a call */
		int err;

		/* Our last frame still on the worker's batch: asked first whether there is another,
		 * as tl_wsc_buffered would send the batch to find out (a sendmsg for each frame
		 * before: 263,000 in 5 s at 1000 calls, BENCHMARKS.md run Q). */
		if (c->ring_pending && !tl_media_stream_ready(c->stream)) {
			set_choked(c, 0);
			return 0;
		}
		if (tl_wsc_buffered(c)) {
			set_choked(c, 1);
			lws_callback_on_writable(c->wsi);
			return 0;
		}
		if (!tl_media_stream_poll(c->stream, &mev)) {
			set_choked(c, 0);
			return 0; /* the stream's notify wakes us for the next one */
		}
		if (mev.kind == TL_MEDIA_EV_AUDIO) {
			err = tl_wsc_send(c, TL_WSC_MSG_MEDIA, &mev);
		} else if (mev.kind == TL_MEDIA_EV_DTMF) {
			err = tl_wsc_send(c, TL_WSC_MSG_DTMF, &mev.digit);
		} else if (mev.kind == TL_MEDIA_EV_MARK) {
			char *name = tl_wsd_marks_pop(&c->marks, mev.mark);
			if (!name)
				continue;
			err = tl_wsc_send(c, TL_WSC_MSG_MARK, name);
			free(name);
		} else {
			continue;
		}
		if (err < 0)
			return -1;
		sent++;
	}
	lws_callback_on_writable(c->wsi); /* more may be queued: let other connections go first */
	return 0;
}

/* ---- lws ---- */

int tl_wsc_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
	struct tl_ws_conn *c;

	if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
		tl_wsc_cancelled(lws_context_user(lws_get_context(wsi)));
		return 0;
	}
	c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
	if (c == (void *)&wsc_closing) {
		if (reason == LWS_CALLBACK_CLIENT_WRITEABLE ||
		    reason == LWS_CALLBACK_CLIENT_RECEIVE)
			return 0;
		c = NULL;
	}
	switch (reason) {
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		return c ? add_headers(c, in, len) : -1;
	case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
		/* "tls_verify": false: lws's flags forgive only self-signed and expired
		 * certificates; an unknown issuer is forgiven here (0 = accept). */
		if (c && (c->insecure || c->loop->insecure))
			X509_STORE_CTX_set_error(user, X509_V_OK);
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (c)
			conn_failed(c, wsi, in);
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		return c ? conn_established(c) : -1;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		/* A detached wsi may be mid-frame: drop, never -1 here (see tl_wsc_rx). */
		if (c) {
			size_t more = lws_remaining_packet_payload(wsi);

			c->rx_via_lws = 1;
			tl_wsc_rx(c, in, len, lws_frame_is_binary(wsi), more,
			          lws_is_final_fragment(wsi) && more == 0);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return c ? conn_writeable(c) : close_started(wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (c)
			tl_wsc_peer_closed(c, in, len);
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
	case LWS_CALLBACK_WSI_DESTROY:
		/* A frame of ours still queued names this socket: out before lws closes it. */
		if (c && c->ring_pending)
			tl_wsc_ring_flush(c->loop);
		if (c)
			conn_gone(c, wsi);
		else /* before lws closes the descriptor: our reader's watcher goes first */
			tl_wsc_rd_wsi_gone(lws_context_user(lws_get_context(wsi)), wsi);
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}
