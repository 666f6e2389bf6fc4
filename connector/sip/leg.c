/* The bridge's second leg: when a PBX cannot take the call back (it refuses our REFER) or the
 * route says forward_method "bridge", trunkline calls the target itself (an INVITE to its sip:
 * URI, or for a tel: target back to the PBX the call came from) and, once the person answers,
 * the media engine relays the audio between the two legs (media/relay.c). The leg's handle is
 * bound to its call; sip.c hands its events here. Mechanics only: call.c decides what a leg's
 * answer, failure or hang-up does to the call (tl_call_on_leg). SIP thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sip_int.h"

#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_string.h>

#include "trunkline/log.h"

#define TL_LEG_SDP_MAX 2048

struct tl_leg {
	nua_handle_t *nh; /* owned until tl_leg_end unbinds it (sip.c then frees it) */
	char ruri[300];
	int rtp_fd, rtcp_fd; /* owned until the stream takes them; -1 when none */
	uint16_t port;       /* from sip->ports; released with the leg */
	struct tl_sdp_local local;
	struct tl_sdp_media media;
	char offer[TL_LEG_SDP_MAX];
	struct tl_media_stream *stream; /* one reference, owned; NULL before the answer */
	int answered;
	time_t answered_at;
};

/* Where the INVITE goes: a sip:/sips: target as it is; a tel: number back to the PBX the call
 * came from (its source address), which knows how to reach it. */
static int leg_ruri(const struct tl_call *call, const char *target, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN];
	unsigned port;

	if (su_casenmatch(target, "sip:", 4) || su_casenmatch(target, "sips:", 5)) {
		snprintf(out, size, "%s", target);
		return 0;
	}
	if (!su_casenmatch(target, "tel:", 4) || !target[4])
		return -EINVAL;
	if (call->source.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&call->source;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		port = ntohs(in->sin_port);
		snprintf(out, size, "sip:%s@%s:%u;user=phone", target + 4, ip, port);
	} else if (call->source.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&call->source;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		port = ntohs(in6->sin6_port);
		snprintf(out, size, "sip:%s@[%s]:%u;user=phone", target + 4, ip, port);
	} else {
		return -EINVAL;
	}
	return 0;
}

static void leg_free(struct tl_call *call)
{
	struct tl_leg *leg = call->leg;

	if (!leg)
		return;
	call->leg = NULL;
	if (leg->stream)
		tl_media_stream_unref(leg->stream);
	if (leg->rtp_fd >= 0)
		close(leg->rtp_fd);
	if (leg->rtcp_fd >= 0)
		close(leg->rtcp_fd);
	if (leg->port)
		tl_portpool_release(call->sip->ports, leg->port);
	free(leg);
}

/* Our offer: the call's local address, a port pair of our own, both G.711 laws (the relay
 * transcodes when the person's side picks the other one). */
static int leg_offer(struct tl_call *call, struct tl_leg *leg)
{
	int err = tl_portpool_bind(call->sip->ports, &leg->rtp_fd, &leg->rtcp_fd, &leg->port);

	if (err < 0)
		return err;
	leg->local.addr = call->local_addr;
	leg->local.port = leg->port;
	leg->local.sess_id = (uint64_t)time(NULL) ^ ((uint64_t)leg->port << 32) ^ call->num;
	leg->local.sess_version = 1;
	leg->local.codecs = (1u << TL_CODEC_PCMU) | (1u << TL_CODEC_PCMA);
	leg->local.dir = TL_SDP_SENDRECV;
	err = tl_sdp_offer(&leg->local, leg->offer, sizeof(leg->offer));
	return err < 0 ? err : 0;
}

static void leg_invite(struct tl_call *call, struct tl_leg *leg)
{
	const struct tl_config *cfg = call->sip->cfg;
	const char *from = json_string_value(json_object_get(call->meta, "from"));
	const char *to = json_string_value(json_object_get(call->meta, "to"));
	char from_hdr[300], to_hdr[320], diversion[400];

	/* The person sees who calls, and (RFC 5806) why the call came to them. */
	snprintf(from_hdr, sizeof(from_hdr), "<sip:%s@%s>", from && *from ? from : "anonymous",
	         call->local_addr);
	snprintf(to_hdr, sizeof(to_hdr), "<%s>", leg->ruri);
	snprintf(diversion, sizeof(diversion), "Diversion: <sip:%s@%s>;reason=%s;counter=1",
	         to ? to : "unknown", call->ruri_host[0] ? call->ruri_host : "trunkline",
	         call->agent ? "unavailable" : "unconditional");
	nua_invite(leg->nh, SIPTAG_FROM_STR(from_hdr), SIPTAG_TO_STR(to_hdr),
	           TAG_IF(cfg->public_address, SIPTAG_CONTACT_STR(call->sip->contact_hint)),
	           SIPTAG_HEADER_STR(diversion), SIPTAG_CONTENT_TYPE_STR("application/sdp"),
	           SIPTAG_PAYLOAD_STR(leg->offer), TAG_END());
}

int tl_leg_start(struct tl_call *call, const char *target)
{
	struct tl_leg *leg;
	int err;

	if (call->leg || !call->stream)
		return -EALREADY;
	leg = calloc(1, sizeof(*leg));
	if (!leg)
		return -ENOMEM;
	leg->rtp_fd = leg->rtcp_fd = -1;
	call->leg = leg;
	err = leg_ruri(call, target, leg->ruri, sizeof(leg->ruri));
	if (err == 0)
		err = leg_offer(call, leg);
	if (err == 0) {
		leg->nh = nua_handle(call->sip->nua, call, NUTAG_URL(leg->ruri), TAG_END());
		err = leg->nh ? 0 : -ENOMEM;
	}
	if (err < 0) {
		leg_free(call);
		return err;
	}
	tl_log_info(call->call_id, "bridging: calling %s (INVITE)", leg->ruri);
	leg_invite(call, leg);
	return 0;
}

/* The 2xx's SDP answer: a stream for the leg beside the caller's, relayed to it. */
static int leg_answered(struct tl_call *call, struct tl_leg *leg, const sip_t *resp)
{
	const sip_payload_t *pl = resp ? resp->sip_payload : NULL;
	struct tl_media_stream_params p = {
	    .rtp_source = call->sip->cfg->rtp_strict ? TL_MEDIA_RTP_STRICT : TL_MEDIA_RTP_LEARN,
	    .rtp_relearn_ms = call->sip->cfg->rtp_relearn_ms,
	    .agent_format = TL_MEDIA_AGENT_ULAW,
	    .agent_rate = 8000,
	};
	int err;

	if (!pl || !pl->pl_data)
		return -EPROTO;
	err = tl_sdp_read_answer(pl->pl_data, pl->pl_len, &leg->local, &leg->media);
	if (err < 0)
		return err;
	leg->media.dir = TL_SDP_SENDRECV;
	p.rtp_fd = leg->rtp_fd;
	p.rtcp_fd = leg->rtcp_fd;
	p.sdp = leg->media;
	tl_bridge_sdp_addr(&leg->media, 1, &p.remote);
	err = tl_media_stream_create_beside(&leg->stream, call->sip->media, &p, call->stream);
	if (err < 0)
		return err;
	leg->rtp_fd = leg->rtcp_fd = -1; /* the stream owns them now */
	tl_media_stream_ringback(call->stream, TL_TONE_RINGBACK_NONE);
	return tl_media_stream_relay(call->stream, leg->stream);
}

static void on_invite_response(struct tl_call *call, struct tl_leg *leg, int status,
                               const char *phrase, const sip_t *resp)
{
	int err;

	if (status < 200) {
		if (status > 100)
			tl_log_info(call->call_id, "bridge target: %d %s", status, phrase);
		return;
	}
	if (status >= 300) {
		tl_call_on_leg(call, status, phrase);
		return;
	}
	if (leg->answered)
		return; /* a 2xx retransmission, or a second fork: nua ACKs it */
	leg->answered = 1;
	leg->answered_at = time(NULL);
	err = leg_answered(call, leg, resp);
	if (err < 0) {
		tl_log_warn(call->call_id, "bridge target answered but its media is unusable: %s",
		            strerror(-err));
		tl_call_on_leg(call, 488, "Not Acceptable Here");
		return;
	}
	tl_log_info(call->call_id, "bridge target answered: %s pt %u, remote %s:%u",
	            tl_sdp_codec_name(leg->media.codec), leg->media.pt, leg->media.remote_addr,
	            leg->media.remote_port);
	tl_call_on_leg(call, status, phrase);
}

/* A re-INVITE or UPDATE from the person's side (hold, session refresh): answered with our
 * offer's address and port (an UPDATE without SDP with none); the relay goes on. */
static void on_modify(struct tl_call *call, struct tl_leg *leg, const sip_t *req, int invite)
{
	const sip_payload_t *pl = req ? req->sip_payload : NULL;
	struct tl_sdp_media neg;
	struct sockaddr_storage ss;
	char body[TL_LEG_SDP_MAX];
	int n;

	if (!pl || !pl->pl_data) {
		nua_respond(leg->nh, SIP_200_OK, NUTAG_WITH_THIS(call->sip->nua),
		            TAG_IF(invite, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
		            TAG_IF(invite, SIPTAG_PAYLOAD_STR(leg->offer)), TAG_END());
		return;
	}
	leg->local.sess_version++;
	n = tl_sdp_answer(pl->pl_data, pl->pl_len, &leg->local, &neg, body, sizeof(body));
	if (n < 0) {
		nua_respond(leg->nh, 488, "Not Acceptable Here", NUTAG_WITH_THIS(call->sip->nua),
		            TAG_END());
		return;
	}
	nua_respond(leg->nh, SIP_200_OK, NUTAG_WITH_THIS(call->sip->nua),
	            SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(body),
	            TAG_END());
	leg->media = neg;
	if (leg->stream) {
		tl_bridge_sdp_addr(&leg->media, 1, &ss);
		tl_media_stream_update(leg->stream, &ss, &leg->media);
	}
}

void tl_leg_on_event(struct tl_call *call, nua_event_t event, int status, const char *phrase,
                     nua_handle_t *nh, const sip_t *sip, tagi_t tags[])
{
	struct tl_leg *leg = call->leg;
	int state = nua_callstate_init;

	if (!leg || leg->nh != nh)
		return;
	switch (event) {
	case nua_r_invite:
		on_invite_response(call, leg, status, phrase, sip);
		break;
	case nua_i_invite:
	case nua_i_update:
		on_modify(call, leg, sip, event == nua_i_invite);
		break;
	case nua_i_bye:
		tl_log_info(call->call_id, "BYE from the bridge target");
		break;
	case nua_i_state:
		tl_gets(tags, NUTAG_CALLSTATE_REF(state), TAG_END());
		if (state != nua_callstate_terminated)
			break;
		/* Gone (its BYE, or a failure already reported): the call decides what next. */
		nua_handle_bind(nh, NULL);
		nua_handle_destroy(nh);
		leg->nh = NULL;
		if (leg->answered)
			tl_call_on_leg(call, 0, "Bridged party hung up");
		else
			tl_call_on_leg(call, status >= 300 ? status : 480, "Bridge target gone");
		break;
	default:
		break;
	}
}

void tl_leg_end(struct tl_call *call)
{
	struct tl_leg *leg = call->leg;
	struct tl_media_stats st;

	if (!leg)
		return;
	if (leg->stream) {
		tl_media_stream_stats(leg->stream, &st);
		tl_log_info(call->call_id,
		            "bridge to %s ended after %ld s: %llu frames relayed to the target, "
		            "%llu dropped",
		            leg->ruri, (long)(time(NULL) - leg->answered_at),
		            (unsigned long long)st.relayed, (unsigned long long)st.relay_dropped);
	}
	if (leg->nh) {
		/* The handle lives on unbound until its transaction ends; sip.c frees it then. */
		if (leg->answered)
			nua_bye(leg->nh, SIPTAG_REASON_STR("SIP;cause=200;text=\"Call ended\""),
			        TAG_END());
		else
			nua_cancel(leg->nh, TAG_END());
		nua_handle_bind(leg->nh, NULL);
		leg->nh = NULL;
	}
	leg_free(call);
}

const char *tl_leg_target(const struct tl_call *call)
{
	return call->leg ? call->leg->ruri : NULL;
}
