/* Codec details of trunkline's SDP: the preference order an answer and an offer follow, the
 * ptime we send, and Opus's fmtp parameters (RFC 7587 §6.1). No SDP parsing here: sdp.c hands
 * in the strings Sofia-SIP parsed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sdp_codec.h"

int tl_sdp_pref_rank(const struct tl_sdp_local *local, unsigned codecs, enum tl_codec id)
{
	if (!(codecs & (1u << id)))
		return -1;
	if (local->order[0] == TL_CODEC_NONE)
		return 0; /* no order: the offer's */
	int g711 = id == TL_CODEC_PCMU || id == TL_CODEC_PCMA;

	for (int i = 0; i < 4 && local->order[i] != TL_CODEC_NONE; i++) {
		enum tl_codec o = local->order[i];
		/* With g711_tie the first G.711 of the order ranks both. */
		if (o == id ||
		    (local->g711_tie && g711 && (o == TL_CODEC_PCMU || o == TL_CODEC_PCMA)))
			return i;
	}
	return -1;
}

int tl_sdp_ptime_fit(enum tl_codec codec, int ptime, int maxptime)
{
	int ms = ptime > 0 ? ptime : 20;

	if (maxptime >= 10 && ms > maxptime)
		ms = maxptime;
	ms = ms < 10 ? 10 : ms > 60 ? 60 : ms / 10 * 10;
	/* Opus frames are 10, 20, 40 or 60 ms (RFC 6716 §2.1.4, multi-frame packets aside). */
	if (codec == TL_CODEC_OPUS && (ms == 30 || ms == 50))
		ms -= 10;
	return ms;
}

/* The value of "name=<digits>" in an fmtp parameter list ("a=1; b=2" or "a=1;b=2"), else 0. */
static int fmtp_int(const char *fmtp, const char *name)
{
	size_t n = strlen(name);
	const char *p = fmtp;

	while (p && *p) {
		p += strspn(p, " \t;");
		if (strncasecmp(p, name, n) == 0 && p[n] == '=') {
			long v = strtol(p + n + 1, NULL, 10);
			return v > 0 && v <= 10000000 ? (int)v : 0;
		}
		p = strchr(p, ';');
	}
	return 0;
}

void tl_sdp_opus_parse(const char *fmtp, struct tl_sdp_opus *o)
{
	memset(o, 0, sizeof(*o));
	if (!fmtp)
		return;
	o->maxplaybackrate = fmtp_int(fmtp, "maxplaybackrate");
	o->sprop_maxcapturerate = fmtp_int(fmtp, "sprop-maxcapturerate");
	o->stereo = fmtp_int(fmtp, "stereo") == 1;
	o->useinbandfec = fmtp_int(fmtp, "useinbandfec") == 1;
	o->usedtx = fmtp_int(fmtp, "usedtx") == 1;
	o->maxaveragebitrate = fmtp_int(fmtp, "maxaveragebitrate");
	o->maxptime = fmtp_int(fmtp, "maxptime");
	if (o->maxaveragebitrate && (o->maxaveragebitrate < 6000 || o->maxaveragebitrate > 510000))
		o->maxaveragebitrate = 0; /* out of RFC 7587's range: ignored */
}

void tl_sdp_opus_fmtp(char *out, size_t size, int rate)
{
	int r = rate > 0 ? rate : 48000;

	/* We decode FEC, take mono, and code no wider than we play (the agent's rate). */
	snprintf(out, size, "maxplaybackrate=%d; sprop-maxcapturerate=%d; stereo=0; useinbandfec=1",
	         r, r);
}
