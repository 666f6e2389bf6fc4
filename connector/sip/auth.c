/* Digest authentication of new INVITEs (RFC 3261 §22, RFC 7616 qop=auth, RFC 8760 SHA-256):
 * 401 with one challenge per algorithm, SHA-256 first (RFC 8760 §2.4: a UAS offers them in
 * order of preference); a response that checks out lets the INVITE on, a wrong user or
 * password gets 403, an expired nonce a new challenge with stale=true. Nonces are stateless
 * (digest.c); a captured Authorization can be replayed until its nonce expires (nonce_ttl_s):
 * nonce counts are not tracked. Passwords are never logged. SIP thread. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "access_int.h"

#include <sofia-sip/auth_digest.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_string.h>

#include "trunkline/digest.h"
#include "trunkline/log.h"

static int64_t wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec;
}

static int needed(struct tl_sip *sip, int listener, const struct sockaddr *src)
{
	const struct tl_access *a = sip->cfg->access;
	int on = listener >= 0 ? a->listener[listener].auth : -1;

	if (!a->auth || on == 0 || tl_registrar_has_source(sip, src)) /* registered: trusted */
		return 0;
	return !(a->auth_exempt.set && src && tl_cidr_list_has(&a->auth_exempt, src));
}

static int challenge(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req,
                     const struct tl_auth_realm *a, int stale)
{
	const char *realm = a->realm;
	char nonce[TL_DIGEST_NONCE_MAX], sha[400], md5[400];

	if (tl_digest_nonce_make(sip->access->nonce_key, wall_s(), nonce) < 0) {
		nua_respond(nh, 500, "Internal error", NUTAG_WITH_THIS(sip->nua), TAG_END());
		return 1;
	}
	snprintf(sha, sizeof(sha),
	         "Digest realm=\"%s\", nonce=\"%s\", algorithm=SHA-256, qop=\"auth\"%s", realm,
	         nonce, stale ? ", stale=true" : "");
	snprintf(md5, sizeof(md5),
	         "Digest realm=\"%s\", nonce=\"%s\", algorithm=MD5, qop=\"auth\"%s", realm, nonce,
	         stale ? ", stale=true" : "");
	atomic_fetch_add_explicit(&tl_access_stats.auth_challenged, 1, memory_order_relaxed);
	tl_log_debug(req->sip_call_id ? req->sip_call_id->i_id : NULL, "%s challenged: 401%s",
	             req->sip_request->rq_method_name, stale ? " (stale nonce)" : "");
	nua_respond(nh, 401, "Unauthorized", NUTAG_WITH_THIS(sip->nua),
	            TAG_IF(a->sha256, SIPTAG_WWW_AUTHENTICATE_STR(sha)),
	            TAG_IF(a->md5, SIPTAG_WWW_AUTHENTICATE_STR(md5)), TAG_END());
	return 1;
}

static const char *password_of(const void *arg, const char *user)
{
	const struct tl_access *a = arg;

	for (size_t i = 0; user && i < a->n_users; i++)
		if (strcmp(a->users[i].user, user) == 0)
			return a->users[i].password;
	return NULL;
}

static int forbid(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req, const char *user,
                  const char *why)
{
	static int64_t next_log;
	int64_t now = wall_s();

	atomic_fetch_add_explicit(&tl_access_stats.auth_failed, 1, memory_order_relaxed);
	if (now >= next_log) { /* a password guesser must not flood the log */
		tl_log_warn(req->sip_call_id ? req->sip_call_id->i_id : NULL,
		            "%s refused: 403, digest authentication of user \"%.64s\" failed: %s "
		            "(further failures are counted, logged at most every 10 s)",
		            req->sip_request->rq_method_name, user ? user : "", why);
		next_log = now + 10;
	}
	nua_respond(nh, 403, "Forbidden", NUTAG_WITH_THIS(sip->nua), TAG_END());
	return 1;
}

/* Checks one Authorization for our realm: 0 good, 1 answered. */
static int verify(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req,
                  const struct tl_auth_realm *a, const auth_response_t *ar)
{
	struct tl_digest_input in = {0};
	char want[TL_DIGEST_HEX_MAX];
	int rc;

	if (!ar->ar_nonce || !ar->ar_response || !ar->ar_uri)
		return forbid(sip, nh, req, ar->ar_username, "incomplete credentials");
	rc = tl_digest_nonce_check(sip->access->nonce_key, ar->ar_nonce, wall_s(), a->nonce_ttl_s);
	if (rc == -ETIMEDOUT)
		return challenge(sip, nh, req, a, 1);
	if (rc < 0)
		return challenge(sip, nh, req, a, 0); /* not our nonce (a restart made a new key) */
	if (tl_digest_alg_parse(ar->ar_algorithm, &in.alg) < 0 ||
	    !(in.alg == TL_DIGEST_SHA256 ? a->sha256 : a->md5))
		return forbid(sip, nh, req, ar->ar_username, "algorithm not offered");
	in.user = ar->ar_username;
	in.realm = a->realm;
	in.password = ar->ar_username ? a->password(a->arg, ar->ar_username) : NULL;
	in.method = req->sip_request->rq_method_name;
	in.uri = ar->ar_uri;
	in.nonce = ar->ar_nonce;
	in.qop = ar->ar_qop;
	in.nc = ar->ar_nc;
	in.cnonce = ar->ar_cnonce;
	if (!in.password)
		return forbid(sip, nh, req, ar->ar_username, "unknown user");
	if (tl_digest_response(&in, want) < 0)
		return forbid(sip, nh, req, ar->ar_username, "malformed credentials");
	if (!su_casematch(want, ar->ar_response))
		return forbid(sip, nh, req, ar->ar_username, "wrong password");
	tl_log_info(req->sip_call_id ? req->sip_call_id->i_id : NULL,
	            "%s authenticated: user \"%s\" (%s)", in.method, in.user,
	            tl_digest_alg_name(in.alg));
	return 0;
}

int tl_auth_request(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req,
                    const struct tl_auth_realm *a, char *user, size_t size)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	int rc = -1;

	for (const sip_authorization_t *au = req->sip_authorization; au && rc < 0;
	     au = au->au_next) {
		auth_response_t ar[1];
		memset(ar, 0, sizeof(ar));
		ar->ar_size = (int)sizeof(ar[0]);
		if (!su_casematch(au->au_scheme, "Digest") ||
		    auth_digest_response_get(home, ar, au->au_params) < 0 || !ar->ar_realm ||
		    strcmp(ar->ar_realm, a->realm) != 0)
			continue;
		rc = verify(sip, nh, req, a, ar);
		if (rc == 0 && user)
			snprintf(user, size, "%s", ar->ar_username);
	}
	su_home_deinit(home);
	return rc < 0 ? challenge(sip, nh, req, a, 0) : rc;
}

int tl_auth_invite(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req, int listener,
                   const struct sockaddr *source)
{
	const struct tl_access *a = sip->cfg->access;
	struct tl_auth_realm realm = {a->realm,       a->auth_sha256, a->auth_md5,
	                              a->nonce_ttl_s, password_of,    a};

	if (!needed(sip, listener, source))
		return 0;
	return tl_auth_request(sip, nh, req, &realm, NULL, 0);
}
