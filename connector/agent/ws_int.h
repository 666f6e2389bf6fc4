/* Private to the agent WebSocket client. First the pure half (ws_dialect.c, tl_wsd_*): formats
 * what we send and parses what the agent sends, in the Twilio Media Streams or the native
 * dialect, and maps the agent's mark names to media mark ids; no sockets, no threads. Then the
 * state shared by the socket half (ws.c, ws_conn.c, ws_recv.c, tl_wsc_*). */
#ifndef TL_WS_INT_H
#define TL_WS_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "trunkline/config.h"
#include "trunkline/media.h"
#include "trunkline/queue.h"

/* Twilio's accountSid is "AC" + 32 hex digits; ours names no account. */
#define TL_WSD_ACCOUNT_SID "AC00000000000000000000000000000000"

/* One connection's outbound state: who we are and the Twilio sequenceNumber. */
struct tl_wsd {
	/* What every `media` message uses first (one cache line), then the rest. */
	enum tl_dialect dialect;
	int sample_rate; /* native: the agent's L16 rate */
	uint64_t seq;    /* Twilio sequenceNumber of the last message sent, 0 before `start` */
	char *sid_json;  /* stream_sid as a JSON string literal, quotes included */
	size_t sid_json_len;
	const char *codec; /* native: the caller's codec (static string), NULL = unknown */
	char *call_sid, *stream_sid;
	json_t *meta;         /* the call metadata object */
	char account_sid[65]; /* Twilio accountSid: TL_WSD_ACCOUNT_SID unless configured */
};

/* Copies the strings and parses meta_json (NULL = {}). Returns 0, -EINVAL when meta_json is not
 * a JSON object, or -ENOMEM. */
int tl_wsd_init(struct tl_wsd *d, enum tl_dialect dialect, int sample_rate, const char *call_sid,
                const char *stream_sid, const char *meta_json);
void tl_wsd_fini(struct tl_wsd *d);
/* The start message went: frees the metadata only it carries (tl_wsd_start fails after). */
void tl_wsd_started(struct tl_wsd *d);

/* Formatters: write one message into buf (cap bytes, borrowed until return) and return the
 * length it needs, excluding a NUL. The message was written, and the sequenceNumber consumed,
 * only when that length is < cap; otherwise grow buf and call again. Negative errno on other
 * failures. tl_wsd_connected returns 0 in the native dialect (it has no such message). */
ssize_t tl_wsd_connected(struct tl_wsd *d, char *buf, size_t cap);
ssize_t tl_wsd_start(struct tl_wsd *d, char *buf, size_t cap);
ssize_t tl_wsd_dtmf(struct tl_wsd *d, char digit, char *buf, size_t cap);
ssize_t tl_wsd_mark(struct tl_wsd *d, const char *name, char *buf, size_t cap);
ssize_t tl_wsd_stop(struct tl_wsd *d, char *buf, size_t cap);
/* One uplink audio frame (ev->kind TL_MEDIA_EV_AUDIO): Twilio `media` text, or in the native
 * dialect the raw L16 bytes (*binary set to 1). No allocation. */
ssize_t tl_wsd_media(struct tl_wsd *d, const struct tl_media_event *ev, char *buf, size_t cap,
                     int *binary);
/* The most bytes a media message for n audio bytes can need (Twilio), given d's stream sid. */
size_t tl_wsd_media_max(const struct tl_wsd *d, size_t n);

enum tl_wsd_in_kind {
	TL_WSD_IN_BAD = -1,  /* not JSON, not an object, no event, or a known event malformed */
	TL_WSD_IN_OTHER = 0, /* an event we do not handle (in->event names it) */
	TL_WSD_IN_MEDIA,     /* in->payload / payload_len: base64 audio (Twilio dialect) */
	TL_WSD_IN_MARK,      /* in->name */
	TL_WSD_IN_CLEAR,
	TL_WSD_IN_DTMF, /* in->digit: 0-9 * # A-D */
	TL_WSD_IN_HANGUP,
	TL_WSD_IN_TRANSFER, /* in->target: "" when none was given; fits tl_ws_event.target */
};

/* A parsed agent text message. The strings point into root (valid until tl_wsd_in_free), or for
 * MEDIA possibly into the text given to tl_wsd_parse (valid as long as that text). */
struct tl_wsd_in {
	enum tl_wsd_in_kind kind;
	json_t *root;
	const char *event; /* OTHER: the event name */
	const char *name;
	const char *target;
	const char *payload;
	size_t payload_len;
	char digit;
	char error[80]; /* BAD: why */
};

/* Parses one complete text message (text: len bytes, borrowed until return). Returns in->kind.
 * Call tl_wsd_in_free afterwards whatever the result. */
int tl_wsd_parse(const struct tl_wsd *d, const char *text, size_t len, struct tl_wsd_in *in);
/* Without parsing: TL_WSD_IN_MARK, _CLEAR or _DTMF when text looks like that control message
 * (plain shape, one "event" key), else 0. Lets a flood over the rate be dropped cheaply. */
int tl_wsd_peek_control(const char *text, size_t len);
void tl_wsd_in_free(struct tl_wsd_in *in);

/* Native dialect: joins agent PCM across frames so every play is whole 16-bit samples. Copies
 * *carry (when *has_carry) and in[0..n) into out (room for n + 1 bytes) and keeps an odd
 * trailing byte back in *carry. Returns the bytes written to out, always even. */
size_t tl_wsd_pcm_join(uint8_t *carry, int *has_carry, const uint8_t *in, size_t n, uint8_t *out);

/* 1 when p[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF), as RFC 6455 requires of a text message; 0 otherwise. */
int tl_wsd_utf8_valid(const void *p, size_t n);

/* A close frame's payload (status code + reason, len bytes, borrowed until return) as log text
 * in out (cap bytes, always terminated): "1000" or "1000 reason", the reason's bytes outside
 * printable ASCII replaced by '?', so an agent cannot forge log lines; "" when len < 2. */
void tl_wsd_close_text(char *out, size_t cap, const uint8_t *payload, size_t len);

/* Token bucket: rate tokens a second, at most burst saved up; starts full. Units are
 * millionths of a token so that the arithmetic stays integer. */
struct tl_wsd_bucket {
	int64_t tokens; /* millionths */
	int64_t last_us;
	unsigned rate, burst;
};

void tl_wsd_bucket_init(struct tl_wsd_bucket *b, unsigned rate, unsigned burst, int64_t now_us);
/* Takes one token at now_us (monotonic): 1 when there was one, 0 when the bucket is empty. */
int tl_wsd_bucket_take(struct tl_wsd_bucket *b, int64_t now_us);

/* The agent's mark names in the order sent to the media stream, each with the id it was given
 * there. Bounded like the media mark queue; a full ring refuses a new mark. The ring is
 * allocated on the first mark, TL_WSD_MARKS_MIN entries, and doubles as needed up to
 * TL_WSD_MARKS: most agents never send a mark, and a call should not carry the table then. */
#define TL_WSD_MARKS     64
#define TL_WSD_MARKS_MIN 8

struct tl_wsd_mark {
	char *name;
	uint32_t id;
};

struct tl_wsd_marks {
	struct tl_wsd_mark *e; /* cap entries (a power of two), NULL while cap is 0 */
	unsigned cap;
	unsigned head, tail; /* head - tail = entries, at e[counter % cap] */
	uint32_t next_id;
};

/* Copies name and assigns it the next id (*id). Returns 0, -ENOSPC when TL_WSD_MARKS are held,
 * or -ENOMEM. */
int tl_wsd_marks_push(struct tl_wsd_marks *m, const char *name, uint32_t *id);
/* Takes back the newest entry (its media mark could not be queued). */
void tl_wsd_marks_unpush(struct tl_wsd_marks *m);
/* The name for a played mark id: entries older than id are discarded (they were lost), the
 * matching one is removed and its name returned (caller frees). NULL when id is unknown. */
char *tl_wsd_marks_pop(struct tl_wsd_marks *m, uint32_t id);
unsigned tl_wsd_marks_count(const struct tl_wsd_marks *m);
/* Frees every entry and the ring itself (next_id is kept). */
void tl_wsd_marks_reset(struct tl_wsd_marks *m);

/* Client WebSocket frames built by us (ws_frame.c; RFC 6455 5.2, 5.3): the header we put in
 * front of a payload is at most this long (2 + 8 length + 4 masking key bytes). */
#define TL_WSF_HEAD_MAX 14

/* Frames payload[0..len) as one whole client message (FIN, opcode text or binary, MASK, the
 * shortest length form, key) and masks payload in place with key. The TL_WSF_HEAD_MAX bytes
 * before payload must be writable. Returns where the frame starts: payload - its header length. */
unsigned char *tl_wsf_frame(unsigned char *payload, size_t len, int binary, const uint8_t key[4]);
/* XORs p[0..len) with key repeated from key[0] (masking and unmasking are the same). */
void tl_wsf_mask(unsigned char *p, size_t len, const uint8_t key[4]);

/* Masking keys drawn from OpenSSL's CSPRNG a batch at a time. Zeroed = empty. */
#define TL_WSF_KEYS 1024
struct tl_wsf_keys {
	uint8_t key[TL_WSF_KEYS][4];
	unsigned left; /* unused keys, taken from the end */
};

/* The next unused key into key. 0, or -EIO when the CSPRNG failed (no key given). */
int tl_wsf_key(struct tl_wsf_keys *ks, uint8_t key[4]);

/* Server frames read by us (ws_frame.c; RFC 6455 5.2): an incremental, allocation-free reader
 * for plain ws:// connections, whose bytes we read from the socket ourselves (ws_read.c)
 * instead of through lws 4.1's client parser, which takes a function call per byte. */
enum tl_wsr_kind { TL_WSR_DATA = 1, TL_WSR_PING, TL_WSR_PONG, TL_WSR_CLOSE };

/* What the reader found. DATA: a piece of a message's payload (binary: the message's opcode;
 * first: the message's first piece; more: payload bytes of this frame still to come; final:
 * the message ends with this piece). PING, PONG, CLOSE: a whole control frame's payload. data
 * points into the buffer given to tl_wsr_feed (DATA, unmasked in place) or into the reader
 * (control), valid until the callback returns. */
struct tl_wsr_piece {
	enum tl_wsr_kind kind;
	int binary, first, final;
	uint64_t more;
	uint8_t *data;
	size_t len;
};

/* Returns 0 to read on, nonzero to stop after this piece (tl_wsr_feed returns at once). */
typedef int (*tl_wsr_cb)(void *arg, const struct tl_wsr_piece *pc);

/* Zeroed = at a frame boundary, no message open. */
struct tl_wsr {
	uint8_t hdr[14];
	unsigned hdr_len, hdr_need; /* header bytes so far / in all */
	uint64_t left;              /* payload bytes of the current frame still to come */
	uint8_t opcode, key[4];
	unsigned kpos;
	unsigned fin : 1, masked : 1, in_msg : 1, msg_first : 1, msg_binary : 1, dead : 1;
	uint8_t ctl[125];
	unsigned ctl_len;
};

/* Reads p[0..n), unmasking in place, and calls cb for each piece. Returns the bytes consumed:
 * n, or fewer when cb asked to stop (feed the rest again later), or -EPROTO when the framing
 * is broken (*err says how, a string literal; the reader refuses everything after). */
ssize_t tl_wsr_feed(struct tl_wsr *r, uint8_t *p, size_t n, tl_wsr_cb cb, void *arg,
                    const char **err);
/* Frames payload[0..len) as one whole client frame with the given opcode (tl_wsf_frame, for
 * control frames: close 0x8, pong 0xa). */
unsigned char *tl_wsf_frame_op(unsigned char *payload, size_t len, unsigned opcode,
                               const uint8_t key[4]);

/* ---- The socket side (ws.c, ws_conn.c, ws_recv.c): shared between those two files only. ---- */

#include <pthread.h>
#include <stdatomic.h>

#include <ev.h>
#include <libwebsockets.h>

#include "trunkline/ws.h"

#define TL_WSC_RX_MAX      (4u << 20) /* largest agent message: bigger ones close with 1009 */
#define TL_WSC_PLAY_CHUNK  8000       /* bytes per play: 1 s of µ-law, even for L16 */
#define TL_WSC_PLAY_RETRY  20000      /* us between tries while the playout queue is full */
#define TL_WSC_CLOSE_GRACE 5          /* s for `stop` + close handshake before the cut */
#define TL_WSC_SHUTDOWN_US 1000000    /* tl_ws_destroy waits this long for polite closes */

/* Fairness between the calls of one agent loop: after this many agent messages, or this many
 * bytes of them, in one turn of the lws loop a connection's rx pauses until the next turn. */
#define TL_WSC_TURN_MSGS  32
#define TL_WSC_TURN_BYTES (256u << 10)
/* mark, clear and dtmf from the agent: TL_WSC_CTL_RATE a second sustained, bursts of
 * TL_WSC_CTL_BURST; the excess is dropped and counted (docs/PROTOCOL.md "Limits"). */
#define TL_WSC_CTL_RATE  50
#define TL_WSC_CTL_BURST 100
/* Our messages to the agent stuck this long (it stopped reading): logged once per call. */
#define TL_WSC_CHOKED_WARN_MS 1000

/* A call's wake-up target, shared by its media stream (notify) and its connection; see the
 * header. refs: the stream's, the connection's, and one while on the ready stack. */
struct tl_ws_cell {
	struct tl_ws_loop *loop; /* the agent loop carrying the call, fixed at creation */
	struct tl_ws_conn *conn; /* that loop's thread only */
	uint64_t call;
	atomic_int refs;
	atomic_int queued;
	struct tl_ws_cell *next; /* ready stack link, written by the one pusher */
};

enum tl_wsc_state {
	TL_WSC_CONNECTING,
	TL_WSC_OPEN,
	TL_WSC_CLOSING, /* tl_ws_close: `stop`, then close, no event */
	/* The agent broke the protocol: the event went out at once; the socket closes with
	 * close_code from the next WRITEABLE (never from inside RECEIVE: lws 4.1 then writes the
	 * rest of the frame past its rx buffer). What arrives meanwhile is dropped. */
	TL_WSC_REFUSING,
};

struct tl_wsc_rd; /* ws_read.c */

/* The fields every message touches come first, so that a frame touches few cache lines (at
 * 1000 calls a call's state is out of the cache by its next frame); conn_new (ws.c) aligns the
 * struct to a cache line. */
struct tl_ws_conn {
	_Alignas(64) struct tl_ws_loop *loop;
	struct tl_ws_cell *cell;
	struct tl_media_stream *stream;
	struct lws *wsi;
	enum tl_wsc_state state;
	unsigned linked : 1, in_connect : 1, sync_failed : 1, wsi_gone : 1, sent_connected : 1,
	    sent_start : 1, opened : 1, blocked : 1, warned_bad : 1, warned_mark : 1,
	    warned_dtmf : 1, warned_binary : 1, ended : 1, rx_paused : 1, turn_paused : 1,
	    warned_ctl : 1, warned_choked : 1, counted : 1;
	unsigned rx_via_lws : 1;   /* lws delivered agent data: it keeps reading this socket */
	unsigned ring_pending : 1; /* a frame of ours queued on the worker's batch (ws_frame.c) */
	/* lws may hold unsent bytes of ours (ws_frame.c, tl_wsc_lws_held): set by every
	 * lws_write of ours, cleared when lws_partial_buffered says none while our reader has the
	 * socket (lws then writes nothing on its own: no pong, no ping). */
	unsigned lws_out : 1;
	/* The connection is its own network connection (not carried inside another, as ws over
	 * h2 would be): our framing may be used. Taken at ESTABLISHED; 0 before: lws frames. */
	unsigned net_own : 1;
	/* The socket our frames may go on the worker's batch by (hosted loop, plain TCP, a
	 * connection of its own), taken at ESTABLISHED; -1: lws_write only. */
	int ring_fd;
	unsigned n_info_dtmf;
	/* Our own reader of the socket (ws_read.c), NULL while lws reads it. */
	struct tl_wsc_rd *rd;
	int64_t last_rx_ms;
	uint64_t turn; /* ws->turn when turn_msgs / turn_bytes were last reset */
	unsigned turn_msgs;
	size_t turn_bytes;

	unsigned char *rx; /* the agent message being assembled */
	size_t rx_len, rx_cap;
	int rx_binary;
	uint8_t *dec; /* agent audio decoded, pending while blocked */
	size_t dec_len, dec_off, dec_cap;
	uint8_t carry; /* native: odd trailing byte */
	int has_carry;
	unsigned char *bl; /* messages that came in while blocked: [u32 len][u8 binary][data] */
	size_t bl_len, bl_off, bl_cap;

	struct tl_wsd d;

	/* Not on every message. */
	struct tl_ws_conn *prev, *next; /* loop->conns, the loop's thread */
	uint64_t call;
	struct tl_wsd_marks marks;
	struct tl_wsd_bucket ctl;
	int64_t choked_since_ms;
	uint64_t st_bad, st_marks_refused, st_audio_dropped, st_ctl_dropped;
	char info_dtmf[16];          /* digits from SIP INFO waiting to be sent */
	struct tl_ws_conn *own_next; /* loop->own_list: the take-over check is due next turn */
	unsigned own_tries, own_listed;
	lws_sorted_usec_list_t sul_connect, sul_idle, sul_play, sul_turn, sul_choked;
	char reason[128];                 /* FAILED / CLOSED reason when lws gave one */
	enum lws_close_status close_code; /* REFUSING */
	const char *close_why;            /* REFUSING: a string literal, for the agent */

	/* Where to connect, parsed on the control thread. */
	char *url; /* copy cut up by lws_parse_uri */
	const char *address;
	char *path, *host;
	int port, ssl;
	int insecure; /* the agent's "tls_verify": false */
	char *ca;     /* the agent's "ca": verified with a vhost of its own (tl_wsc_ca_vhost) */
	json_t *headers;
	int connect_timeout_ms, idle_timeout_ms;
};

/* ws_conn.c: CLOCK_MONOTONIC in us; the call's one terminal event (FAILED before `start`
 * went out, CLOSED after; none after the first, or once tl_ws_close asked for the close). */
int64_t tl_wsc_now_us(void);
void tl_wsc_end(struct tl_ws_conn *c, const char *why);
/* ws_loop.c: the agent audio queued while handling one event goes to the caller now (hosted
 * loops: tl_media_worker_kick), not after the wake-up's other events. */
void tl_wsc_loop_kick(struct tl_ws_loop *loop);
/* ws_recv.c: pauses or resumes the agent's rx, as the playout queue (blocked) and the turn's
 * share (turn_paused) say. */
void tl_wsc_rx_flow(struct tl_ws_conn *c);

/* ws_recv.c, for the reader (ws_read.c): one piece of an agent message, as lws's RECEIVE gave
 * it (more: bytes of the frame still to come; final: the message ends here); the agent's close
 * frame (payload, for the call's reason); the framing broke (the agent gets 1002, the call goes
 * to its fallback); the stream ended or failed (why: NULL at its end). */
void tl_wsc_rx(struct tl_ws_conn *c, const void *in, size_t len, int binary, size_t more,
               int final);
void tl_wsc_peer_closed(struct tl_ws_conn *c, const uint8_t *payload, size_t len);
void tl_wsc_framing_error(struct tl_ws_conn *c, const char *why);
void tl_wsc_lost(struct tl_ws_conn *c, const char *why);

/* rx paused (1) or resumed (0), as lws_rx_flow_control does for lws's reading. */
void tl_wsc_rd_pause(struct tl_wsc_rd *rd, int pause);
/* The connection is being freed: socket_stays 1 when the socket closes politely afterwards
 * (the reader reads on for the agent's close), 0 when lws closes it now. */
void tl_wsc_rd_release(struct tl_ws_conn *c, int socket_stays);
/* lws is closing wsi (CLIENT_CLOSED, WSI_DESTROY): frees its detached reader, if any. */
void tl_wsc_rd_wsi_gone(struct tl_ws_loop *loop, struct lws *wsi);
/* c's handshake is done: the take-over is checked next turn (again while lws has rx buffered
 * somewhere on the loop, 50 turns at most). tl_wsc_rd_unlist takes c off that list. */
void tl_wsc_rd_schedule(struct tl_ws_conn *c);
void tl_wsc_rd_unlist(struct tl_ws_conn *c);
/* c's share of this turn is used up: rx resumes next turn (tl_wsc_turn_resume). */
void tl_wsc_rd_next_turn(struct tl_wsc_rd *rd);
/* ws_recv.c: the next turn began for c (its reader's or lws's timer). */
void tl_wsc_turn_resume(struct tl_ws_conn *c);
/* The loop stops: frees what is left of its readers (before its libev loop goes). */
void tl_wsc_rd_free_all(struct tl_ws_loop *loop);

/* Messages one WRITEABLE callback may send before yielding to other connections. */
#define TL_WSC_WRITES_PER_CALLBACK 16

enum tl_wsc_cmd_kind { TL_WSC_CMD_CONNECT, TL_WSC_CMD_CLOSE, TL_WSC_CMD_DTMF };

struct tl_wsc_cmd {
	enum tl_wsc_cmd_kind kind;
	uint64_t call;
	struct tl_ws_conn *conn; /* CONNECT */
	char digit;              /* DTMF */
};

/* One agent loop: an lws_context and the thread that services it, with its own command queue
 * and ready stack. A call's connection, commands and wake-ups all go to the one loop its cell
 * was given (least loaded at tl_ws_cell_create); loops share nothing but the event queue. */
struct tl_ws_loop {
	struct tl_ws *ws;
	unsigned index;
	atomic_int dead, in_notify;
	_Atomic(struct tl_ws_cell *) ready;
	struct lws_context *ctx;

	pthread_t thread;
	int thread_started;
	atomic_int stop;
	/* Commands from the control thread (trunkline/queue.h), woken by lws_cancel_service. */
	struct tl_queue *cmdq;
	int insecure; /* TL_WS_INSECURE=1 */

	/* Connections this loop carries (counted at tl_ws_connect, until freed): the load that
	 * places new calls, and the /metrics gauge. Control thread adds, loop thread subtracts. */
	atomic_uint live;
	/* WebSocket payload bytes of this loop's connections: the loop adds, anyone reads */
	atomic_uint_fast64_t tx_bytes, rx_bytes;

	/* The loop's thread */
	struct {
		char *ca;
		struct lws_vhost *vh;
	} ca_vhosts[16]; /* one client vhost per CA file (lws keeps the CA per vhost) */
	uint64_t turn;   /* lws_service calls so far: one poll and what it found ready */
	/* Masking keys for this loop's frames (ws_frame.c) */
	struct tl_wsf_keys keys;
	struct tl_ws_conn *conns;
	unsigned char *tx; /* the loop's send buffer: LWS_PRE + tx_cap (ws_conn.c format) */
	size_t tx_cap;
	int quit, shutting_down;
	lws_sorted_usec_list_t sul_shutdown;
	/* Hosted (tl_ws_create_hosted): the libev loop lws runs on, with media worker `index`'s
	 * descriptors watched on it too, and a prepare watcher run before every wait. */
	struct ev_loop *evl;
	struct tl_ws_mio **mio; /* by descriptor: the media worker's watchers (ws_loop.c) */
	size_t n_mio;
	ev_prepare prepare;
	ev_timer media_timer;            /* the worker's next deadline (tl_media_worker_flush) */
	int64_t media_due;               /* that deadline, CLOCK_MONOTONIC ms; 0: none */
	lws_sorted_usec_list_t sul_tick; /* see TL_WSC_TICK_US */
	/* Our own readers (ws_read.c): the one receive buffer, the readers of sockets whose
	 * connection is gone but whose close is still under way; TL_WS_LWS_RX=1 leaves all
	 * reading to lws (to compare the two). */
	uint8_t *rdbuf;
	struct tl_wsc_rd *rd_detached;
	int lws_rx_only;
	/* Readers paused for the rest of this turn (TL_WSC_TURN_MSGS), resumed by a 0 s libev
	 * timer: next turn, after its poll (lws's 0 us timer can wait for its armed later one). */
	struct tl_wsc_rd *rd_turn_list;
	struct tl_ws_conn *own_list; /* connections whose take-over is checked next turn */
	ev_timer rd_turn;
	int rd_turn_init;
};

struct tl_ws {
	/* Shell: lives until the last cell is gone, since streams may outlive tl_ws_destroy;
	 * the loops' structs with it (cells point at them). */
	atomic_int refs;
	/* Events to the control thread from every loop (many producers), woken by efd. Each
	 * connection emits at most three events (open, one of hangup/transfer, one of
	 * failed/closed), so the queue, sized for them, never refuses one. */
	struct tl_queue *evq;
	int efd;
	unsigned max_calls;
	unsigned n_loops;
	unsigned next; /* control thread: where the search for the least-loaded loop starts */
	struct tl_ws_loop **loops;
	struct tl_media *media; /* hosted: loop i runs media worker i (borrowed) */
};

/* ws.c */
void tl_wsc_emit(struct tl_ws_conn *c, enum tl_ws_event_kind kind, const char *text);
/* Grows *buf (plus extra bytes of slack) to hold need bytes. 0 or -ENOMEM. */
int tl_wsc_grow(unsigned char **buf, size_t *cap, size_t need, size_t extra);
void tl_wsc_free(struct tl_ws_conn *c); /* unlinks, drops its refs, detaches its wsi */
void tl_wsc_cell_unref(struct tl_ws_cell *cell);

/* ws_loop.c */
/* Control thread: starts loop (its context, queue and thread); 0 or negative errno. Stopping
 * joins the thread and frees what the loop held but the struct, which the shell frees. */
int tl_wsc_loop_start(struct tl_ws_loop *loop);
void tl_wsc_loops_ask_stop(struct tl_ws *ws); /* every loop starts closing its connections */
void tl_wsc_loop_stop(struct tl_ws_loop *loop);
/* The loop's thread: the client vhost that verifies with CA file ca (created on first use);
 * NULL when it cannot be made (the connection then fails rather than skip the check). */
struct lws_vhost *tl_wsc_ca_vhost(struct tl_ws_loop *loop, const char *ca);
void tl_wsc_cancelled(struct tl_ws_loop *loop);    /* EVENT_WAIT_CANCELLED: commands, cells */
int tl_wsc_send_uplink(struct tl_ws_conn *c);      /* queued uplink now; -1: broken */
int tl_wsc_on_loop(const struct tl_ws_loop *loop); /* this thread is loop's own */

/* ws_frame.c, the loop's thread: sends payload[0..len) (in a buffer with LWS_PRE bytes of room
 * before it, masked in place) as one text or binary message. 0, or -1 when the connection is
 * broken. */
int tl_wsc_write(struct tl_ws_conn *c, unsigned char *payload, size_t len, int binary);
/* Hosted loops: what the loop queued on its media worker's batch (tl_media_worker_send) goes
 * now. Before anything else is written to, or closes, a socket of the loop. */
void tl_wsc_ring_flush(struct tl_ws_loop *loop);
/* Whether lws holds unsent bytes of c's (a write must wait for WRITEABLE), once c's frame on
 * the worker's batch has gone (what it left is then lws's). Ask before tl_wsc_write. */
int tl_wsc_buffered(struct tl_ws_conn *c);
/* Whether lws holds unsent bytes of c's, asking lws only when it may (c->lws_out). */
int tl_wsc_lws_held(struct tl_ws_conn *c);
enum tl_wsc_msg {
	TL_WSC_MSG_CONNECTED,
	TL_WSC_MSG_START,
	TL_WSC_MSG_MEDIA,
	TL_WSC_MSG_DTMF,
	TL_WSC_MSG_MARK,
	TL_WSC_MSG_STOP
};
/* ws_frame.c, the loop's thread: formats one message for the agent (arg: the media event, the
 * digit, the mark name; NULL for the rest) and writes it. 0 (nothing to send counts too), or
 * -1 to close the connection. */
int tl_wsc_send(struct tl_ws_conn *c, enum tl_wsc_msg m, const void *arg);

/* ws_conn.c, WS thread */
void tl_wsc_start(struct tl_ws_conn *c); /* connects; FAILED and freed on immediate failure */
void tl_wsc_close(struct tl_ws_conn *c); /* tl_ws_close: `stop` + close, or abort; no event */
void tl_wsc_kill(struct tl_ws_conn *c);  /* drops it at once, no word to the agent, no event */
int tl_wsc_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len);

#endif
