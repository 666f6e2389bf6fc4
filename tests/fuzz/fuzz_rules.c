/* Rules and config files (connector/route/rules.c, route.c, config.c, jpos.c): the input is a rules
 * file for tl_rules_load; when it contains a NUL byte, the part before is a config.json and the
 * part after the rules file it names (as "rules": "rules.json"), for tl_config_load. Rules that
 * load are then used to route a few calls (route_match.c, route_time.c). */
#include <string.h>

#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	struct tl_err err;
	int rc;

	if (!nul) {
		struct tl_rules *rules = NULL;
		const char *path = fz_write("rules.json", data, size);

		memset(&err, 0, sizeof(err));
		rc = tl_rules_load(&rules, path, &err);
		FUZZ_CHECK(rc == 0 ? rules != NULL : rules == NULL && err.msg[0]);
		if (rules) {
			/* Without a "routes" key there is one implicit route to the first agent. */
			size_t n = json_array_size(rules->routes);
			FUZZ_CHECK(rules->routes &&
			           (rules->n_routes == n || (n == 0 && rules->n_routes == 1)));
			fz_route_calls(rules);
			tl_rules_destroy(tl_rules_ref(rules));
			tl_rules_destroy(rules);
		}
	} else {
		struct tl_config *cfg = NULL;
		const char *path;

		fz_write("rules.json", nul + 1, size - (size_t)(nul - data) - 1);
		path = fz_write("config.json", data, (size_t)(nul - data));
		memset(&err, 0, sizeof(err));
		rc = tl_config_load(&cfg, path, &err);
		FUZZ_CHECK(rc == 0 ? cfg != NULL : cfg == NULL && err.msg[0]);
		if (cfg) {
			FUZZ_CHECK(cfg->rules && cfg->n_listen >= 1 &&
			           cfg->n_listen <= TL_CONFIG_MAX_LISTEN);
			FUZZ_CHECK(cfg->port_min <= cfg->port_max);
			fz_route_calls(cfg->rules);
			tl_config_destroy(cfg);
		}
	}
	return 0;
}
