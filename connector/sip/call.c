/* Per-call SIP state: metadata, RTP ports, SDP offer/answer across INVITE, re-INVITE, UPDATE
 * and ACK. Media streaming and the agent connection plug in at tl_call_answer's hook. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
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

#define TL_CALL_MAX_HEADERS 128
#define TL_SDP_MAX          2048

static int is_wildcard(const char *a)
{
	return !a || !*a || strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0;
}

static int is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

/* First non-loopback IPv4 address of this host, for SDP when bound to a wildcard. */
void tl_call_host_addr(char *out, size_t size)
{
	struct ifaddrs *ifa, *i;

	snprintf(out, size, "127.0.0.1");
	if (getifaddrs(&ifa) < 0)
		return;
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    (i->ifa_flags & IFF_LOOPBACK))
			continue;
		inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out,
		          (socklen_t)size);
		break;
	}
	freeifaddrs(ifa);
}

/* The address we put in c=: configured public media address, else the configured bind
 * address, else the Request-URI host the PBX used to reach us, else an interface address. */
static void pick_local_addr(struct tl_call *call, const sip_t *req)
{
	const struct tl_config *cfg = call->sip->cfg;
	const char *ruri_host = req->sip_request->rq_url->url_host;
	char host[64];

	if (cfg->media_public) {
		snprintf(call->local_addr, sizeof(call->local_addr), "%s", cfg->media_public);
	} else if (!is_wildcard(cfg->media_address)) {
		snprintf(call->local_addr, sizeof(call->local_addr), "%s", cfg->media_address);
	} else if (ruri_host) {
		size_t n = strlen(ruri_host);
		if (n > 2 && ruri_host[0] == '[' && n - 2 < sizeof(host)) {
			memcpy(host, ruri_host + 1, n - 2);
			host[n - 2] = '\0';
		} else {
			snprintf(host, sizeof(host), "%s", ruri_host);
		}
		if (is_ip_literal(host) && !is_wildcard(host))
			snprintf(call->local_addr, sizeof(call->local_addr), "%s", host);
		else
			tl_call_host_addr(call->local_addr, sizeof(call->local_addr));
	} else {
		tl_call_host_addr(call->local_addr, sizeof(call->local_addr));
	}
}

static void trace_route(void *arg, const struct tl_route *route, const char *why)
{
	struct tl_call *call = arg;

	tl_log_debug(call->call_id, "route \"%s\": %s", route->name, why ? why : "match");
}

/* First matching route of the rules in force; the call keeps those rules until it ends. */
static int pick_route(struct tl_call *call, const struct tl_meta_header *mh, size_t n)
{
	struct tl_route_trace trace = {trace_route, call};
	struct tl_route_header hdrs[TL_CALL_MAX_HEADERS];
	struct tl_route_call rc = {
	    .meta = call->meta,
	    .hdrs = hdrs,
	    .n_hdrs = n,
	    .source = call->source.ss_family ? (const struct sockaddr *)&call->source : NULL,
	    .now = time(NULL),
	    .active = call->sip->rules->active,
	};

	for (size_t i = 0; i < n; i++)
		hdrs[i] = (struct tl_route_header){mh[i].name, mh[i].value};

	call->rules = tl_rules_ref(call->sip->rules);
	call->route = tl_route_pick(call->rules, &rc, tl_log_enabled(TL_LOG_DEBUG) ? &trace : NULL);
	if (call->route)
		call->rules->active[call->route->index]++;
	return 0;
}

/* A reload carries each route's active count over to the route of the same name in the new
 * rules, so the rules in force count every call on that route, old snapshot or new. */
static void release_route(struct tl_call *call)
{
	struct tl_rules *now = call->sip->rules;

	if (call->rules->active[call->route->index] > 0)
		call->rules->active[call->route->index]--;
	if (now == call->rules)
		return;
	for (size_t i = 0; i < now->n_routes; i++)
		if (strcmp(now->route_tab[i].name, call->route->name) == 0 && now->active[i] > 0)
			now->active[i]--;
}

static int build_meta(struct tl_call *call, const sip_t *req, msg_t *msg)
{
	struct tl_meta_header hdrs[TL_CALL_MAX_HEADERS];
	char values[TL_CALL_MAX_HEADERS][512];
	char ruri[512];
	msg_header_t **head = msg_chain_head(msg);
	size_t n = 0;

	url_e(ruri, sizeof(ruri), req->sip_request->rq_url);
	ruri[sizeof(ruri) - 1] = '\0';
	snprintf(call->ruri_host, sizeof(call->ruri_host), "%s",
	         req->sip_request->rq_url->url_host ? req->sip_request->rq_url->url_host : "");
	/* Sofia's Contact carries no transport parameter when UDP and TCP share a port; a PBX
	 * that reached us over TCP must keep using TCP for the dialog. */
	if (req->sip_via && req->sip_via->v_protocol &&
	    su_casematch(req->sip_via->v_protocol, sip_transport_tcp) && call->ruri_host[0])
		snprintf(call->contact, sizeof(call->contact), "<sip:%s%s%s;transport=tcp>",
		         call->ruri_host, req->sip_request->rq_url->url_port ? ":" : "",
		         req->sip_request->rq_url->url_port ? req->sip_request->rq_url->url_port
		                                            : "");
	for (sip_header_t *h = head ? (sip_header_t *)*head : NULL; h && n < TL_CALL_MAX_HEADERS;
	     h = (sip_header_t *)h->sh_succ) {
		int hash = h->sh_class->hc_hash;
		if (hash == msg_unknown_hash) {
			hdrs[n].name = h->sh_unknown->un_name;
			hdrs[n].value = h->sh_unknown->un_value ? h->sh_unknown->un_value : "";
		} else if (hash >= 0 && h->sh_class->hc_name) {
			if (msg_header_field_e(values[n], sizeof(values[n]), (msg_header_t *)h, 0) <
			    0)
				continue;
			values[n][sizeof(values[n]) - 1] = '\0';
			hdrs[n].name = h->sh_class->hc_name;
			hdrs[n].value = values[n];
		} else {
			continue;
		}
		n++;
	}
	int err = tl_meta_build(&call->meta, ruri, hdrs, n);
	return err < 0 ? err : pick_route(call, hdrs, n);
}

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
	err = msg ? build_meta(call, req, msg) : -EINVAL;
	if (err < 0)
		goto out;
	err = tl_portpool_bind(sip->ports, &call->rtp_fd, &call->rtcp_fd, &call->local.port);
	if (err < 0)
		goto out;
	pick_local_addr(call, req);
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
		release_route(call);
	tl_rules_destroy(call->rules);
	free(call->refer_target);
	if (call->timer)
		su_timer_destroy(call->timer);
	if (call->refer_timer)
		su_timer_destroy(call->refer_timer);
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

const char *tl_call_sdp_body(const sip_t *req, msg_t *msg, su_home_t *home, size_t *len)
{
	const sip_content_type_t *ct = req->sip_content_type;
	const sip_payload_t *pl = req->sip_payload;

	if (!pl || !pl->pl_data || pl->pl_len == 0)
		return NULL;
	if (!ct || !ct->c_type || su_casematch(ct->c_type, "application/sdp")) {
		*len = pl->pl_len;
		return pl->pl_data;
	}
	if (su_casenmatch(ct->c_type, "multipart/", 10)) {
		msg_multipart_t *mp = msg_multipart_parse(home, ct, (sip_payload_t *)pl);
		for (; mp; mp = mp->mp_next) {
			if (mp->mp_content_type && mp->mp_content_type->c_type && mp->mp_payload &&
			    su_casematch(mp->mp_content_type->c_type, "application/sdp")) {
				*len = mp->mp_payload->pl_len;
				return mp->mp_payload->pl_data;
			}
		}
	}
	return NULL;
}

/* Keeps the o= version when the body is unchanged, bumps it when it changes (RFC 3264 §8). */
static int make_body(struct tl_call *call, int offer, const char *remote, size_t rlen, char *out,
                     size_t size)
{
	struct tl_sdp_media neg = call->media;
	int n;

	for (int pass = 0; pass < 2; pass++) {
		n = offer ? tl_sdp_offer(&call->local, out, size)
		          : tl_sdp_answer(remote, rlen, &call->local, &neg, out, size);
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
		call->media = neg;
		call->have_media = 1;
	}
	return n;
}

static const char *sdp_error_phrase(int err)
{
	return err == -ENOTSUP ? "No acceptable codec" : "Bad session description";
}

/* with_this: the response is sent from the request's own event callback. */
static void respond_sdp(struct tl_call *call, int with_this, int status, const char *phrase,
                        const char *body)
{
	const char *contact = call->sip->cfg->public_address ? call->sip->contact_hint
	                      : call->contact[0]             ? call->contact
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

static void start_timer(struct tl_call *call, su_timer_f fn, int ms)
{
	if (!call->timer)
		call->timer = su_timer_create(su_root_task(call->sip->root), 0);
	if (call->timer)
		su_timer_set_interval(call->timer, fn, call, (su_duration_t)ms);
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
	tl_bridge_update(call); /* the answer is out: media may flow both ways now */
	free(call->answer_body);
	call->answer_body = NULL;
	tl_log_info(call->call_id, "answered: %s pt %u, remote %s:%u%s",
	            call->have_media ? tl_sdp_codec_name(call->media.codec) : "(offer sent)",
	            call->media.pt, call->media.remote_addr, call->media.remote_port,
	            call->offer_pending ? " (delayed offer)" : "");
	if (call->sip->cfg->max_call_duration_s > 0)
		start_timer(call, on_max_duration, call->sip->cfg->max_call_duration_s * 1000);
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

/* What the route says before any SDP work: refuse, redirect, or go on. Returns 1 when done. */
static int route_first(struct tl_call *call)
{
	const struct tl_route *r = call->route;

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
		tl_log_warn(call->call_id, "rejecting INVITE: %s", sdp_error_phrase(n));
		nua_respond(call->nh, 488, sdp_error_phrase(n), NUTAG_WITH_THIS(call->sip->nua),
		            SIPTAG_WARNING_STR(n == -ENOTSUP ? "305 trunkline \"Incompatible media "
		                                               "format\""
		                                             : "399 trunkline \"Bad SDP\""),
		            TAG_END());
		call->state = TL_CALL_ENDING;
		return;
	}
	call->answer_body = strdup(body);
	nua_respond(call->nh, SIP_180_RINGING, NUTAG_WITH_THIS(call->sip->nua), TAG_END());
	if (call->sip->cfg->answer_delay_ms > 0)
		start_timer(call, on_answer_delay, call->sip->cfg->answer_delay_ms);
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
	tl_forward_send_refer(call); /* a transfer that waited for the ACK */
	if (!call->offer_pending)
		return;
	call->offer_pending = 0;
	sdp = req ? tl_call_sdp_body(req, nua_current_request(call->sip->nua), home, &len) : NULL;
	err = sdp ? tl_sdp_read_answer(sdp, len, &call->local, &call->media) : -EPROTO;
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
		tl_ws_dtmf(call->sip->ws, call->num, (char)digit);
}

void tl_call_hangup(struct tl_call *call, int status, const char *reason)
{
	if (call->state == TL_CALL_ENDING)
		return;
	tl_bridge_stop(call);
	if (call->state == TL_CALL_NEW)
		nua_respond(call->nh, status, sip_status_phrase(status),
		            TAG_IF(status == 503, SIPTAG_RETRY_AFTER_STR("5")),
		            TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
	else
		nua_bye(call->nh, TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
	call->state = TL_CALL_ENDING;
}
