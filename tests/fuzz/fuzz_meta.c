/* Caller metadata (connector/sip/meta.c): tl_meta_from_text on an arbitrary "SIP request", then
 * tl_route_expand (connector/route/route_match.c) of templates that name the fields it produced and
 * of the request's own lines, so both see attacker-controlled INVITE text as the daemon does. */
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "trunkline/meta.h"
#include "trunkline/route.h"

static void expand(const char *tmpl, const json_t *meta)
{
	char *s = tl_route_expand(tmpl, meta);

	FUZZ_CHECK(s != NULL);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *meta = NULL, *v;
	const char *key;
	char *copy;
	int rc;

	rc = tl_meta_from_text(&meta, (const char *)data, size);
	FUZZ_CHECK(rc == 0 ? json_is_object(meta) : meta == NULL);
	if (rc == 0) {
		json_object_foreach(meta, key, v)
		{
			FUZZ_CHECK(json_is_string(v));
		}
		expand("${from_name} <${from}> to ${to} via ${diversion} on ${pbx} $$ ${", meta);
		expand("${call_id}${user_to_user}${cisco_guid}${privacy}$", meta);
	}
	/* Every line of the input as a template (NUL-terminated copy). */
	copy = malloc(size + 1);
	FUZZ_CHECK(copy != NULL);
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (char *line = copy, *nl; line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		expand(line, meta);
	}
	free(copy);
	json_decref(meta);
	return 0;
}
