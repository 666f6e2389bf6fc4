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

static int needed(const struct tl_config *cfg, int listener, const struct sockaddr *src)
{
	const struct tl_access *a = cfg->access;
	int on = listener >= 0 ? a->listener[listener].auth : -1;

	if (!a->auth || on == 0)
		return 0;
	return !(a->auth_exempt.set && src && tl_cidr_list_has(&a->auth_exempt, src));
}

static int challenge(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req, int stale)
{
	const struct tl_access *a = sip->cfg->access;
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
	tl_log_debug(req->sip_call_id ? req->sip_call_id->i_id : NULL, "INVITE challenged: 401%s",
	             stale ? " (stale nonce)" : "");
	nua_respond(nh, 401, "Unauthorized", NUTAG_WITH_THIS(sip->nua),
	            TAG_IF(a->auth_sha256, SIPTAG_WWW_AUTHENTICATE_STR(sha)),
	            TAG_IF(a->auth_md5, SIPTAG_WWW_AUTHENTICATE_STR(md5)), TAG_END());
	return 1;
}

static const char *password_of(const struct tl_access *a, const char *user)
{
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
		tl_log_warn(
		    req->sip_call_id ? req->sip_call_id->i_id : NULL,
		    "INVITE refused: 403, digest authentication of user \"%.64s\" failed: %s "
		    "(further failures are counted, logged at most every 10 s)",
		    user ? user : "", why);
		next_log = now + 10;
	}
	nua_respond(nh, 403, "Forbidden", NUTAG_WITH_THIS(sip->nua), TAG_END());
	return 1;
}

/* Checks one Authorization for our realm: 0 good, 1 answered. */
static int verify(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req, const auth_response_t *ar)
{
	const struct tl_access *a = sip->cfg->access;
	struct tl_digest_input in = {0};
	char want[TL_DIGEST_HEX_MAX];
	int rc;

	if (!ar->ar_nonce || !ar->ar_response || !ar->ar_uri)
		return forbid(sip, nh, req, ar->ar_username, "incomplete credentials");
	rc = tl_digest_nonce_check(sip->access->nonce_key, ar->ar_nonce, wall_s(), a->nonce_ttl_s);
	if (rc == -ETIMEDOUT)
		return challenge(sip, nh, req, 1);
	if (rc < 0)
		return challenge(sip, nh, req, 0); /* not our nonce (a restart made a new key) */
	if (tl_digest_alg_parse(ar->ar_algorithm, &in.alg) < 0 ||
	    !(in.alg == TL_DIGEST_SHA256 ? a->auth_sha256 : a->auth_md5))
		return forbid(sip, nh, req, ar->ar_username, "algorithm not offered");
	in.user = ar->ar_username;
	in.realm = a->realm;
	in.password = password_of(a, ar->ar_username);
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
	            "INVITE authenticated: user \"%s\" (%s)", in.user, tl_digest_alg_name(in.alg));
	return 0;
}

int tl_auth_invite(struct tl_sip *sip, nua_handle_t *nh, const sip_t *req, int listener,
                   const struct sockaddr *source)
{
	const char *realm = sip->cfg->access->realm;
	su_home_t home[1] = {SU_HOME_INIT(home)};
	int rc = -1;

	if (!needed(sip->cfg, listener, source))
		return 0;
	for (const sip_authorization_t *au = req->sip_authorization; au && rc < 0;
	     au = au->au_next) {
		auth_response_t ar[1];
		memset(ar, 0, sizeof(ar));
		ar->ar_size = (int)sizeof(ar[0]);
		if (!su_casematch(au->au_scheme, "Digest") ||
		    auth_digest_response_get(home, ar, au->au_params) < 0 || !ar->ar_realm ||
		    strcmp(ar->ar_realm, realm) != 0)
			continue;
		rc = verify(sip, nh, req, ar);
	}
	su_home_deinit(home);
	return rc < 0 ? challenge(sip, nh, req, 0) : rc;
}
