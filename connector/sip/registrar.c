/* trunkline as a registrar ("registrar" in config.json), for PBXs that only do registration-
 * based trunks: a REGISTER with good digest credentials (auth.c) binds the user's name to the
 * Contact and the source address it came from, in memory, until it expires. A route's forward
 * or fallback "reg:NAME" goes to that Contact; requests from a bound source pass allow_sources
 * and need no sip.auth (the PBX authenticated when it registered). One Contact per name (the
 * last REGISTER wins). SIP thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "access_int.h"

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/url.h>

#include "trunkline/log.h"
#include "trunkline/registration.h"

struct tl_binding {
	char contact[256]; /* the URI, without <> or parameters after it */
	struct sockaddr_storage source;
	int64_t expires_at; /* CLOCK_MONOTONIC s; 0 = none */
};

struct tl_registrar_state {
	struct tl_binding *b; /* by index of cfg->registrar->users */
	char target[260];     /* the last resolved reg: target */
};

static int64_t mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

int tl_registrar_start(struct tl_sip *sip)
{
	const struct tl_registrar *cfg = sip->cfg->registrar;

	if (!cfg->enabled)
		return 0;
	sip->registrar = calloc(1, sizeof(*sip->registrar));
	if (!sip->registrar ||
	    !(sip->registrar->b = calloc(cfg->n_users, sizeof(struct tl_binding))))
		return -ENOMEM;
	tl_log_info(NULL, "registrar on: %zu user(s) may register (realm \"%s\")", cfg->n_users,
	            cfg->realm);
	return 0;
}

void tl_registrar_stop(struct tl_sip *sip)
{
	if (!sip->registrar)
		return;
	free(sip->registrar->b);
	free(sip->registrar);
	sip->registrar = NULL;
}

static const char *password_of(const void *arg, const char *user)
{
	const struct tl_registrar *r = arg;

	for (size_t i = 0; i < r->n_users; i++)
		if (strcmp(r->users[i], user) == 0)
			return r->passwords[i];
	return NULL;
}

static int index_of(const struct tl_registrar *r, const char *user)
{
	for (size_t i = 0; user && i < r->n_users; i++)
		if (strcmp(r->users[i], user) == 0)
			return (int)i;
	return -1;
}

static struct tl_binding *live(struct tl_sip *sip, int i)
{
	struct tl_binding *b = &sip->registrar->b[i];

	if (b->expires_at && b->expires_at <= mono_s()) {
		tl_log_info(NULL, "registrar: binding of \"%s\" expired",
		            sip->cfg->registrar->users[i]);
		b->expires_at = 0;
		atomic_fetch_sub_explicit(&tl_registration_stats.bindings, 1, memory_order_relaxed);
	}
	return b->expires_at ? b : NULL;
}

static int expires_of(const sip_t *req)
{
	const sip_contact_t *m = req->sip_contact;

	if (m && m->m_expires)
		return atoi(m->m_expires);
	if (req->sip_expires)
		return (int)req->sip_expires->ex_delta;
	return 3600;
}

static void bind_contact(struct tl_sip *sip, int i, const sip_t *req, int expires)
{
	struct tl_binding *b = &sip->registrar->b[i];
	const struct sockaddr *src = tl_access_source(sip);
	int had = live(sip, i) != NULL;

	url_e(b->contact, sizeof(b->contact), req->sip_contact->m_url);
	b->contact[sizeof(b->contact) - 1] = '\0';
	memset(&b->source, 0, sizeof(b->source));
	if (src)
		memcpy(&b->source, src,
		       src->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
		                                  : sizeof(struct sockaddr_in));
	b->expires_at = mono_s() + expires;
	if (!had)
		atomic_fetch_add_explicit(&tl_registration_stats.bindings, 1, memory_order_relaxed);
	if (!had)
		tl_log_info(NULL, "registrar: \"%s\" registered at %s for %d s",
		            sip->cfg->registrar->users[i], b->contact, expires);
	else
		tl_log_debug(NULL, "registrar: \"%s\" refreshed (%s, %d s)",
		             sip->cfg->registrar->users[i], b->contact, expires);
}

void tl_registrar_on_register(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req)
{
	const struct tl_registrar *cfg = sip->cfg->registrar;
	struct tl_auth_realm realm = {cfg->realm, cfg->sha256, cfg->md5, 300, password_of, cfg};
	char user[128], exp[32], minexp[16];
	int i, expires;

	if (!sip->registrar) {
		nua_respond(nh, SIP_405_METHOD_NOT_ALLOWED, NUTAG_WITH_THIS(sip->nua), TAG_END());
		goto out;
	}
	if (tl_auth_request(sip, nh, req, &realm, user, sizeof(user)))
		goto out;
	i = index_of(cfg, user);
	if (i < 0 || !req->sip_to || !req->sip_to->a_url->url_user ||
	    strcmp(req->sip_to->a_url->url_user, user) != 0) {
		atomic_fetch_add_explicit(&tl_registration_stats.bindings_refused, 1,
		                          memory_order_relaxed);
		nua_respond(nh, 403, "Credentials are not for this address",
		            NUTAG_WITH_THIS(sip->nua), TAG_END());
		goto out;
	}
	if (!req->sip_contact) { /* a query: the binding in force */
		struct tl_binding *b = live(sip, i);
		snprintf(exp, sizeof(exp), "%lld", b ? (long long)(b->expires_at - mono_s()) : 0LL);
		nua_respond(nh, SIP_200_OK, NUTAG_WITH_THIS(sip->nua),
		            TAG_IF(b, SIPTAG_CONTACT_STR(b ? b->contact : NULL)),
		            TAG_IF(b, SIPTAG_EXPIRES_STR(exp)), TAG_END());
		goto out;
	}
	expires = expires_of(req);
	if (req->sip_contact->m_url->url_type == url_any || expires == 0) {
		if (live(sip, i)) {
			tl_log_info(NULL, "registrar: \"%s\" unregistered", user);
			atomic_fetch_sub_explicit(&tl_registration_stats.bindings, 1,
			                          memory_order_relaxed);
		}
		sip->registrar->b[i].expires_at = 0;
		nua_respond(nh, SIP_200_OK, NUTAG_WITH_THIS(sip->nua), TAG_END());
		goto out;
	}
	if (expires < cfg->min_expires) {
		snprintf(minexp, sizeof(minexp), "%d", cfg->min_expires);
		nua_respond(nh, SIP_423_INTERVAL_TOO_BRIEF, NUTAG_WITH_THIS(sip->nua),
		            SIPTAG_MIN_EXPIRES_STR(minexp), TAG_END());
		goto out;
	}
	if (expires > cfg->max_expires)
		expires = cfg->max_expires;
	bind_contact(sip, i, req, expires);
	snprintf(exp, sizeof(exp), "%d", expires);
	nua_respond(nh, SIP_200_OK, NUTAG_WITH_THIS(sip->nua),
	            SIPTAG_CONTACT_STR(sip->registrar->b[i].contact), SIPTAG_EXPIRES_STR(exp),
	            TAG_END());
out:
	nua_handle_destroy(nh);
}

const char *tl_registrar_resolve(struct tl_sip *sip, const char *target)
{
	struct tl_binding *b;
	int i;

	if (!target || strncmp(target, "reg:", 4) != 0)
		return target;
	i = sip->registrar ? index_of(sip->cfg->registrar, target + 4) : -1;
	b = i >= 0 ? live(sip, i) : NULL;
	if (!b) {
		tl_log_warn(NULL, "%s: not registered", target);
		return NULL;
	}
	snprintf(sip->registrar->target, sizeof(sip->registrar->target), "%s", b->contact);
	return sip->registrar->target;
}

int tl_registrar_has_source(struct tl_sip *sip, const struct sockaddr *src)
{
	for (size_t i = 0; src && sip->registrar && i < sip->cfg->registrar->n_users; i++)
		if (live(sip, (int)i) &&
		    tl_access_same_host((const struct sockaddr *)&sip->registrar->b[i].source, src))
			return 1;
	return 0;
}
