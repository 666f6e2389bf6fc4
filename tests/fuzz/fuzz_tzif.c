/* TZif zone files (connector/route/route_time.c): the input is a zone file, placed in a private
 * $TZDIR as "Fuzz/Zone" and named by a rules file's "time" windows, so tl_rules_load parses it
 * and routing evaluates local times with it (transitions, and the POSIX TZ footer for dates
 * past the table). Zone files are trusted system files; this guards against a corrupt one. */
#include <string.h>
#include <sys/stat.h>

#include "fuzz_files.h"

static const char rules_json[] =
    "{\"agents\": {\"a\": {\"url\": \"ws://127.0.0.1:1/\"}},\n"
    " \"routes\": [\n"
    "  {\"name\": \"night\", \"match\": {\"time\": {\"days\": [\"mon\", \"fri\"],\n"
    "   \"start\": \"18:00\", \"end\": \"08:00\", \"tz\": \"Fuzz/Zone\"}}, \"reject\": 486},\n"
    "  {\"name\": \"day\", \"match\": {\"time\": [{\"start\": \"00:30\", \"end\": \"24:00\",\n"
    "   \"tz\": \"Fuzz/Zone\"}, {\"days\": [\"sun\"]}]}, \"agent\": \"a\"}]}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char zdir[300];
	struct tl_rules *rules = NULL;
	struct tl_err err;
	const char *path;
	int rc;

	path = fz_write("rules.json", rules_json, sizeof(rules_json) - 1);
	if (!zdir[0]) {
		snprintf(zdir, sizeof(zdir), "%s/Fuzz", fz_dir);
		FUZZ_CHECK(mkdir(zdir, 0700) == 0);
		FUZZ_CHECK(setenv("TZDIR", fz_dir, 1) == 0);
	}
	fz_write("Fuzz/Zone", data, size);
	memset(&err, 0, sizeof(err));
	rc = tl_rules_load(&rules, path, &err);
	FUZZ_CHECK(rc == 0 ? rules != NULL : rules == NULL && err.msg[0]);
	if (rules) {
		fz_route_calls(rules);
		tl_rules_destroy(rules);
	}
	return 0;
}
