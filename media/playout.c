/* When each stream's packets go: a per-worker wheel of 1 ms slots holds every stream at the ms
 * its next packet is due, and the worker's timerfd is armed (one-shot, absolute) to the earliest
 * non-empty slot. Silence, ringback and relayed audio keep the call's own grid; agent audio that
 * lands in an empty queue goes at once (the producer kicks the worker), the rest of the spurt a
 * ptime apart from there. Also the backlog bound (media.playout_backlog_ms). */
#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "media_int.h"

#define TL_MAX_LATE_MS    200  /* a worker later than this skips packets (timestamps still move) */
#define TL_BACKLOG_WIN    1000 /* ms: the queue must stand above the bound this long */
#define TL_BACKLOG_NUM    5    /* ... while the agent sends between 3/4 and 5/4 of real time */
#define TL_BACKLOG_DEN    4
#define TL_BACKLOG_LOW_N  3
#define TL_STANDING       10   /* sends in a row over a small standing queue: catch up */
#define TL_LATE_MS        20   /* a packet sent this much after its slot counts as late */
#define TL_SPURT_GRACE_MS 10   /* at most: a talk spurt's late frame is waited for this long */
#define TL_LOAD_WINDOW_MS 1000 /* lateness is measured over windows of this */
#define TL_LOAD_MIN_SENDS 50   /* fewer packets in a window say nothing */
#define TL_PIN_FRAMES     10   /* frames in a row held at the grid's limit as long: re-anchor */
#define TL_PIN_JITTER_MS  2    /* ... as long give or take this */

static void wheel_unlink(struct tl_media_worker *w, struct tl_media_stream *s)
{
	if (s->wh_slot < 0)
		return;
	if (s->wh_prev)
		s->wh_prev->wh_next = s->wh_next;
	else {
		w->wheel[s->wh_slot] = s->wh_next;
		if (!s->wh_next)
			w->wheel_bits[s->wh_slot / 64] &= ~(1ull << (s->wh_slot % 64));
	}
	if (s->wh_next)
		s->wh_next->wh_prev = s->wh_prev;
	s->wh_next = s->wh_prev = NULL;
	s->wh_slot = -1;
}

/* Into the slot of s->tx_next, or of the next ms when that has already been processed. */
static void wheel_link(struct tl_media_worker *w, struct tl_media_stream *s)
{
	int64_t at = s->tx_next > w->wheel_ms ? s->tx_next : w->wheel_ms + 1;
	int slot = (int)(at & (TL_WHEEL - 1));

	s->wh_slot = slot;
	s->wh_prev = NULL;
	s->wh_next = w->wheel[slot];
	if (s->wh_next)
		s->wh_next->wh_prev = s;
	w->wheel[slot] = s;
	w->wheel_bits[slot / 64] |= 1ull << (slot % 64);
}

void tl_playout_add(struct tl_media_worker *w, struct tl_media_stream *s, int64_t now)
{
	if (w->wheel_ms == 0)
		w->wheel_ms = now - 1;
	s->tx_next = s->home_next = now; /* the call's grid starts here: each call its phase */
	s->bl_min = UINT64_MAX;
	s->bl_until = now + TL_BACKLOG_WIN;
	wheel_link(w, s);
}

void tl_playout_remove(struct tl_media_worker *w, struct tl_media_stream *s)
{
	wheel_unlink(w, s);
}

/* An agent that streams at about real time (neither a burst nor a pause in the window) over a
 * queue that stayed above the bound all along: the oldest audio goes, down to the bound. */
static void backlog_check(struct tl_media_stream *s, int64_t now)
{
	uint64_t q = tl_stream_dl_queued(s);
	uint64_t pub = atomic_load_explicit(&s->dl_pub, memory_order_acquire);

	if (q < s->bl_min)
		s->bl_min = q;
	if (now < s->bl_until)
		return;
	/* The agent's rate is judged against the clock: real time's worth of its audio over the
	 * window. Not against what the worker played: a worker that runs late skips packets and
	 * plays less, and an agent at real time then looked like one running ahead, so the
	 * backlog it left grew unchecked (test_playout_backlog_late_worker). */
	uint64_t in = pub - s->bl_in0;
	uint64_t rt = (uint64_t)(now - (s->bl_until - TL_BACKLOG_WIN)) * s->agent_frame / 20;
	if (s->bl_min != UINT64_MAX && s->bl_min > s->dl_backlog &&
	    in * TL_BACKLOG_DEN <= rt * TL_BACKLOG_NUM &&
	    in * TL_BACKLOG_DEN >= rt * TL_BACKLOG_LOW_N) {
		uint64_t drop = (s->bl_min - s->dl_backlog) / s->agent_frame * s->agent_frame;
		drop = tl_stream_dl_take(s, NULL, (size_t)drop);
		tl_stat_add(&s->st_dl_dropped, drop);
	}
	s->bl_min = UINT64_MAX;
	s->bl_in0 = pub;
	s->bl_until = now + TL_BACKLOG_WIN;
}

/* A small standing queue, under the bound: TL_STANDING sends in a row found two packets' worth
 * or more queued (two frames once came together, and since then each frame has waited a whole
 * ptime for its slot). Nothing is dropped: returns 1, and the waiting packet goes at once (due()
 * moves the spurt ahead of the call's grid, a ptime at most; its timestamps stay contiguous). */
static int standing(struct tl_media_stream *s)
{
	uint64_t pkt = s->agent_frame * (uint64_t)(s->tx_ms ? s->tx_ms : 20) / 20;
	uint64_t q = tl_stream_dl_queued(s);

	if (q < 2 * pkt || q > s->dl_backlog || s->relay.peer) {
		s->standing = 0;
		return 0;
	}
	if (++s->standing < TL_STANDING)
		return 0;
	s->standing = 0;
	return 1;
}

/* Mid-spurt, the agent's next frame is not there yet: wait a little for it (its kick sends it)
 * rather than fill its slot with silence and then send it a moment later too (two packets at
 * once, a hole in the speech, and the grid a ptime ahead of the timestamps, which holds the
 * frames after it back). Half a ptime, at most TL_SPURT_GRACE_MS, once a slot. */
static int64_t spurt_grace_ms(const struct tl_media_stream *s)
{
	int64_t grace = (s->tx_ms ? s->tx_ms : 20) / 2;

	return grace > TL_SPURT_GRACE_MS ? TL_SPURT_GRACE_MS : grace;
}

static int spurt_grace(struct tl_media_stream *s, int64_t late)
{
	int64_t grace = spurt_grace_ms(s);

	if (!s->talking || s->spurt_wait || late >= grace || s->dtmf_digit || s->relay.peer ||
	    atomic_load_explicit(&s->ring_on, memory_order_relaxed) || tl_stream_dl_queued(s) > 0)
		return 0;
	s->spurt_wait = 1;
	s->tx_next += grace;
	tl_stat_add(&s->st_tx_slot_waits, 1);
	return 1;
}

/* Mid-spurt with nothing queued, the next slot would find its frame not there yet (an agent
 * at real time sends it about a ptime after the last one, a fraction of a ms after the slot):
 * a spurt running ahead of the call's grid would go back to the grid (due), then wait for the
 * frame (spurt_grace), and the frame's kick sends it. So all that is done now, when the packet
 * before it goes: the wheel holds the stream at the end of the wait, and the worker is not
 * woken at the slot to find nothing. A frame that comes before the wait would have begun gets
 * the state it would have found (early_kick). Ringback or a digit that starts meanwhile waits
 * for the end of the wait (half a ptime after the slot or the grid at most; its timestamps do
 * not move). */
static void early_grace(struct tl_media_stream *s)
{
	int64_t grace = spurt_grace_ms(s);
	int64_t from = s->tx_next < s->home_next ? s->home_next : s->tx_next;

	if (!s->talking || s->dtmf_digit || s->relay.peer ||
	    atomic_load_explicit(&s->ring_on, memory_order_relaxed) || tl_stream_dl_queued(s) > 0)
		return;
	s->spurt_wait = 1;
	s->spurt_early = (int)(from + grace - s->tx_next);
	s->tx_next = from + grace;
}

/* A frame's kick while early_grace's wait is set: the state as the slot's wake-up would have
 * left it by now. Before the slot, the slot is back; after it but before the grid (a spurt
 * ahead of it), the grid; after that, the wait is on. Returns 1 when the stream must move in
 * the wheel. */
static int early_kick(struct tl_media_stream *s, int64_t now)
{
	int64_t slot = s->tx_next - s->spurt_early;

	if (now >= slot && (slot >= s->home_next || now >= s->home_next))
		return 0; /* the wait is on, as taken */
	s->tx_next = now < slot ? slot : s->home_next;
	s->spurt_early = 0;
	s->spurt_wait = 0;
	return 1;
}

/* s is due: its packet goes (or, a spurt having run dry, it goes back to its grid). */
static void due(struct tl_media_worker *w, struct tl_media_stream *s, int64_t now)
{
	int64_t late = now - s->tx_next;
	int64_t p = s->tx_ms ? s->tx_ms : 20;
	int rephase = 0;

	s->spurt_early = 0; /* a wait taken early is over */
	if (s->dl_backlog) {
		backlog_check(s, now);
		rephase = standing(s);
	}

	if (s->tx_next < s->home_next && !s->dtmf_digit && tl_stream_dl_queued(s) == 0) {
		/* No more audio: silence goes on the grid, where the timestamps are. Audio that
		 * comes before then goes when it arrives (a kick). */
		s->tx_next = s->home_next;
		tl_stat_add(&s->st_tx_slot_waits, 1);
		wheel_link(w, s);
		return;
	}
	if (spurt_grace(s, late)) {
		wheel_link(w, s);
		return;
	}
	if (now - s->tx_next > TL_MAX_LATE_MS && s->tx_ms > 0 && s->codec) {
		/* A stalled worker: the packets missed are skipped, their media time is not. */
		int64_t k = (now - s->tx_next) / s->tx_ms;
		w->sends += (uint32_t)k; /* skipped: as late as can be */
		w->late_sends += (uint32_t)k;
		s->tx_ts += (uint32_t)k * s->clock_khz * s->tx_ms;
		s->tx_next += k * s->tx_ms;
		s->home_next += k * s->tx_ms;
	}
	w->sends++;
	w->late_sends += late >= TL_LATE_MS;
	tl_stream_tx(s, now);
	s->tx_last = now;
	s->spurt_wait = 0;
	/* Audio went on this slot while a kick was pending: the spurt has started, the kick is
	 * stale (acted on, it would send the next frame in the same ms). */
	if (s->talking && atomic_load_explicit(&s->kicked, memory_order_acquire))
		s->kick_stale = 1;
	s->tx_next += p;
	s->home_next += p;
	if (!s->talking && !s->dtmf_digit && s->tx_next > s->home_next) {
		/* silence after a spurt that ran late: back to the call's grid, half a ptime at a
		 * time at most (the next packet goes that much under a ptime after this one) */
		s->tx_next = s->home_next > now + p / 2 ? s->home_next : now + p / 2;
		tl_stat_add(&s->st_tx_ahead_ms, (uint64_t)(now + p - s->tx_next));
	}
	if (rephase && s->tx_next > now + 1) {
		/* The waiting packet goes next ms: the spurt runs that much ahead of the call's
		 * grid, a ptime at most, as a spurt that started on arrival. The grid, where the
		 * timestamps belong, stays with the clock: moved, it ran a ptime further ahead of
		 * the clock with every catch-up, and the silence after each went back to it faster
		 * than real time (test_vclock_playout_standing). */
		int64_t early = s->tx_next - (now + 1), room = s->tx_next - (s->home_next - p);
		if (early > room)
			early = room;
		if (early > 0) {
			s->tx_next -= early;
			tl_stat_add(&s->st_tx_rephased, 1);
			tl_stat_add(&s->st_tx_ahead_ms, (uint64_t)early);
		}
	}
	if (!w->no_early_grace)
		early_grace(s);
	wheel_link(w, s);
}

/* A kick refused, its frame to wait until the stream's slot. An agent at real time whose frames
 * all come the same few ms before they may go waits that long every frame until its spurt
 * ends: a late frame began the spurt again (after silence went in its slot) on a later phase
 * than the frames after it, or the spurt's timestamps run more than a ptime ahead of its frames
 * (its first frame came late, in the ms of a silence packet, say). With the backlog bound on,
 * after TL_PIN_FRAMES such frames in a row, held p/4 or more and as long give or take
 * TL_PIN_JITTER_MS (an agent at real time; one that runs ahead waits longer each frame):
 * returns 1 when the frame may go now without running more than a ptime ahead of the call's
 * grid (the spurt moves to the agent's phase, as a standing queue's catch-up), else drops the
 * waiting audio, counted as the bound's, and returns 2 (the next frame takes its timestamp and
 * goes when it comes, a ptime less ahead). 0: it waits. */
static int pinned(struct tl_media_stream *s, int64_t now, int64_t p)
{
	int64_t wait = s->tx_next - now;
	uint64_t q = tl_stream_dl_queued(s);

	if (!s->dl_backlog || !s->talking || wait < p / 4 ||
	    q > s->agent_frame * (uint64_t)p / 20) {
		s->pin_n = 0;
		return 0;
	}
	if (!s->pin_n || now - s->pin_at > 2 * p || wait > s->pin_wait + TL_PIN_JITTER_MS ||
	    wait < s->pin_wait - TL_PIN_JITTER_MS) {
		s->pin_n = 1; /* the first of a run */
		s->pin_wait = (int)wait;
		s->pin_at = now;
		return 0;
	}
	s->pin_at = now;
	if (++s->pin_n < TL_PIN_FRAMES)
		return 0;
	s->pin_n = 0;
	if (now >= s->home_next - p) {
		tl_stat_add(&s->st_tx_rephased, 1);
		return 1;
	}
	tl_stat_add(&s->st_dl_dropped, tl_stream_dl_take(s, NULL, (size_t)q));
	return 2;
}

/* A kick refused only because its frame would go under half a ptime after the packet before
 * (a spurt that a late frame began again on a later phase than the agent's next frames): it
 * goes as soon as that rule allows, not in its slot a whole ptime after, and from there the
 * spurt is on the agent's phase again. An agent at real time that stalls longer than the
 * spurt's grace has one frame held under half a ptime, instead of every frame for the
 * pinned() run (BENCHMARKS.md run U). It stays within a ptime of the call's grid (the kick
 * found it so, and it goes later than that). Once per slot: the frame now waits in the queue,
 * and only a frame that finds the queue empty kicks (a clear empties it when the slot comes). */
static void pull(struct tl_media_worker *w, struct tl_media_stream *s, int64_t p)
{
	wheel_unlink(w, s);
	s->tx_next -= p / 2;
	tl_stat_add(&s->st_tx_pulled, 1);
	if (s->tx_last + p > s->tx_next) /* what the caller sees, as for a kick's send */
		tl_stat_add(&s->st_tx_ahead_ms, (uint64_t)(s->tx_last + p - s->tx_next));
	wheel_link(w, s);
}

void tl_playout_kick(struct tl_media_stream *s)
{
	struct tl_media_worker *w = s->w;
	struct tl_media_stream *old;
	uint64_t one = 1;

	if (atomic_exchange_explicit(&s->kicked, 1, memory_order_acq_rel))
		return; /* already on the stack */
	old = atomic_load_explicit(&w->kicks, memory_order_relaxed);
	do {
		s->kick_next = old;
	} while (!atomic_compare_exchange_weak_explicit(&w->kicks, &old, s, memory_order_release,
	                                                memory_order_relaxed));
	/* One wake-up per batch of kicks: whoever finds the stack empty. None from the worker's
	 * own host thread: it runs tl_media_worker_flush before it waits. */
	if (!old && tl_media_self != w && w->cmdfd >= 0 && write(w->cmdfd, &one, sizeof(one)) < 0) {
		/* the eventfd's counter cannot overflow here; the next tick sends anyway */
	}
}

void tl_playout_kicks(struct tl_media_worker *w)
{
	struct tl_media_stream *s = atomic_exchange_explicit(&w->kicks, NULL, memory_order_acquire);
	int64_t now = s ? tl_media_now_ms(w->m) : 0;

	while (s) {
		struct tl_media_stream *next = s->kick_next;
		atomic_store_explicit(&s->kicked, 0, memory_order_release);
		/* The queue was empty, so this audio need not wait: it goes now, with the
		 * timestamp of the next slot (contiguous, never overlapping what went before),
		 * and what follows it a ptime apart from here. Not when bridged or sending a
		 * digit, nor when it would run more than a ptime ahead of the call's grid, nor
		 * (mid-spurt) more than half a ptime ahead of its slot: the caller's jitter
		 * buffer sees packets at least half a ptime apart. Except a pinned spurt's
		 * frame (pinned, above), once. */
		int64_t p = s->tx_ms ? s->tx_ms : 20;
		int stale = s->kick_stale, relink = 0;
		s->kick_stale = 0;
		if (s->spurt_early && early_kick(s, now))
			relink = s->wh_slot >= 0;
		int can = !stale && s->registered && s->wh_slot >= 0 && s->codec &&
		          !s->relay.peer && !s->dtmf_digit && now < s->tx_next &&
		          tl_stream_dl_queued(s) > 0;
		int grid = now >= s->home_next - p;
		if (can && ((grid && (s->tx_next == s->home_next || now >= s->tx_next - p / 2)) ||
		            pinned(s, now, p) == 1)) {
			if (!s->talking) /* a talk spurt starts (its packet has the marker) */
				tl_stat_add(&s->st_tx_on_arrival, 1);
			/* what the caller sees: this packet under a ptime after the one before */
			if (s->tx_last && s->tx_last + p > now)
				tl_stat_add(&s->st_tx_ahead_ms, (uint64_t)(s->tx_last + p - now));
			s->pin_n = 0;
			wheel_unlink(w, s);
			s->tx_next = now;
			due(w, s, now);
		} else if (can && grid && tl_stream_dl_queued(s) > 0) {
			pull(w, s, p);
		} else if (relink) {
			wheel_unlink(w, s);
			wheel_link(w, s);
		}
		s = next;
	}
}

/* The first non-empty slot after now, or 0 when the wheel is empty. */
static int64_t next_due(const struct tl_media_worker *w, int64_t now)
{
	for (int i = 1; i <= TL_WHEEL; i++) {
		int slot = (int)((now + i) & (TL_WHEEL - 1));
		if (i + 64 <= TL_WHEEL && slot % 64 == 0 && !w->wheel_bits[slot / 64]) {
			i += 63; /* a whole empty word */
			continue;
		}
		if (w->wheel_bits[slot / 64] & (1ull << (slot % 64)))
			return now + i;
	}
	return 0;
}

static void arm(struct tl_media_worker *w, int64_t at)
{
	struct itimerspec its = {{0, 0}, {0, 0}};

	if (at == w->armed_ms)
		return;
	if (w->ops) { /* hosted: the host's timer, set from tl_media_worker_flush's answer */
		w->armed_ms = at;
		return;
	}
	its.it_value.tv_sec = at / 1000;
	its.it_value.tv_nsec = (at % 1000) * 1000000;
	if (timerfd_settime(w->timerfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		w->armed_ms = at;
}

/* Closes the lateness window when it is over (tl_media_late_permille reads it). */
static void load_window(struct tl_media_worker *w, int64_t now)
{
	uint32_t pm = 0;

	if (now < w->load_until)
		return;
	if (w->load_until && w->sends >= TL_LOAD_MIN_SENDS)
		pm = (uint32_t)((uint64_t)w->late_sends * 1000 / w->sends);
	atomic_store_explicit(&w->late_permille, pm, memory_order_relaxed);
	atomic_store_explicit(&w->late_at_ms, now, memory_order_relaxed);
	w->sends = w->late_sends = 0;
	w->load_until = now + TL_LOAD_WINDOW_MS;
}

unsigned tl_media_late_permille(const struct tl_media *m)
{
	int64_t now = tl_media_now_ms(m);
	unsigned worst = 0;

	for (int i = 0; i < m->n_workers; i++) {
		const struct tl_media_worker *w = &m->workers[i];
		unsigned pm = atomic_load_explicit(&w->late_permille, memory_order_relaxed);
		int64_t at = atomic_load_explicit(&w->late_at_ms, memory_order_relaxed);
		if (now - at <= 2 * TL_LOAD_WINDOW_MS && pm > worst)
			worst = pm;
	}
	return worst;
}

void tl_playout_run(struct tl_media_worker *w)
{
	int64_t now = tl_media_now_ms(w->m);

	if (now - w->wheel_ms > TL_WHEEL)
		w->wheel_ms = now - TL_WHEEL; /* a long stall: every slot once */
	while (w->wheel_ms < now) {
		int slot = (int)(++w->wheel_ms & (TL_WHEEL - 1));
		struct tl_media_stream *s = w->wheel[slot];
		w->wheel[slot] = NULL;
		w->wheel_bits[slot / 64] &= ~(1ull << (slot % 64));
		while (s) {
			struct tl_media_stream *next = s->wh_next;
			s->wh_next = s->wh_prev = NULL;
			s->wh_slot = -1;
			if (s->tx_next > now)
				wheel_link(w, s); /* a ptime longer than the wheel: not yet */
			else
				due(w, s, now);
			s = next;
		}
	}
	load_window(w, now);
	arm(w, next_due(w, now));
}
