/* The agent WebSocket client: agent loops (threads, each its own libwebsockets context) serving
 * the calls' connections, in the Twilio Media Streams dialect or the native binary-PCM dialect;
 * each call is carried by one loop. The control (SIP) thread opens and closes connections
 * through that loop's queue and learns what happened through events it drains when
 * tl_ws_event_fd() is readable. Audio moves between the socket and the call's media stream
 * directly on the loop's thread. */
#ifndef TRUNKLINE_WS_H
#define TRUNKLINE_WS_H

#include <stdint.h>

#include "trunkline/config.h"
#include "trunkline/media.h"

struct tl_ws;

enum tl_ws_event_kind {
	TL_WS_EV_OPEN = 1, /* connected and `connected`/`start` sent: answer the call */
	TL_WS_EV_FAILED,   /* could not connect within connect_timeout_ms, or upgrade refused */
	TL_WS_EV_CLOSED,   /* the agent closed or errored, or went idle, mid-call */
	TL_WS_EV_HANGUP,   /* agent sent {"event":"hangup"} */
	TL_WS_EV_TRANSFER, /* agent sent {"event":"transfer"[,"target":"sip:..."]} */
};

struct tl_ws_event {
	enum tl_ws_event_kind kind;
	uint64_t call;    /* the id given to tl_ws_connect */
	char target[256]; /* TRANSFER: the target, "" when none was given */
	char reason[128]; /* FAILED/CLOSED: why, for the log */
};

/* max_calls sizes the bounded queues to and from the control thread (0: 1000); threads is
 * the number of agent loops (0: 1). */
int tl_ws_create(struct tl_ws **out, unsigned max_calls, unsigned threads);
/* As tl_ws_create, with one agent loop per media worker of media (created with
 * tl_media_config.hosted): loop i's thread runs worker i too, on one libev (epoll) loop, so a
 * call's RTP and its WebSocket meet on one thread without a hand-off. A call's stream must be
 * created on its cell's worker (tl_ws_cell_worker). media must outlive ws. */
int tl_ws_create_hosted(struct tl_ws **out, unsigned max_calls, struct tl_media *media);
/* The media worker that a cell's call must use (tl_media_stream_create_on), or -1 when the
 * loops are not hosting the media workers (any worker will do). */
int tl_ws_cell_worker(const void *cell);
/* Closes every connection and stops the thread. */
void tl_ws_destroy(struct tl_ws *ws);

/* WebSocket payload bytes sent to and received from agents so far, all calls. Any thread. */
void tl_ws_bytes(const struct tl_ws *ws, uint64_t *sent, uint64_t *received);

/* agent.threads when not configured: the CPUs we may run on, at most TL_WS_THREADS_DEFAULT_MAX and
 * at most twice media_workers (docs/CONFIGURATION.md says why). */
#define TL_WS_THREADS_DEFAULT_MAX 8
unsigned tl_ws_default_threads(unsigned media_workers);
/* The number of agent loops, and the connections loop carries now (any thread). */
unsigned tl_ws_loops(const struct tl_ws *ws);
unsigned tl_ws_loop_connections(const struct tl_ws *ws, unsigned loop);

/* Readable when events are waiting. */
int tl_ws_event_fd(const struct tl_ws *ws);
/* Control thread: delivers every waiting event to cb. Returns the number delivered. */
int tl_ws_drain(struct tl_ws *ws, void (*cb)(void *arg, const struct tl_ws_event *ev), void *arg);

/* A call's wake-up cell, made before the call's media stream, places the call on the
 * least-loaded agent loop (fewest connections; among equals, in turn). The stream's notify /
 * notify_release callbacks are tl_ws_notify / tl_ws_notify_release with the cell as argument; the
 * connection made by tl_ws_connect takes the cell over. Control thread. References: the cell starts
 * with one, the stream's, which tl_ws_notify_release drops; if the stream cannot be created, call
 * tl_ws_notify_release(cell) yourself instead. tl_ws_connect adds the connection's own (not when it
 * fails). A cell may outlive tl_ws_destroy (a stream freed later): tl_ws_notify then does nothing,
 * tl_ws_notify_release still frees it. */
int tl_ws_cell_create(struct tl_ws *ws, uint64_t call, void **cell);
void tl_ws_notify(void *cell);         /* media worker: never blocks */
void tl_ws_notify_release(void *cell); /* media worker: the stream is gone */

struct tl_ws_conn_params {
	void *cell;    /* from tl_ws_cell_create, the stream's notify_arg; the connection refs it */
	uint64_t call; /* id echoed in events; unique per call */
	const struct tl_agent *agent;   /* copied */
	const char *call_sid;           /* copied: Twilio callSid */
	const char *stream_sid;         /* copied: Twilio streamSid */
	const char *account_sid;        /* copied: Twilio accountSid; NULL: a placeholder */
	const char *meta_json;          /* copied: the call metadata, a JSON object */
	struct tl_media_stream *stream; /* the connection takes its own reference */
	const char *codec; /* static string: the caller's codec, named in the native `start`;
	                    * NULL when not negotiated yet (delayed offer) */
};

/* Starts connecting (asynchronous) on the cell's loop: OPEN or FAILED follows. Control thread.
 * Returns that loop's index (>= 0), for tl_ws_close and tl_ws_dtmf, or -EINVAL (bad URL or
 * parameters: no event follows), -ENOMEM. wss:// checks the agent's
 * certificate unless TL_WS_INSECURE=1 is in the environment when tl_ws_create runs. */
int tl_ws_connect(struct tl_ws *ws, const struct tl_ws_conn_params *p);
/* Sends `stop` (when open) and closes; no event for this call follows except those already
 * queued, which the control thread ignores for calls it no longer has. Control thread. */
void tl_ws_close(struct tl_ws *ws, unsigned loop, uint64_t call);

/* A DTMF digit the PBX sent by SIP INFO, for the agent of call. Control thread. loop: what
 * tl_ws_connect returned for the call. */
void tl_ws_dtmf(struct tl_ws *ws, unsigned loop, uint64_t call, char digit);

#endif
