/* trunkline as a registering user agent ("registrations" in config.json): one nua REGISTER
 * usage per entry, with the entry's name as the Contact user, so an INVITE to that Contact is
 * known to have come on the registration. nua refreshes a registration before it expires; this
 * file answers digest challenges (nua_authenticate), retries a failed registration with back-off
 * (5 s doubling to 5 min), keeps the NAT binding open with an OPTIONS to the registrar every
 * keepalive_s, and logs each change of state. SIP thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sip_int.h"

#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_string.h>
#include <sofia-sip/url.h>

#include "trunkline/log.h"
#include "trunkline/registration.h"

#define TL_REG_RETRY_MIN_S 5
#define TL_REG_RETRY_MAX_S 300

enum reg_state { REG_NONE, REG_TRYING, REG_OK, REG_FAILED };

struct tl_reg {
	struct tl_sip *sip;
	const struct tl_registration *cfg; /* borrowed from the config */
	nua_handle_t *nh;                  /* the REGISTER usage */
	nua_handle_t *ka_nh;               /* the keepalive OPTIONS in flight, or NULL */
	su_timer_t *retry_timer, *ka_timer;
	enum reg_state state;
	int auth_tries; /* challenges answered since the last success */
	int retry_s;
	char registrar[300], aor[300], proxy[300];
	char contact[300]; /* set on a wildcard listener, else Sofia's own */
};

struct tl_reg_client {
	struct tl_reg *regs;
	size_t n;
};

static const char *state_name(enum reg_state s)
{
	return s == REG_OK ? "registered" : s == REG_TRYING ? "registering" : "failed";
}

static void set_state(struct tl_reg *r, enum reg_state s, int status, const char *phrase)
{
	if (s == REG_FAILED)
		atomic_fetch_add_explicit(&tl_registration_stats.register_failures, 1,
		                          memory_order_relaxed);
	if (r->state == s && s != REG_FAILED)
		return;
	if (s == REG_OK)
		atomic_fetch_add_explicit(&tl_registration_stats.registered, 1,
		                          memory_order_relaxed);
	else if (r->state == REG_OK)
		atomic_fetch_sub_explicit(&tl_registration_stats.registered, 1,
		                          memory_order_relaxed);
	r->state = s;
	if (s == REG_OK)
		tl_log_info(NULL, "registration \"%s\": registered at %s as %s", r->cfg->name,
		            r->registrar, r->aor);
	else if (s == REG_FAILED)
		tl_log_warn(NULL, "registration \"%s\": %s (%d %s), retrying in %d s", r->cfg->name,
		            state_name(s), status, phrase ? phrase : "", r->retry_s);
	else
		tl_log_info(NULL, "registration \"%s\": %s at %s", r->cfg->name, state_name(s),
		            r->registrar);
}

static void send_register(struct tl_reg *r)
{
	char expires[16];

	snprintf(expires, sizeof(expires), "%d", r->cfg->expires);
	r->auth_tries = 0;
	if (!r->nh) {
		r->nh = nua_handle(r->sip->nua, NULL, SIPTAG_TO_STR(r->aor),
		                   SIPTAG_FROM_STR(r->aor), TAG_END());
		if (!r->nh)
			return;
	}
	set_state(r, REG_TRYING, 0, NULL);
	nua_register(r->nh, NUTAG_REGISTRAR(URL_STRING_MAKE(r->registrar)),
	             NUTAG_M_USERNAME(r->cfg->name), SIPTAG_EXPIRES_STR(expires),
	             TAG_IF(r->contact[0], SIPTAG_CONTACT_STR(r->contact)),
	             TAG_IF(r->proxy[0], NUTAG_PROXY(URL_STRING_MAKE(r->proxy))),
	             NUTAG_OUTBOUND("no-options-keepalive, no-validate"), TAG_END());
}

static void on_retry(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_reg *r = arg;

	if (r->nh) { /* a fresh usage: nua gave up on the old one */
		nua_handle_destroy(r->nh);
		r->nh = NULL;
	}
	send_register(r);
}

static void fail(struct tl_reg *r, int status, const char *phrase)
{
	r->retry_s = r->retry_s ? r->retry_s * 2 : TL_REG_RETRY_MIN_S;
	if (r->retry_s > TL_REG_RETRY_MAX_S)
		r->retry_s = TL_REG_RETRY_MAX_S;
	set_state(r, REG_FAILED, status, phrase);
	if (!r->retry_timer)
		r->retry_timer = su_timer_create(su_root_task(r->sip->root), 0);
	if (r->retry_timer)
		su_timer_set_interval(r->retry_timer, on_retry, r,
		                      (su_duration_t)r->retry_s * 1000);
}

static void on_keepalive(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct tl_reg *r = arg;

	if (r->ka_nh || r->state != REG_OK)
		return;
	r->ka_nh = nua_handle(r->sip->nua, NULL, SIPTAG_TO_STR(r->aor), SIPTAG_FROM_STR(r->aor),
	                      TAG_END());
	if (r->ka_nh)
		nua_options(r->ka_nh, NUTAG_URL(URL_STRING_MAKE(r->registrar)),
		            TAG_IF(r->proxy[0], NUTAG_PROXY(URL_STRING_MAKE(r->proxy))), TAG_END());
}

/* Answers a 401/407 with the configured credentials (MD5: Sofia's digest client). */
static int authenticate(struct tl_reg *r, const sip_t *resp)
{
	const msg_auth_t *ch =
	    resp->sip_www_authenticate ? resp->sip_www_authenticate : resp->sip_proxy_authenticate;
	const char *realm = ch ? msg_params_find(ch->au_params, "realm=") : NULL;
	char cred[600];

	if (!r->cfg->password || !realm || !ch->au_scheme || r->auth_tries++ >= 2)
		return 0;
	snprintf(cred, sizeof(cred), "%s:%s:%s:%s", ch->au_scheme, realm,
	         r->cfg->auth_user ? r->cfg->auth_user : r->cfg->user, r->cfg->password);
	nua_authenticate(r->nh, NUTAG_AUTH(cred), TAG_END());
	explicit_bzero(cred, sizeof(cred));
	return 1;
}

static struct tl_reg *by_handle(struct tl_sip *sip, nua_handle_t *nh, int keepalive)
{
	for (size_t i = 0; sip->regs && nh && i < sip->regs->n; i++)
		if ((keepalive ? sip->regs->regs[i].ka_nh : sip->regs->regs[i].nh) == nh)
			return &sip->regs->regs[i];
	return NULL;
}

int tl_register_on_event(struct tl_sip *sip, nua_event_t event, int status, const char *phrase,
                         nua_handle_t *nh, const sip_t *resp)
{
	struct tl_reg *r;

	if (event == nua_r_options && (r = by_handle(sip, nh, 1)) != NULL) {
		if (status >= 200) {
			nua_handle_destroy(r->ka_nh);
			r->ka_nh = NULL;
		}
		return 1;
	}
	if ((event != nua_r_register && event != nua_r_unregister) || !(r = by_handle(sip, nh, 0)))
		return 0;
	if (status < 200 || event == nua_r_unregister)
		return 1;
	if ((status == 401 || status == 407) && resp && authenticate(r, resp))
		return 1;
	if (status >= 300) {
		fail(r, status, phrase);
		return 1;
	}
	r->retry_s = 0;
	r->auth_tries = 0;
	if (r->state == REG_OK)
		tl_log_debug(NULL, "registration \"%s\": refreshed", r->cfg->name);
	set_state(r, REG_OK, status, phrase);
	return 1;
}

/* On a wildcard listener Sofia's Contact names the host's first interface; the address the
 * kernel would use to reach the next hop (a connected UDP socket's local address) is the one
 * the registrar can send calls back to. Start-up only: the name lookup may block. */
static void wildcard_contact(struct tl_reg *r, const url_t *u)
{
	const struct tl_config *cfg = r->sip->cfg;
	const char *tp = r->cfg->transport ? r->cfg->transport : "udp";
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	const struct tl_listen *l = NULL;
	char host[INET6_ADDRSTRLEN], hbuf[256];
	int fd = -1;

	for (size_t i = 0; i < cfg->n_listen && !l; i++)
		if (strcmp(tp, cfg->listen[i].transport == TL_TRANSPORT_UDP   ? "udp"
		               : cfg->listen[i].transport == TL_TRANSPORT_TCP ? "tcp"
		                                                              : "tls") == 0)
			l = &cfg->listen[i];
	if (!l || (strcmp(l->host, "0.0.0.0") != 0 && strcmp(l->host, "::") != 0))
		return;
	snprintf(hbuf, sizeof(hbuf), "%s", u->url_host);
	if (hbuf[0] == '[' && strlen(hbuf) > 2)
		memmove(hbuf, hbuf + 1, strlen(hbuf)), hbuf[strlen(hbuf) - 1] = '\0';
	if (getaddrinfo(hbuf, u->url_port ? u->url_port : "5060", &hints, &ai) != 0 || !ai)
		return;
	fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    inet_ntop(ss.ss_family,
	              ss.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
	                                      : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr,
	              host, sizeof(host)))
		snprintf(r->contact, sizeof(r->contact), "<sip:%s@%s%s%s:%u;transport=%s>",
		         r->cfg->name, ss.ss_family == AF_INET6 ? "[" : "", host,
		         ss.ss_family == AF_INET6 ? "]" : "", l->port, tp);
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
}

static int setup(struct tl_reg *r)
{
	const struct tl_registration *c = r->cfg;
	su_home_t home[1] = {SU_HOME_INIT(home)};
	url_t *u = url_hdup(home, URL_STRING_MAKE(c->registrar)->us_url);
	const char *tp = c->transport ? ";transport=" : "";

	if (!u || !u->url_host) {
		su_home_deinit(home);
		return -EINVAL;
	}
	snprintf(r->registrar, sizeof(r->registrar), "%s%s%s", c->registrar, tp,
	         c->transport ? c->transport : "");
	snprintf(r->aor, sizeof(r->aor), "<%s:%s@%s>", u->url_type == url_sips ? "sips" : "sip",
	         c->user, c->domain ? c->domain : u->url_host);
	if (c->outbound_proxy)
		snprintf(r->proxy, sizeof(r->proxy), "%s%s%s", c->outbound_proxy, tp,
		         c->transport ? c->transport : "");
	{
		url_t *pu = c->outbound_proxy
		                ? url_hdup(home, URL_STRING_MAKE(c->outbound_proxy)->us_url)
		                : NULL;
		wildcard_contact(r, pu && pu->url_host ? pu : u); /* toward the next hop */
	}
	su_home_deinit(home);
	if (c->keepalive_s > 0) {
		r->ka_timer = su_timer_create(su_root_task(r->sip->root),
		                              (su_duration_t)c->keepalive_s * 1000);
		if (r->ka_timer)
			su_timer_set_for_ever(r->ka_timer, on_keepalive, r);
	}
	return 0;
}

int tl_register_start(struct tl_sip *sip)
{
	const struct tl_config *cfg = sip->cfg;
	struct tl_reg_client *rc;

	if (!cfg->n_registrations)
		return 0;
	rc = calloc(1, sizeof(*rc));
	if (!rc || !(rc->regs = calloc(cfg->n_registrations, sizeof(*rc->regs)))) {
		free(rc);
		return -ENOMEM;
	}
	sip->regs = rc;
	for (size_t i = 0; i < cfg->n_registrations; i++) {
		struct tl_reg *r = &rc->regs[i];
		r->sip = sip;
		r->cfg = &cfg->registrations[i];
		rc->n = i + 1;
		if (setup(r) < 0) {
			tl_log_error(NULL, "registration \"%s\": bad registrar URI %s",
			             r->cfg->name, r->cfg->registrar);
			continue;
		}
		send_register(r);
	}
	return 0;
}

const char *tl_register_match(struct tl_sip *sip, const sip_t *req)
{
	const char *user = req->sip_request->rq_url->url_user;

	for (size_t i = 0; sip->regs && user && i < sip->regs->n; i++)
		if (strcmp(sip->regs->regs[i].cfg->name, user) == 0)
			return sip->regs->regs[i].cfg->name;
	return NULL;
}

void tl_register_stop(struct tl_sip *sip)
{
	struct tl_reg_client *rc = sip->regs;

	if (!rc)
		return;
	for (size_t i = 0; i < rc->n; i++) {
		struct tl_reg *r = &rc->regs[i];
		if (r->retry_timer)
			su_timer_destroy(r->retry_timer);
		if (r->ka_timer)
			su_timer_destroy(r->ka_timer);
		if (r->ka_nh)
			nua_handle_destroy(r->ka_nh);
		if (r->nh)
			nua_handle_destroy(r->nh);
	}
	free(rc->regs);
	free(rc);
	sip->regs = NULL;
}
