/* One call's audio on its media worker: RTP in -> reorder -> decode -> agent format -> uplink
 * queue; downlink chunks -> 20 ms frames -> encode -> RTP out; RFC 4733 both ways; RTCP.
 * Who may send to the call is rtp_source.c's. No allocation, lock or log on these paths: buffers
 * are made in tl_media_stream_create. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "media_int.h"
#include "trunkline/g711.h"

static const char dtmf_chars[] = "0123456789*#ABCD";

/* ---- uplink queue: worker produces ---- */

/* Events are built in up_scratch, then stored compactly: a small header per slot and the
 * audio in slots of the call's own 20 ms frame size (160 bytes for µ-law), not the largest.
 * One scratch a thread, not a stream: a slot is always committed before the next is taken. */
static _Thread_local struct tl_media_event up_scratch;

/* The slot, or NULL when the ring is full (nothing counted). */
static struct tl_media_event *up_room(struct tl_media_stream *s)
{
	unsigned h = atomic_load_explicit(&s->up_head, memory_order_relaxed);
	unsigned t = atomic_load_explicit(&s->up_tail, memory_order_acquire);

	return h - t >= TL_UP_SLOTS ? NULL : &up_scratch;
}

struct tl_media_event *tl_stream_up_slot(struct tl_media_stream *s)
{
	struct tl_media_event *ev = up_room(s);

	if (!ev)
		atomic_fetch_add_explicit(&s->st_up_drops, 1, memory_order_relaxed);
	return ev;
}

void tl_stream_up_commit(struct tl_media_stream *s)
{
	unsigned h = atomic_load_explicit(&s->up_head, memory_order_relaxed);
	const struct tl_media_event *ev = &up_scratch;
	struct tl_up_hdr *slot = &s->up[h % TL_UP_SLOTS];
	size_t len = ev->len < s->agent_frame ? ev->len : s->agent_frame;

	slot->kind = ev->kind;
	slot->ts_ms = ev->ts_ms;
	slot->seq = ev->seq;
	slot->digit = ev->digit;
	slot->duration_ms = ev->duration_ms;
	slot->mark = ev->mark;
	slot->len = (uint16_t)len;
	memcpy(s->up_data + (size_t)(h % TL_UP_SLOTS) * s->agent_frame, ev->data, len);
	atomic_store_explicit(&s->up_head, h + 1, memory_order_release);
	if (!atomic_exchange_explicit(&s->up_notified, 1, memory_order_acq_rel) && s->notify)
		s->notify(s->notify_arg);
}

int tl_media_stream_ready(struct tl_media_stream *s)
{
	unsigned t = atomic_load_explicit(&s->up_tail, memory_order_relaxed);

	if (t != atomic_load_explicit(&s->up_head, memory_order_acquire))
		return 1;
	/* Re-arm the wake-up before the last look, so a frame pushed meanwhile notifies. */
	atomic_store_explicit(&s->up_notified, 0, memory_order_seq_cst);
	return t != atomic_load_explicit(&s->up_head, memory_order_acquire);
}

int tl_media_stream_poll(struct tl_media_stream *s, struct tl_media_event *ev)
{
	unsigned t = atomic_load_explicit(&s->up_tail, memory_order_relaxed);
	const struct tl_up_hdr *slot;

	if (!tl_media_stream_ready(s))
		return 0;
	slot = &s->up[t % TL_UP_SLOTS];
	ev->kind = slot->kind;
	ev->ts_ms = slot->ts_ms;
	ev->seq = slot->seq;
	ev->digit = slot->digit;
	ev->duration_ms = slot->duration_ms;
	ev->mark = slot->mark;
	ev->len = slot->len;
	memcpy(ev->data, s->up_data + (size_t)(t % TL_UP_SLOTS) * s->agent_frame, slot->len);
	atomic_store_explicit(&s->up_tail, t + 1, memory_order_release);
	return 1;
}

static void uplink_dtmf(struct tl_media_stream *s, const uint8_t *p, size_t len, uint32_t ts)
{
	struct tl_media_event *ev;

	if (len < 4 || !(p[1] & 0x80) || p[0] > 15)
		return;
	if (s->dtmf_reported && ts == s->dtmf_last_ts)
		return; /* the end packet is sent three times */
	s->dtmf_reported = 1;
	s->dtmf_last_ts = ts;
	if (s->relay.peer) { /* bridged: the digit is played on to the peer (relay.c) */
		tl_relay_dtmf(s, dtmf_chars[p[0]]);
		return;
	}
	ev = tl_stream_up_slot(s);
	if (!ev)
		return;
	ev->kind = TL_MEDIA_EV_DTMF;
	ev->digit = dtmf_chars[p[0]];
	ev->duration_ms = (uint16_t)(((p[2] << 8) | p[3]) / (s->sdp.te_rate == 48000 ? 48 : 8));
	ev->ts_ms = s->up_ms;
	ev->len = 0;
	tl_stream_up_commit(s);
}

/* One packet in sequence order: its payload type and payload. */
static void deliver(struct tl_media_stream *s, uint8_t pt, const uint8_t *p, size_t len,
                    uint32_t ts)
{
	tl_stream_flush_gaps(s, pt == s->sdp.pt ? p : NULL, len);
	if (s->sdp.te_pt >= 0 && pt == s->sdp.te_pt)
		uplink_dtmf(s, p, len, ts);
	else if (pt == s->sdp.pt)
		tl_stream_uplink_audio(s, p, len);
	else if (pt == 13)
		tl_stream_uplink_lost(s, NULL, 0); /* comfort noise: a silent frame */
}

static void drain_reorder(struct tl_media_stream *s, int64_t now)
{
	struct tl_reorder_pkt pkt;

	while (tl_reorder_pop(s->reorder, now, &pkt) == 0) {
		if (pkt.gap) {
			/* With FEC the next packet rebuilds the lost one: it is already buffered
			 * (a gap is only reported once a later packet is), so it comes next. */
			if (s->codec_fec)
				s->gaps_pending++;
			else
				tl_stream_uplink_lost(s, NULL, 0);
			continue;
		}
		if (pkt.len >= 1)
			deliver(s, pkt.payload[0], pkt.payload + 1, pkt.len - 1, pkt.ts);
	}
	tl_stream_flush_gaps(s, NULL, 0);
}

static void track_seq(struct tl_media_stream *s, uint16_t seq)
{
	if (s->rx_count++ == 0) {
		s->rx_base_seq = seq;
		s->rx_max_seq = seq;
		return;
	}
	if ((uint16_t)(seq - s->rx_max_seq) < 0x8000) {
		if (seq < s->rx_max_seq)
			s->rx_cycles += 0x10000;
		s->rx_max_seq = seq;
	}
}

void tl_stream_on_rtp(struct tl_media_stream *s, const uint8_t *pkt, size_t len,
                      const struct sockaddr_storage *from, socklen_t fromlen, int64_t now)
{
	struct tl_rtp_hdr h;
	uint8_t buf[TL_RX_PAYLOAD + 1];

	if (tl_rtp_parse(&h, pkt, len) < 0 || h.payload_len > TL_RX_PAYLOAD ||
	    (h.pt != s->sdp.pt && (int)h.pt != s->sdp.te_pt && h.pt != 13)) {
		atomic_fetch_add_explicit(&s->st_rx_bad, 1, memory_order_relaxed);
		return;
	}
	/* Only the call's source: anyone else's packets never reach the agent nor move where
	 * ours go (counted in the source's counters). */
	if (!tl_rtp_source_rtp(&s->src, from, h.ssrc, h.seq, now))
		return;
	tl_stat_add(&s->st_rx_packets, 1);
	tl_stat_add(&s->st_rx_bytes, len);
	if (!s->have_rx_ssrc || h.ssrc != s->rx_ssrc) {
		if (s->have_rx_ssrc)
			tl_reorder_reset(s->reorder);
		s->rx_ssrc = h.ssrc;
		s->have_rx_ssrc = 1;
	}
	track_seq(s, h.seq);
	/* Arrival in the codec's RTP clock units: 8 per ms, 48 for Opus. */
	tl_rtp_jitter_update(&s->jitter, h.ts, (uint32_t)(now * s->clock_khz));
	/* Longer packets than the negotiation implies (a ptime the peer did not announce): the
	 * slots grow once to fit them; should that fail, the push drops them (counted). */
	if (h.payload_len + 1 > tl_reorder_max_payload(s->reorder))
		tl_reorder_resize(&s->reorder, h.payload_len + 1);
	/* The next packet in order with none waiting (nor any gap: those go with the packet
	 * after them, in the same drain) goes on from here, without a copy through its slot. */
	if (tl_reorder_pass(s->reorder, h.seq, h.payload_len + 1)) {
		deliver(s, h.pt, h.payload, h.payload_len, h.ts);
		return;
	}
	buf[0] = h.pt;
	memcpy(buf + 1, h.payload, h.payload_len);
	if (tl_reorder_push(s->reorder, h.seq, h.ts, buf, h.payload_len + 1, now) == -ENOBUFS) {
		drain_reorder(s, now);
		tl_reorder_push(s->reorder, h.seq, h.ts, buf, h.payload_len + 1, now);
	}
	drain_reorder(s, now);
}

void tl_stream_on_rtcp(struct tl_media_stream *s, const uint8_t *pkt, size_t len,
                       const struct sockaddr_storage *from, socklen_t fromlen, int64_t now)
{
	struct tl_rtcp_sr sr;

	if (!tl_rtp_source_rtcp(&s->src, from, pkt, len))
		return;
	if (tl_rtcp_parse_sr(pkt, len, &sr) == 0) {
		s->last_sr_mid = tl_rtcp_ntp_mid(sr.ntp);
		s->last_sr_at = now;
	}
}

/* ---- downlink: producer side ---- */

static struct tl_chunk *chunk_get(struct tl_media_stream *s)
{
	struct tl_chunk *c = atomic_exchange_explicit(&s->dl_free, NULL, memory_order_acquire);

	if (c) {
		/* Keep one for this call, free the rest: memory follows the queued audio. */
		struct tl_chunk *rest = c->free_next;
		while (rest) {
			struct tl_chunk *n = rest->free_next;
			free(rest);
			rest = n;
		}
	} else {
		c = malloc(sizeof(*c) + s->dl_chunk);
		if (!c)
			return NULL;
	}
	atomic_store_explicit(&c->next, NULL, memory_order_relaxed);
	atomic_store_explicit(&c->len, 0, memory_order_relaxed);
	c->free_next = NULL;
	return c;
}

int tl_media_stream_play(struct tl_media_stream *s, const void *audio, size_t len)
{
	const uint8_t *p = audio;
	uint64_t read = atomic_load_explicit(&s->dl_read_pub, memory_order_acquire);
	int was_empty = s->dl_written == read;
	size_t done = 0;

	if (len > INT32_MAX || s->dl_written - read + len > s->dl_max)
		return -ENOSPC;
	while (done < len) {
		struct tl_chunk *t = s->dl_tail;
		uint32_t used = atomic_load_explicit(&t->len, memory_order_relaxed);
		if (used == s->dl_chunk) {
			struct tl_chunk *n = chunk_get(s);
			if (!n)
				break;
			atomic_store_explicit(&t->next, n, memory_order_release);
			s->dl_tail = n;
			continue;
		}
		size_t k = len - done < s->dl_chunk - used ? len - done : s->dl_chunk - used;
		memcpy(t->data + used, p + done, k);
		atomic_store_explicit(&t->len, used + (uint32_t)k, memory_order_release);
		done += k;
	}
	s->dl_written += done;
	atomic_store_explicit(&s->dl_pub, s->dl_written, memory_order_release);
	if (was_empty && done > 0) /* a talk spurt starts: its first frame need not wait */
		tl_playout_kick(s);
	return done == len ? (int)len : -ENOMEM;
}

int tl_media_stream_mark(struct tl_media_stream *s, uint32_t mark)
{
	unsigned h = atomic_load_explicit(&s->mark_head, memory_order_relaxed);
	unsigned t = atomic_load_explicit(&s->mark_tail, memory_order_acquire);

	if (h - t >= TL_MARK_SLOTS)
		return -ENOSPC;
	if (!s->marks && !(s->marks = calloc(TL_MARK_SLOTS, sizeof(*s->marks))))
		return -ENOMEM;
	s->marks[h % TL_MARK_SLOTS].pos = s->dl_written;
	s->marks[h % TL_MARK_SLOTS].id = mark;
	atomic_store_explicit(&s->mark_head, h + 1, memory_order_release);
	return 0;
}

int tl_media_stream_clear(struct tl_media_stream *s)
{
	atomic_store_explicit(&s->dl_clear_upto, s->dl_written, memory_order_release);
	return 0;
}

int tl_media_stream_dtmf(struct tl_media_stream *s, char digit)
{
	unsigned h = atomic_load_explicit(&s->dtmf_head, memory_order_relaxed);
	unsigned t = atomic_load_explicit(&s->dtmf_tail, memory_order_acquire);
	const char *d = digit ? strchr(dtmf_chars, digit) : NULL;

	if (!d)
		return -EINVAL;
	if (atomic_load_explicit(&s->te_pt_pub, memory_order_relaxed) < 0)
		return -ENOTSUP;
	if (h - t >= TL_DTMF_SLOTS)
		return -ENOSPC;
	s->dtmf_q[h % TL_DTMF_SLOTS] = digit;
	atomic_store_explicit(&s->dtmf_head, h + 1, memory_order_release);
	return 0;
}

/* ---- downlink: worker side ---- */

/* Takes up to n bytes of queued agent audio into out (NULL: discard). Returns bytes taken. */
size_t tl_stream_dl_take(struct tl_media_stream *s, uint8_t *out, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct tl_chunk *h = s->dl_head;
		uint32_t l = atomic_load_explicit(&h->len, memory_order_acquire);
		if (s->dl_rd < l) {
			size_t k = l - s->dl_rd < n - got ? l - s->dl_rd : n - got;
			if (out)
				memcpy(out + got, h->data + s->dl_rd, k);
			s->dl_rd += (uint32_t)k;
			got += k;
			continue;
		}
		struct tl_chunk *nx = atomic_load_explicit(&h->next, memory_order_acquire);
		if (!nx)
			break;
		/* The producer may have filled h after we read l: its last bytes come first. */
		if (s->dl_rd < atomic_load_explicit(&h->len, memory_order_acquire))
			continue;
		/* h is full and behind us: hand it back to the producer. */
		struct tl_chunk *old = atomic_load_explicit(&s->dl_free, memory_order_relaxed);
		do {
			h->free_next = old;
		} while (!atomic_compare_exchange_weak_explicit(
		    &s->dl_free, &old, h, memory_order_release, memory_order_relaxed));
		s->dl_head = nx;
		s->dl_rd = 0;
	}
	s->dl_read += got;
	atomic_store_explicit(&s->dl_read_pub, s->dl_read, memory_order_release);
	return got;
}

static void report_marks(struct tl_media_stream *s)
{
	unsigned t = atomic_load_explicit(&s->mark_tail, memory_order_relaxed);
	unsigned h = atomic_load_explicit(&s->mark_head, memory_order_acquire);

	while (t != h && s->marks[t % TL_MARK_SLOTS].pos <= s->dl_read) {
		/* A full ring (the agent's side stalled): the mark waits for a later tick, which
		 * is not a drop (tl_stream_up_slot would count one each tick). */
		struct tl_media_event *ev = up_room(s);
		if (!ev)
			break;
		/* The audio before the mark leaves before the agent can hear of it (an agent loop
		 * on another thread reads the event at once): marks are rare, a submit is cheap. */
		if (tl_txring_pending(s->w->tx))
			tl_txring_flush(s->w->tx);
		ev->kind = TL_MEDIA_EV_MARK;
		ev->mark = s->marks[t % TL_MARK_SLOTS].id;
		ev->ts_ms = s->up_ms;
		ev->len = 0;
		tl_stream_up_commit(s);
		t++;
		atomic_store_explicit(&s->mark_tail, t, memory_order_release);
	}
}

static int may_send(const struct tl_media_stream *s)
{
	return s->src.rtp_to_len > 0 && s->sdp.remote_port != 0 &&
	       (s->sdp.dir == TL_SDP_SENDRECV || s->sdp.dir == TL_SDP_SENDONLY);
}

/* Returns 1 when the packet went out (the counters count only what was sent). */
static int send_rtp(struct tl_media_stream *s, uint8_t pt, int marker, uint32_t ts,
                    size_t payload_len)
{
	struct tl_rtp_hdr h = {
	    .pt = pt, .marker = (uint8_t)marker, .seq = s->tx_seq++, .ts = ts, .ssrc = s->ssrc};
	uint8_t *pkt = s->w->out_buf;
	size_t len = TL_RTP_HDR_LEN + payload_len;

	tl_rtp_write(pkt, TL_RTP_HDR_LEN, &h);
	if (tl_stream_srtp_out(s, pkt, &len, sizeof(s->w->out_buf), 0) < 0)
		return 0;
	/* Queued for the wake-up's one submit (counted now: a queued packet is refused only by
	 * a full socket, which the ring counts), else sent now. */
	if ((s->w->tx && tl_txring_send_file(s->w->tx, s->rtp_fd, s->tx_file, pkt, len,
	                                     (const struct sockaddr *)&s->src.rtp_to,
	                                     s->src.rtp_to_len) == 0) ||
	    sendto(s->rtp_fd, pkt, len, MSG_DONTWAIT, (const struct sockaddr *)&s->src.rtp_to,
	           s->src.rtp_to_len) > 0) {
		tl_stat_add(&s->st_tx_packets, 1);
		tl_stat_add(&s->st_tx_bytes, TL_RTP_HDR_LEN + payload_len);
		return 1;
	}
	return 0;
}

/* RFC 4733: about 100 ms of event packets (8 kHz clock), then the end packet three times. */
static int tx_dtmf(struct tl_media_stream *s)
{
	uint8_t *p = s->w->out_buf + TL_RTP_HDR_LEN;

	if (!s->dtmf_digit) {
		unsigned t = atomic_load_explicit(&s->dtmf_tail, memory_order_relaxed);
		if (t == atomic_load_explicit(&s->dtmf_head, memory_order_acquire))
			return 0;
		s->dtmf_digit = s->dtmf_q[t % TL_DTMF_SLOTS];
		atomic_store_explicit(&s->dtmf_tail, t + 1, memory_order_release);
		if (s->sdp.te_pt <
		    0) { /* a re-INVITE dropped telephone-event since it was queued */
			s->dtmf_digit = 0;
			return 0;
		}
		s->dtmf_ts = s->tx_ts;
		s->dtmf_ticks = 0;
		s->dtmf_end_sent = 0;
	}
	if (s->sdp.te_pt < 0) { /* dropped mid-digit: stop rather than send payload type 255 */
		s->dtmf_digit = 0;
		return 0;
	}
	s->dtmf_ticks++;
	int end = s->dtmf_ticks * s->tx_ms > 100;
	uint16_t dur = (uint16_t)((end ? 100 : s->dtmf_ticks * s->tx_ms) *
	                          (s->sdp.te_rate == 48000 ? 48 : 8)); /* the event's clock */
	p[0] = (uint8_t)(strchr(dtmf_chars, s->dtmf_digit) - dtmf_chars);
	p[1] = (uint8_t)((end ? 0x80 : 0) | 10);
	p[2] = (uint8_t)(dur >> 8);
	p[3] = (uint8_t)dur;
	if (may_send(s))
		send_rtp(s, (uint8_t)s->sdp.te_pt, s->dtmf_ticks == 1, s->dtmf_ts, 4);
	if (end && ++s->dtmf_end_sent >= 3)
		s->dtmf_digit = 0;
	return 1;
}

int tl_media_stream_ringback(struct tl_media_stream *s, enum tl_tone_ringback kind)
{
	struct tl_tone_cadence *c;
	int err;

	if (kind == TL_TONE_RINGBACK_NONE) {
		atomic_store_explicit(&s->ring_on, 0, memory_order_release);
		return 0;
	}
	if (s->ring && s->ring->kind != kind)
		return -EBUSY;
	if (!s->ring) {
		c = malloc(sizeof(*c));
		if (!c)
			return -ENOMEM;
		err = tl_tone_cadence_init(c, kind, 8000);
		if (err < 0) {
			free(c);
			return err;
		}
		s->ring = c; /* published by the release store below; never changed again */
	}
	if (++s->ring_starts == 0)
		s->ring_starts = 1;
	atomic_store_explicit(&s->ring_on, s->ring_starts, memory_order_release);
	return 0;
}

static void send_rtcp(struct tl_media_stream *s, int64_t now)
{
	struct tl_rtcp_report rep = {.ssrc = s->ssrc};
	struct timespec rt;
	uint8_t buf[256];
	ssize_t n;
	uint64_t txp = atomic_load_explicit(&s->st_tx_packets, memory_order_relaxed);

	clock_gettime(CLOCK_REALTIME, &rt);
	rep.sender = txp > 0;
	rep.ntp = tl_rtcp_ntp(&rt);
	rep.rtp_ts = s->tx_ts;
	rep.packets_sent = (uint32_t)txp;
	rep.octets_sent = (uint32_t)(atomic_load_explicit(&s->st_tx_bytes, memory_order_relaxed) -
	                             txp * TL_RTP_HDR_LEN);
	if (s->rx_count > 0) {
		uint32_t ext = s->rx_cycles + s->rx_max_seq;
		uint32_t expected = ext - s->rx_base_seq + 1;
		uint32_t exp_int = expected - s->rtcp_expected_prior;
		uint32_t rec_int = s->rx_count - s->rtcp_received_prior;
		rep.have_block = 1;
		rep.remote_ssrc = s->rx_ssrc;
		rep.ext_highest_seq = ext;
		rep.cum_lost = (int32_t)(expected - s->rx_count);
		rep.fraction_lost = tl_rtcp_fraction_lost(exp_int, rec_int);
		rep.jitter = tl_rtp_jitter_get(&s->jitter);
		rep.lsr = s->last_sr_mid;
		rep.dlsr = s->last_sr_at ? tl_rtcp_dlsr(now - s->last_sr_at) : 0;
		s->rtcp_expected_prior = expected;
		s->rtcp_received_prior = s->rx_count;
	}
	n = tl_rtcp_build(buf, sizeof(buf) - TL_SRTP_TAIL, &rep, "trunkline");
	size_t len = n > 0 ? (size_t)n : 0;
	if (n > 0 && s->src.rtcp_to_len > 0 &&
	    tl_stream_srtp_out(s, buf, &len, sizeof(buf), 1) == 0)
		sendto(s->rtcp_fd, buf, len, MSG_DONTWAIT, (const struct sockaddr *)&s->src.rtcp_to,
		       s->src.rtcp_to_len);
}

static void publish_stats(struct tl_media_stream *s)
{
	struct tl_reorder_stats rs;

	tl_reorder_stats_get(s->reorder, &rs);
	atomic_store_explicit(&s->st_rx_late, rs.late, memory_order_relaxed);
	atomic_store_explicit(&s->st_rx_dup, rs.duplicate, memory_order_relaxed);
	atomic_store_explicit(&s->st_rx_lost, rs.lost, memory_order_relaxed);
	atomic_store_explicit(&s->st_jitter, tl_rtp_jitter_get(&s->jitter) / s->clock_khz,
	                      memory_order_relaxed);
}

uint64_t tl_stream_dl_queued(struct tl_media_stream *s)
{
	uint64_t clear = atomic_load_explicit(&s->dl_clear_upto, memory_order_acquire);

	if (clear > s->dl_read) /* barge-in: drop what was queued before the clear */
		tl_stream_dl_take(s, NULL, (size_t)(clear - s->dl_read));
	return atomic_load_explicit(&s->dl_pub, memory_order_acquire) - s->dl_read;
}

int tl_stream_tx(struct tl_media_stream *s, int64_t now)
{
	uint8_t *payload = s->w->out_buf + TL_RTP_HDR_LEN;
	size_t len = 0;
	int audio = 0;

	drain_reorder(s, now);
	tl_stream_dl_queued(s);
	if (!s->codec)
		return 0;
	if (!tx_dtmf(s)) {
		audio = tl_stream_next_payload(s, payload, TL_PKT_MAX - TL_RTP_HDR_LEN, &len);
		/* Silence is counted as sent, like packets: nothing goes out on hold. Opus DTX
		 * codes silence in 1-2 bytes, which need not be sent (RFC 7587 §3.1.3). The
		 * marker starts a talk spurt (RFC 3551 §4.1). */
		if (may_send(s) && len > 2 &&
		    send_rtp(s, s->sdp.pt, audio > 0 && !s->talking, s->tx_ts, len) && audio <= 0)
			tl_stat_add(&s->st_tx_silence, 1);
		s->talking = audio > 0;
	}
	s->tx_ts += s->clock_khz * s->tx_ms;
	report_marks(s);
	publish_stats(s);
	if (now >= s->next_rtcp_ms) {
		send_rtcp(s, now);
		s->next_rtcp_ms = now + TL_RTCP_INTERVAL;
	}
	return audio > 0;
}

void tl_stream_tick_ms(struct tl_media_stream *s, int64_t now, unsigned tick_ms)
{
	s->tx_due += tick_ms;
	if (s->tx_due < s->tx_ms || !s->codec) {
		drain_reorder(s, now);
		tl_stream_dl_queued(s);
		return;
	}
	s->tx_due = 0;
	tl_stream_tx(s, now);
}

void tl_stream_tick(struct tl_media_stream *s, int64_t now)
{
	tl_stream_tick_ms(s, now, 20);
}

/* ---- lifecycle ---- */

void tl_stream_apply(struct tl_media_stream *s, const struct sockaddr_storage *remote,
                     const struct tl_sdp_media *sdp)
{
	tl_stream_srtp_apply(s, &sdp->srtp);
	s->sdp = *sdp;
	atomic_store_explicit(&s->te_pt_pub, sdp->te_pt, memory_order_relaxed);
	tl_stream_codec_setup(s); /* a new codec (re-INVITE): new codec path; -ENOMEM: silence */
	tl_reorder_resize(&s->reorder, tl_stream_rx_slot(sdp)); /* -ENOMEM: the old slots stay */
	/* A new address from SDP (re-INVITE, UPDATE, the ACK's answer) is where packets go, and
	 * where the source is learned from again; the same one keeps the source we have. */
	tl_rtp_source_set_sdp(&s->src, remote);
}

static uint32_t random32(void)
{
	struct timespec ts;
	static _Atomic uint32_t counter;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint32_t x = (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec * 2654435761u ^
	             atomic_fetch_add(&counter, 0x9E3779B9u);
	x ^= x >> 16;
	x *= 0x7feb352d;
	x ^= x >> 15;
	return x;
}

int tl_stream_alloc(struct tl_media_stream **out, struct tl_media *m,
                    const struct tl_media_stream_params *p)
{
	struct tl_media_stream *s;
	int rate = p->agent_format == TL_MEDIA_AGENT_L16 ? p->agent_rate : 8000;

	if (p->agent_format == TL_MEDIA_AGENT_L16 && rate != 8000 && rate != 16000 && rate != 24000)
		return -EINVAL;
	/* Aligned, so that each group of fields starts on a cache line (media_int.h). */
	s = aligned_alloc(_Alignof(struct tl_media_stream), sizeof(*s));
	if (!s)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	atomic_init(&s->refs, 1);
	s->rtp_fd = p->rtp_fd;
	s->rtcp_fd = p->rtcp_fd;
	s->rx_id[0] = s->rx_id[1] = -1;
	s->tx_file = -1;
	s->fmt = p->agent_format;
	s->agent_rate = rate;
	s->agent_frame = s->fmt == TL_MEDIA_AGENT_ULAW ? 160 : (size_t)rate / 50 * 2;
	s->notify = p->notify;
	s->notify_arg = p->notify_arg;
	s->notify_release = p->notify_release;
	s->dl_max = (size_t)m->cfg.playout_max_ms * (s->agent_frame / 20);
	s->dl_backlog =
	    (size_t)(p->playout_backlog_ms == TL_MEDIA_BACKLOG_DEFAULT ? m->cfg.playout_backlog_ms
	             : p->playout_backlog_ms > 0                       ? p->playout_backlog_ms
	                                                               : 0) *
	    (s->agent_frame / 20);
	s->wh_slot = -1;
	s->ssrc = random32();
	s->tx_seq = (uint16_t)random32();
	s->tx_ts = random32();
	s->next_rtcp_ms = tl_media_now_ms(m) + TL_RTCP_INTERVAL;
	tl_rtp_source_init(&s->src, p->rtp_source == TL_MEDIA_RTP_STRICT, p->rtp_relearn_ms);
	s->up = calloc(TL_UP_SLOTS, sizeof(*s->up));
	s->up_data = calloc(TL_UP_SLOTS, s->agent_frame);
	s->dl_chunk = TL_CHUNK_FRAMES * s->agent_frame;
	s->dl_head = s->dl_tail = calloc(1, sizeof(struct tl_chunk) + s->dl_chunk);
	if (!s->up || !s->up_data || !s->dl_head ||
	    tl_reorder_create(&s->reorder, tl_stream_rx_slots((unsigned)m->cfg.reorder_ms),
	                      tl_stream_rx_slot(&p->sdp), (unsigned)m->cfg.reorder_ms) < 0) {
		/* The caller still owns the fds and notify_arg on failure. */
		s->rtp_fd = s->rtcp_fd = -1;
		s->notify_release = NULL;
		tl_stream_free(s);
		return -ENOMEM;
	}
	tl_stream_apply(s, &p->remote, &p->sdp);
	if (!s->codec) {
		s->rtp_fd = s->rtcp_fd = -1;
		s->notify_release = NULL;
		tl_stream_free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void tl_stream_free(struct tl_media_stream *s)
{
	struct tl_chunk *c, *n;

	tl_relay_unlink(s); /* a bridged peer is on this worker too: it forgets s here */
	if (s->rtp_fd >= 0)
		close(s->rtp_fd);
	if (s->rtcp_fd >= 0)
		close(s->rtcp_fd);
	for (c = s->dl_head; c; c = n) {
		n = atomic_load(&c->next);
		free(c);
	}
	for (c = atomic_load(&s->dl_free); c; c = n) {
		n = c->free_next;
		free(c);
	}
	tl_stream_codec_free(s);
	tl_reorder_destroy(s->reorder);
	tl_srtp_destroy(s->srtp);
	free(s->ring);
	free(s->up);
	free(s->up_data);
	free(s->marks);
	if (s->notify_release)
		s->notify_release(s->notify_arg);
	free(s);
}

void tl_media_stream_stats(const struct tl_media_stream *s, struct tl_media_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->rx_packets = atomic_load_explicit(&s->st_rx_packets, memory_order_relaxed);
	st->rx_bytes = atomic_load_explicit(&s->st_rx_bytes, memory_order_relaxed);
	st->rx_bad = atomic_load_explicit(&s->st_rx_bad, memory_order_relaxed);
	st->tx_packets = atomic_load_explicit(&s->st_tx_packets, memory_order_relaxed);
	st->tx_bytes = atomic_load_explicit(&s->st_tx_bytes, memory_order_relaxed);
	st->tx_silence = atomic_load_explicit(&s->st_tx_silence, memory_order_relaxed);
	st->uplink_drops = atomic_load_explicit(&s->st_up_drops, memory_order_relaxed);
	st->rx_fec = atomic_load_explicit(&s->st_rx_fec, memory_order_relaxed);
	st->rx_foreign = atomic_load_explicit(&s->src.rx_foreign, memory_order_relaxed);
	st->rx_learning = atomic_load_explicit(&s->src.rx_learning, memory_order_relaxed);
	st->rtcp_dropped = atomic_load_explicit(&s->src.rtcp_dropped, memory_order_relaxed);
	st->rx_srtp_fail = atomic_load_explicit(&s->st_rx_srtp_fail, memory_order_relaxed);
	if (atomic_load_explicit(&s->src.have_foreign, memory_order_acquire))
		memcpy(&st->foreign_from, &s->src.foreign_from, s->src.foreign_from_len);
	/* As of the worker's last tick (publish_stats). */
	st->rx_late = atomic_load_explicit(&s->st_rx_late, memory_order_relaxed);
	st->rx_dup = atomic_load_explicit(&s->st_rx_dup, memory_order_relaxed);
	st->rx_lost = atomic_load_explicit(&s->st_rx_lost, memory_order_relaxed);
	st->jitter_ms = atomic_load_explicit(&s->st_jitter, memory_order_relaxed);
	st->relayed = atomic_load_explicit(&s->relay.st_relayed, memory_order_relaxed);
	st->relay_dropped = atomic_load_explicit(&s->relay.st_dropped, memory_order_relaxed);
	st->tx_on_arrival = atomic_load_explicit(&s->st_tx_on_arrival, memory_order_relaxed);
	st->tx_rephased = atomic_load_explicit(&s->st_tx_rephased, memory_order_relaxed);
	st->tx_pulled = atomic_load_explicit(&s->st_tx_pulled, memory_order_relaxed);
	st->tx_ahead_ms = atomic_load_explicit(&s->st_tx_ahead_ms, memory_order_relaxed);
	st->tx_slot_waits = atomic_load_explicit(&s->st_tx_slot_waits, memory_order_relaxed);
	st->playout_dropped_ms =
	    atomic_load_explicit(&s->st_dl_dropped, memory_order_relaxed) / (s->agent_frame / 20);
	st->playout_backlog_ms = (uint32_t)(s->dl_backlog / (s->agent_frame / 20));
	uint64_t queued = atomic_load_explicit(&s->dl_pub, memory_order_relaxed) -
	                  atomic_load_explicit(&s->dl_read_pub, memory_order_relaxed);
	unsigned per_ms = s->fmt == TL_MEDIA_AGENT_L16 ? (unsigned)s->agent_rate / 500 : 8;
	/* Read without order: a read ahead of a write shows 0, not a wrapped count. */
	st->playout_ms = queued > (1ull << 40) ? 0 : (uint32_t)(queued / (per_ms ? per_ms : 8));
}
