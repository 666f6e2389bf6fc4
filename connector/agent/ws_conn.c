/* The agent WebSocket client: one thread runs a client-only lws_context for every call's agent
 * connection (ws.c: threads, queues, cells, set-up; this file: one connection's lws callbacks,
 * sending media events and playing agent messages). Message formats are in ws_dialect.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "trunkline/b64.h"
#include "trunkline/log.h"
#include "ws_int.h"

static int conn_msg(struct tl_ws_conn *c, int binary, const unsigned char *data, size_t len);
static void rx_flow(struct tl_ws_conn *c);

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

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
	return now_us() / 1000;
}

/* ---- connection life ---- */

/* The call's one terminal event, FAILED before `start` went out (the call is not answered yet)
 * or CLOSED after: the control thread forwards the call to the route's fallback. None once
 * tl_ws_close asked for the close, or after the first. */
static void conn_end(struct tl_ws_conn *c, const char *why)
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

	conn_end(c, "connect timeout");
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
	conn_end(c, "agent idle");
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
		conn_end(c, "cannot load the agent's CA file");
		tl_wsc_kill(c);
		return;
	}
	c->in_connect = 1;
	wsi = lws_client_connect_via_info(&i);
	c->in_connect = 0;
	if (!wsi || c->sync_failed) {
		c->wsi = c->wsi_gone ? NULL : wsi;
		conn_end(c, c->reason[0] ? c->reason : "cannot start connecting");
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
		conn_end(c, c->reason);
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
		conn_end(c, c->reason[0] ? c->reason : "connection lost");
	tl_wsc_rd_release(c, 0);
	c->wsi = wsi;
	tl_wsc_free(c);
}

static int conn_established(struct tl_ws_conn *c)
{
	lws_sul_cancel(&c->sul_connect);
	c->state = TL_WSC_OPEN;
	c->last_rx_ms = now_ms();
	tl_wsd_bucket_init(&c->ctl, TL_WSC_CTL_RATE, TL_WSC_CTL_BURST, now_us());
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
	rx_flow(c);
	tl_wsc_free(c);
	return close_started(wsi);
}

static int conn_writeable(struct tl_ws_conn *c)
{
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

		if (lws_partial_buffered(c->wsi)) {
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

/* ---- receiving ---- */

static int dec_room(struct tl_ws_conn *c, size_t n)
{
	return tl_wsc_grow(&c->dec, &c->dec_cap, n, 0);
}

/* Pauses or resumes the agent's rx: paused while the playout queue is full (blocked) or the
 * connection has had its share of this loop turn (turn_paused). */
static void rx_flow(struct tl_ws_conn *c)
{
	int pause = c->blocked || c->turn_paused;

	if (pause == (int)c->rx_paused)
		return;
	c->rx_paused = (unsigned)pause;
	if (c->rd)
		tl_wsc_rd_pause(c->rd, pause);
	else
		lws_rx_flow_control(c->wsi, !pause);
}

/* Plays c->dec; on a full playout queue keeps it, pauses rx and retries. 1 when blocked. */
static void on_play_retry(lws_sorted_usec_list_t *sul);

static int play(struct tl_ws_conn *c)
{
	/* In pieces, so a message longer than the whole playout bound still gets through. */
	while (c->dec_off < c->dec_len) {
		size_t n = c->dec_len - c->dec_off;
		int r;

		if (n > TL_WSC_PLAY_CHUNK)
			n = TL_WSC_PLAY_CHUNK;
		r = tl_media_stream_play(c->stream, c->dec + c->dec_off, n);
		if (r == -ENOSPC) {
			c->blocked = 1;
			rx_flow(c);
			lws_sul_schedule(c->loop->ctx, 0, &c->sul_play, on_play_retry,
			                 TL_WSC_PLAY_RETRY);
			return 1;
		}
		if (r < 0)
			c->st_audio_dropped += n;
		c->dec_off += n;
	}
	c->dec_len = c->dec_off = 0;
	return 0;
}

static void on_play_retry(lws_sorted_usec_list_t *sul)
{
	struct tl_ws_conn *c = lws_container_of(sul, struct tl_ws_conn, sul_play);

	if (play(c))
		return;
	while (c->bl_off < c->bl_len) {
		uint32_t len;
		int binary;

		memcpy(&len, c->bl + c->bl_off, sizeof(len));
		binary = c->bl[c->bl_off + sizeof(len)];
		c->bl_off += sizeof(len) + 1 + len;
		if (conn_msg(c, binary, c->bl + c->bl_off - len, len))
			return; /* blocked again: still paused */
	}
	c->bl_len = c->bl_off = 0;
	c->blocked = 0;
	rx_flow(c);
}

static void warn_bad(struct tl_ws_conn *c, const char *why)
{
	c->st_bad++;
	if (!c->warned_bad)
		tl_log_warn(c->d.call_sid,
		            "ignoring a bad message from the agent: %s "
		            "(further ones are only counted)",
		            why);
	c->warned_bad = 1;
}

/* mark, clear and dtmf pass the connection's token bucket; the rest are dropped and counted. */
static int ctl_allowed(struct tl_ws_conn *c)
{
	if (tl_wsd_bucket_take(&c->ctl, now_us()))
		return 1;
	c->st_ctl_dropped++;
	if (!c->warned_ctl)
		tl_log_warn(c->d.call_sid,
		            "the agent sends mark/clear/dtmf faster than %d/s (bursts of %d): the "
		            "excess is dropped (further ones are only counted)",
		            TL_WSC_CTL_RATE, TL_WSC_CTL_BURST);
	c->warned_ctl = 1;
	return 0;
}

static void agent_mark(struct tl_ws_conn *c, const char *name)
{
	uint32_t id;
	int err = tl_wsd_marks_push(&c->marks, name, &id);

	if (err == 0 && (err = tl_media_stream_mark(c->stream, id)) < 0)
		tl_wsd_marks_unpush(&c->marks);
	if (err < 0) {
		c->st_marks_refused++;
		if (!c->warned_mark)
			tl_log_warn(c->d.call_sid, "agent mark \"%s\" refused: %s (%u pending)",
			            name, strerror(-err), tl_wsd_marks_count(&c->marks));
		c->warned_mark = 1;
	}
}

static int text_msg(struct tl_ws_conn *c, const char *text, size_t len)
{
	struct tl_wsd_in in;
	ssize_t n;
	int blocked = 0, err;

	/* A control message over the rate is dropped before Jansson sees it: a flood costs a
	 * string scan per message, not a parse. */
	int counted = tl_wsd_peek_control(text, len) != 0;

	if (counted && !ctl_allowed(c))
		return 0;
	switch (tl_wsd_parse(&c->d, text, len, &in)) {
	case TL_WSD_IN_MARK:
	case TL_WSD_IN_CLEAR:
	case TL_WSD_IN_DTMF:
		if (!counted && !ctl_allowed(c))
			in.kind = TL_WSD_IN_OTHER; /* dropped */
		break;
	default:
		break;
	}
	switch (in.kind) {
	case TL_WSD_IN_BAD:
		warn_bad(c, in.error);
		break;
	case TL_WSD_IN_OTHER:
		if (in.event)
			tl_log_debug(c->d.call_sid, "agent event \"%s\" ignored", in.event);
		break;
	case TL_WSD_IN_MEDIA:
		if (dec_room(c, TL_B64_DEC_MAX(in.payload_len)) < 0) {
			c->st_audio_dropped += TL_B64_DEC_MAX(in.payload_len);
			break;
		}
		n = tl_b64_decode(c->dec, c->dec_cap, in.payload, in.payload_len);
		if (n < 0) {
			warn_bad(c, "media payload is not base64");
			break;
		}
		c->dec_len = (size_t)n;
		blocked = play(c);
		break;
	case TL_WSD_IN_MARK:
		agent_mark(c, in.name);
		break;
	case TL_WSD_IN_CLEAR:
		tl_media_stream_clear(c->stream);
		break;
	case TL_WSD_IN_DTMF:
		err = tl_media_stream_dtmf(c->stream, in.digit);
		if (err < 0 && !c->warned_dtmf)
			tl_log_warn(c->d.call_sid, "agent DTMF '%c' not sent: %s", in.digit,
			            strerror(-err));
		c->warned_dtmf |= err < 0;
		break;
	case TL_WSD_IN_HANGUP:
		tl_wsc_emit(c, TL_WS_EV_HANGUP, NULL);
		break;
	case TL_WSD_IN_TRANSFER:
		tl_wsc_emit(c, TL_WS_EV_TRANSFER, in.target);
		break;
	}
	tl_wsd_in_free(&in);
	return blocked;
}

/* One whole agent message. Returns 1 when its audio is pending (rx paused). */
static int conn_msg(struct tl_ws_conn *c, int binary, const unsigned char *data, size_t len)
{
	if (!binary)
		return text_msg(c, (const char *)data, len);
	if (c->d.dialect != TL_DIALECT_NATIVE) {
		if (!c->warned_binary)
			tl_log_warn(c->d.call_sid,
			            "binary frames from a Twilio-dialect agent ignored");
		c->warned_binary = 1;
		return 0;
	}
	if (dec_room(c, len + 1) < 0) {
		c->st_audio_dropped += len;
		return 0;
	}
	c->dec_len = tl_wsd_pcm_join(&c->carry, &c->has_carry, data, len, c->dec);
	return play(c);
}

/* The agent broke the protocol (the call is lost to it): the call goes to its fallback now, the
 * socket closes with code from the next WRITEABLE (see TL_WSC_REFUSING), and until then what
 * the agent sends is dropped. why (a literal) goes to the agent in the close frame; the event,
 * and so the call's log, says what (with the limit, if any) and the code. */
static void conn_refuse(struct tl_ws_conn *c, enum lws_close_status code, const char *why,
                        const char *what, unsigned limit)
{
	char text[sizeof(c->reason)];

	if (limit)
		snprintf(text, sizeof(text), "%s %u bytes (closed %d)", what, limit, (int)code);
	else
		snprintf(text, sizeof(text), "%s (closed %d)", what, (int)code);
	conn_end(c, text);
	c->state = TL_WSC_REFUSING;
	c->close_code = code;
	c->close_why = why;
	c->rx_len = c->bl_len = c->bl_off = c->dec_len = c->dec_off = 0;
	lws_sul_cancel(&c->sul_idle);
	lws_sul_cancel(&c->sul_play);
	lws_sul_cancel(&c->sul_turn);
	c->blocked = c->turn_paused = 0;
	rx_flow(c); /* lws must read on, to find the agent's close */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, TL_WSC_CLOSE_GRACE);
	lws_callback_on_writable(c->wsi);
}

void tl_wsc_turn_resume(struct tl_ws_conn *c)
{
	c->turn_paused = 0;
	rx_flow(c);
}

static void on_next_turn(lws_sorted_usec_list_t *sul)
{
	tl_wsc_turn_resume(lws_container_of(sul, struct tl_ws_conn, sul_turn));
}

/* Counts a message against this loop turn's share; past it, rx pauses until the next turn (a
 * 0 us lws timer, or for our reader a 0 s libev timer: ws_read.c), so one agent's burst of
 * small messages cannot hold up the other calls for long. */
static void turn_count(struct tl_ws_conn *c, size_t len)
{
	if (c->turn != c->loop->turn) {
		c->turn = c->loop->turn;
		c->turn_msgs = 0;
		c->turn_bytes = 0;
	}
	c->turn_msgs++;
	c->turn_bytes += len;
	if (c->turn_msgs < TL_WSC_TURN_MSGS && c->turn_bytes < TL_WSC_TURN_BYTES)
		return;
	c->turn_paused = 1;
	rx_flow(c);
	if (c->rd)
		tl_wsc_rd_next_turn(c->rd);
	else
		lws_sul_schedule(c->loop->ctx, 0, &c->sul_turn, on_next_turn, 0);
}

/* Keeps a whole message that came in while the playout queue is full, in order. */
static int backlog(struct tl_ws_conn *c, const unsigned char *data, size_t len)
{
	uint32_t n = (uint32_t)len;

	if (c->bl_len + len + 5 > TL_WSC_RX_MAX ||
	    tl_wsc_grow(&c->bl, &c->bl_cap, c->bl_len + len + 5, 0) < 0)
		return -1;
	memcpy(c->bl + c->bl_len, &n, sizeof(n));
	c->bl[c->bl_len + 4] = (unsigned char)c->rx_binary;
	memcpy(c->bl + c->bl_len + 5, data, len);
	c->bl_len += len + 5;
	return 0;
}

/* One whole message: in c->rx, or (borrowed until return) lws's buffer when it came in one
 * piece, so that c->rx is allocated only by agents whose messages come in fragments. */
static void conn_deliver(struct tl_ws_conn *c, const unsigned char *data, size_t len)
{
	if (!c->rx_binary && !tl_wsd_utf8_valid(data, len)) {
		conn_refuse(c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "text message is not UTF-8",
		            "agent text message is not UTF-8", 0);
		return;
	}
	if (c->blocked) {
		/* lws stops reading once paused, but keep order if it hands us more. */
		if (backlog(c, data, len) < 0)
			conn_refuse(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "too much data",
			            "agent sent more while its audio queue was full than",
			            TL_WSC_RX_MAX);
	} else {
		conn_msg(c, c->rx_binary, data, len);
	}
	c->rx_len = 0;
	if (c->state == TL_WSC_OPEN)
		turn_count(c, len);
}

/* One piece of an agent message: from lws's RECEIVE, or from our reader (ws_read.c). Never
 * closes here: lws 4.1 closing a connection from inside RECEIVE in the middle of a frame keeps
 * writing the frame's rest past its rx buffer. */
void tl_wsc_rx(struct tl_ws_conn *c, const void *in, size_t len, int binary, size_t more, int final)
{
	c->last_rx_ms = now_ms();
	if (c->state != TL_WSC_OPEN)
		return; /* refusing (or not open): dropped */
	atomic_fetch_add_explicit(&c->loop->rx_bytes, len, memory_order_relaxed);
	if (c->rx_len == 0)
		c->rx_binary = binary;
	/* The frame's announced rest counts at once: a 20 MB frame is refused at its first
	 * bytes, not after 4 MiB of copying. */
	if (c->rx_len + len + more > TL_WSC_RX_MAX) {
		conn_refuse(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big",
		            "agent message over", TL_WSC_RX_MAX);
		return;
	}
	if (c->rx_len == 0 && len > 0 && final) {
		conn_deliver(c, in, len);
		return;
	}
	/* + 1: never NULL, even for an empty message (memcpy, Jansson). */
	if (tl_wsc_grow(&c->rx, &c->rx_cap, c->rx_len + len + 1, 0) < 0) {
		conn_refuse(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory",
		            "no memory for the agent's message", 0);
		return;
	}
	memcpy(c->rx + c->rx_len, in, len);
	c->rx_len += len;
	if (final)
		conn_deliver(c, c->rx, c->rx_len);
}

void tl_wsc_peer_closed(struct tl_ws_conn *c, const uint8_t *payload, size_t len)
{
	if (len >= 2) {
		char text[sizeof(c->reason) - 16];

		tl_wsd_close_text(text, sizeof(text), payload, len);
		snprintf(c->reason, sizeof(c->reason), "agent closed (%s)", text);
	} else {
		snprintf(c->reason, sizeof(c->reason), "agent closed");
	}
}

void tl_wsc_framing_error(struct tl_ws_conn *c, const char *why)
{
	char what[96];

	if (c->state != TL_WSC_OPEN)
		return;
	snprintf(what, sizeof(what), "agent's WebSocket framing is broken: %s", why);
	conn_refuse(c, LWS_CLOSE_STATUS_PROTOCOL_ERR, "protocol error", what, 0);
}

void tl_wsc_lost(struct tl_ws_conn *c, const char *why)
{
	if (why && !c->reason[0])
		snprintf(c->reason, sizeof(c->reason), "connection error: %s", why);
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
