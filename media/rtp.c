/* RTP/RTCP wire formats (RFC 3550): parse and write the RTP fixed header, build SR/RR + SDES,
 * find an SR in a compound packet, estimate interarrival jitter. Byte-level only: no sockets,
 * no session state, no SRTP. */
#include "trunkline/rtp.h"

#include <errno.h>
#include <string.h>

#define RTCP_SR         200
#define RTCP_RR         201
#define RTCP_SDES       202
#define SDES_CNAME      1
#define NTP_UNIX_OFFSET 2208988800u /* seconds from 1900 to 1970 */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
	return p + 4;
}

/* CSRC list and header extension: advances *off past them, or -EPROTO. */
static int parse_csrc_ext(struct tl_rtp_hdr *h, const uint8_t *pkt, size_t len, size_t *off)
{
	size_t o = TL_RTP_HDR_LEN + 4u * h->cc;

	if (o > len)
		return -EPROTO;
	h->csrc = h->cc ? pkt + TL_RTP_HDR_LEN : NULL;
	h->ext = NULL;
	h->ext_len = 0;
	h->ext_profile = 0;
	if (pkt[0] & 0x10) {
		if (o + 4 > len)
			return -EPROTO;
		h->ext_profile = get16(pkt + o);
		h->ext_len = 4u * get16(pkt + o + 2);
		o += 4;
		if (h->ext_len > len - o)
			return -EPROTO;
		h->ext = pkt + o;
		o += h->ext_len;
	}
	*off = o;
	return 0;
}

int tl_rtp_parse(struct tl_rtp_hdr *h, const uint8_t *pkt, size_t len)
{
	size_t off, end = len;
	int err;

	if (len < TL_RTP_HDR_LEN || (pkt[0] >> 6) != 2)
		return -EPROTO;
	h->cc = pkt[0] & 0x0F;
	h->marker = pkt[1] >> 7;
	h->pt = pkt[1] & 0x7F;
	h->seq = get16(pkt + 2);
	h->ts = get32(pkt + 4);
	h->ssrc = get32(pkt + 8);
	err = parse_csrc_ext(h, pkt, len, &off);
	if (err)
		return err;
	h->pad_len = 0;
	if (pkt[0] & 0x20) {
		h->pad_len = pkt[len - 1];
		if (h->pad_len == 0 || h->pad_len > len - off)
			return -EPROTO;
		end -= h->pad_len;
	}
	h->payload = pkt + off;
	h->payload_len = end - off;
	return 0;
}

int tl_rtp_write(uint8_t *buf, size_t cap, const struct tl_rtp_hdr *h)
{
	if (h->pt > 127)
		return -EINVAL;
	if (cap < TL_RTP_HDR_LEN)
		return -ENOSPC;
	buf[0] = 0x80;
	buf[1] = (uint8_t)((h->marker ? 0x80 : 0) | h->pt);
	put16(buf + 2, h->seq);
	put32(buf + 4, h->ts);
	put32(buf + 8, h->ssrc);
	return TL_RTP_HDR_LEN;
}

int tl_rtp_is_rtcp(const uint8_t *pkt, size_t len)
{
	return len >= 2 && pkt[1] >= 192 && pkt[1] <= 223;
}

void tl_rtp_jitter_update(struct tl_rtp_jitter *j, uint32_t rtp_ts, uint32_t arrival)
{
	uint32_t transit = arrival - rtp_ts; /* modular: only differences matter */
	int32_t d;

	if (j->have_transit) {
		d = (int32_t)(transit - j->last_transit);
		if (d < 0)
			d = -d;
		j->jitter_q4 += (uint32_t)d - ((j->jitter_q4 + 8) >> 4);
	}
	j->last_transit = transit;
	j->have_transit = 1;
}

uint32_t tl_rtp_jitter_get(const struct tl_rtp_jitter *j)
{
	return j->jitter_q4 >> 4;
}

static uint8_t *put_rtcp_hdr(uint8_t *p, unsigned count, unsigned pt, size_t bytes)
{
	p[0] = (uint8_t)(0x80 | count);
	p[1] = (uint8_t)pt;
	return put16(p + 2, (uint16_t)(bytes / 4 - 1));
}

static uint8_t *put_report_block(uint8_t *p, const struct tl_rtcp_report *r)
{
	int32_t lost = r->cum_lost;

	if (lost > 0x7FFFFF)
		lost = 0x7FFFFF;
	if (lost < -0x800000)
		lost = -0x800000;
	p = put32(p, r->remote_ssrc);
	p = put32(p, (uint32_t)r->fraction_lost << 24 | ((uint32_t)lost & 0xFFFFFF));
	p = put32(p, r->ext_highest_seq);
	p = put32(p, r->jitter);
	p = put32(p, r->lsr);
	return put32(p, r->dlsr);
}

static size_t report_len(const struct tl_rtcp_report *r)
{
	return 8 + (r->sender ? 20 : 0) + (r->have_block ? 24 : 0);
}

/* Header, SSRC, CNAME type and length octets, text, at least one END octet, 32-bit aligned. */
static size_t sdes_len(size_t cname_len)
{
	return (4 + 4 + 2 + cname_len + 1 + 3) & ~(size_t)3;
}

/* SR or RR with at most one report block; returns its length. */
static size_t put_report(uint8_t *p, const struct tl_rtcp_report *r)
{
	size_t n = report_len(r);
	uint8_t *q = put_rtcp_hdr(p, r->have_block ? 1 : 0, r->sender ? RTCP_SR : RTCP_RR, n);

	q = put32(q, r->ssrc);
	if (r->sender) {
		q = put32(q, (uint32_t)(r->ntp >> 32));
		q = put32(q, (uint32_t)r->ntp);
		q = put32(q, r->rtp_ts);
		q = put32(q, r->packets_sent);
		q = put32(q, r->octets_sent);
	}
	if (r->have_block)
		put_report_block(q, r);
	return n;
}

/* SDES: one chunk {SSRC, CNAME item, END}, zero-padded to 32 bits. */
static size_t put_sdes(uint8_t *p, uint32_t ssrc, const char *cname, size_t cname_len)
{
	size_t n = sdes_len(cname_len);
	uint8_t *q = put_rtcp_hdr(p, 1, RTCP_SDES, n);

	q = put32(q, ssrc);
	q[0] = SDES_CNAME;
	q[1] = (uint8_t)cname_len;
	memcpy(q + 2, cname, cname_len);
	memset(q + 2 + cname_len, 0, n - 10 - cname_len);
	return n;
}

ssize_t tl_rtcp_build(uint8_t *buf, size_t cap, const struct tl_rtcp_report *rep, const char *cname)
{
	size_t clen = cname ? strlen(cname) : 0;
	size_t rlen = report_len(rep), slen = sdes_len(clen);

	if (clen == 0 || clen > 255)
		return -EINVAL;
	if (cap < rlen + slen)
		return -ENOSPC;
	put_report(buf, rep);
	put_sdes(buf + rlen, rep->ssrc, cname, clen);
	return (ssize_t)(rlen + slen);
}

static void read_sr(struct tl_rtcp_sr *sr, const uint8_t *p)
{
	sr->ssrc = get32(p + 4);
	sr->ntp = (uint64_t)get32(p + 8) << 32 | get32(p + 12);
	sr->rtp_ts = get32(p + 16);
	sr->packets = get32(p + 20);
	sr->octets = get32(p + 24);
}

int tl_rtcp_parse_sr(const uint8_t *pkt, size_t len, struct tl_rtcp_sr *sr)
{
	size_t off = 0, n;
	int found = 0;

	if (len < 4)
		return -EPROTO;
	while (off < len) {
		if (len - off < 4 || (pkt[off] >> 6) != 2)
			return -EPROTO;
		n = 4u * (get16(pkt + off + 2) + 1u);
		if (n > len - off)
			return -EPROTO;
		if (pkt[off + 1] == RTCP_SR && !found) {
			if (n < 28)
				return -EPROTO;
			read_sr(sr, pkt + off);
			found = 1;
		}
		off += n;
	}
	return found ? 0 : -ENOENT;
}

uint32_t tl_rtcp_ntp_mid(uint64_t ntp)
{
	return (uint32_t)(ntp >> 16);
}

uint64_t tl_rtcp_ntp(const struct timespec *realtime)
{
	uint64_t sec = (uint64_t)realtime->tv_sec + NTP_UNIX_OFFSET;
	uint64_t frac = ((uint64_t)realtime->tv_nsec << 32) / 1000000000u;

	return sec << 32 | frac;
}

uint32_t tl_rtcp_dlsr(int64_t delay_ms)
{
	if (delay_ms <= 0)
		return 0;
	if (delay_ms >= 65536000) /* the field holds up to 65536 s */
		return UINT32_MAX;
	return (uint32_t)(((uint64_t)delay_ms << 16) / 1000u);
}

uint8_t tl_rtcp_fraction_lost(uint32_t expected, uint32_t received)
{
	uint64_t f;

	if (expected == 0 || received >= expected)
		return 0;
	f = ((uint64_t)(expected - received) << 8) / expected;
	return (uint8_t)(f > 255 ? 255 : f); /* all lost would be 256 */
}
