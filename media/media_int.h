/* Private to the media engine (engine.c: workers and commands; stream.c: one call's audio). */
#ifndef TL_MEDIA_INT_H
#define TL_MEDIA_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <speex/speex_resampler.h>

#include "trunkline/codec.h"
#include "trunkline/media.h"
#include "trunkline/queue.h"
#include "trunkline/reorder.h"
#include "trunkline/rtp.h"
#include "trunkline/srtp.h"

#define TL_UP_SLOTS      16 /* uplink events: 320 ms of agent-loop stall before audio drops */
#define TL_MARK_SLOTS    64
#define TL_DTMF_SLOTS    32
#define TL_CHUNK_FRAMES  3 /* downlink chunk payload: 60 ms in the agent's format (two per call) */
#define TL_PKT_MAX       1500
#define TL_RX_PAYLOAD    1280 /* G.711 or G.722 160 ms, the largest Opus packet */
#define TL_BATCH         64   /* recvmmsg / sendmmsg batch */
#define TL_RTCP_INTERVAL 5000 /* ms */
#define TL_SRC_PROBATION 4    /* consecutive packets that make a new RTP source (NAT) */
#define TL_WHEEL         128  /* playout wheel: 1 ms slots, a power of two */
#define TL_TXRING_SLOTS  64   /* a worker's RTP packets queued for one io_uring submit */
#define TL_RXRING_BUFS   512  /* a worker's packets received and not yet collected */
#define TL_RX_STREAMS    256  /* a worker's streams from which it receives on the ring */
#define TL_TXRING_BATCH  32   /* queued packets that make a submit before the wake-up ends */

/* Adds n to a counter that only the stream's worker writes (other threads only read it): a
 * relaxed load and store, without the locked read-modify-write of atomic_fetch_add, which
 * would cost several of those a packet. */
static inline void tl_stat_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}

/* Downlink audio: a singly linked list of chunks written by the producer thread and read by the
 * worker; consumed chunks go back through a lock-free stack so the worker never frees. */
struct tl_chunk {
	_Atomic(struct tl_chunk *) next;
	struct tl_chunk *free_next;
	_Atomic uint32_t len;
	uint8_t data[]; /* the stream's dl_chunk bytes */
};

/* One uplink event without its audio, which sits in up_data (agent_frame bytes a slot). */
struct tl_up_hdr {
	enum tl_media_event_kind kind;
	uint32_t ts_ms, seq, mark;
	uint16_t duration_ms, len;
	char digit;
};

struct tl_mark {
	uint64_t pos; /* downlink byte position the mark follows */
	uint32_t id;
};

/* An IPv4 or IPv6 address with its port: 28 bytes where a sockaddr_storage takes 128. */
union tl_rtp_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* Where a call's RTP may come from and where ours goes (rtp_source.c). Worker-owned, except the
 * counters and foreign_from (written once, then have_foreign), which any thread may read. */
struct tl_rtp_source {
	/* Read on every packet first (the first cache line): the check and where ours go. */
	int locked;     /* src is in force; 0 while learning */
	int strict;     /* the SDP address only, never learn */
	int relearn_ms; /* learn again after the source is silent this long; 0 = never */
	socklen_t src_len;
	int64_t last_rx;
	union tl_rtp_addr src; /* the accepted RTP source, once learned */
	socklen_t rtp_to_len;
	union tl_rtp_addr rtp_to; /* where ours go */
	int have_sdp;             /* tl_rtp_source_set_sdp was called */
	union tl_rtp_addr sdp;    /* the address the SDP names */
	socklen_t sdp_len;        /* 0: none (delayed offer, hold with 0.0.0.0) */
	union tl_rtp_addr cand;   /* learning: the run of packets being watched */
	socklen_t cand_len;
	uint32_t cand_ssrc;
	uint16_t cand_seq;
	unsigned cand_n;
	union tl_rtp_addr rtcp_to; /* where our RTCP goes */
	socklen_t rtcp_to_len;
	int rtcp_latched; /* rtcp_to is where the peer's RTCP comes from */
	_Atomic uint64_t rx_foreign, rx_learning, rtcp_dropped;
	atomic_int have_foreign;
	union tl_rtp_addr foreign_from;
	socklen_t foreign_from_len;
};

void tl_rtp_source_init(struct tl_rtp_source *r, int strict, int relearn_ms);
/* The SDP's address (AF_UNSPEC: none). When it differs from the last one, our packets go there
 * and the source is learned again. Returns 1 when it changed. */
int tl_rtp_source_set_sdp(struct tl_rtp_source *r, const struct sockaddr_storage *sdp);
/* A well-formed RTP packet of a negotiated payload type: 1 to take it, 0 to drop it (counted). */
int tl_rtp_source_rtp(struct tl_rtp_source *r, const struct sockaddr_storage *from, uint32_t ssrc,
                      uint16_t seq, int64_t now);
/* A datagram on the RTCP port: 1 to take it, 0 to drop it (counted). */
int tl_rtp_source_rtcp(struct tl_rtp_source *r, const struct sockaddr_storage *from,
                       const uint8_t *pkt, size_t len);

/* relay.c: the audio a bridged peer stream received, waiting to be sent by this one. Worker
 * only (both streams of a pair are on one worker), but the counters, which any thread reads. */
#define TL_RELAY_SAMPLES 1024u /* a power of two (wrap-safe counters): 128 ms at 8 kHz */
struct tl_relay {
	struct tl_media_stream *peer; /* NULL when not bridged */
	int16_t *buf;    /* TL_RELAY_SAMPLES of 8 kHz PCM, whatever either codec is; while linked */
	uint32_t rd, wr; /* samples ever taken and put */
	int primed;      /* enough is buffered to send from */
	_Atomic uint64_t st_relayed, st_dropped; /* frames sent from the ring; frames dropped */
};

struct tl_media_worker;

/* The fields are grouped by when they are used, so that a packet touches few cache lines (at
 * 1000 calls each call's state is out of the cache by its next packet): what every packet
 * reads, then the send side, the counters, the source check, the negotiation, and what only
 * set-up, DTMF, ringback and RTCP use. The groups start on a cache line (tl_stream_alloc
 * allocates the struct aligned). */
struct tl_media_stream {
	/* ---- Every packet, both ways. ---- */
	_Alignas(64) atomic_int refs;
	int rtp_fd, rtcp_fd;
	int index; /* in the worker's stream array */
	struct tl_media_worker *w;
	/* Uplink: worker produces, consumer thread polls. */
	struct tl_reorder *reorder;
	/* Codec path (stream_codec.c), set up at negotiation and when a re-INVITE changes the
	 * codec: the codec at its own PCM rate, resamplers between that and the agent's rate (NULL
	 * when they are equal), µ-law straight through to a µ-law agent. */
	struct tl_codec_ctx *codec;
	SpeexResamplerState *up_rs, *down_rs;
	struct tl_srtp *srtp; /* worker-owned; NULL when the call is plain RTP (srtp.c) */
	int passthrough;
	int codec_fec;       /* gaps wait for the next packet, whose FEC rebuilds the last one */
	int gaps_pending;    /* gaps reported by the reorder stage, not yet concealed */
	unsigned tx_ms;      /* packet length we send: the answered ptime */
	unsigned tx_due;     /* ms since the last packet went */
	unsigned clock_khz;  /* RTP clock of the codec, per ms: 8, or 48 for Opus */
	unsigned codec_rate; /* the codec's PCM rate (tl_codec_rate), read per packet */
	int srtp_on;         /* sdp.srtp.suite is not TL_SRTP_NONE (set by tl_stream_srtp_apply) */
	struct tl_up_hdr *up;
	uint8_t *up_data;
	atomic_uint up_head, up_tail;
	atomic_int up_notified;
	uint32_t up_seq, up_ms;
	enum tl_media_agent_format fmt;
	size_t agent_frame; /* bytes of 20 ms in the agent format */
	void (*notify)(void *arg);
	void *notify_arg;
	uint32_t rx_ssrc;
	int have_rx_ssrc;
	struct tl_rtp_jitter jitter;
	uint16_t rx_max_seq;
	uint32_t rx_cycles, rx_base_seq, rx_count;
	int registered; /* in the worker's epoll set, or its receive ring */
	int rx_id[2];   /* RTP, RTCP: the receive ring's ids; -1 watched by the poller */
	int tx_file;    /* rtp_fd's index in the worker's send ring (tl_txring_file_add), or -1 */

	/* ---- The send side: downlink queue, transmit state, playout schedule. ---- */
	/* Downlink: producer thread plays, worker sends. What the producer uses first, on one
	 * cache line (tl_media_stream_play, tl_playout_kick). */
	_Alignas(64) struct tl_chunk *dl_tail; /* producer */
	uint64_t dl_written;                   /* producer: bytes ever written */
	atomic_uint_fast64_t dl_pub;           /* published dl_written */
	atomic_uint_fast64_t dl_read_pub;      /* published dl_read, for the producer's bound */
	_Atomic(struct tl_chunk *) dl_free;    /* consumed chunks, worker -> producer */
	size_t dl_max;                         /* bound in bytes */
	size_t dl_chunk; /* bytes a chunk holds: TL_CHUNK_FRAMES agent frames (480 for µ-law) */
	/* Spurt wake-up: the producer pushes the stream once on its worker's kick stack. */
	atomic_int kicked;
	/* The worker's side. */
	struct tl_chunk *dl_head; /* worker */
	uint32_t dl_rd;           /* worker: offset in dl_head */
	uint64_t dl_read;         /* worker: bytes ever consumed */
	atomic_uint_fast64_t dl_clear_upto;
	atomic_uint mark_head, mark_tail;
	atomic_uint dtmf_head, dtmf_tail;
	atomic_uint ring_on; /* see ring, below */

	/* Transmit state, worker only. */
	uint32_t ssrc;
	uint16_t tx_seq;
	uint32_t tx_ts;
	int talking;
	char dtmf_digit; /* digit being sent, 0 when none */
	int64_t next_rtcp_ms;

	/* Playout schedule (playout.c), worker only: the next packet is due at tx_next; its
	 * timestamp belongs at home_next on the call's own grid (set at start, ptime apart).
	 * tx_next < home_next while a talk spurt runs on the phase of its first frame. tx_last:
	 * when the last packet went (0 before the first). */
	int64_t tx_next, home_next, tx_last;
	struct tl_media_stream *wh_next, *wh_prev; /* the worker's wheel slot list */
	int wh_slot;                               /* -1: not in the wheel */
	struct tl_media_stream *kick_next;         /* the worker's kick stack (kicked, above) */
	int kick_stale;  /* worker only: audio went on its slot since the kick (playout.c) */
	int standing;    /* sends in a row over a small standing queue */
	int spurt_wait;  /* this slot already waited for a talk spurt's frame */
	int spurt_early; /* ms of that wait taken when the last packet went (playout.c) */
	/* A pinned talk spurt (playout.c, pinned): frames in a row whose kick was refused and
	 * that waited about as long for their slot, how long the first waited, when the last came.
	 */
	int pin_n, pin_wait;
	int64_t pin_at;
	/* Backlog bound (media.playout_backlog_ms): the queue's least over a window, and the
	 * agent's count of audio when it began (it ends at bl_until). Worker only; dl_backlog 0 =
	 * off. */
	size_t dl_backlog;
	uint64_t bl_min, bl_in0;
	int64_t bl_until;
	struct tl_relay relay; /* relay.c */

	/* ---- Counters: written by the worker only (tl_stat_add), read anywhere (relaxed). ---- */
	_Alignas(64) _Atomic uint64_t st_rx_packets, st_rx_bytes, st_tx_packets, st_tx_bytes,
	    st_tx_silence, st_tx_on_arrival;
	/* Worker-owned figures (reorder counters, jitter) published once a tick, so that other
	 * threads never read the worker's plain fields. */
	_Atomic uint64_t st_rx_late, st_rx_dup, st_rx_lost;
	_Atomic uint32_t st_jitter; /* ms */
	_Atomic uint64_t st_rx_bad, st_up_drops, st_rx_srtp_fail, st_rx_fec;
	_Atomic uint64_t st_dl_dropped;    /* bytes of agent audio (the backlog bound) */
	_Atomic uint64_t st_tx_rephased;   /* standing packets sent early (playout.c) */
	_Atomic uint64_t st_tx_pulled;     /* refused kicks sent at half a ptime (playout.c) */
	_Atomic uint64_t st_tx_slot_waits; /* spurt_grace's waits at the slot (playout.c) */
	_Atomic uint64_t st_tx_ahead_ms;   /* ms packets went under a ptime after the one before,
	                                    * on arrival or rephased, in all (playout.c) */

	/* ---- Worker-owned copy of the negotiation; replaced by update commands. ---- */
	_Alignas(64) struct tl_rtp_source src; /* who may send to us, where we send */
	struct tl_sdp_media sdp;
	/* sdp.te_pt as the agent thread may read it (tl_media_stream_dtmf): set with s->sdp. */
	atomic_int te_pt_pub;

	/* ---- Set-up, DTMF, ringback, RTCP: not on every packet. ---- */
	int agent_rate;
	void (*notify_release)(void *arg);
	uint32_t dtmf_last_ts; /* RTP ts of the last digit reported */
	int dtmf_reported;
	/* TL_MARK_SLOTS, allocated by the producer at the call's first mark (most agents send
	 * none) before it publishes mark_head; the worker reads it only once mark_head says it
	 * holds a mark. */
	struct tl_mark *marks;
	char dtmf_q[TL_DTMF_SLOTS];
	uint32_t dtmf_ts;
	unsigned dtmf_ticks, dtmf_end_sent;
	uint32_t last_sr_mid;
	int64_t last_sr_at;
	uint32_t rtcp_expected_prior, rtcp_received_prior;
	/* Ringback (tl_media_stream_ringback): ring is set once by the control thread before it
	 * publishes ring_on (0 off, else a start count: a new count restarts the cadence). */
	struct tl_tone_cadence *ring;
	unsigned ring_starts; /* control thread */
	unsigned ring_seen;   /* worker: the start count being played */
	uint32_t ring_pos;    /* worker: samples into the cadence */
};

struct tl_media_cmd {
	enum { TL_CMD_ADD = 1, TL_CMD_UPDATE, TL_CMD_RELEASE, TL_CMD_RELAY } kind;
	struct tl_media_stream *s;
	struct tl_media_stream *peer; /* TL_CMD_RELAY: bridge s and peer */
	struct sockaddr_storage remote;
	struct tl_sdp_media sdp;
};

struct tl_media_worker {
	struct tl_media *m;
	pthread_t thread;
	int epfd, timerfd, cmdfd;
	struct tl_queue *cmdq; /* control -> this worker (trunkline/queue.h); wakes cmdfd */
	struct tl_media_stream **streams;
	size_t n_streams, cap_streams;
	atomic_int stop; /* set by tl_media_destroy on its thread */
	uint8_t
	    out_buf[TL_PKT_MAX]; /* one outgoing packet at a time: each call has its own socket */
	struct tl_txring *tx;    /* batched sends (txring.c), NULL: sendto each packet */
	int tx_err;              /* why tx is NULL (tl_txring_create) */
	int tx_files_err;        /* why tx has no registered files (tl_txring_files) */
	struct tl_rxring *rx;    /* receives (rxring.c), NULL: recvmmsg on each readable socket */
	int rx_err;              /* why rx is NULL (tl_rxring_create) */
	int rx_on;               /* the streams' sockets are on rx (rx_switch) */
	unsigned rx_up;          /* streams from which they are, and below half of which not */
	int64_t rx_now;          /* the clock for the packets of one tl_rxring_run */
	/* recvmmsg batch */
	struct mmsghdr in_msgs[TL_BATCH];
	struct iovec in_iov[TL_BATCH];
	uint8_t in_buf[TL_BATCH][TL_PKT_MAX];
	struct sockaddr_storage in_addr[TL_BATCH];
	/* Playout wheel (playout.c): streams by the ms their next packet is due. */
	struct tl_media_stream *wheel[TL_WHEEL];
	uint64_t wheel_bits[TL_WHEEL / 64];
	int64_t wheel_ms;                        /* the last ms processed */
	int64_t armed_ms;                        /* the timerfd's deadline, 0 when disarmed */
	_Atomic(struct tl_media_stream *) kicks; /* streams whose empty queue got audio */
	/* Lateness (playout.c): packets sent and those sent TL_LATE_MS or more after their slot,
	 * over TL_LOAD_WINDOW_MS; the last window's share in permille and when it closed. */
	uint32_t sends, late_sends;
	int64_t load_until;
	_Atomic uint32_t late_permille;
	_Atomic int64_t late_at_ms;
	int hosted;         /* run by a host thread (tl_media_worker_host), no thread of its own */
	int no_early_grace; /* TL_PLAYOUT_SLOT_WAKE=1: wake at the slot as before (playout.c) */
	const struct tl_media_host_ops *ops; /* hosted: the host's poller */
	void *host;
	int events, cmds; /* hosted: events since the last flush; commands among them */
	int started;      /* its own thread was started (joined at destroy) */
};

extern _Thread_local struct tl_media_worker *tl_media_self;

/* txring.c: a worker's RTP sends batched on an io_uring (one system call a wake-up instead of
 * one a packet). Owned and used by one worker thread. */
struct tl_txring;
struct tl_txring_stats {
	uint64_t sent, failed; /* completions: sent, or refused (a full socket: EAGAIN) */
	uint64_t batches;      /* submits */
	uint64_t alone;        /* of sent + failed: sent by themselves (sendmsg), not submitted */
	uint64_t host_batched, host_alone; /* of those: the host's sends (send_cb with done) */
};
/* 0, or -errno when io_uring is unavailable (-ENOSYS with TL_NO_IO_URING=1 in the
 * environment): then the worker sends with sendto. */
int tl_txring_create(struct tl_txring **out, unsigned slots);
void tl_txring_destroy(struct tl_txring *r); /* flushes first; NULL is fine */
/* Copies the packet and its address: 0 queued, -ENOBUFS no slot (send it yourself),
 * -EMSGSIZE too large. Sent by tl_txring_flush, or when TL_TXRING_BATCH are queued. */
int tl_txring_send(struct tl_txring *r, int fd, const void *pkt, size_t len,
                   const struct sockaddr *to, socklen_t tolen);
/* The same, to NULL (a connected socket) or to; done is called once, on this thread, inside
 * the flush that sends it, with the bytes sent or -errno (a stream socket may take part),
 * the slot's copy and its length (valid during the call only). */
int tl_txring_send_cb(struct tl_txring *r, int fd, const void *pkt, size_t len,
                      const struct sockaddr *to, socklen_t tolen, tl_media_sent_fn done, void *arg);
/* Registered files: a table of n on the ring (0, or -errno: refused, e.g. n over the
 * descriptor limit; the ring then works without). A socket added gets an index (or -ENOSPC
 * when the table is full, else the kernel's -errno); a send to it by index skips the kernel's
 * lookup of the descriptor. Remove it before it is closed: until then the ring keeps the socket
 * open. */
int tl_txring_files(struct tl_txring *r, unsigned n);
int tl_txring_file_add(struct tl_txring *r, int fd);
/* Flush first: a packet still queued names the index, and fails once it is removed. */
void tl_txring_file_remove(struct tl_txring *r, int file); /* -1 is fine */
/* tl_txring_send by the index file (tl_txring_file_add of fd; -1: by fd). A packet queued
 * alone goes with sendmsg on fd. */
int tl_txring_send_file(struct tl_txring *r, int fd, int file, const void *pkt, size_t len,
                        const struct sockaddr *to, socklen_t tolen);
/* Submits what is queued (one system call) and collects completions. Before a socket a queued
 * packet names is closed, and at the end of every wake-up. NULL is fine. */
void tl_txring_flush(struct tl_txring *r);
int tl_txring_pending(const struct tl_txring *r);
/* Any thread (the counters are the worker's, read relaxed). */
void tl_txring_stats(const struct tl_txring *r, struct tl_txring_stats *st);

/* rxring.c: a worker's incoming packets on an io_uring, one multishot recvmsg per socket into
 * buffers of the ring's own (Linux 6.0). Owned and used by one worker thread. */
struct tl_rxring;
struct tl_rxring_stats {
	uint64_t packets;   /* delivered */
	uint64_t rearms;    /* requests the kernel ended and that were armed again */
	uint64_t nobufs;    /* of those, ended because no buffer was free */
	uint64_t given_up;  /* sockets handed back to the poller after errors in a row */
	uint64_t failed;    /* re-arms that found no submission entry */
	uint64_t overflows; /* runs that found completions waiting in the kernel (queue full) */
};
/* A packet for the socket added with tag: the payload and its source, valid during the call
 * only (the caller may change the bytes). buf NULL: the ring gave the socket up after errors
 * in a row; the caller watches it itself from now on (its id is no longer valid). */
typedef void (*tl_rxring_fn)(void *arg, uint64_t tag, uint8_t *buf, size_t len,
                             struct sockaddr_storage *from, socklen_t fromlen);
/* bufs: packets the kernel may hold for us before we collect them, a power of two; sockets: how
 * many may be added at most (the completion queue's size, not a limit). 0, or
 * -errno when io_uring or multishot recvmsg is unavailable (-ENOSYS with TL_NO_IO_URING=1 or
 * TL_NO_IO_URING_RX=1): then the worker reads each socket itself. */
int tl_rxring_create(struct tl_rxring **out, unsigned bufs, unsigned sockets);
void tl_rxring_destroy(struct tl_rxring *r); /* NULL is fine */
/* Readable when packets wait for tl_rxring_run. */
int tl_rxring_fd(const struct tl_rxring *r);
/* Receives fd's packets from now on: an id for tl_rxring_remove, or -errno. */
int tl_rxring_add(struct tl_rxring *r, int fd, uint64_t tag);
/* Before the socket closes: none of its packets is delivered after this. */
void tl_rxring_remove(struct tl_rxring *r, int id);
/* Every packet waiting, each to fn, in the order they came (per socket); no system call unless
 * a request must be armed again. Returns the completions seen. */
unsigned tl_rxring_run(struct tl_rxring *r, tl_rxring_fn fn, void *arg);
/* Any thread (the counters are the worker's, read relaxed). */
void tl_rxring_stats(const struct tl_rxring *r, struct tl_rxring_stats *st);

struct tl_media {
	struct tl_media_config cfg;
	struct tl_media_worker *workers;
	int n_workers;
	unsigned next_worker;
};

/* The engine's clock (tl_media_config.clock_ms), CLOCK_MONOTONIC ms when m is NULL. */
int64_t tl_media_now_ms(const struct tl_media *m);

/* stream.c, called on the stream's worker */
/* srtp.c hooks (worker thread): apply keys (same keys: no change; new keys: re-key), and the
 * in-place transforms; a negative return means drop the packet (counted when received). */
void tl_stream_srtp_apply(struct tl_media_stream *s, const struct tl_srtp_keys *keys);
int tl_stream_srtp_in(struct tl_media_stream *s, uint8_t *pkt, size_t *len, int rtcp);
int tl_stream_srtp_out(struct tl_media_stream *s, uint8_t *pkt, size_t *len, size_t cap, int rtcp);
void tl_stream_on_rtp(struct tl_media_stream *s, const uint8_t *pkt, size_t len,
                      const struct sockaddr_storage *from, socklen_t fromlen, int64_t now);
void tl_stream_on_rtcp(struct tl_media_stream *s, const uint8_t *pkt, size_t len,
                       const struct sockaddr_storage *from, socklen_t fromlen, int64_t now);
/* One packet now (DTMF, agent audio, ringback, relay or silence) and the stream's upkeep
 * (reorder timeouts, marks, stats, RTCP). Returns 1 when it was agent or relayed audio. */
int tl_stream_tx(struct tl_media_stream *s, int64_t now);
/* Bytes of agent audio queued, after dropping what a clear (barge-in) asked to drop. */
uint64_t tl_stream_dl_queued(struct tl_media_stream *s);
/* For the unit tests' fake worker: tl_stream_tx once ptime has passed in ticks of tick_ms. */
void tl_stream_tick(struct tl_media_stream *s, int64_t now); /* tl_stream_tick_ms(.., 20) */
void tl_stream_tick_ms(struct tl_media_stream *s, int64_t now, unsigned tick_ms);

/* playout.c: when each stream's packets go (worker), and the producer's wake-up. */
void tl_playout_add(struct tl_media_worker *w, struct tl_media_stream *s, int64_t now);
void tl_playout_remove(struct tl_media_worker *w, struct tl_media_stream *s);
void tl_playout_kicks(struct tl_media_worker *w); /* sends the spurt starts that are waiting */
void tl_playout_run(struct tl_media_worker *w);   /* sends what is due, re-arms the timer */
void tl_playout_kick(struct tl_media_stream *s);  /* producer: audio landed in an empty queue */
void tl_stream_apply(struct tl_media_stream *s, const struct sockaddr_storage *remote,
                     const struct tl_sdp_media *sdp);
void tl_stream_free(struct tl_media_stream *s);
/* stream.c, for stream_codec.c */
struct tl_media_event *tl_stream_up_slot(struct tl_media_stream *s);
void tl_stream_up_commit(struct tl_media_stream *s);
size_t tl_stream_dl_take(struct tl_media_stream *s, uint8_t *out, size_t n);

/* stream_codec.c: the codec path of one stream, on its worker (setup also at create). */
int tl_stream_codec_setup(struct tl_media_stream *s); /* for s->sdp; 0 or -ENOMEM */
/* The reorder slot for sdp's codec at its ptime (at least 20 ms): payload + payload type byte.
 * A longer packet than that grows the slots once (tl_stream_on_rtp), up to TL_RX_PAYLOAD. */
size_t tl_stream_rx_slot(const struct tl_sdp_media *sdp);
/* How many reorder slots a wait of reorder_ms needs (8 for the default 40 ms, at most 128): a
 * packet further ahead than that cuts the wait short (tl_reorder_push's -ENOBUFS). */
unsigned tl_stream_rx_slots(unsigned reorder_ms);
void tl_stream_codec_free(struct tl_media_stream *s);
void tl_stream_uplink_audio(struct tl_media_stream *s, const uint8_t *payload, size_t len);
void tl_stream_uplink_lost(struct tl_media_stream *s, const uint8_t *next, size_t next_len);
void tl_stream_flush_gaps(struct tl_media_stream *s, const uint8_t *next, size_t next_len);
/* tx_ms of downlink audio (or ringback, or silence) encoded into payload; *len its bytes.
 * Returns 1 when it was audio, 0 silence, -1 when nothing can be sent. */
int tl_stream_next_payload(struct tl_media_stream *s, uint8_t *payload, size_t max, size_t *len);

int tl_stream_alloc(struct tl_media_stream **out, struct tl_media *m,
                    const struct tl_media_stream_params *p);

/* relay.c, on the worker of both streams */
void tl_relay_link(struct tl_media_stream *a, struct tl_media_stream *b);
void tl_relay_unlink(struct tl_media_stream *s); /* tl_stream_free calls it */
/* Audio s received (decoded or concealed: n samples of PCM at rate Hz, a multiple of 8000) for
 * s's peer to send. */
void tl_relay_push(struct tl_media_stream *s, const int16_t *pcm, size_t n, unsigned rate);
/* n samples of 8 kHz PCM from the peer into pcm8: 1, or silence and 0 when none is due. */
int tl_relay_take(struct tl_media_stream *s, int16_t *pcm8, size_t n);
/* A digit s received (RFC 4733, at its end), sent on by the peer. */
void tl_relay_dtmf(struct tl_media_stream *s, char digit);

#endif
