/* Call forwarding: a 302 with a Diversion header before answer, a blind-transfer REFER after,
 * followed through its NOTIFYs (or done at its 2xx with RFC 4488 Refer-Sub: false), then BYE;
 * the caller hears ringback meanwhile. Used for `forward` routes, the route's fallback when
 * the agent cannot be reached or leaves, and the agent's own transfer requests. SIP thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sip_int.h"

#include <sofia-sip/sip_extra.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

#include "trunkline/log.h"
#include "trunkline/route.h"

#define TL_REFER_TIMEOUT_MS 32000
/* sip.c's Supported plus RFC 4488's tag: nua keeps a request's Supported for the handle. */
#define TL_SUPPORTED_NOREFERSUB "timer, 100rel, norefersub"

static void redirect(struct tl_call *call, const char *target, const char *reason)
{
	const char *to = json_string_value(json_object_get(call->meta, "to"));
	char contact[600], diversion[700];

	snprintf(contact, sizeof(contact), "<%s>", target);
	/* RFC 5806: the PBX and the person who answers see why the call came to them. */
	snprintf(diversion, sizeof(diversion), "Diversion: <sip:%s@%s>;reason=%s;counter=1",
	         to ? to : "unknown", call->ruri_host[0] ? call->ruri_host : "trunkline", reason);
	tl_log_info(call->call_id, "redirecting (302) to %s", target);
	tl_bridge_stop(call);
	nua_respond(call->nh, SIP_302_MOVED_TEMPORARILY, SIPTAG_CONTACT_STR(contact),
	            SIPTAG_HEADER_STR(diversion), TAG_END());
	call->state = TL_CALL_ENDING;
}

static void on_refer_timeout(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_call *call = arg;

	if (call->state == TL_CALL_ENDING)
		return; /* ended meanwhile (maximum duration, BYE): nothing to time out */
	tl_log_warn(call->call_id, "transfer to %s not confirmed within %d s: ending the call",
	            call->refer_target ? call->refer_target : "?", TL_REFER_TIMEOUT_MS / 1000);
	tl_call_hangup(call, 480, "SIP;cause=480;text=\"Transfer not confirmed\"");
}

/* Until the PBX reports the outcome the caller hears ringback, not silence. The stream stays
 * when the agent goes; tl_bridge_stop ends the tone with the call. */
static void start_ringback(struct tl_call *call)
{
	enum tl_tone_ringback kind = call->sip->cfg->transfer_ringback;
	int err;

	if (!call->stream || kind == TL_TONE_RINGBACK_NONE)
		return;
	err = tl_media_stream_ringback(call->stream, kind);
	if (err < 0)
		tl_log_warn(call->call_id, "no ringback during the transfer: %s", strerror(-err));
}

void tl_forward_send_refer(struct tl_call *call)
{
	char refer_to[600];

	if (!call->refer_target || call->refer_sent || call->state != TL_CALL_CONFIRMED)
		return;
	call->refer_sent = 1;
	tl_bridge_stop_agent(call);
	snprintf(refer_to, sizeof(refer_to), "<%s>", call->refer_target);
	tl_log_info(call->call_id, "transferring (REFER%s) to %s",
	            call->norefersub ? ", Refer-Sub: false" : "", call->refer_target);
	/* RFC 4488: a PBX that supports it reports nothing after its 2xx; NOTIFYs are not due. */
	nua_refer(call->nh, SIPTAG_REFER_TO_STR(refer_to),
	          TAG_IF(call->norefersub, SIPTAG_REFER_SUB_STR("false")),
	          TAG_IF(call->norefersub, SIPTAG_SUPPORTED_STR(TL_SUPPORTED_NOREFERSUB)),
	          TAG_END());
	start_ringback(call);
	if (!call->refer_timer)
		call->refer_timer = su_timer_create(su_root_task(call->sip->root), 0);
	if (call->refer_timer)
		su_timer_set_interval(call->refer_timer, on_refer_timeout, call,
		                      TL_REFER_TIMEOUT_MS);
}

void tl_call_forward(struct tl_call *call, const char *target, const char *reason)
{
	int refer = call->route && call->route->method == TL_ROUTE_REFER;

	if (call->state == TL_CALL_ENDING || call->refer_target)
		return;
	if (!target) {
		tl_call_hangup(call, 503, "SIP;cause=503;text=\"AI agent unavailable\"");
		return;
	}
	if (call->state == TL_CALL_NEW && !refer) {
		redirect(call, target, reason);
		return;
	}
	call->refer_target = strdup(target);
	if (!call->refer_target) {
		tl_call_hangup(call, 503, NULL);
		return;
	}
	if (call->state == TL_CALL_NEW) {
		/* forward_method "refer": answer first (with a media stream, for the ringback),
		 * then transfer once the ACK is in. */
		tl_bridge_stop_agent(call);
		if (tl_bridge_start_media(call) < 0)
			tl_log_warn(call->call_id, "no media stream: the caller hears nothing");
		tl_call_agent_ready(call);
		return;
	}
	tl_forward_send_refer(call); /* waits for the ACK when it has not come yet */
}

void tl_forward_on_refer_response(struct tl_call *call, int status, const char *phrase)
{
	if (status < 200 || call->state == TL_CALL_ENDING)
		return;
	if (status < 300 && call->norefersub) {
		tl_log_info(call->call_id, "transfer to %s accepted (%d, no NOTIFY due)",
		            call->refer_target, status);
		tl_call_hangup(call, 200, "SIP;cause=200;text=\"Call transferred\"");
	} else if (status >= 300) {
		tl_log_warn(call->call_id, "PBX refused the transfer to %s: %d %s; ending the call",
		            call->refer_target, status, phrase);
		tl_call_hangup(call, 480, "SIP;cause=480;text=\"Transfer refused\"");
	}
}

/* NOTIFY bodies are message/sipfrag: "SIP/2.0 200 OK" once the transfer target answered. */
void tl_forward_on_notify(struct tl_call *call, const sip_t *notify)
{
	const sip_payload_t *pl = notify ? notify->sip_payload : NULL;
	int code = 0;

	if (!call->refer_sent || call->state == TL_CALL_ENDING)
		return;
	if (pl && pl->pl_data && pl->pl_len > 8 && strncmp(pl->pl_data, "SIP/2.0 ", 8) == 0)
		code = atoi(pl->pl_data + 8);
	if (code >= 200 && code < 300) {
		tl_log_info(call->call_id, "transfer to %s succeeded", call->refer_target);
		tl_call_hangup(call, 200, "SIP;cause=200;text=\"Call transferred\"");
	} else if (code >= 300) {
		tl_log_warn(call->call_id, "transfer to %s failed: %d; ending the call",
		            call->refer_target, code);
		tl_call_hangup(call, 480, "SIP;cause=480;text=\"Transfer failed\"");
	}
}
