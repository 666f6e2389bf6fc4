/* Our own reading of a plain ws:// agent connection, on the hosted agent loops (the default:
 * agent loops on the media workers' libev loops). lws 4.1's client parser takes a function call
 * per received byte (lws_ws_client_rx_sm), the largest share of libwebsockets in the benchmark's
 * profile. Once the handshake is done, lws's rx is switched off for good (lws_rx_flow_control)
 * and an ev_io of ours reads the socket: one recv(), frames parsed by tl_wsr_feed (ws_frame.c)
 * and handed to the connection as lws's RECEIVE callbacks were. lws keeps everything else:
 * connecting, TLS (wss:// is never taken over), writing, timeouts, closing the socket.
 *
 * When: a loop turn after CLIENT_ESTABLISHED, if nothing came through lws since, lws holds no
 * buffered rx for any connection of the loop (lws_service_adjust_timeout) and no frame is half
 * read. lws reads the handshake reply in one read and keeps what followed it on the
 * connection's buflist; by the check it has parsed that, so an agent that spoke first stays on
 * lws's parser for the whole call. What the check cannot see: bytes that ended inside a frame's
 * header (an agent that sent before our first message, and whose frame TCP split right after
 * its first bytes). Our reader then starts inside a frame; that reads as a framing error and
 * the call goes to its fallback (docs/ARCHITECTURE.md).
 *
 * Ownership: a reader belongs to its connection; when the connection is freed while its socket
 * closes politely (our close frame goes out, the agent's is awaited), the reader is detached
 * onto the loop's list and reads on, dropping data, until the agent's close frame or the end
 * of the stream; then it asks lws to close the socket. lws's CLIENT_CLOSED / WSI_DESTROY for
 * that socket frees it (tl_wsc_rd_wsi_gone), before lws closes the descriptor. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "trunkline/log.h"
#include "ws_int.h"

#define TL_WSC_RD_BUF 16384 /* bytes per recv(): about fifty 20 ms Twilio media messages */
/* After our close frame, when the agent's framing is broken, its close frame cannot be found
 * in the stream: the socket is cut this long after (read on meanwhile, so that the cut is a
 * FIN, and the agent has time to read our close frame), not after lws's 5 s. */
#define TL_WSC_RD_GRACE 1.0

struct tl_wsc_rd {
	ev_io io;
	struct tl_ws_loop *loop;
	struct lws *wsi;
	struct tl_ws_conn *c; /* NULL once detached */
	struct tl_wsr r;
	uint8_t *pend; /* read but not parsed: rx paused in the middle of a recv()'s bytes */
	size_t pend_len, pend_off;
	struct tl_wsc_rd *next;      /* loop->rd_detached */
	struct tl_wsc_rd *next_turn; /* loop->rd_turn_list */
	ev_timer grace;              /* detached, framing broken: the cut (TL_WSC_RD_GRACE) */
	unsigned paused : 1, done : 1, watching : 1, in_turn : 1, grace_on : 1;
};

static void rd_watch(struct tl_wsc_rd *rd, int on)
{
	if (on && !rd->watching)
		ev_io_start(rd->loop->evl, &rd->io);
	else if (!on && rd->watching)
		ev_io_stop(rd->loop->evl, &rd->io);
	rd->watching = (unsigned)on;
}

/* Done reading: lws closes the socket on its next turn (CLIENT_CLOSED follows). */
static void rd_kill(struct tl_wsc_rd *rd)
{
	if (rd->done)
		return;
	rd->done = 1;
	rd_watch(rd, 0);
	free(rd->pend);
	rd->pend = NULL;
	rd->pend_len = rd->pend_off = 0;
	lws_set_timeout(rd->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void rd_on_grace(struct ev_loop *evl, ev_timer *t, int revents)
{
	(void)evl;
	(void)revents;
	rd_kill(t->data);
}

/* Detached with the framing broken: the agent's close cannot be recognised, cut soon. */
static void rd_grace(struct tl_wsc_rd *rd)
{
	if (rd->grace_on || rd->done)
		return;
	rd->grace_on = 1;
	ev_timer_init(&rd->grace, rd_on_grace, TL_WSC_RD_GRACE, 0);
	rd->grace.data = rd;
	ev_timer_start(rd->loop->evl, &rd->grace);
}

/* One control frame of ours (close or pong), written now, or dropped while lws still holds
 * unsent bytes of ours (lws 4.1 drops a ping's pong while one is pending, too). Never queued:
 * an agent that pings and does not read would have trunkline buffer pongs without bound. */
static void rd_control(struct tl_wsc_rd *rd, unsigned opcode, const uint8_t *p, size_t len)
{
	unsigned char buf[LWS_PRE + 125], *f;
	uint8_t key[4];

	tl_wsc_ring_flush(rd->loop); /* our frames queued before it go first */
	if (len > 125 || lws_partial_buffered(rd->wsi) || tl_wsf_key(&rd->loop->keys, key) < 0)
		return;
	memcpy(buf + LWS_PRE, p, len);
	f = tl_wsf_frame_op(buf + LWS_PRE, len, opcode, key);
	if (rd->c)
		rd->c->lws_out = 1;
	lws_write(rd->wsi, f, (size_t)(buf + LWS_PRE + len - f), LWS_WRITE_RAW);
}

/* The agent's close frame: its code echoed when it is one a peer may send (RFC 6455 7.4.1),
 * 1002 when not; then the socket closes. */
static void rd_peer_close(struct tl_wsc_rd *rd, const struct tl_wsr_piece *pc)
{
	unsigned code = pc->len >= 2 ? (unsigned)pc->data[0] << 8 | pc->data[1] : 0;
	int valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
	            (code >= 3000 && code <= 4999);
	uint8_t reply[2];

	if (!rd->c) { /* detached: our close went first, and this is the agent's answer */
		rd_kill(rd);
		return;
	}
	tl_wsc_peer_closed(rd->c, pc->data, pc->len);
	if (pc->len == 0) {
		rd_control(rd, 0x8, NULL, 0);
	} else {
		if (!valid || pc->len == 1)
			code = LWS_CLOSE_STATUS_PROTOCOL_ERR;
		reply[0] = (uint8_t)(code >> 8);
		reply[1] = (uint8_t)code;
		rd_control(rd, 0x8, reply, 2);
	}
	rd_kill(rd);
}

static int rd_piece(void *arg, const struct tl_wsr_piece *pc)
{
	struct tl_wsc_rd *rd = arg;

	switch (pc->kind) {
	case TL_WSR_DATA:
		if (rd->c)
			tl_wsc_rx(rd->c, pc->data, pc->len, pc->binary, (size_t)pc->more,
			          pc->final);
		break; /* detached: dropped */
	case TL_WSR_PING:
		if (rd->c)
			rd_control(rd, 0xa, pc->data, pc->len);
		break;
	case TL_WSR_PONG:
		break;
	case TL_WSR_CLOSE:
		rd_peer_close(rd, pc);
		break;
	}
	return rd->paused || rd->done;
}

/* Parses p[0..n) (the loop's buffer, or rd->pend); what a pause leaves goes to rd->pend. */
static void rd_feed(struct tl_wsc_rd *rd, uint8_t *p, size_t n)
{
	const char *err;
	ssize_t used = tl_wsr_feed(&rd->r, p, n, rd_piece, rd, &err);

	if (used < 0) {
		/* Out of step with the stream for good: drop the rest; the agent gets 1002. */
		if (rd->c && err)
			tl_wsc_framing_error(rd->c, err);
		else if (!rd->c)
			rd_grace(rd);
		return;
	}
	if (rd->pend && p == rd->pend + rd->pend_off) {
		rd->pend_off += (size_t)used;
		return;
	}
	if ((size_t)used == n || rd->done)
		return;
	/* from the loop's buffer: keep the rest (a message or two, at most one recv()) */
	uint8_t *b = malloc(n - (size_t)used);

	if (!b) {
		if (rd->c)
			tl_wsc_framing_error(rd->c, "no memory to keep the agent's data");
		rd->r.dead = 1;
		return;
	}
	memcpy(b, p + used, n - (size_t)used);
	rd->pend = b;
	rd->pend_len = n - (size_t)used;
	rd->pend_off = 0;
}

static void rd_on_io(struct ev_loop *evl, ev_io *w, int revents)
{
	struct tl_wsc_rd *rd = w->data;
	struct tl_ws_loop *loop;
	ssize_t n;

	(void)evl;
	(void)revents;
	if (rd->pend) { /* after a pause: what was read before it, first */
		rd_feed(rd, rd->pend + rd->pend_off, rd->pend_len - rd->pend_off);
		if (rd->pend && rd->pend_off < rd->pend_len)
			return; /* paused again */
		free(rd->pend);
		rd->pend = NULL;
		rd->pend_len = rd->pend_off = 0;
	}
	if (rd->paused || rd->done)
		return;
	n = recv(w->fd, rd->loop->rdbuf, TL_WSC_RD_BUF, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		if (rd->c)
			tl_wsc_lost(rd->c, n < 0 ? strerror(errno) : NULL);
		rd_kill(rd);
		return;
	}
	loop = rd->loop; /* rd may be gone after rd_feed; the loop is not */
	rd_feed(rd, loop->rdbuf, (size_t)n);
	tl_wsc_loop_kick(loop);
}

/* Takes the socket's reading over from lws when it is safe (see the top): 1 done, 0 not (lws
 * keeps it), -EAGAIN not yet (try again next turn). */
static int rd_try(struct tl_ws_conn *c)
{
	struct tl_ws_loop *loop = c->loop;
	struct tl_wsc_rd *rd;
	int fd;

	if (!loop->evl || loop->lws_rx_only || c->rd || c->state != TL_WSC_OPEN || c->rx_via_lws ||
	    lws_is_ssl(c->wsi) || lws_get_network_wsi(c->wsi) != c->wsi ||
	    lws_remaining_packet_payload(c->wsi))
		return 0;
	/* lws may hold rx of a paused socket (not seen by the check below), or of another of the
	 * loop's sockets: try again next turn. */
	if (c->rx_paused || !lws_service_adjust_timeout(loop->ctx, 1, 0))
		return -EAGAIN;
	fd = (int)lws_get_socket_fd(c->wsi);
	if (fd < 0)
		return 0;
	if (!loop->rdbuf && !(loop->rdbuf = malloc(TL_WSC_RD_BUF)))
		return 0;
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return 0;
	rd->loop = loop;
	rd->wsi = c->wsi;
	rd->c = c;
	c->rd = rd;
	lws_rx_flow_control(c->wsi, 0); /* for good: lws reads nothing more of this socket */
	ev_io_init(&rd->io, rd_on_io, fd, EV_READ);
	rd->io.data = rd;
	rd_watch(rd, 1);
	tl_log_debug(c->d.call_sid, "agent connection: read by trunkline's frame reader");
	return 1;
}

void tl_wsc_rd_pause(struct tl_wsc_rd *rd, int pause)
{
	if (rd->done)
		return;
	rd->paused = (unsigned)pause;
	rd_watch(rd, !pause);
	if (!pause && rd->pend) /* not from here: this runs inside a piece's handling */
		ev_feed_event(rd->loop->evl, &rd->io, EV_READ);
}

static int rd_try(struct tl_ws_conn *c);
static void on_turn(struct ev_loop *evl, ev_timer *t, int revents);

/* A 0 s timer: runs next turn, after that turn's poll (which it makes not wait). */
static void turn_timer(struct tl_ws_loop *loop)
{
	if (!loop->rd_turn_init) {
		ev_timer_init(&loop->rd_turn, on_turn, 0, 0);
		loop->rd_turn.data = loop;
		loop->rd_turn_init = 1;
	}
	if (!ev_is_active(&loop->rd_turn))
		ev_timer_start(loop->evl, &loop->rd_turn);
}

/* The next turn: take-overs due, then readers whose share of the last turn was used up. */
static void on_turn(struct ev_loop *evl, ev_timer *t, int revents)
{
	struct tl_ws_loop *loop = t->data;
	struct tl_wsc_rd *rd = loop->rd_turn_list;
	struct tl_ws_conn *again = NULL;

	(void)evl;
	(void)revents;
	while (loop->own_list) { /* one at a time: the list stays whole for tl_wsc_rd_unlist */
		struct tl_ws_conn *c = loop->own_list;

		loop->own_list = c->own_next;
		c->own_next = NULL;
		if (rd_try(c) == -EAGAIN && ++c->own_tries < 50) {
			c->own_next = again;
			again = c;
		} else {
			c->own_listed = 0;
		}
	}
	loop->own_list = again;
	if (again)
		turn_timer(loop);
	loop->rd_turn_list = NULL;
	while (rd) {
		struct tl_wsc_rd *next = rd->next_turn;

		rd->in_turn = 0;
		rd->next_turn = NULL;
		if (rd->c)
			tl_wsc_turn_resume(rd->c);
		rd = next;
	}
}

void tl_wsc_rd_next_turn(struct tl_wsc_rd *rd)
{
	struct tl_ws_loop *loop = rd->loop;

	if (rd->in_turn)
		return;
	rd->in_turn = 1;
	rd->next_turn = loop->rd_turn_list;
	loop->rd_turn_list = rd;
	turn_timer(loop);
}

void tl_wsc_rd_schedule(struct tl_ws_conn *c)
{
	struct tl_ws_loop *loop = c->loop;

	if (c->own_listed)
		return;
	c->own_listed = 1;
	c->own_next = loop->own_list;
	loop->own_list = c;
	turn_timer(loop);
}

void tl_wsc_rd_unlist(struct tl_ws_conn *c)
{
	if (!c->own_listed)
		return;
	for (struct tl_ws_conn **p = &c->loop->own_list; *p; p = &(*p)->own_next)
		if (*p == c) {
			*p = c->own_next;
			break;
		}
	c->own_listed = 0;
}

static void rd_free(struct tl_wsc_rd *rd)
{
	if (rd->in_turn)
		for (struct tl_wsc_rd **p = &rd->loop->rd_turn_list; *p; p = &(*p)->next_turn)
			if (*p == rd) {
				*p = rd->next_turn;
				break;
			}
	rd_watch(rd, 0);
	ev_clear_pending(rd->loop->evl, &rd->io);
	if (rd->grace_on)
		ev_timer_stop(rd->loop->evl, &rd->grace);
	free(rd->pend);
	free(rd);
}

void tl_wsc_rd_release(struct tl_ws_conn *c, int socket_stays)
{
	struct tl_wsc_rd *rd = c->rd;

	if (!rd)
		return;
	c->rd = NULL;
	c->lws_out = 1; /* lws may write on its own again: asked every time (tl_wsc_lws_held) */
	if (!socket_stays || rd->done) { /* the socket closes now, or is already told to */
		rd_free(rd);
		return;
	}
	/* Detached: reads on until the agent's close, then lws closes the socket. */
	rd->c = NULL;
	rd->paused = 0;
	free(rd->pend);
	rd->pend = NULL;
	rd->pend_len = rd->pend_off = 0;
	rd_watch(rd, 1);
	rd->next = rd->loop->rd_detached;
	rd->loop->rd_detached = rd;
	if (rd->r.dead)
		rd_grace(rd);
}

void tl_wsc_rd_wsi_gone(struct tl_ws_loop *loop, struct lws *wsi)
{
	for (struct tl_wsc_rd **p = &loop->rd_detached; *p; p = &(*p)->next)
		if ((*p)->wsi == wsi) {
			struct tl_wsc_rd *rd = *p;

			*p = rd->next;
			rd_free(rd);
			return;
		}
}

void tl_wsc_rd_free_all(struct tl_ws_loop *loop)
{
	while (loop->rd_detached) {
		struct tl_wsc_rd *rd = loop->rd_detached;

		loop->rd_detached = rd->next;
		rd_free(rd);
	}
	if (loop->rd_turn_init)
		ev_timer_stop(loop->evl, &loop->rd_turn);
	free(loop->rdbuf);
	loop->rdbuf = NULL;
}
