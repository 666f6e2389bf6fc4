/* Every listen group bound, not just nua's two. Sofia-SIP 1.12.11's nua binds NUTAG_URL and
 * NUTAG_SIPS_URL only (nua_stack_init_transport) and gives no access to its nta agent, so this
 * file interposes nta_agent_add_tport (nua calls it through libsofia-sip-ua's PLT: the
 * executable's definition wins, as gate.c's recvmsg does). Right after nua has bound the last
 * of its own URLs, the other groups go to the same agent with the tags nua used (certificate
 * directory, idle timeouts, TLS policy: everything given to nua_create) and their own
 * TPTAG_IDENT. That happens before nua makes a default Contact per transport of its agent, so
 * the extra listeners get theirs as nua's own do. Only while nua_create runs on this thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sip_int.h"

#include <sofia-sip/nta.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>

typedef int (*add_tport_fn)(nta_agent_t *, url_string_t const *, tag_type_t, tag_value_t, ...);

static add_tport_fn real_add;
static _Thread_local struct {
	const char *after;                     /* nua's last URL; NULL when not armed */
	const char (*urls)[TL_CONFIG_URL_MAX]; /* the others, borrowed while armed */
	int n;
	int failed; /* 1 + the index of the URL that could not be bound, or 0 */
} arm;

__attribute__((constructor)) static void listen_init(void)
{
	real_add = (add_tport_fn)tl_sip_next_sym("nta_agent_add_tport");
}

static int add_rest(nta_agent_t *agent, tagi_t const *tags)
{
	/* nua puts its own TPTAG_IDENT first; each URL gets its own ("sips" for TLS). */
	if (tags->t_tag == tptag_ident)
		tags = tl_next(tags);
	for (int i = 0; i < arm.n; i++) {
		const char *url = arm.urls[i];
		if (real_add(agent, URL_STRING_MAKE(url),
		             TPTAG_IDENT(strncmp(url, "sips:", 5) == 0 ? "sips" : "sip"),
		             TAG_NEXT(tags)) < 0) {
			arm.failed = i + 1;
			return -1;
		}
	}
	return 0;
}

int nta_agent_add_tport(nta_agent_t *agent, url_string_t const *url, tag_type_t tag,
                        tag_value_t value, ...)
{
	ta_list ta;
	int rc;

	ta_start(ta, tag, value);
	rc = real_add(agent, url, ta_tags(ta));
	if (rc >= 0 && arm.after && url && url_is_string(url) &&
	    strcmp((const char *)url, arm.after) == 0) {
		arm.after = NULL;
		rc = add_rest(agent, ta_args(ta));
	}
	ta_end(ta);
	return rc;
}

void tl_sip_listen_arm(const char *after, const char (*urls)[TL_CONFIG_URL_MAX], int n)
{
	arm.after = n > 0 ? after : NULL;
	arm.urls = urls;
	arm.n = n;
	arm.failed = 0;
}

const char *tl_sip_listen_disarm(void)
{
	const char *failed = arm.failed ? arm.urls[arm.failed - 1] : NULL;

	arm.after = NULL;
	arm.n = 0;
	return failed;
}
