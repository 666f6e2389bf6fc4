/* What the agent sends, on its connection's loop: pieces of messages (from lws's RECEIVE or
 * our reader, ws_read.c) joined, bounded and checked, then played: audio into the call's
 * playout queue (rx paused while it is full, the rest kept in order), marks, clear, DTMF,
 * hangup and transfer; each connection's share of a loop turn; refusing an agent that breaks
 * the protocol. The connection's life and what we send are ws_conn.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trunkline/b64.h"
#include "trunkline/log.h"
#include "ws_int.h"

static int conn_msg(struct tl_ws_conn *c, int binary, const unsigned char *data, size_t len);

static int dec_room(struct tl_ws_conn *c, size_t n)
{
	return tl_wsc_grow(&c->dec, &c->dec_cap, n, 0);
}

/* Pauses or resumes the agent's rx: paused while the playout queue is full (blocked) or the
 * connection has had its share of this loop turn (turn_paused). */
void tl_wsc_rx_flow(struct tl_ws_conn *c)
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
			tl_wsc_rx_flow(c);
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
	tl_wsc_rx_flow(c);
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
	if (tl_wsd_bucket_take(&c->ctl, tl_wsc_now_us()))
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
	tl_wsc_end(c, text);
	c->state = TL_WSC_REFUSING;
	c->close_code = code;
	c->close_why = why;
	c->rx_len = c->bl_len = c->bl_off = c->dec_len = c->dec_off = 0;
	lws_sul_cancel(&c->sul_idle);
	lws_sul_cancel(&c->sul_play);
	lws_sul_cancel(&c->sul_turn);
	c->blocked = c->turn_paused = 0;
	tl_wsc_rx_flow(c); /* lws must read on, to find the agent's close */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, TL_WSC_CLOSE_GRACE);
	lws_callback_on_writable(c->wsi);
}

void tl_wsc_turn_resume(struct tl_ws_conn *c)
{
	c->turn_paused = 0;
	tl_wsc_rx_flow(c);
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
	tl_wsc_rx_flow(c);
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
	c->last_rx_ms = tl_wsc_now_us() / 1000;
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
