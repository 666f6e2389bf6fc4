/* Who may call, at the nua level: allow_sources (403), scanners over TLS (403: gate.c drops them
 * on UDP and TCP before Sofia sees them), then for a new INVITE digest authentication (auth.c),
 * the request itself (415 for a body that is not SDP, 488 for SDP that does not parse or offers
 * no codec we know) and the limits (503 + Retry-After). Routing comes after all of these. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "access_int.h"

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_string.h>

#include "trunkline/log.h"

int tl_access_create(struct tl_access_state **out)
{
	struct tl_access_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	if (getrandom(st->nonce_key, sizeof(st->nonce_key), 0) != (ssize_t)sizeof(st->nonce_key)) {
		free(st);
		return -EIO;
	}
	*out = st;
	return 0;
}

void tl_access_destroy(struct tl_access_state *st)
{
	free(st);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const struct sockaddr *tl_access_source(struct tl_sip *sip)
{
	msg_t *msg = nua_current_request(sip->nua);
	su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;

	return ai && ai->ai_addr && ai->ai_addrlen ? ai->ai_addr : NULL;
}

/* 2 when listen host h is the Request-URI host u ("[::1]" or "::1"), 1 when h is a wildcard. */
static int host_fit(const char *h, const char *u)
{
	size_t n = u ? strlen(u) : 0;

	if (strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0)
		return 1;
	if (n > 2 && u[0] == '[')
		return strlen(h) == n - 2 && strncasecmp(h, u + 1, n - 2) == 0 ? 2 : 0;
	return u && strcasecmp(h, u) == 0 ? 2 : 0;
}

int tl_access_listener(const struct tl_config *cfg, const sip_t *req)
{
	const char *proto = req->sip_via ? req->sip_via->v_protocol : NULL;
	const char *port = req->sip_request->rq_url->url_port;
	const char *host = req->sip_request->rq_url->url_host;
	enum tl_transport tp = TL_TRANSPORT_UDP;
	int first = -1, best = -1, fit = -1;

	if (proto && su_casematch(proto, sip_transport_tcp))
		tp = TL_TRANSPORT_TCP;
	else if (proto && su_casematch(proto, sip_transport_tls))
		tp = TL_TRANSPORT_TLS;
	for (size_t i = 0; i < cfg->n_listen; i++) {
		int f;
		if (cfg->listen[i].transport != tp)
			continue;
		if (first < 0)
			first = (int)i;
		/* the port first, then the host (one port may have listeners on several) */
		f = port && atoi(port) == cfg->listen[i].port ? host_fit(cfg->listen[i].host, host)
		                                              : -1;
		if (f > fit)
			best = (int)i, fit = f;
	}
	return best >= 0 ? best : first;
}

/* At most one log line every 10 s per reason. */
static int log_due(int reason)
{
	static int64_t next[4];
	int64_t now = mono_ms();

	if (now < next[reason])
		return 0;
	next[reason] = now + 10000;
	return 1;
}

static void answer(struct tl_sip *sip, nua_event_t event, nua_handle_t *nh, int status,
                   const char *phrase, const char *retry_after)
{
	nua_respond(nh, status, phrase, NUTAG_WITH_THIS(sip->nua),
	            TAG_IF(retry_after, SIPTAG_RETRY_AFTER_STR(retry_after)), TAG_END());
	if (event != nua_i_invite)
		nua_handle_destroy(nh);
}

int tl_access_screen(struct tl_sip *sip, nua_event_t event, nua_handle_t *nh, const sip_t *req)
{
	const struct tl_config *cfg = sip->cfg;
	const struct sockaddr *src;
	const char *ua;

	if (!req || !nh || !req->sip_request)
		return 0;
	src = tl_access_source(sip);
	/* A REGISTER to our registrar authenticates instead (a PBX with a changing address), and
	 * a registered PBX may call from its binding's address. */
	if (src && !(event == nua_i_register && sip->registrar) &&
	    !tl_cidr_list_has(tl_gate_allow_list(cfg, tl_access_listener(cfg, req)), src) &&
	    !tl_registrar_has_source(sip, src)) {
		atomic_fetch_add_explicit(&tl_access_stats.source_rejected, 1,
		                          memory_order_relaxed);
		if (log_due(0))
			tl_log_warn(req->sip_call_id ? req->sip_call_id->i_id : NULL,
			            "%s from a source outside allow_sources: 403 (further ones "
			            "are counted, logged at most every 10 s)",
			            req->sip_request->rq_method_name);
		answer(sip, event, nh, 403, "Forbidden", NULL);
		return 1;
	}
	ua = req->sip_user_agent ? req->sip_user_agent->g_string : NULL;
	for (size_t i = 0; ua && i < cfg->access->n_drop_ua; i++) {
		if (!su_strcasestr(ua, cfg->access->drop_ua[i]))
			continue;
		atomic_fetch_add_explicit(&tl_access_stats.scanner_dropped, 1,
		                          memory_order_relaxed);
		if (log_due(1))
			tl_log_warn(NULL, "request from a scanner (User-Agent \"%s\"): 403", ua);
		answer(sip, event, nh, 403, "Forbidden", NULL);
		return 1;
	}
	return 0;
}

/* 415 for a body that is neither SDP nor multipart; 488 for SDP we cannot read at all. */
static int check_body(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req)
{
	const sip_content_type_t *ct = req->sip_content_type;
	su_home_t home[1] = {SU_HOME_INIT(home)};
	struct tl_sdp_local local = {
	    .addr = "127.0.0.1",
	    .port = 9,
	    .codecs = (1u << TL_CODEC_PCMU) | (1u << TL_CODEC_PCMA) | (1u << TL_CODEC_G722) |
	              (1u << TL_CODEC_OPUS),
	    .savp = 1, /* RTP/SAVP too: media.srtp is applied later, with its own 488 */
	};
	struct tl_sdp_media neg;
	char scratch[2048];
	const char *sdp;
	size_t len = 0;
	int n = 0;

	if (req->sip_payload && req->sip_payload->pl_len && ct && ct->c_type &&
	    !su_casematch(ct->c_type, "application/sdp") &&
	    !su_casenmatch(ct->c_type, "multipart/", 10)) {
		atomic_fetch_add_explicit(&tl_access_stats.bad_content_type, 1,
		                          memory_order_relaxed);
		tl_log_warn(req->sip_call_id ? req->sip_call_id->i_id : NULL,
		            "INVITE refused: 415 (body of type %s)", ct->c_type);
		nua_respond(nh, SIP_415_UNSUPPORTED_MEDIA, NUTAG_WITH_THIS(sip->nua),
		            SIPTAG_ACCEPT_STR("application/sdp"), TAG_END());
		return 1;
	}
	sdp = tl_call_sdp_body(req, nua_current_request(sip->nua), home, &len);
	if (sdp)
		n = tl_sdp_answer(sdp, len, &local, &neg, scratch, sizeof(scratch));
	su_home_deinit(home);
	if (n != -EPROTO && n != -ENOTSUP)
		return 0;
	atomic_fetch_add_explicit(&tl_access_stats.bad_sdp, 1, memory_order_relaxed);
	tl_log_warn(req->sip_call_id ? req->sip_call_id->i_id : NULL, "rejecting INVITE: %s",
	            n == -ENOTSUP ? "No acceptable codec" : "Bad session description");
	nua_respond(nh, 488, n == -ENOTSUP ? "No acceptable codec" : "Bad session description",
	            NUTAG_WITH_THIS(sip->nua),
	            SIPTAG_WARNING_STR(n == -ENOTSUP ? "305 trunkline \"Incompatible media format\""
	                                             : "399 trunkline \"Bad SDP\""),
	            TAG_END());
	return 1;
}

int tl_access_same_host(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
	if (a->sa_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		              &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
	return a->sa_family == AF_INET6 &&
	       memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	              &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static struct tl_bucket *source_bucket(struct tl_access_state *st, const struct sockaddr *src,
                                       int64_t now)
{
	struct tl_access_source *oldest = &st->sources[0];

	for (size_t i = 0; i < TL_ACCESS_SOURCES; i++) {
		struct tl_access_source *s = &st->sources[i];
		if (s->used_ms && tl_access_same_host((struct sockaddr *)&s->addr, src)) {
			s->used_ms = now;
			return &s->bucket;
		}
		if (s->used_ms < oldest->used_ms)
			oldest = s;
	}
	memset(oldest, 0, sizeof(*oldest));
	memcpy(&oldest->addr, src,
	       src->sa_family == AF_INET ? sizeof(struct sockaddr_in)
	                                 : sizeof(struct sockaddr_in6));
	oldest->used_ms = now;
	return &oldest->bucket;
}

static int refuse_503(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req, const char *phrase,
                      int retry_s, atomic_ulong *counter)
{
	char ra[16];

	atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
	snprintf(ra, sizeof(ra), "%d", retry_s);
	if (log_due(2))
		tl_log_warn(
		    req->sip_call_id ? req->sip_call_id->i_id : NULL,
		    "INVITE refused: 503 %s, Retry-After %s (further ones are counted, logged "
		    "at most every 10 s)",
		    phrase, ra);
	nua_respond(nh, 503, phrase, NUTAG_WITH_THIS(sip->nua), SIPTAG_RETRY_AFTER_STR(ra),
	            TAG_END());
	return 1;
}

static int check_limits(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req,
                        const struct sockaddr *src)
{
	const struct tl_access *a = sip->cfg->access;
	int64_t now = mono_ms();
	unsigned same = 0;
	int wait;

	if (a->max_calls_per_source && src) {
		for (struct tl_call *c = sip->calls; c; c = c->next)
			same += c->state != TL_CALL_ENDING &&
			        tl_access_same_host((const struct sockaddr *)&c->source, src);
		if (same >= (unsigned)a->max_calls_per_source)
			return refuse_503(sip, nh, req, "Too many calls from this source", 30,
			                  &tl_access_stats.calls_limited);
	}
	if (a->max_call_rate > 0 &&
	    (wait = tl_bucket_take(&sip->access->global, a->max_call_rate,
	                           a->max_call_rate < 1 ? 1 : a->max_call_rate, now)) > 0)
		return refuse_503(sip, nh, req, "Call rate limit", wait,
		                  &tl_access_stats.rate_limited);
	if (a->max_call_rate_per_source > 0 && src &&
	    (wait = tl_bucket_take(
	         source_bucket(sip->access, src, now), a->max_call_rate_per_source,
	         a->max_call_rate_per_source < 1 ? 1 : a->max_call_rate_per_source, now)) > 0)
		return refuse_503(sip, nh, req, "Call rate limit for this source", wait,
		                  &tl_access_stats.rate_limited);
	return 0;
}

int tl_access_invite(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req)
{
	const struct sockaddr *src = tl_access_source(sip);
	int listener = tl_access_listener(sip->cfg, req);

	return tl_auth_invite(sip, nh, req, listener, src) || check_body(sip, nh, req) ||
	       check_limits(sip, nh, req, src);
}
