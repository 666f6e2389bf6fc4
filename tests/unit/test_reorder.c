/* Reorder stage tests: in-order pass-through, swapped pair, gap concealed exactly at reorder_ms,
 * burst loss, late and duplicate drops, sequence wrap, big-jump resync both ways, -ENOBUFS on a
 * busy slot (also across the wrap), reset, argument checks, the stats invariant, and the
 * copy-free pass (tl_reorder_pass) against push and pop. */
#include "trunkline/reorder.h"
#include "tl_test.h"

#include <errno.h>

static struct tl_reorder *mk(unsigned slots)
{
	struct tl_reorder *r = NULL;
	TL_CHECK_INT(tl_reorder_create(&r, slots, 160, TL_REORDER_DEFAULT_MS), 0);
	return r;
}

/* Payload of packet seq: 4 bytes that identify it. */
static int push(struct tl_reorder *r, uint16_t seq, int64_t now)
{
	uint8_t p[4] = {(uint8_t)(seq >> 8), (uint8_t)seq, 0xA5, 0x5A};
	return tl_reorder_push(r, seq, (uint32_t)seq * 160, p, sizeof(p), now);
}

/* Pops one result: the seq, or -1000 - seq for a gap, or -1 for -EAGAIN. */
static long pop(struct tl_reorder *r, int64_t now)
{
	struct tl_reorder_pkt k;
	int rc = tl_reorder_pop(r, now, &k);

	if (rc == -EAGAIN)
		return -1;
	if (rc != 0)
		return -2;
	if (k.gap)
		return k.payload == NULL && k.len == 0 ? -1000 - (long)k.seq : -3;
	if (k.len != 4 || k.payload[0] != (uint8_t)(k.seq >> 8) || k.payload[1] != (uint8_t)k.seq ||
	    k.ts != (uint32_t)k.seq * 160)
		return -4;
	return k.seq;
}

/* received == every outcome + still buffered */
static void check_invariant(struct tl_reorder *r, uint64_t buffered)
{
	struct tl_reorder_stats s;
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.received, s.forwarded + s.late + s.duplicate + s.flushed + s.oversize +
	                             s.overflow + buffered);
}

static void test_in_order(void)
{
	struct tl_reorder *r = mk(16);
	struct tl_reorder_stats s;

	TL_CHECK_INT(pop(r, 0), -1);
	TL_CHECK_INT(tl_reorder_next_deadline(r), -1);
	for (int i = 0; i < 50; i++) {
		TL_CHECK_INT(push(r, (uint16_t)(40000 + i), i * 20), 0); /* any first seq */
		TL_CHECK_INT(tl_reorder_next_deadline(r), 0);
		TL_CHECK_INT(pop(r, i * 20), 40000 + i);
		TL_CHECK_INT(pop(r, i * 20), -1);
		TL_CHECK_INT(tl_reorder_next_deadline(r), -1);
	}
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.received, 50);
	TL_CHECK_INT(s.forwarded, 50);
	TL_CHECK_INT(s.lost + s.late + s.duplicate, 0);
	tl_reorder_destroy(r);
}

static void test_swapped_pair(void)
{
	struct tl_reorder *r = mk(16);
	struct tl_reorder_stats s;

	TL_CHECK_INT(push(r, 100, 0), 0);
	TL_CHECK_INT(pop(r, 0), 100);
	TL_CHECK_INT(push(r, 102, 20), 0);
	TL_CHECK_INT(pop(r, 20), -1);
	TL_CHECK_INT(tl_reorder_next_deadline(r), 60);
	TL_CHECK_INT(push(r, 101, 25), 0);
	TL_CHECK_INT(pop(r, 25), 101); /* handed on as soon as it is there */
	TL_CHECK_INT(pop(r, 25), 102);
	TL_CHECK_INT(pop(r, 1000), -1);
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.lost, 0);
	TL_CHECK_INT(s.forwarded, 3);
	tl_reorder_destroy(r);
}

static void test_gap_concealed_then_late(void)
{
	struct tl_reorder *r = mk(16);
	struct tl_reorder_stats s;

	TL_CHECK_INT(push(r, 100, 0), 0);
	TL_CHECK_INT(pop(r, 0), 100);
	TL_CHECK_INT(pop(r, 500), -1); /* nothing later arrived: no gap, however long */
	TL_CHECK_INT(push(r, 102, 520), 0);
	TL_CHECK_INT(push(r, 103, 540), 0); /* the wait runs from 102's arrival */
	TL_CHECK_INT(tl_reorder_next_deadline(r), 560);
	TL_CHECK_INT(pop(r, 520), -1);
	TL_CHECK_INT(pop(r, 559), -1);
	TL_CHECK_INT(pop(r, 560), -1000 - 101);
	TL_CHECK_INT(pop(r, 560), 102);
	TL_CHECK_INT(pop(r, 560), 103);
	TL_CHECK_INT(pop(r, 560), -1);
	TL_CHECK_INT(push(r, 101, 570), -ESTALE); /* after its concealment */
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.lost, 1);
	TL_CHECK_INT(s.late, 1);
	TL_CHECK_INT(s.duplicate, 0);
	check_invariant(r, 0);
	tl_reorder_destroy(r);
}

static void test_burst_loss(void)
{
	struct tl_reorder *r = mk(16);

	TL_CHECK_INT(push(r, 10, 0), 0);
	TL_CHECK_INT(pop(r, 0), 10);
	TL_CHECK_INT(push(r, 14, 80), 0);  /* 11..13 lost */
	TL_CHECK_INT(push(r, 16, 100), 0); /* 15 lost too */
	TL_CHECK_INT(pop(r, 119), -1);
	/* one wait covers the whole burst, not reorder_ms per missing packet */
	TL_CHECK_INT(pop(r, 120), -1011);
	TL_CHECK_INT(pop(r, 120), -1012);
	TL_CHECK_INT(pop(r, 120), -1013);
	TL_CHECK_INT(pop(r, 120), 14);
	TL_CHECK_INT(pop(r, 120), -1); /* 15: now measured from 16's arrival */
	TL_CHECK_INT(tl_reorder_next_deadline(r), 140);
	TL_CHECK_INT(pop(r, 140), -1015);
	TL_CHECK_INT(pop(r, 140), 16);
	tl_reorder_destroy(r);
}

static void test_duplicates(void)
{
	struct tl_reorder *r = mk(16);
	struct tl_reorder_stats s;

	TL_CHECK_INT(push(r, 7, 0), 0);
	TL_CHECK_INT(push(r, 7, 1), -EEXIST); /* still buffered */
	TL_CHECK_INT(pop(r, 1), 7);
	TL_CHECK_INT(push(r, 7, 2), -EEXIST); /* already forwarded */
	TL_CHECK_INT(push(r, 9, 3), 0);
	TL_CHECK_INT(push(r, 9, 4), -EEXIST); /* buffered behind a hole */
	TL_CHECK_INT(pop(r, 4), -1);
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.duplicate, 3);
	TL_CHECK_INT(s.late, 0);
	check_invariant(r, 1);
	tl_reorder_destroy(r);
}

static void test_wrap(void)
{
	struct tl_reorder *r = mk(16);

	TL_CHECK_INT(push(r, 65533, 0), 0);
	TL_CHECK_INT(pop(r, 0), 65533);
	TL_CHECK_INT(push(r, 0, 20), 0); /* 65534, 65535 missing, ahead across the wrap */
	TL_CHECK_INT(push(r, 65535, 21), 0);
	TL_CHECK_INT(pop(r, 59), -1);
	TL_CHECK_INT(pop(r, 60), -1000 - 65534);
	TL_CHECK_INT(pop(r, 60), 65535);
	TL_CHECK_INT(pop(r, 60), 0);
	TL_CHECK_INT(push(r, 1, 61), 0);
	TL_CHECK_INT(pop(r, 61), 1);
	TL_CHECK_INT(push(r, 65535, 62), -EEXIST);
	TL_CHECK_INT(push(r, 65534, 63), -ESTALE);
	tl_reorder_destroy(r);
}

static void test_big_jump(void)
{
	struct tl_reorder *r = mk(16);
	struct tl_reorder_stats s;

	TL_CHECK_INT(push(r, 100, 0), 0);
	TL_CHECK_INT(pop(r, 0), 100);
	TL_CHECK_INT(push(r, 102, 20), 0);                       /* buffered behind 101 ... */
	TL_CHECK_INT(push(r, 102 + TL_REORDER_MAX_JUMP, 40), 0); /* ... then a restart */
	TL_CHECK_INT(pop(r, 40), 102 + TL_REORDER_MAX_JUMP);     /* no gaps, no wait */
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.resync, 1);
	TL_CHECK_INT(s.flushed, 1);
	TL_CHECK_INT(s.lost, 0);

	/* exactly MAX_JUMP ahead is still a gap run, concealed frame by frame */
	TL_CHECK_INT(push(r, 103 + 2 * TL_REORDER_MAX_JUMP, 60), 0);
	for (int i = 0; i < TL_REORDER_MAX_JUMP; i++)
		TL_CHECK_INT(pop(r, 100), -1000 - (103 + i + TL_REORDER_MAX_JUMP));
	TL_CHECK_INT(pop(r, 100), 103 + 2 * TL_REORDER_MAX_JUMP);
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.resync, 1);

	/* far behind: one stray is late; two in sequence restart the stream lower */
	const uint16_t nx = 104 + 2 * TL_REORDER_MAX_JUMP;
	TL_CHECK_INT(push(r, 5, 120), -ESTALE);
	TL_CHECK_INT(push(r, nx, 121), 0); /* the real stream goes on: probation ends */
	TL_CHECK_INT(pop(r, 121), nx);
	TL_CHECK_INT(push(r, 6, 122), -ESTALE);
	TL_CHECK_INT(push(r, 7, 123), 0);
	TL_CHECK_INT(pop(r, 123), 7);
	TL_CHECK_INT(push(r, 8 + TL_REORDER_MAX_JUMP, 124), 0); /* still a gap run */
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.resync, 2);
	TL_CHECK_INT(s.late, 2);
	check_invariant(r, 1);
	tl_reorder_destroy(r);
}

static void test_busy_slot(void)
{
	struct tl_reorder *r = mk(4);
	struct tl_reorder_stats s;

	TL_CHECK_INT(push(r, 10, 0), 0);
	TL_CHECK_INT(pop(r, 0), 10);
	TL_CHECK_INT(push(r, 12, 1), 0);        /* 11 missing */
	TL_CHECK_INT(push(r, 15, 2), 0);        /* slot 3 free: fits though 5 ahead */
	TL_CHECK_INT(push(r, 16, 3), -ENOBUFS); /* slot 0 holds 12 */
	TL_CHECK_INT(tl_reorder_next_deadline(r), 0);
	TL_CHECK_INT(pop(r, 3), -1011); /* the wait for 11 is cut short */
	TL_CHECK_INT(pop(r, 3), 12);
	TL_CHECK_INT(pop(r, 3), -1); /* 13 gets its normal wait: 15 arrived at 2 */
	TL_CHECK_INT(push(r, 16, 4), 0);
	TL_CHECK_INT(tl_reorder_next_deadline(r), 42);
	TL_CHECK_INT(pop(r, 42), -1013);
	TL_CHECK_INT(pop(r, 42), -1014);
	TL_CHECK_INT(pop(r, 42), 15);
	TL_CHECK_INT(pop(r, 42), 16);
	/* the slot holds a newer packet: refused, but no reason to stop waiting */
	TL_CHECK_INT(push(r, 23, 100), 0); /* 17..22 missing, slot 3 */
	TL_CHECK_INT(push(r, 19, 101), -ENOBUFS);
	TL_CHECK_INT(tl_reorder_next_deadline(r), 140);
	TL_CHECK_INT(pop(r, 101), -1);
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.overflow, 2);
	check_invariant(r, 1);
	tl_reorder_destroy(r);
}

/* -ENOBUFS across the 65535 -> 0 wrap: the busy slot's packet (0) comes after the push that
 * found it (4), so the wait for everything before 0 is cut short although 0 < 65535 as plain
 * integers. With a 4-slot ring, 0 and 4 share slot 0. */
static void test_busy_slot_wrap(void)
{
	struct tl_reorder *r = mk(4);

	TL_CHECK_INT(push(r, 65534, 0), 0);
	TL_CHECK_INT(pop(r, 0), 65534);
	TL_CHECK_INT(push(r, 0, 1), 0); /* 65535 missing */
	TL_CHECK_INT(tl_reorder_next_deadline(r), 41);
	TL_CHECK_INT(push(r, 4, 2), -ENOBUFS); /* slot 0 holds 0 */
	TL_CHECK_INT(tl_reorder_next_deadline(r), 0);
	TL_CHECK_INT(pop(r, 2), -1000 - 65535); /* no wait for 65535 */
	TL_CHECK_INT(pop(r, 2), 0);
	TL_CHECK_INT(pop(r, 2), -1);
	TL_CHECK_INT(push(r, 4, 3), 0); /* the slot is free again: 1..3 get their normal wait */
	TL_CHECK_INT(tl_reorder_next_deadline(r), 43);
	TL_CHECK_INT(pop(r, 42), -1);
	TL_CHECK_INT(pop(r, 43), -1001);
	TL_CHECK_INT(pop(r, 43), -1002);
	TL_CHECK_INT(pop(r, 43), -1003);
	TL_CHECK_INT(pop(r, 43), 4);
	check_invariant(r, 0);
	tl_reorder_destroy(r);
}

static void test_reset_and_args(void)
{
	struct tl_reorder *r = NULL;
	uint8_t big[161] = {0};
	struct tl_reorder_stats s;

	TL_CHECK_INT(tl_reorder_create(&r, 12, 160, 40), -EINVAL);
	TL_CHECK_INT(tl_reorder_create(&r, 1, 160, 40), -EINVAL);
	TL_CHECK_INT(tl_reorder_create(&r, 16, 0, 40), -EINVAL);
	TL_CHECK(r == NULL);
	tl_reorder_destroy(NULL);
	r = mk(16);
	TL_CHECK_INT(tl_reorder_push(r, 1, 0, big, sizeof(big), 0), -EMSGSIZE);
	TL_CHECK_INT(push(r, 1, 0), 0);
	TL_CHECK_INT(push(r, 3, 0), 0);
	tl_reorder_reset(r); /* new SSRC: starts over at any seq */
	TL_CHECK_INT(tl_reorder_next_deadline(r), -1);
	TL_CHECK_INT(push(r, 30000, 5), 0);
	TL_CHECK_INT(pop(r, 5), 30000);
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.flushed, 2);
	TL_CHECK_INT(s.oversize, 1);
	TL_CHECK_INT(s.resync, 0);
	check_invariant(r, 0);
	tl_reorder_destroy(r);

	/* reorder_ms 0: a hole is skipped as soon as a later packet is there */
	TL_CHECK_INT(tl_reorder_create(&r, 8, 160, 0), 0);
	TL_CHECK_INT(push(r, 1, 0), 0);
	TL_CHECK_INT(push(r, 3, 0), 0);
	TL_CHECK_INT(pop(r, 0), 1);
	TL_CHECK_INT(pop(r, 0), -1002);
	TL_CHECK_INT(pop(r, 0), 3);
	tl_reorder_destroy(r);
}

/* A packet of len bytes for seq, filled with a pattern that identifies both. */
static void fill(uint8_t *p, size_t len, uint16_t seq)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seq * 7 + i);
}

static int filled(const struct tl_reorder_pkt *k, size_t len)
{
	if (k->gap || k->len != len)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (k->payload[i] != (uint8_t)(k->seq * 7 + i))
			return 0;
	return 1;
}

/* Resize keeps the order, the wait, the counters and the buffered packets; a grow takes the
 * packet that was too long; a shrink flushes (counts) what no longer fits. */
static void test_resize(void)
{
	struct tl_reorder *r = NULL;
	struct tl_reorder_pkt k;
	struct tl_reorder_stats s;
	uint8_t p[481];

	TL_CHECK_INT(tl_reorder_create(&r, 16, 161, 40), 0);
	TL_CHECK_INT(tl_reorder_max_payload(r), 161);
	fill(p, 161, 10);
	TL_CHECK_INT(tl_reorder_push(r, 10, 0, p, 161, 0), 0);
	TL_CHECK_INT(tl_reorder_pop(r, 0, &k), 0);
	TL_CHECK(filled(&k, 161));
	fill(p, 161, 12);
	TL_CHECK_INT(tl_reorder_push(r, 12, 0, p, 161, 20), 0); /* 11 is missing */
	fill(p, 241, 13);
	TL_CHECK_INT(tl_reorder_push(r, 13, 0, p, 241, 25), -EMSGSIZE); /* 30 ms: too long */
	TL_CHECK_INT(tl_reorder_resize(&r, 241), 0);
	TL_CHECK_INT(tl_reorder_max_payload(r), 241);
	TL_CHECK_INT(tl_reorder_push(r, 13, 0, p, 241, 25), 0);
	fill(p, 161, 14);
	TL_CHECK_INT(tl_reorder_push(r, 14, 0, p, 161, 30), 0);
	/* the wait for 11 still runs from 12's arrival (20 + 40 ms), across the resize */
	TL_CHECK_INT(tl_reorder_next_deadline(r), 60);
	TL_CHECK_INT(tl_reorder_pop(r, 59, &k), -EAGAIN);
	TL_CHECK_INT(tl_reorder_pop(r, 60, &k), 0);
	TL_CHECK(k.gap && k.seq == 11);
	TL_CHECK_INT(tl_reorder_pop(r, 60, &k), 0);
	TL_CHECK(k.seq == 12 && filled(&k, 161));
	/* shrink with 13 (241 bytes) and 14 (161) still buffered: 13 is flushed, 14 kept */
	TL_CHECK_INT(tl_reorder_resize(&r, 200), 0);
	TL_CHECK_INT(tl_reorder_next_deadline(r), 70); /* 14 came at 30 */
	TL_CHECK_INT(tl_reorder_pop(r, 69, &k), -EAGAIN);
	TL_CHECK_INT(tl_reorder_pop(r, 70, &k), 0);
	TL_CHECK(k.gap && k.seq == 13);
	TL_CHECK_INT(tl_reorder_pop(r, 70, &k), 0);
	TL_CHECK(k.seq == 14 && filled(&k, 161));
	TL_CHECK_INT(tl_reorder_pop(r, 70, &k), -EAGAIN);
	fill(p, 481, 15);
	TL_CHECK_INT(tl_reorder_push(r, 15, 0, p, 481, 80), -EMSGSIZE); /* never past the slot */
	TL_CHECK_INT(tl_reorder_resize(&r, 0), -EINVAL);
	TL_CHECK_INT(tl_reorder_max_payload(r), 200);
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.flushed, 1);
	TL_CHECK_INT(s.oversize, 2);
	TL_CHECK_INT(s.lost, 2); /* 11, and 13 once flushed */
	TL_CHECK_INT(s.forwarded, 3);
	check_invariant(r, 0);
	tl_reorder_destroy(r);
}

/* tl_reorder_pass is push + pop for the packet it takes: two stages fed the same random stream
 * (in order, swapped, lost, duplicated, late, jumps, around the wrap), one through push and pop
 * only and one through pass first, hand on the same packets and gaps at the same times and end
 * with the same counters. */
static void test_pass_equivalence(void)
{
	uint32_t rnd = 12345;
	unsigned passed = 0, pushed = 0;

	for (int round = 0; round < 20; round++) {
		struct tl_reorder *a = mk(8), *b = mk(8);
		struct tl_reorder_stats sa, sb;
		uint16_t seq = (uint16_t)(65500 + round * 7);
		int64_t now = 0;

		for (int i = 0; i < 400; i++) {
			rnd = rnd * 1103515245u + 12345u;
			unsigned r = (rnd >> 16) % 100;
			uint16_t s = seq;
			if (r < 70)
				seq++; /* in order */
			else if (r < 78)
				s = (uint16_t)(seq +
				               1); /* ahead: seq itself comes next time, swapped */
			else if (r < 84)
				seq = (uint16_t)(seq + 2), s = seq; /* one lost */
			else if (r < 90)
				s = (uint16_t)(seq - 1 - (rnd >> 8) % 3); /* duplicate or late */
			else if (r < 92)
				seq = (uint16_t)(seq + 500), s = seq; /* a jump: resync */
			else
				seq++, now += 40; /* in order, after a pause */
			now += (int64_t)((rnd >> 4) % 25);

			/* a: push (again after draining on -ENOBUFS), then drain; b: the same, but
			 * pass first, as tl_stream_on_rtp does. Both hand-ons are listed in order.
			 */
			long la[40], lb[40];
			int na = 0, nb = 0, ra, rb = 0;
			ra = push(a, s, now);
			if (ra == -ENOBUFS) {
				while (na < 39 && (la[na] = pop(a, now)) != -1)
					na++;
				ra = push(a, s, now);
			}
			while (na < 39 && (la[na] = pop(a, now)) != -1)
				na++;
			if (tl_reorder_pass(b, s, 4)) {
				passed++;
				lb[nb++] = s;
			} else {
				pushed++;
				rb = push(b, s, now);
				if (rb == -ENOBUFS) {
					while (nb < 39 && (lb[nb] = pop(b, now)) != -1)
						nb++;
					rb = push(b, s, now);
				}
				TL_CHECK_INT(rb, ra);
			}
			while (nb < 39 && (lb[nb] = pop(b, now)) != -1)
				nb++;
			TL_CHECK_INT(nb, na);
			for (int k = 0; k < na && k < nb; k++)
				TL_CHECK_INT(lb[k], la[k]);
			TL_CHECK_INT(tl_reorder_next_deadline(b), tl_reorder_next_deadline(a));
		}
		tl_reorder_stats_get(a, &sa);
		tl_reorder_stats_get(b, &sb);
		TL_CHECK_INT(sb.received, sa.received);
		TL_CHECK_INT(sb.forwarded, sa.forwarded);
		TL_CHECK_INT(sb.lost, sa.lost);
		TL_CHECK_INT(sb.late, sa.late);
		TL_CHECK_INT(sb.duplicate, sa.duplicate);
		TL_CHECK_INT(sb.resync, sa.resync);
		TL_CHECK_INT(sb.overflow, sa.overflow);
		TL_CHECK_INT(sb.flushed, sa.flushed);
		tl_reorder_destroy(a);
		tl_reorder_destroy(b);
	}
	/* Both ways were taken, the pass most of the time. */
	TL_CHECK(passed > 2000);
	TL_CHECK(pushed > 500);
}

/* pass refuses what it must not take: before the first packet, a packet out of order, while
 * one is buffered, and one longer than the slots; and then changes nothing. */
static void test_pass_refuses(void)
{
	struct tl_reorder *r = mk(16);
	struct tl_reorder_stats s;

	TL_CHECK_INT(tl_reorder_pass(r, 100, 4), 0); /* not started */
	TL_CHECK_INT(push(r, 100, 0), 0);
	TL_CHECK_INT(pop(r, 0), 100);
	TL_CHECK_INT(tl_reorder_pass(r, 101, 4), 1);
	TL_CHECK_INT(tl_reorder_pass(r, 103, 4), 0); /* 102 missing */
	TL_CHECK_INT(push(r, 103, 0), 0);
	TL_CHECK_INT(tl_reorder_pass(r, 102, 4), 0); /* 103 is buffered */
	TL_CHECK_INT(push(r, 102, 0), 0);
	TL_CHECK_INT(pop(r, 0), 102);
	TL_CHECK_INT(pop(r, 0), 103);
	TL_CHECK_INT(tl_reorder_pass(r, 104, 161), 0); /* longer than a slot */
	TL_CHECK_INT(tl_reorder_pass(r, 103, 4), 0);   /* a duplicate */
	TL_CHECK_INT(tl_reorder_pass(r, 104, 160), 1);
	tl_reorder_stats_get(r, &s);
	TL_CHECK_INT(s.received, 5);
	TL_CHECK_INT(s.forwarded, 5);
	check_invariant(r, 0);
	tl_reorder_destroy(r);
}

int main(void)
{
	TL_TEST_RUN(test_in_order);
	TL_TEST_RUN(test_swapped_pair);
	TL_TEST_RUN(test_gap_concealed_then_late);
	TL_TEST_RUN(test_burst_loss);
	TL_TEST_RUN(test_duplicates);
	TL_TEST_RUN(test_wrap);
	TL_TEST_RUN(test_big_jump);
	TL_TEST_RUN(test_busy_slot);
	TL_TEST_RUN(test_busy_slot_wrap);
	TL_TEST_RUN(test_reset_and_args);
	TL_TEST_RUN(test_resize);
	TL_TEST_RUN(test_pass_equivalence);
	TL_TEST_RUN(test_pass_refuses);
	return TL_TEST_END();
}
