/* The media engine: worker threads that move RTP for many calls (one epoll set and one 20 ms
 * timerfd per worker). The connector sees a call's audio only through this API: decoded frames
 * and DTMF come out of a per-stream queue (uplink); agent audio, marks, clear and DTMF go in
 * (downlink). No SIP, no WebSocket in here.
 *
 * Threads: the engine and streams are created and destroyed by one control thread (the SIP
 * thread). The uplink has one consumer thread and the downlink one producer thread (both the
 * WebSocket thread); neither blocks, and neither ever takes a lock the workers take per packet. */
#ifndef TRUNKLINE_MEDIA_H
#define TRUNKLINE_MEDIA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "trunkline/sdp.h"
#include "trunkline/tone.h"

struct tl_media;
struct tl_media_stream;

struct tl_media_config {
	int workers;        /* worker threads, default 1 */
	int reorder_ms;     /* caller->agent: longest wait for a missing packet, default 40 */
	int playout_max_ms; /* agent->caller: queued audio bound, default 60000 */
	/* agent->caller: a queue that stands above this for a second while the agent sends at
	 * about real time is cut down to it, oldest audio first (counted); 0 = off (default) */
	int playout_backlog_ms;
	int max_streams; /* streams at once (sizes the control queues), default 1000 */
	/* 1: the workers get no threads of their own; a host thread runs each one (see
	 * tl_media_worker_host), e.g. the agent loop that carries the same calls' WebSockets. */
	int hosted;
	/* The engine's clock in ms (CLOCK_MONOTONIC when NULL; hosted only, else tl_media_create
	 * refuses it with -EINVAL, since a worker's own timer runs on CLOCK_MONOTONIC): a test
	 * that hosts the worker on
	 * its own thread steps it by hand, so the playout runs the same on any machine. Every
	 * time the engine reads (the playout, arrivals, RTCP) and the deadlines
	 * tl_media_worker_flush returns are on it. */
	int64_t (*clock_ms)(void *arg);
	void *clock_arg;
};

int tl_media_create(struct tl_media **out, const struct tl_media_config *cfg);
/* Stops the workers. Every stream must have been released first. */
void tl_media_destroy(struct tl_media *m);

/* What the agent side exchanges: 8 kHz µ-law bytes (Twilio dialect) or 16-bit little-endian
 * PCM at 8000, 16000 or 24000 Hz (native dialect). */
enum tl_media_agent_format {
	TL_MEDIA_AGENT_ULAW = 0,
	TL_MEDIA_AGENT_L16,
};

/* Where a call's RTP may come from. Anything else is dropped and counted (tl_media_stats):
 * it never reaches the agent and never changes where the call's packets go. */
enum tl_media_rtp_source {
	/* The SDP address (always), or the source learned from the first TL_SRC_PROBATION (4)
	 * consecutive packets of one SSRC from one address:port (a PBX behind NAT); kept until
	 * new SDP names a new address, or the source is silent for rtp_relearn_ms. */
	TL_MEDIA_RTP_LEARN = 0,
	TL_MEDIA_RTP_STRICT, /* the SDP address and port only */
};

#define TL_MEDIA_BACKLOG_DEFAULT 0
#define TL_MEDIA_BACKLOG_OFF     (-1)

struct tl_media_stream_params {
	int rtp_fd, rtcp_fd; /* ownership passes to the stream (closed when it is freed) */
	struct sockaddr_storage remote; /* from SDP (AF_UNSPEC: none yet); ours go there */
	struct tl_sdp_media sdp;        /* negotiated codec, payload types, ptime, direction */
	enum tl_media_rtp_source rtp_source;
	int rtp_relearn_ms; /* learn: learn again after the source is silent this long; 0 = never */
	enum tl_media_agent_format agent_format;
	int agent_rate; /* L16 only: 8000, 16000 or 24000 */
	/* The backlog bound of this stream (the agent's playout_backlog_ms), ms: 0
	 * (TL_MEDIA_BACKLOG_DEFAULT) takes media.playout_backlog_ms, TL_MEDIA_BACKLOG_OFF none. */
	int playout_backlog_ms;
	/* Called on a media worker when the uplink goes from empty to non-empty or a played mark
	 * is due. It must not block: set a flag and wake the consumer (lws_cancel_service). */
	void (*notify)(void *arg);
	void *notify_arg; /* borrowed for the stream's life */
	/* Called once on a media worker when the stream is freed: the last notify has happened
	 * and notify_arg will not be used again. May be NULL. */
	void (*notify_release)(void *arg);
};

/* Creates a stream and starts moving its RTP. *out holds one reference. On failure nothing is
 * taken over: the caller still owns the fds and notify_arg (notify_release is not called). */
int tl_media_stream_create(struct tl_media_stream **out, struct tl_media *m,
                           const struct tl_media_stream_params *p);
/* References: the call holds one, the agent connection takes one; the stream is freed on a
 * worker after the last is dropped. Any thread. */
void tl_media_stream_ref(struct tl_media_stream *s);
void tl_media_stream_unref(struct tl_media_stream *s);

/* Control thread: new SDP after a re-INVITE/UPDATE (hold, new address, new codec). A new
 * address is where packets go from then on, and the RTP source is learned again. */
int tl_media_stream_update(struct tl_media_stream *s, const struct sockaddr_storage *remote,
                           const struct tl_sdp_media *sdp);

/* ---- Uplink: caller -> agent. One consumer thread. ---- */
#define TL_MEDIA_FRAME_MAX 960 /* 20 ms of 24 kHz L16 */

enum tl_media_event_kind {
	TL_MEDIA_EV_AUDIO = 1, /* one 20 ms frame in the agent format */
	TL_MEDIA_EV_DTMF,      /* one digit, at its end (RFC 4733 end bit) */
	TL_MEDIA_EV_MARK, /* the audio queued before mark `mark` has been played (or cleared) */
};

struct tl_media_event {
	enum tl_media_event_kind kind;
	uint32_t ts_ms;       /* media time of the frame since the stream began, ms */
	uint32_t seq;         /* 1, 2, ... per audio frame */
	char digit;           /* DTMF */
	uint16_t duration_ms; /* DTMF */
	uint32_t mark;        /* MARK: the id given to tl_media_stream_mark */
	uint16_t len;         /* AUDIO: bytes in data */
	uint8_t data[TL_MEDIA_FRAME_MAX];
};

/* Takes the next event; returns 1 when *ev was filled, 0 when there is none. */
int tl_media_stream_poll(struct tl_media_stream *s, struct tl_media_event *ev);
/* Whether poll would find an event, without taking it; when there is none, the next one
 * notifies, as after a poll that found none. Same thread as poll. */
int tl_media_stream_ready(struct tl_media_stream *s);

/* ---- Downlink: agent -> caller. One producer thread. ---- */
/* Queues audio in the agent format, any length. Returns bytes queued (all of them), or -ENOSPC
 * when it would exceed playout_max_ms (nothing queued). */
int tl_media_stream_play(struct tl_media_stream *s, const void *audio, size_t len);
/* Mark: reported back as TL_MEDIA_EV_MARK once the audio queued before it has been played. */
int tl_media_stream_mark(struct tl_media_stream *s, uint32_t mark);
/* Drops all queued audio within one frame (barge-in); pending marks are reported at once. */
int tl_media_stream_clear(struct tl_media_stream *s);
/* Sends digit (0-9 * # A-D) to the caller as RFC 4733 events. -ENOTSUP when not negotiated. */
int tl_media_stream_dtmf(struct tl_media_stream *s, char digit);

/* ---- Ringback: control thread. ---- */
/* Plays kind (TL_TONE_RINGBACK_US or _EU) to the caller from the start of its cadence
 * whenever no agent audio is queued (what the agent queued plays out first), paced and
 * encoded in the call's codec like agent audio; TL_TONE_RINGBACK_NONE stops it. The first
 * start allocates the tone's table (freed with the stream); a stream keeps its first kind.
 * Returns 0, -EINVAL (bad kind), -EBUSY (another kind was started before) or -ENOMEM. */
int tl_media_stream_ringback(struct tl_media_stream *s, enum tl_tone_ringback kind);

/* How late the media workers run: the largest share, over the workers, of the packets a worker
 * sent to callers in its last one-second window that went a whole ptime (20 ms) or more after
 * their slot, in permille (0..1000). 0 when no window closed in the last two seconds (an idle
 * worker) or a window had fewer than 50 packets. Any thread; no system call. */
unsigned tl_media_late_permille(const struct tl_media *m);

/* 1 when every worker sends its RTP in batches, one io_uring submit a wake-up; else the
 * negative errno that refused it (-ENOSYS with TL_NO_IO_URING=1 in the environment, -EPERM
 * under a seccomp profile that denies io_uring): each packet then goes with its own sendto. */
int tl_media_tx_batched(const struct tl_media *m);
/* 1 when every worker's send ring has its streams' RTP sockets registered (sent by index,
 * without the kernel's descriptor lookup per packet), else -errno (a kernel before 5.19, or
 * tl_media_config.max_streams, sip.max_calls, over the descriptor limit: sent by descriptor). */
int tl_media_tx_files(const struct tl_media *m);
/* 1 when every worker receives its RTP and RTCP on an io_uring (a multishot recvmsg per
 * socket, Linux 6.0): a wake-up's packets collected without a system call per socket; else
 * the negative errno that refused it (-ENOSYS with TL_NO_IO_URING=1 or TL_NO_IO_URING_RX=1,
 * -EINVAL from a kernel before 6.0): each readable socket is then read with recvmmsg. */
int tl_media_rx_batched(const struct tl_media *m);
/* The io_uring batches of all workers, summed; any thread, approximate while running. Sends
 * (tl_media_tx_batched): a batch of one goes by itself (sendmsg), not in a submit. Receives
 * (tl_media_rx_batched): packets collected from the receive rings, and requests the kernel
 * ended for want of a free buffer (armed again as buffers come back). */
struct tl_media_io_stats {
	uint64_t sent, failed;             /* RTP packets and host frames: sent, or refused */
	uint64_t submits;                  /* io_uring submits that carried them */
	uint64_t alone;                    /* of sent + failed: a batch of one, sent by itself */
	uint64_t host_batched, host_alone; /* of those: the hosts' (tl_media_worker_send) */
	uint64_t ring_received, ring_starved;
};
void tl_media_io_stats(const struct tl_media *m, struct tl_media_io_stats *st);

/* A hosted worker's host may send on its own sockets in the worker's batch: len bytes (at most
 * TL_MEDIA_SEND_MAX) on the connected socket fd, copied and queued; they go at the worker's
 * next flush (tl_media_worker_flush, or tl_media_worker_send_flush), in queue order, each
 * with MSG_DONTWAIT. done(arg, res, buf, len) is then called once on the host thread with the
 * bytes sent or -errno (a stream socket may take part: the rest is the caller's, from buf,
 * which is valid during the call only). Returns 0 when queued, else a negative errno and
 * nothing was sent (-ENOSYS: no batching, tl_media_tx_batched; -ENOBUFS; -EMSGSIZE). Before
 * anything else is written to fd, or fd is closed, flush. */
#define TL_MEDIA_SEND_MAX 1500
typedef void (*tl_media_sent_fn)(void *arg, int res, const uint8_t *buf, size_t len);
int tl_media_worker_send(struct tl_media *m, unsigned worker, int fd, const void *buf, size_t len,
                         tl_media_sent_fn done, void *arg);
void tl_media_worker_send_flush(struct tl_media *m, unsigned worker);

/* ---- Hosted workers (tl_media_config.hosted): one host thread per worker ---- */
unsigned tl_media_workers(const struct tl_media *m);
/* A host's poller: watch reports fd readable by calling tl_media_worker_event(m, worker, tag)
 * (level-triggered, on the host thread); 0 or negative errno. unwatch stops that. */
struct tl_media_host_ops {
	int (*watch)(void *host, int fd, uint64_t tag);
	void (*unwatch)(void *host, int fd);
};
/* Before the host thread runs the worker (not concurrently with it): ops watch the worker's
 * descriptors from now on (its two own at once, then each stream's). ops and host are
 * borrowed until the host leaves: ops NULL, once it no longer runs the worker (its watchers
 * are then its own to drop). 0 or negative errno (nothing watched). */
int tl_media_worker_host(struct tl_media *m, unsigned worker, const struct tl_media_host_ops *ops,
                         void *host);
/* On the host thread, once before it runs the worker: makes it the worker's thread, so that
 * audio it queues (tl_media_stream_play) is not signalled through the worker's eventfd. */
void tl_media_worker_attach(struct tl_media *m, unsigned worker);
/* On the host thread: a descriptor the worker watches is readable. */
void tl_media_worker_event(struct tl_media *m, unsigned worker, uint64_t tag);
/* On the host thread, after the events of one wake-up and before it waits again: commands,
 * audio the host queued since the last call (a talk spurt's first frame at once), every packet
 * due. Returns when the worker wants tl_media_worker_timer next, in CLOCK_MONOTONIC ms (or
 * on tl_media_config.clock_ms; 0: never); the host keeps that deadline with its own timer (a hosted
 * worker has no timerfd). No system call. */
int64_t tl_media_worker_flush(struct tl_media *m, unsigned worker);
/* On the host thread, between two events of one wake-up (after an agent's audio was queued):
 * audio the host queued since the last call goes out now, as it would at the flush (a talk
 * spurt's first frame, a real-time agent's next one), without waiting for the wake-up's other
 * events. Commands and the packets due still wait for tl_media_worker_flush, which must follow
 * before the host waits. */
void tl_media_worker_kick(struct tl_media *m, unsigned worker);
/* On the host thread: the deadline the last flush returned has come. */
void tl_media_worker_timer(struct tl_media *m, unsigned worker);
/* As tl_media_stream_create, on a given worker (worker < tl_media_workers). */
int tl_media_stream_create_on(struct tl_media_stream **out, struct tl_media *m,
                              const struct tl_media_stream_params *p, unsigned worker);

/* ---- Bridging two streams (a caller and a leg trunkline placed): control thread ---- */
/* As tl_media_stream_create, on the worker of peer (borrowed until return), so that the two
 * can be relayed. */
int tl_media_stream_create_beside(struct tl_media_stream **out, struct tl_media *m,
                                  const struct tl_media_stream_params *p,
                                  const struct tl_media_stream *peer);
/* From now on what each of a and b receives is what the other sends, 20 ms frames in order,
 * buffered at most 128 ms (the oldest dropped beyond): payloads copied when both use one codec,
 * transcoded through PCM for PCMU <-> PCMA; RFC 4733 digits are played on as new events. Agent
 * audio, ringback and the uplink of both are bypassed: close the agent connections first, the
 * digits each stream receives then have a single producer (the worker). Ends when either stream is
 * freed. Both must be alive (references held) at the call. 0, -EXDEV (not on one worker) or
 * -ENOBUFS (the worker's queue is full). */
int tl_media_stream_relay(struct tl_media_stream *a, struct tl_media_stream *b);

/* Counters, any thread (approximate while running). */
struct tl_media_stats {
	uint64_t rx_packets, rx_bytes, rx_late, rx_dup, rx_lost, rx_bad;
	uint64_t tx_packets, tx_bytes, tx_silence, uplink_drops;
	uint32_t jitter_ms;
	uint32_t playout_ms;   /* agent audio queued, not yet played to the caller */
	uint64_t rx_foreign;   /* RTP from a source other than the call's: dropped */
	uint64_t rx_learning;  /* RTP held back while its source was being learned (NAT) */
	uint64_t rtcp_dropped; /* RTCP from another address, or not RTCP: dropped */
	uint64_t rx_fec;       /* of rx_lost: rebuilt from the next packet's FEC (Opus) */
	uint64_t rx_srtp_fail; /* SRTP/SRTCP that failed authentication or replay: dropped */
	struct sockaddr_storage foreign_from; /* the first foreign source; AF_UNSPEC when none */
	uint64_t relayed, relay_dropped; /* bridged: frames sent from the peer, frames dropped */
	uint64_t tx_on_arrival;          /* talk spurts whose first frame went as soon as it came */
	uint64_t playout_dropped_ms;     /* agent audio dropped by the backlog bound */
	uint32_t playout_backlog_ms;     /* that bound (the agent's or media's), 0 = off */
	uint64_t tx_rephased; /* a packet that stood in the queue for a second sent early */
	uint64_t tx_pulled;   /* a frame sent half a ptime after the one before, not a ptime */
	uint64_t tx_ahead_ms; /* ms packets went early, in all (on arrival, rephased, regridded) */
	uint64_t tx_slot_waits; /* a talk spurt's slot came before its frame: it was waited for */
};
void tl_media_stream_stats(const struct tl_media_stream *s, struct tl_media_stats *st);

#endif
