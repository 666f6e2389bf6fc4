/* tl-echo-agent internals shared by echo_agent.c (options, lws server, timers, stats) and
 * echo_conn.c (one call's messages: dialect, echo, marks, DTMF, tone check).
 * Single-threaded: everything runs on the one loop's thread (libev's, or lws_service()'s). */
#ifndef TL_ECHO_AGENT_H
#define TL_ECHO_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#define ECHO_MARK_EVERY  50         /* a mark after every 50th media frame */
#define ECHO_TONE_FRAMES 10         /* 20 ms frames of 1 kHz before the tone counts */
#define ECHO_TONE_HZ     1000.0     /* the test tone */
#define ECHO_MAX_RATE    48000      /* highest native sample rate taken as is */
#define ECHO_RX_MAX      (1u << 20) /* longest inbound message */
#define ECHO_TX_MAX      (8u << 20) /* per-connection send queue; beyond, echoes are dropped */
#define ECHO_FLOOD_BATCH 1000       /* --mark-flood: messages per write, at most */
#define ECHO_FLOOD_TICK  5000       /* --mark-flood: us between writes */

struct echo_opts {
	int port;
	const char *host;
	int delay_ms;
	const char *stats_path;
	int hangup_ms;
	int close_ms;
	int transfer_ms;
	const char *transfer_target;
	int reject;
	int tone_report;
	int verbose;
	int mark_flood; /* mark/clear messages a second from `start` on, 0 = off */
	int tone_hz;    /* the test tone looked for, default ECHO_TONE_HZ */
	int no_tone;    /* --no-tone: no tone detector (the load benchmark) */
};

enum echo_dialect { ECHO_UNKNOWN = 0, ECHO_TWILIO, ECHO_NATIVE };

/* What the stats file reports for one connection; kept after it closes. */
struct echo_rec {
	char call_sid[64];
	char stream_sid[64];
	char digits[64];
	char codec[16]; /* native start: audio.codec, the caller's codec ("" when not given) */
	enum echo_dialect dialect;
	uint64_t media_in, media_out, marks_sent, marks_in, drops, flood_sent;
	int tone;
	uint64_t tone_holes; /* frames without the tone between two with it, once it was heard */
	int closed;
};

struct echo_totals {
	uint64_t connections, rejected, media_in, media_out, marks_sent, marks_in, dtmf, tones,
	    drops;
};

/* Growable byte buffer; grows by doubling, so steady-state traffic allocates nothing. */
struct echo_buf {
	uint8_t *p;
	size_t head, len, cap; /* live bytes are p[head .. len) */
};

struct echo_app;

/* Per-connection state: lws' per-session data. */
struct echo_conn {
	struct echo_app *app;
	struct lws *wsi;
	struct echo_conn *prev, *next; /* app->active */
	struct echo_rec rec;
	unsigned rate; /* of the audio received */
	int alaw;
	struct echo_buf rx;                       /* a fragmented message being reassembled */
	struct echo_buf tx;                       /* queued messages, see echo_conn.c */
	int64_t hangup_at, close_at, transfer_at; /* monotonic us, 0 = not armed */
	int64_t timer_at;                         /* what the wsi timer is set for */
	int64_t flood_t0, flood_at;               /* --mark-flood: start, next write */
	uint8_t *flood_buf;                       /* LWS_PRE + a batch of ready-made frames */
	int16_t frame[ECHO_MAX_RATE / 50];
	size_t frame_n;
	int have_odd; /* native: a byte of a sample split across frames */
	uint8_t odd;
	unsigned tone_frames;
	unsigned tone_pending; /* frames without the tone since the last one with it */
	unsigned since_mark;
	int stopping;
};

struct echo_app {
	struct echo_opts o;
	struct echo_totals t;
	struct lws_context *ctx;
	struct echo_conn *active;
	struct echo_rec *done;
	size_t n_done, cap_done;
	lws_sorted_usec_list_t stats_sul;
	lws_sorted_usec_list_t tick_sul;
	struct ev_loop *evl; /* libev's epoll loop lws runs on; NULL: lws's own (TL_ECHO_POLL=1) */
	int dirty;
};

int64_t echo_now_us(void);

/* echo_conn.c */
void echo_conn_open(struct echo_conn *c, struct echo_app *app, struct lws *wsi);
void echo_conn_close(struct echo_conn *c);
/* One whole message. Returns 0, or -1 to close the connection. */
int echo_conn_message(struct echo_conn *c, const uint8_t *msg, size_t n, int binary);
/* Fragments of a message; calls echo_conn_message once it is whole. */
int echo_conn_receive(struct echo_conn *c, const void *in, size_t n);
/* WRITEABLE: sends the first due message. Returns 0 or -1. */
int echo_conn_writeable(struct echo_conn *c);
/* TIMER: fires due hangup/transfer/close. Returns 0 or -1 (close). */
int echo_conn_timer(struct echo_conn *c);
/* Re-arms the wsi timer or asks for WRITEABLE, whichever comes next. */
void echo_conn_schedule(struct echo_conn *c);

#endif
