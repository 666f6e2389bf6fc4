/* Which datagrams belong to a call: RTP only from the address the SDP names (always) or, for a
 * PBX behind NAT, from the source learned once from a run of consecutive packets; RTCP only from
 * the IP our RTP goes to. It also says where our RTP and RTCP go. Per packet: compares and counters
 * only. Learning follows the idea of Asterisk's strictrtp probation and rtpengine's source lock. */
#include <string.h>
#include <netinet/in.h>

#include "media_int.h"

/* The address bytes and port of ss (IPv4-mapped IPv6 counts as IPv4); NULL when not IP. */
static const uint8_t *ip_of(const struct sockaddr *ss, int *fam, uint16_t *port)
{
	if (ss->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		*fam = AF_INET;
		*port = in->sin_port;
		return (const uint8_t *)&in->sin_addr;
	}
	if (ss->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		*port = in6->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			*fam = AF_INET;
			return in6->sin6_addr.s6_addr + 12;
		}
		*fam = AF_INET6;
		return in6->sin6_addr.s6_addr;
	}
	return NULL;
}

/* Addresses come as sockaddr_storage (recvmmsg, the SDP) or union tl_rtp_addr (kept). */
#define SA(x) ((const struct sockaddr *)(x))

/* Same IP (and port, with_port): */
static int addr_eq(const struct sockaddr *a, const struct sockaddr *b, int with_port)
{
	int fa = 0, fb = 0;
	uint16_t pa = 0, pb = 0;
	const uint8_t *ia = ip_of(a, &fa, &pa), *ib = ip_of(b, &fb, &pb);

	return ia && ib && fa == fb && (!with_port || pa == pb) &&
	       memcmp(ia, ib, fa == AF_INET ? 4 : 16) == 0;
}

static socklen_t addr_len(const struct sockaddr *ss)
{
	if (ss->sa_family == AF_INET)
		return sizeof(struct sockaddr_in);
	if (ss->sa_family == AF_INET6)
		return sizeof(struct sockaddr_in6);
	return 0;
}

static void addr_copy(union tl_rtp_addr *dst, socklen_t *dst_len, const struct sockaddr *src)
{
	*dst_len = addr_len(src);
	memset(dst, 0, sizeof(*dst));
	memcpy(dst, src, *dst_len);
}

/* RTCP goes to the port above RTP until the peer's own RTCP shows where it comes from. */
static void rtcp_default(struct tl_rtp_source *r)
{
	uint16_t port = 0;
	int fam;

	addr_copy(&r->rtcp_to, &r->rtcp_to_len, &r->rtp_to.sa);
	if (!ip_of(&r->rtp_to.sa, &fam, &port))
		return;
	port = htons((uint16_t)(ntohs(port) + 1));
	if (r->rtcp_to.sa.sa_family == AF_INET6)
		r->rtcp_to.in6.sin6_port = port;
	else
		r->rtcp_to.in.sin_port = port;
	r->rtcp_latched = 0;
}

static void note_foreign(struct tl_rtp_source *r, const struct sockaddr *from)
{
	if (atomic_load_explicit(&r->have_foreign, memory_order_relaxed))
		return;
	addr_copy(&r->foreign_from, &r->foreign_from_len, from);
	atomic_store_explicit(&r->have_foreign, 1, memory_order_release);
}

static int drop_foreign(struct tl_rtp_source *r, const struct sockaddr_storage *from)
{
	atomic_fetch_add_explicit(&r->rx_foreign, 1, memory_order_relaxed);
	note_foreign(r, SA(from));
	return 0;
}

/* The candidate lost (another source won, or the SDP changed): its packets stay foreign. */
static void forget_candidate(struct tl_rtp_source *r, const struct sockaddr_storage *winner)
{
	if (r->cand_n && (!winner || !addr_eq(&r->cand.sa, SA(winner), 1)))
		note_foreign(r, &r->cand.sa);
	r->cand_n = 0;
}

static void lock_source(struct tl_rtp_source *r, const struct sockaddr_storage *from, int64_t now)
{
	int same_ip = r->rtp_to_len && addr_eq(SA(from), &r->rtp_to.sa, 0);

	forget_candidate(r, from);
	addr_copy(&r->src, &r->src_len, SA(from));
	r->locked = 1;
	r->last_rx = now;
	addr_copy(&r->rtp_to, &r->rtp_to_len, SA(from));
	if (!same_ip || !r->rtcp_latched)
		rtcp_default(r);
}

void tl_rtp_source_init(struct tl_rtp_source *r, int strict, int relearn_ms)
{
	memset(r, 0, sizeof(*r));
	r->strict = strict;
	r->relearn_ms = relearn_ms > 0 ? relearn_ms : 0;
	atomic_init(&r->rx_foreign, 0);
	atomic_init(&r->rx_learning, 0);
	atomic_init(&r->rtcp_dropped, 0);
	atomic_init(&r->have_foreign, 0);
}

int tl_rtp_source_set_sdp(struct tl_rtp_source *r, const struct sockaddr_storage *sdp)
{
	socklen_t len = addr_len(SA(sdp));

	if (r->have_sdp && len == r->sdp_len && (len == 0 || addr_eq(SA(sdp), &r->sdp.sa, 1)))
		return 0;
	/* New SDP: packets go there, and the source is learned again from scratch. */
	r->have_sdp = 1;
	addr_copy(&r->sdp, &r->sdp_len, SA(sdp));
	forget_candidate(r, NULL);
	r->locked = 0;
	r->src_len = 0;
	addr_copy(&r->rtp_to, &r->rtp_to_len, SA(sdp));
	rtcp_default(r);
	return 1;
}

/* Not locked: the SDP address (or, after a silence, the source we had) is taken at once; any
 * other source needs TL_SRC_PROBATION consecutive packets of one SSRC, sequence +1 each. */
static int learn(struct tl_rtp_source *r, const struct sockaddr_storage *from, uint32_t ssrc,
                 uint16_t seq, int64_t now)
{
	if ((r->sdp_len && addr_eq(SA(from), &r->sdp.sa, 1)) ||
	    (r->src_len && addr_eq(SA(from), &r->src.sa, 1))) {
		lock_source(r, from, now);
		return 1;
	}
	if (r->cand_n && addr_eq(SA(from), &r->cand.sa, 1) && ssrc == r->cand_ssrc &&
	    seq == (uint16_t)(r->cand_seq + 1)) {
		r->cand_n++;
	} else {
		forget_candidate(r, from);
		addr_copy(&r->cand, &r->cand_len, SA(from));
		r->cand_ssrc = ssrc;
		r->cand_n = 1;
	}
	r->cand_seq = seq;
	if (r->cand_n < TL_SRC_PROBATION) {
		atomic_fetch_add_explicit(&r->rx_foreign, 1, memory_order_relaxed);
		return 0;
	}
	/* Learned: the run's earlier packets were held back from this source, not foreign. */
	atomic_fetch_sub_explicit(&r->rx_foreign, r->cand_n - 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->rx_learning, r->cand_n - 1, memory_order_relaxed);
	r->cand_n = 0;
	lock_source(r, from, now);
	return 1;
}

int tl_rtp_source_rtp(struct tl_rtp_source *r, const struct sockaddr_storage *from, uint32_t ssrc,
                      uint16_t seq, int64_t now)
{
	if (r->strict)
		return r->sdp_len && addr_eq(SA(from), &r->sdp.sa, 1) ? 1 : drop_foreign(r, from);
	if (r->locked) {
		if (addr_eq(SA(from), &r->src.sa, 1)) {
			r->last_rx = now;
			return 1;
		}
		/* The SDP address always wins over a learned one: whoever won the learning before
		 * the PBX's first packet loses the call the moment the PBX is heard from there. */
		if (r->sdp_len && addr_eq(SA(from), &r->sdp.sa, 1)) {
			lock_source(r, from, now);
			return 1;
		}
		if (r->relearn_ms == 0 || now - r->last_rx < r->relearn_ms)
			return drop_foreign(r, from);
		r->locked = 0; /* the source went silent: learn again, it stays preferred */
	}
	return learn(r, from, ssrc, seq, now);
}

int tl_rtp_source_rtcp(struct tl_rtp_source *r, const struct sockaddr_storage *from,
                       const uint8_t *pkt, size_t len)
{
	if (!r->rtp_to_len || !addr_eq(SA(from), &r->rtp_to.sa, 0)) {
		atomic_fetch_add_explicit(&r->rtcp_dropped, 1, memory_order_relaxed);
		note_foreign(r, SA(from));
		return 0;
	}
	if ((r->rtcp_latched || r->strict) && addr_eq(SA(from), &r->rtcp_to.sa, 1))
		return 1;
	/* The first real RTCP from the RTP source's IP fixes the port (NAT maps it anywhere). */
	if (!r->rtcp_latched && !r->strict && len >= 8 && pkt[0] >> 6 == 2 &&
	    tl_rtp_is_rtcp(pkt, len)) {
		addr_copy(&r->rtcp_to, &r->rtcp_to_len, SA(from));
		r->rtcp_latched = 1;
		return 1;
	}
	atomic_fetch_add_explicit(&r->rtcp_dropped, 1, memory_order_relaxed);
	return 0;
}
