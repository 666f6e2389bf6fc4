/* Which codecs a call offers and accepts, best first: the route's "codecs", else media.codecs,
 * else by the agent: wideband first (Opus, G.722) for a native agent taking 16 or 24 kHz,
 * G.711 first otherwise (a Twilio agent takes µ-law 8 kHz: PCMU then passes straight through).
 * Runs on the SIP thread once the route is known. */
#include "sip_int.h"

#include "trunkline/route.h"

static const enum tl_codec wide_first[] = {TL_CODEC_OPUS, TL_CODEC_G722, TL_CODEC_PCMU,
                                           TL_CODEC_PCMA};
static const enum tl_codec narrow_first[] = {TL_CODEC_PCMU, TL_CODEC_PCMA, TL_CODEC_G722,
                                             TL_CODEC_OPUS};

void tl_call_pick_codecs(struct tl_call *call)
{
	const struct tl_route *r = call->route;
	const struct tl_agent *a = r ? r->agent : NULL;
	const enum tl_codec *list = narrow_first;
	int native = a && a->dialect == TL_DIALECT_NATIVE;

	/* The defaults take PCMU or PCMA in the offer's order, as before codec preferences. */
	call->local.g711_tie = 1;
	if (r && r->codecs[0] != TL_CODEC_NONE)
		list = r->codecs;
	else if (call->sip->cfg->codecs[0] != TL_CODEC_NONE)
		list = call->sip->cfg->codecs;
	else if (native && a->sample_rate >= 16000)
		list = wide_first;
	if ((r && list == r->codecs) || list == call->sip->cfg->codecs)
		call->local.g711_tie = 0; /* a configured order is followed as written */
	call->local.codecs = 0;
	for (int i = 0; i < TL_CONFIG_CODECS; i++) {
		call->local.order[i] = list[i];
		if (list[i] != TL_CODEC_NONE)
			call->local.codecs |= 1u << list[i];
	}
	/* Opus decodes straight to the agent's rate; a µ-law agent gets 8 kHz. */
	call->local.opus_rate = native ? a->sample_rate : 8000;
}
