/* The call state machine, and its only owner: a call's state (NEW, ANSWERED, CONFIRMED,
 * ENDING) changes here and nowhere else, and here is decided what each SIP request, agent event
 * and timer does to the call: answer, refuse, forward (302 before answer, REFER after), hang
 * up. The bridge (bridge.c) only starts, updates and stops the media stream and the agent
 * connection; forward.c only builds and sends 302 and REFER and reads NOTIFY bodies;
 * call_info.c reads the INVITE. One timer per purpose: answer delay, maximum duration, REFER
 * outcome. SIP thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sip_int.h"

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/msg_mime.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_string.h>

#include "trunkline/dtmf.h"
#include "trunkline/log.h"
#include "trunkline/meta.h"
#include "trunkline/route.h"

#define TL_SDP_MAX 2048

int tl_call_create(struct tl_call **out, struct tl_sip *sip, nua_handle_t *nh, const sip_t *req,
                   msg_t *msg)
{
	struct tl_call *call = calloc(1, sizeof(*call));
	su_addrinfo_t *ai;
	int err;

	if (!call)
		return -ENOMEM;
	call->sip = sip;
	call->nh = nh;
	call->rtp_fd = call->rtcp_fd = -1;
	call->num = ++sip->next_call_num;
	snprintf(call->call_id, sizeof(call->call_id), "%s",
	         req->sip_call_id ? req->sip_call_id->i_id : "-");
	ai = msg ? msg_addrinfo(msg) : NULL;
	if (ai && ai->ai_addrlen <= sizeof(call->source))
		memcpy(&call->source, ai->ai_addr, ai->ai_addrlen);
	err = msg ? tl_call_read_invite(call, req, msg) : -EINVAL;
	if (err < 0)
		goto out;
	err = tl_portpool_bind(sip->ports, &call->rtp_fd, &call->rtcp_fd, &call->local.port);
	if (err < 0)
		goto out;
	tl_call_pick_local_addr(call, req);
	call->local.addr = call->local_addr;
	call->local.sess_id = (uint64_t)time(NULL) ^ ((uint64_t)call->local.port << 32);
	call->local.sess_version = 1;
	call->local.codecs = (1u << TL_CODEC_PCMU) | (1u << TL_CODEC_PCMA);
	call->local.dir = TL_SDP_SENDRECV;
	if ((call->next = sip->calls))
		call->next->pprev = &call->next;
	call->pprev = &sip->calls;
	sip->calls = call;
	sip->n_calls++;
	sip->calls_total++;
	nua_handle_bind(nh, call);
	*out = call;
	return 0;
out:
	tl_call_destroy(call);
	return err;
}

void tl_call_destroy(struct tl_call *call)
{
	if (!call)
		return;
	if (call->pprev) {
		if ((*call->pprev = call->next))
			call->next->pprev = call->pprev;
		call->sip->n_calls--;
	}
	tl_bridge_stop(call);
	if (call->route)
		tl_call_release_route(call);
	tl_rules_destroy(call->rules);
	free(call->refer_target);
	free(call->srtp_warning);
	if (call->answer_timer)
		su_timer_destroy(call->answer_timer);
	if (call->duration_timer)
		su_timer_destroy(call->duration_timer);
	if (call->refer_timer)
		su_timer_destroy(call->refer_timer);
	if (call->bridge_timer)
		su_timer_destroy(call->bridge_timer);
	free(call->answer_body);
	if (call->rtp_fd >= 0)
		close(call->rtp_fd);
	if (call->rtcp_fd >= 0)
		close(call->rtcp_fd);
	if (call->local.port) /* the stream may hold the sockets a moment: a bind then skips them */
		tl_portpool_release(call->sip->ports, call->local.port);
	json_decref(call->meta);
	free(call->last_body);
	free(call);
}

/* Keeps the o= version when the body is unchanged, bumps it when it changes (RFC 3264 §8). */
static int make_body(struct tl_call *call, int offer, const char *remote, size_t rlen, char *out,
                     size_t size)
{
	struct tl_sdp_media neg = call->media;
	struct tl_sdp_crypto cr = {0};
	int n, srtp = offer ? 0 : tl_call_srtp_pick(call, remote, rlen, &cr);

	if (srtp < 0)
		return srtp;
	for (int pass = 0; pass < 2; pass++) {
		n = offer ? tl_sdp_offer(&call->local, out, size)
		          : tl_sdp_answer(remote, rlen, &call->local, &neg, out, size);
		if (n >= 0 && srtp > 0)
			n = tl_sdp_crypto_add(out, size, (size_t)n, &cr);
		if (n >= 0 && offer)
			n = tl_call_srtp_offer(call, out, size, (size_t)n);
		if (n < 0)
			return n;
		if (!call->last_body || pass == 1)
			break;
		/* Compare all but the o= line, which carries the version. */
		const char *a = strstr(out, "\ns="), *b = strstr(call->last_body, "\ns=");
		if (a && b && strcmp(a, b) == 0)
			break;
		call->local.sess_version++;
	}
	free(call->last_body);
	call->last_body = strdup(out);
	if (!offer) {
		neg.srtp = cr.keys;
		explicit_bzero(&cr, sizeof(cr));
		call->media = neg;
		call->have_media = 1;
	}
	return n;
}

static const char *sdp_error_phrase(int err)
{
	return err == -ENOTSUP        ? "No acceptable codec"
	       : err == -EKEYREJECTED ? "Not Acceptable Here"
	                              : "Bad session description";
}

/* with_this: the response is sent from the request's own event callback. */
static void respond_sdp(struct tl_call *call, int with_this, int status, const char *phrase,
                        const char *body)
{
	const char *contact = call->contact[0]                 ? call->contact
	                      : call->sip->cfg->public_address ? call->sip->contact_hint
	                                                       : NULL;

	nua_respond(call->nh, status, phrase, TAG_IF(with_this, NUTAG_WITH_THIS(call->sip->nua)),
	            TAG_IF(contact, SIPTAG_CONTACT_STR(contact)),
	            SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(body),
	            TAG_END());
}

static void on_max_duration(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_call *call = arg;

	tl_log_info(call->call_id, "maximum call duration (%d s) reached",
	            call->sip->cfg->max_call_duration_s);
	tl_call_hangup(call, 480, "SIP;cause=200;text=\"Maximum call duration\"");
}

/* Arms *timer (created on first use) to call fn once after ms. */
static void start_timer(struct tl_call *call, su_timer_t **timer, su_timer_f fn, int ms)
{
	if (!*timer)
		*timer = su_timer_create(su_root_task(call->sip->root), 0);
	if (*timer)
		su_timer_set_interval(*timer, fn, call, (su_duration_t)ms);
}

/* Sends the 200 OK once everything the call waits for is there: the answer delay has passed
 * (and, with the agent issue, the agent's WebSocket is open). */
static void call_try_answer(struct tl_call *call, int with_this)
{
	if (call->state != TL_CALL_NEW || !call->delay_done || !call->agent_ready ||
	    !call->answer_body)
		return;
	respond_sdp(call, with_this, SIP_200_OK, call->answer_body);
	call->state = TL_CALL_ANSWERED;
	tl_sip_ops_answered(call);
	tl_bridge_update(call); /* the answer is out: media may flow both ways now */
	free(call->answer_body);
	call->answer_body = NULL;
	tl_log_info(call->call_id, "answered: %s pt %u, remote %s:%u%s",
	            call->have_media ? tl_sdp_codec_name(call->media.codec) : "(offer sent)",
	            call->media.pt, call->media.remote_addr, call->media.remote_port,
	            call->offer_pending ? " (delayed offer)" : "");
	if (call->sip->cfg->max_call_duration_s > 0)
		start_timer(call, &call->duration_timer, on_max_duration,
		            call->sip->cfg->max_call_duration_s * 1000);
}

static void on_answer_delay(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_call *call = arg;

	call->delay_done = 1;
	call_try_answer(call, 0);
}

void tl_call_agent_ready(struct tl_call *call)
{
	call->agent_ready = 1;
	call_try_answer(call, 0);
}

/* ---- forwarding: the decisions; forward.c builds and sends ---- */

/* How long a REFER's outcome is waited for (docs/ROUTING.md: 32 s). Written only by
 * tests/unit/test_call.c (a test seam, before its calls), read on the SIP thread. */
int tl_call_refer_timeout_ms = 32000;

static void on_refer_timeout(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_call *call = arg;

	if (call->state == TL_CALL_ENDING || call->bridging)
		return; /* ended meanwhile (maximum duration, BYE), or bridged: nothing to time out
		         */
	tl_log_warn(call->call_id, "transfer to %s not confirmed within %d ms: ending the call",
	            call->refer_target ? call->refer_target : "?", tl_call_refer_timeout_ms);
	tl_call_hangup(call, 480, "SIP;cause=480;text=\"Transfer not confirmed\"");
}

/* The REFER goes once the call is confirmed (ACK in); the caller hears ringback until the PBX
 * reports the outcome, and the REFER timer bounds the wait. */
static void send_refer(struct tl_call *call)
{
	if (!call->refer_target || call->refer_sent || call->bridging ||
	    call->state != TL_CALL_CONFIRMED)
		return;
	call->refer_sent = 1;
	tl_call_outcome(call, TL_OUTCOME_FORWARDED_REFER);
	tl_bridge_stop_agent(call);
	tl_forward_refer(call, call->refer_target);
	tl_bridge_ringback(call);
	start_timer(call, &call->refer_timer, on_refer_timeout, tl_call_refer_timeout_ms);
}

/* ---- the bridge: trunkline calls the target itself (leg.c), the media engine relays ---- */

static void on_bridge_timeout(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_call *call = arg;

	if (call->state != TL_CALL_ENDING && !call->bridged && call->leg)
		tl_call_on_leg(call, 408, "No answer");
}

/* Calls call->refer_target; the agent goes, the caller hears ringback until the target
 * answers (a call not answered yet is answered first, so that the ringback is heard). */
static void start_bridge(struct tl_call *call, const char *why)
{
	int err;

	call->bridging = 1;
	if (call->refer_timer)
		su_timer_reset(call->refer_timer);
	tl_bridge_stop_agent(call);
	err = tl_bridge_start_media(call);
	if (err == 0)
		err = tl_leg_start(call, call->refer_target);
	if (err < 0) {
		tl_log_warn(call->call_id, "cannot bridge to %s (%s): %s; ending the call",
		            call->refer_target, why, strerror(-err));
		tl_call_hangup(call, 503, "SIP;cause=503;text=\"Bridge failed\"");
		return;
	}
	tl_log_info(call->call_id, "bridging to %s (%s)", call->refer_target, why);
	tl_bridge_ringback(call);
	start_timer(call, &call->bridge_timer, on_bridge_timeout,
	            call->sip->cfg->bridge_answer_timeout_s * 1000);
	if (call->state == TL_CALL_NEW)
		tl_call_agent_ready(call);
}

void tl_call_on_leg(struct tl_call *call, int status, const char *phrase)
{
	char reason[120];

	if (call->state == TL_CALL_ENDING)
		return;
	if (status >= 200 && status < 300) {
		call->bridged = 1;
		call->rec.outcome = TL_OUTCOME_BRIDGED; /* over forwarded_refer: the REFER failed */
		if (call->bridge_timer)
			su_timer_reset(call->bridge_timer);
		tl_log_info(call->call_id, "bridged to %s: relaying audio", call->refer_target);
		return;
	}
	if (status == 0) {
		tl_log_info(call->call_id, "bridged party hung up");
		tl_call_hangup(call, 480, "SIP;cause=200;text=\"Bridged party hung up\"");
		return;
	}
	tl_log_warn(call->call_id, "bridge to %s failed: %d %s; ending the call",
	            call->refer_target, status, phrase);
	snprintf(reason, sizeof(reason), "SIP;cause=%d;text=\"%s\"", status,
	         status == 408 ? "Bridge target did not answer" : "Bridge target refused");
	tl_call_hangup(call, 480, reason);
}

/* A REFER the PBX will not carry out (it cannot, or may not, transfer this way) is bridged
 * instead; a target that is busy or unknown (486, 404, ...) would refuse our call as well. */
static int bridge_instead(int status)
{
	return status == 403 || status == 405 || status == 420 || status == 489 || status == 501 ||
	       status == 603;
}

void tl_call_forward(struct tl_call *call, const char *target, const char *reason)
{
	int refer = call->route && (call->route->method == TL_ROUTE_REFER ||
	                            call->route->method == TL_ROUTE_BRIDGE);

	target = tl_registrar_resolve(call->sip, target); /* reg:NAME: NULL when not registered */

	if (call->state == TL_CALL_ENDING || call->refer_target)
		return;
	if (!target) {
		tl_call_hangup(call, 503, "SIP;cause=503;text=\"AI agent unavailable\"");
		return;
	}
	if (call->state == TL_CALL_NEW && !refer) {
		tl_bridge_stop(call);
		tl_forward_redirect(call, target, reason);
		call->state = TL_CALL_ENDING;
		return;
	}
	call->refer_target = strdup(target);
	if (!call->refer_target) {
		tl_call_hangup(call, 503, NULL);
		return;
	}
	if (call->route->method == TL_ROUTE_BRIDGE) {
		start_bridge(call, "forward_method bridge");
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
	send_refer(call); /* waits for the ACK when it has not come yet */
}

void tl_call_on_refer_response(struct tl_call *call, int status, const char *phrase)
{
	if (status < 200 || call->state == TL_CALL_ENDING || call->bridging)
		return;
	if (status < 300 && call->norefersub) {
		/* RFC 4488: with Refer-Sub: false the 2xx is all the PBX reports. */
		tl_log_info(call->call_id, "transfer to %s accepted (%d, no NOTIFY due)",
		            call->refer_target, status);
		tl_call_hangup(call, 200, "SIP;cause=200;text=\"Call transferred\"");
	} else if (status >= 300 && bridge_instead(status)) {
		tl_log_warn(call->call_id,
		            "PBX refused the transfer to %s: %d %s; bridging instead",
		            call->refer_target, status, phrase);
		start_bridge(call, "REFER refused");
	} else if (status >= 300) {
		tl_log_warn(call->call_id, "PBX refused the transfer to %s: %d %s; ending the call",
		            call->refer_target, status, phrase);
		tl_call_hangup(call, 480, "SIP;cause=480;text=\"Transfer refused\"");
	}
}

void tl_call_on_notify(struct tl_call *call, const sip_t *notify)
{
	int code;

	if (!call->refer_sent || call->state == TL_CALL_ENDING || call->bridging)
		return;
	code = tl_forward_notify_status(notify);
	if (code >= 200 && code < 300) {
		tl_log_info(call->call_id, "transfer to %s succeeded", call->refer_target);
		tl_call_hangup(call, 200, "SIP;cause=200;text=\"Call transferred\"");
	} else if (code >= 300 && bridge_instead(code)) {
		tl_log_warn(call->call_id, "transfer to %s failed: %d; bridging instead",
		            call->refer_target, code);
		start_bridge(call, "transfer failed");
	} else if (code >= 300) {
		tl_log_warn(call->call_id, "transfer to %s failed: %d; ending the call",
		            call->refer_target, code);
		tl_call_hangup(call, 480, "SIP;cause=480;text=\"Transfer failed\"");
	}
}

/* ---- agent events (queued by the agent client, drained on this thread by sip.c) ---- */

void tl_call_on_agent_event(struct tl_call *call, const struct tl_ws_event *ev)
{
	if (call->state == TL_CALL_ENDING)
		return; /* the call ended while the event was queued */
	switch (ev->kind) {
	case TL_WS_EV_OPEN:
		tl_log_info(call->call_id, "agent connected");
		tl_call_agent_ready(call);
		break;
	case TL_WS_EV_FAILED:
	case TL_WS_EV_CLOSED:
		tl_log_warn(call->call_id, "%s: %s",
		            ev->kind == TL_WS_EV_FAILED ? "agent unreachable"
		                                        : "agent left the call",
		            ev->reason);
		tl_bridge_agent_gone(call);
		tl_call_forward(call, call->route->fallback, "unavailable");
		break;
	case TL_WS_EV_HANGUP:
		tl_log_info(call->call_id, "agent hung up");
		tl_call_hangup(call, 480, "SIP;cause=200;text=\"Agent hung up\"");
		break;
	case TL_WS_EV_TRANSFER:
		tl_log_info(call->call_id, "agent asks for a transfer to %s",
		            ev->target[0] ? ev->target : "the route's fallback");
		tl_call_forward(call, ev->target[0] ? ev->target : call->route->fallback,
		                "deflection");
		break;
	}
}

struct tl_call *tl_call_by_num(struct tl_sip *sip, uint64_t num)
{
	for (struct tl_call *c = sip->calls; c; c = c->next)
		if (c->num == num)
			return c;
	return NULL;
}

/* ---- the INVITE ---- */

/* What the route says before any SDP work: refuse, redirect, or go on. Returns 1 when done. */
static int route_first(struct tl_call *call)
{
	const struct tl_route *r = call->route;

	if (!r || r->kind == TL_ROUTE_REJECT)
		tl_call_outcome(call, TL_OUTCOME_REJECTED);
	if (!r) {
		tl_log_warn(call->call_id, "no route matches: 404");
		nua_respond(call->nh, TL_ROUTE_NO_MATCH_STATUS, "No route", TAG_END());
		call->state = TL_CALL_ENDING;
		return 1;
	}
	tl_log_info(call->call_id, "route \"%s\"", r->name);
	if (r->kind == TL_ROUTE_REJECT) {
		nua_respond(call->nh, r->reject, sip_status_phrase(r->reject), TAG_END());
		call->state = TL_CALL_ENDING;
		return 1;
	}
	if (r->kind == TL_ROUTE_FORWARD && r->method == TL_ROUTE_REDIRECT) {
		tl_call_forward(call, r->forward, "unconditional");
		return 1;
	}
	return 0;
}

void tl_call_on_invite(struct tl_call *call, const sip_t *req)
{
	char body[TL_SDP_MAX];
	su_home_t home[1] = {SU_HOME_INIT(home)};
	size_t len = 0;
	const char *sdp;
	int n;

	if (route_first(call))
		return;
	tl_call_pick_codecs(call);
	call->norefersub = sip_has_supported(req->sip_supported, "norefersub");
	sdp = tl_call_sdp_body(req, nua_current_request(call->sip->nua), home, &len);
	if (sdp) {
		n = make_body(call, 0, sdp, len, body, sizeof(body));
	} else {
		n = make_body(call, 1, NULL, 0, body, sizeof(body));
		call->offer_pending = 1;
	}
	su_home_deinit(home);
	if (n < 0) {
		tl_log_warn(call->call_id, "rejecting INVITE: %s%s%s", sdp_error_phrase(n),
		            n == -EKEYREJECTED && call->srtp_warning ? ": " : "",
		            n == -EKEYREJECTED && call->srtp_warning ? call->srtp_warning : "");
		tl_call_outcome(call, TL_OUTCOME_REJECTED);
		nua_respond(call->nh, 488, sdp_error_phrase(n), NUTAG_WITH_THIS(call->sip->nua),
		            SIPTAG_WARNING_STR(n == -ENOTSUP ? "305 trunkline \"Incompatible media "
		                                               "format\""
		                               : n == -EKEYREJECTED ? call->srtp_warning
		                                                    : "399 trunkline \"Bad SDP\""),
		            TAG_END());
		call->state = TL_CALL_ENDING;
		return;
	}
	call->answer_body = strdup(body);
	nua_respond(call->nh, SIP_180_RINGING, NUTAG_WITH_THIS(call->sip->nua), TAG_END());
	if (call->sip->cfg->answer_delay_ms > 0)
		start_timer(call, &call->answer_timer, on_answer_delay,
		            call->sip->cfg->answer_delay_ms);
	else
		call->delay_done = 1;
	if (call->route->kind == TL_ROUTE_FORWARD) { /* forward_method "refer" */
		tl_call_forward(call, call->route->forward, "unconditional");
		return;
	}
	n = call->answer_body ? tl_bridge_start(call) : -ENOMEM;
	if (n < 0) {
		tl_log_error(call->call_id, "cannot start the agent connection: %s", strerror(-n));
		tl_sip_note_failure(call->sip, n);
		tl_call_forward(call, call->route->fallback, "unavailable");
		return;
	}
	call_try_answer(call, 1);
}

/* re-INVITE and UPDATE: hold/unhold, codec change, session refresh with or without SDP. */
static void on_modify(struct tl_call *call, const sip_t *req, int allow_offer)
{
	char body[TL_SDP_MAX];
	su_home_t home[1] = {SU_HOME_INIT(home)};
	size_t len = 0;
	const char *sdp = tl_call_sdp_body(req, nua_current_request(call->sip->nua), home, &len);
	int n;

	if (sdp) {
		n = make_body(call, 0, sdp, len, body, sizeof(body));
		if (n >= 0)
			tl_log_info(call->call_id, "media updated: %s%s",
			            tl_sdp_codec_name(call->media.codec),
			            call->media.hold ? " (on hold)" : "");
	} else if (allow_offer) {
		n = make_body(call, 1, NULL, 0, body, sizeof(body));
		if (n >= 0)
			call->offer_pending = 1;
	} else {
		su_home_deinit(home);
		nua_respond(call->nh, SIP_200_OK, NUTAG_WITH_THIS(call->sip->nua), TAG_END());
		return;
	}
	su_home_deinit(home);
	if (n < 0) {
		/* The old session stays in force (RFC 3261 §14.2). */
		nua_respond(call->nh, 488, sdp_error_phrase(n), NUTAG_WITH_THIS(call->sip->nua),
		            TAG_IF(n == -EKEYREJECTED, SIPTAG_WARNING_STR(call->srtp_warning)),
		            TAG_END());
		return;
	}
	respond_sdp(call, 1, SIP_200_OK, body);
	tl_bridge_update(call);
}

void tl_call_on_reinvite(struct tl_call *call, const sip_t *req)
{
	on_modify(call, req, 1);
}

void tl_call_on_update(struct tl_call *call, const sip_t *req)
{
	on_modify(call, req, 0);
}

void tl_call_on_ack(struct tl_call *call, const sip_t *req)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	size_t len = 0;
	const char *sdp;
	int err = 0;

	if (call->state == TL_CALL_ANSWERED)
		call->state = TL_CALL_CONFIRMED;
	send_refer(call); /* a transfer that waited for the ACK */
	if (!call->offer_pending)
		return;
	call->offer_pending = 0;
	sdp = req ? tl_call_sdp_body(req, nua_current_request(call->sip->nua), home, &len) : NULL;
	call->local.savp = call->offer_keys.suite != TL_SRTP_NONE;
	err = sdp ? tl_sdp_read_answer(sdp, len, &call->local, &call->media) : -EPROTO;
	if (err == 0)
		err = tl_call_srtp_answered(call, sdp, len);
	su_home_deinit(home);
	if (err < 0) {
		tl_log_warn(call->call_id, "ACK carries no usable answer to our offer: hanging up");
		tl_call_hangup(call, 488, "SIP;cause=488;text=\"No usable SDP answer in ACK\"");
		return;
	}
	call->have_media = 1;
	tl_bridge_update(call);
	tl_log_info(call->call_id, "offer answered in ACK: %s pt %u, remote %s:%u",
	            tl_sdp_codec_name(call->media.codec), call->media.pt, call->media.remote_addr,
	            call->media.remote_port);
}

void tl_call_on_info(struct tl_call *call, const sip_t *req)
{
	const sip_payload_t *pl = req->sip_payload;
	int digit;

	if (!req->sip_content_type || !pl || !pl->pl_data)
		return;
	digit = tl_dtmf_info_parse(req->sip_content_type->c_type, pl->pl_data, pl->pl_len);
	if (digit < 0) {
		tl_log_debug(call->call_id, "INFO without a DTMF digit (%s)",
		             req->sip_content_type->c_type);
		return;
	}
	tl_log_info(call->call_id, "DTMF %c by SIP INFO", digit);
	if (call->agent_started)
		tl_ws_dtmf(call->sip->ws, call->agent_loop, call->num, (char)digit);
}

void tl_call_hangup(struct tl_call *call, int status, const char *reason)
{
	if (call->state == TL_CALL_ENDING)
		return;
	tl_sip_ops_hangup(call, "trunkline", reason);
	tl_bridge_stop(call);
	if (call->state == TL_CALL_NEW)
		nua_respond(call->nh, status, sip_status_phrase(status),
		            TAG_IF(status == 503, SIPTAG_RETRY_AFTER_STR("5")),
		            TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
	else
		nua_bye(call->nh, TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
	call->state = TL_CALL_ENDING;
}
