/* Codec details of the SDP offer/answer (sdp.c): preference order, ptime, Opus fmtp (RFC 7587).
 * Pure functions on strings; private to connector/sip. */
#ifndef TL_SDP_CODEC_H
#define TL_SDP_CODEC_H

#include <stddef.h>

#include "trunkline/sdp.h"

/* Where id stands in local's preference (0 = best); -1 when local does not take it. */
int tl_sdp_pref_rank(const struct tl_sdp_local *local, unsigned codecs, enum tl_codec id);
/* The packet length we send for codec given the peer's ptime and maxptime (0: none). */
int tl_sdp_ptime_fit(enum tl_codec codec, int ptime, int maxptime);
/* Reads "a=fmtp" parameters of an Opus payload type (fmtp may be NULL) into *o. */
void tl_sdp_opus_parse(const char *fmtp, struct tl_sdp_opus *o);
/* Our Opus fmtp parameters ("useinbandfec=1; ...") for a peer that should send FEC and
 * need not code wider than rate. */
void tl_sdp_opus_fmtp(char *out, size_t size, int rate);

#endif
