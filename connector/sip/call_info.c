/* What an INVITE tells about its call: the caller metadata, the route it takes, our address
 * for SDP and Contact, and its SDP body. Fills fields of the call; changes no call state
 * (call.c owns that). SIP thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sip_int.h"

#include <sofia-sip/msg_mime.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_string.h>

#include "trunkline/log.h"
#include "trunkline/meta.h"
#include "trunkline/route.h"

#define TL_CALL_MAX_HEADERS 128

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
void tl_call_pick_local_addr(struct tl_call *call, const sip_t *req)
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

/* Our Contact when Sofia's would be wrong. Sofia's carries no transport parameter when UDP and
 * TCP share a port (a PBX that reached us over TCP must keep using TCP), on a wildcard listener
 * it names the host's first interface without a port, and with several listeners it may name
 * another one (a UDP call got the TLS listener's sips: Contact): then the address and port the
 * PBX reached us on (its Request-URI) are what it can send ACK, BYE and re-INVITE to, or, over
 * UDP to a listener of one address, that address. */
static void set_contact(struct tl_call *call, const sip_t *req)
{
	const url_t *ru = req->sip_request->rq_url;
	int tcp = req->sip_via && req->sip_via->v_protocol &&
	          su_casematch(req->sip_via->v_protocol, sip_transport_tcp);
	enum tl_transport want = call->over_tls ? TL_TRANSPORT_TLS
	                         : tcp          ? TL_TRANSPORT_TCP
	                                        : TL_TRANSPORT_UDP;
	const struct tl_config *cfg = call->sip->cfg;
	const struct tl_listen *l = NULL;
	const char *host = call->ruri_host;
	char port[8] = "";
	int v6, own;

	/* Behind NAT: the advertised address, on the transport the call came over. */
	if (cfg->public_address) {
		snprintf(call->contact, sizeof(call->contact), "<%s:trunkline@%s%s>",
		         ru->url_type == url_sips ? "sips" : "sip", cfg->public_address,
		         want == TL_TRANSPORT_TLS   ? ";transport=tls"
		         : want == TL_TRANSPORT_TCP ? ";transport=tcp"
		                                    : "");
		return;
	}
	for (size_t i = 0; i < cfg->n_listen; i++)
		if (cfg->listen[i].transport == want &&
		    (!l || (ru->url_port && atoi(ru->url_port) == cfg->listen[i].port &&
		            l->port != cfg->listen[i].port)))
			l = &cfg->listen[i];
	if (l)
		snprintf(port, sizeof(port), "%u", l->port);
	own = want == TL_TRANSPORT_UDP && l && !is_wildcard(l->host);
	if (own)
		host = l->host; /* the address of the listener itself */
	if (!host[0])
		return;
	v6 = strchr(host, ':') && host[0] != '[';
	snprintf(call->contact, sizeof(call->contact), "<%s:%s%s%s:%s%s>",
	         ru->url_type == url_sips ? "sips" : "sip", v6 ? "[" : "", host, v6 ? "]" : "",
	         own              ? port
	         : ru->url_port   ? ru->url_port
	         : port[0]        ? port
	         : call->over_tls ? "5061"
	                          : "5060",
	         want == TL_TRANSPORT_TLS   ? ";transport=tls"
	         : want == TL_TRANSPORT_TCP ? ";transport=tcp"
	                                    : "");
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
void tl_call_release_route(struct tl_call *call)
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

int tl_call_read_invite(struct tl_call *call, const sip_t *req, msg_t *msg)
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
	call->over_tls = req->sip_via && req->sip_via->v_protocol &&
	                 su_casematch(req->sip_via->v_protocol, sip_transport_tls);
	set_contact(call, req);
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
	const char *reg = err < 0 ? NULL : tl_register_match(call->sip, req);

	/* the registration it came on: metadata, and route condition "registration" */
	if (reg && json_object_set_new(call->meta, "registration", json_string(reg)) < 0)
		err = -ENOMEM;
	return err < 0 ? err : pick_route(call, hdrs, n);
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
