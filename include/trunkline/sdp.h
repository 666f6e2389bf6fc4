/* SDP offer/answer for one audio stream (RFC 3264), on Sofia-SIP's SDP parser.
 * Answers keep the offer's payload type numbers and ptime; generates our offer for delayed-offer
 * INVITEs and reads the answer that comes back in the ACK. Pure: no sockets, no SIP. */
#ifndef TRUNKLINE_SDP_H
#define TRUNKLINE_SDP_H

#include <stddef.h>
#include <stdint.h>

#include "trunkline/srtp.h"

enum tl_codec {
	TL_CODEC_NONE = 0,
	TL_CODEC_PCMU,
	TL_CODEC_PCMA,
	TL_CODEC_G722,
	TL_CODEC_OPUS,
};

enum tl_sdp_dir {
	TL_SDP_SENDRECV = 0,
	TL_SDP_SENDONLY,
	TL_SDP_RECVONLY,
	TL_SDP_INACTIVE,
};

/* What we put in our SDP. */
struct tl_sdp_local {
	const char *addr;      /* c= address (IPv4 or IPv6 literal) */
	uint16_t port;         /* RTP port; RTCP is port + 1 */
	uint64_t sess_id;      /* o= session id, fixed for the call */
	uint64_t sess_version; /* o= version: the caller bumps it when the body changes */
	unsigned codecs;       /* bit (1u << enum tl_codec) per codec we accept; 0 = PCMU|PCMA */
	enum tl_sdp_dir dir;   /* direction we want (sendrecv normally) */
	/* Preference, best first, up to TL_CODEC_NONE: an answer takes the first of these the
	 * offer has (whatever the offer's order), our offer lists them in this order. All
	 * TL_CODEC_NONE: every codec of `codecs`, in the offer's order. */
	enum tl_codec order[4];
	int g711_tie;  /* PCMU and PCMA rank alike in order: the offer's order picks between them */
	int opus_rate; /* the rate we decode Opus at: our fmtp maxplaybackrate; 0 = 48000 */
	int savp;      /* 1: an RTP/SAVP stream may be answered (SRTP keys agreed) */
};

/* Opus fmtp parameters (RFC 7587 §6.1) the peer gave for its payload type; 0 when absent. */
struct tl_sdp_opus {
	int maxplaybackrate;      /* what the peer can play: caps the band we code */
	int sprop_maxcapturerate; /* what the peer captures (informative) */
	int stereo;               /* the peer would take stereo (we send mono: allowed) */
	int useinbandfec;         /* the peer decodes FEC: we code it */
	int usedtx;               /* the peer wants DTX */
	int maxaveragebitrate;    /* bits/s we may send at most */
	int maxptime;             /* ms */
};

/* The negotiated result. */
struct tl_sdp_media {
	char remote_addr[64]; /* peer's c= address; "0.0.0.0"/"::" or port 0 means no media */
	uint16_t remote_port;
	int remote_ipv6; /* 1 when remote_addr is IPv6 */
	enum tl_codec codec;
	uint8_t pt;               /* payload type of codec, as the offer numbered it */
	uint32_t clock_rate;      /* RTP clock rate of codec */
	int te_pt;                /* telephone-event payload type, or -1 */
	uint32_t te_rate;         /* its clock: 8000, or 48000 (Opus, when the offer has it) */
	int ptime;                /* ms; the offer's a=ptime, else 20 */
	int ptime_given;          /* 1 when the offer had a=ptime */
	enum tl_sdp_dir dir;      /* OUR direction: sendonly offer -> we are recvonly */
	int hold;                 /* peer put us on hold (sendonly/inactive or 0.0.0.0) */
	struct tl_sdp_opus opus;  /* codec TL_CODEC_OPUS: the peer's fmtp */
	struct tl_srtp_keys srtp; /* SDES keys (sdp_crypto.c); suite TL_SRTP_NONE: plain RTP */
};

/* Answers offer (len bytes). Writes the answer into out (NUL-terminated) and the result into
 * *neg. Returns the answer's length, -EPROTO when the offer does not parse or has no audio
 * stream (-> 400/488), -ENOTSUP when no codec is acceptable (-> 488), -ENOSPC when out is
 * too small. All pointers are borrowed until return. */
int tl_sdp_answer(const char *offer, size_t len, const struct tl_sdp_local *local,
                  struct tl_sdp_media *neg, char *out, size_t size);

/* Writes our offer (every codec in local->codecs, then telephone-event/8000 as 101) into out.
 * Returns its length or -ENOSPC. */
int tl_sdp_offer(const struct tl_sdp_local *local, char *out, size_t size);

/* Reads the answer to our offer: picks the first codec of the answer we offered.
 * Returns 0, -EPROTO or -ENOTSUP as tl_sdp_answer. */
int tl_sdp_read_answer(const char *answer, size_t len, const struct tl_sdp_local *local,
                       struct tl_sdp_media *neg);

/* "PCMU", "PCMA", "G722", "opus"; "none" for TL_CODEC_NONE. */
const char *tl_sdp_codec_name(enum tl_codec codec);

#endif
