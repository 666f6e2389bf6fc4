/* RTP header parse/write (RFC 3550 section 5.1) and minimal RTCP: SR/RR + SDES CNAME compound
 * packets, SR parsing for LSR, and the interarrival jitter estimator (RFC 3550 A.8).
 * Pure functions over caller buffers: no allocation, no state beyond the caller's structs.
 * Does not do SRTP, header extensions' contents, RTCP feedback (RFC 4585) or BYE. */
#ifndef TRUNKLINE_RTP_H
#define TRUNKLINE_RTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define TL_RTP_HDR_LEN 12

struct tl_rtp_hdr {
	uint8_t pt;     /* 0..127 */
	uint8_t marker; /* 0 or 1 */
	uint16_t seq;
	uint32_t ts;
	uint32_t ssrc;
	/* Filled by tl_rtp_parse only; pointers borrow the parsed packet buffer. */
	uint8_t cc;             /* CSRC count */
	const uint8_t *csrc;    /* cc big-endian 32-bit CSRCs, NULL if cc == 0 */
	uint16_t ext_profile;   /* header extension "defined by profile" field */
	const uint8_t *ext;     /* extension body (after its 4-byte header), NULL if none */
	size_t ext_len;         /* bytes, a multiple of 4 */
	const uint8_t *payload; /* never NULL after success; may have length 0 */
	size_t payload_len;     /* padding excluded */
	uint8_t pad_len;        /* padding bytes removed, 0 if none */
};

/* Parses pkt (len bytes, borrowed; *h's pointers point into it and live as long as it does).
 * Returns 0, or -EPROTO for version != 2, truncation or bad padding. */
int tl_rtp_parse(struct tl_rtp_hdr *h, const uint8_t *pkt, size_t len);

/* Writes the 12-byte fixed header from h->pt, marker, seq, ts, ssrc (no CSRC, no extension,
 * no padding) into buf (cap bytes, borrowed). Returns 12, -ENOSPC, or -EINVAL (pt > 127). */
int tl_rtp_write(uint8_t *buf, size_t cap, const struct tl_rtp_hdr *h);

/* RFC 5761 demultiplexing on a muxed port: 1 when the second byte is an RTCP packet type
 * (192..223), 0 otherwise (including too short). pkt borrowed until return. */
int tl_rtp_is_rtcp(const uint8_t *pkt, size_t len);

/* Interarrival jitter, RFC 3550 A.8, in RTP timestamp units. Zero-initialize before use. */
struct tl_rtp_jitter {
	uint32_t jitter_q4; /* jitter * 16, as in the RFC's integer version */
	uint32_t last_transit;
	int have_transit;
};

/* arrival: the packet's arrival time converted to the same clock as rtp_ts (e.g. ms * 8 for
 * 8 kHz). Call once per received packet, in arrival order. */
void tl_rtp_jitter_update(struct tl_rtp_jitter *j, uint32_t rtp_ts, uint32_t arrival);
uint32_t tl_rtp_jitter_get(const struct tl_rtp_jitter *j);

/* What one RTCP report says. Without have_block the report has no report block (RC = 0). */
struct tl_rtcp_report {
	uint32_t ssrc; /* ours */
	int sender;    /* nonzero: SR (we sent RTP since the last report), else RR */
	/* SR sender info */
	uint64_t ntp;    /* wallclock at report time, NTP 32.32 (see tl_rtcp_ntp) */
	uint32_t rtp_ts; /* RTP timestamp corresponding to ntp */
	uint32_t packets_sent;
	uint32_t octets_sent; /* payload octets */
	/* one report block about the remote source */
	int have_block;
	uint32_t remote_ssrc;
	uint8_t fraction_lost;    /* see tl_rtcp_fraction_lost */
	int32_t cum_lost;         /* clamped to the 24-bit signed field */
	uint32_t ext_highest_seq; /* cycles << 16 | highest seq received */
	uint32_t jitter;          /* RTP timestamp units (tl_rtp_jitter_get) */
	uint32_t lsr;             /* middle 32 bits of the last SR's NTP time, 0 if none */
	uint32_t dlsr;            /* delay since that SR in 1/65536 s, 0 if none */
};

/* Builds SR or RR followed by SDES with one CNAME chunk into buf (cap bytes, borrowed).
 * cname: borrowed until return, 1..255 bytes. Returns the length (a multiple of 4),
 * -ENOSPC, or -EINVAL. */
ssize_t tl_rtcp_build(uint8_t *buf, size_t cap, const struct tl_rtcp_report *rep,
                      const char *cname);

struct tl_rtcp_sr {
	uint32_t ssrc;
	uint64_t ntp;
	uint32_t rtp_ts;
	uint32_t packets;
	uint32_t octets;
};

/* Walks a compound RTCP packet (pkt borrowed until return) for its first SR. Returns 0,
 * -ENOENT when the compound is valid but holds no SR, or -EPROTO when malformed. */
int tl_rtcp_parse_sr(const uint8_t *pkt, size_t len, struct tl_rtcp_sr *sr);

/* The middle 32 bits of an NTP timestamp: an SR's LSR value for the next report block. */
uint32_t tl_rtcp_ntp_mid(uint64_t ntp);

/* NTP 32.32 timestamp of a CLOCK_REALTIME time. */
uint64_t tl_rtcp_ntp(const struct timespec *realtime);

/* DLSR from a delay in milliseconds (negative gives 0). */
uint32_t tl_rtcp_dlsr(int64_t delay_ms);

/* RFC 3550 A.3 fraction lost over an interval: expected and received packets since the
 * previous report. 0 when nothing was lost (or duplicates made received exceed expected). */
uint8_t tl_rtcp_fraction_lost(uint32_t expected, uint32_t received);

#endif
