/* `trunkline route ...` (tl_route_cli): output and exit status of the dry run, with stdout and
 * stderr captured in a file. Needs the system tzdata (/usr/share/zoneinfo). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tl_test.h"
#include "trunkline/route.h"

/* Runs tl_route_cli with argv (NULL-terminated) and returns its status; out gets stdout and
 * stderr, in that order. */
static int run_cli(char *out, size_t size, const char *const *args)
{
	char *argv[32];
	char path[300];
	int argc = 0, rc, fd, saved_out = dup(1), saved_err = dup(2);
	FILE *f;
	size_t n;

	while (args[argc] && argc < 31) {
		argv[argc] = (char *)args[argc];
		argc++;
	}
	argv[argc] = NULL;
	snprintf(path, sizeof(path), "%s/cli.out", tl_test_dir);
	fflush(stdout);
	fflush(stderr);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
	rc = tl_route_cli(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	f = fopen(path, "r");
	n = f ? fread(out, 1, size - 1, f) : 0;
	out[n] = '\0';
	if (f)
		fclose(f);
	return rc;
}

static const char cli_rules[] =
    "{\"agents\": {\"echo\": {\"url\": \"ws://127.0.0.1:8090/\", \"params\": {\"caller\": "
    "\"${from}\"}}},\n"
    " \"routes\": [\n"
    "  {\"name\": \"after-hours\", \"match\": {\"time\": {\"days\": [\"mon\", \"tue\", "
    "\"wed\", \"thu\", \"fri\"], \"start\": \"18:00\", \"end\": \"08:00\", \"tz\": "
    "\"Europe/London\"}}, \"agent\": \"echo\", \"fallback\": \"sip:reception@pbx.example.com\"},\n"
    "  {\"name\": \"vip\", \"match\": {\"header\": {\"X-VIP\": \"^yes$\"}}, \"forward\": "
    "\"sip:+14155550100@pbx.example.com\"},\n"
    "  {\"name\": \"blocked\", \"match\": {\"from\": \"^666$\", \"source\": \"10.0.0.0/8\"}, "
    "\"reject\": 603},\n"
    "  {\"name\": \"default\", \"match\": {\"to\": \"^4\", \"max_calls\": 2}, \"agent\": "
    "\"echo\", \"params\": {\"line\": \"${to}/${X-Line}\"}}]}\n";

static void test_cli(void)
{
	char out[4096];
	const char *rules = tl_test_put("cli.json", cli_rules);
	const char *bad =
	    tl_test_put("cli-bad.json", "{\"agents\": {\"echo\": {\"url\": \"ws://h/\"}},\n"
	                                " \"routes\": [{\"agent\": \"echo\",\n"
	                                "   \"match\": {\"from\": \"(\"}}]}\n");
	char want[1024];
	int rc;

	rc = run_cli(out, sizeof(out),
	             (const char *const[]){"route", "--rules", rules, "--from", "2001", "--to",
	                                   "400", "--header", "X-VIP: no", "--header",
	                                   " x-line :  7 ", "--at", "2026-11-24T09:30:00Z", NULL});
	TL_CHECK_INT(rc, 0);
	TL_CHECK_STR(out,
	             "call: "
	             "{\"X-VIP\":\"no\",\"from\":\"2001\",\"pbx\":\"unknown\",\"to\":\"400\",\"x-"
	             "line\":\"7\"}\n"
	             "at: 2026-11-24T09:30:00Z, source: unknown, headers: 2\n"
	             "route \"after-hours\": no match: time 09:30 Tue Europe/London is outside "
	             "18:00-08:00 mon..fri\n"
	             "route \"vip\": no match: header X-VIP: no header matches ^yes$\n"
	             "route \"blocked\": no match: from \"2001\" does not match ^666$\n"
	             "route \"default\": MATCH -> agent \"echo\" (ws://127.0.0.1:8090/)\n"
	             "  params: {\"caller\":\"2001\",\"line\":\"400/\"}\n");

	rc = run_cli(out, sizeof(out),
	             (const char *const[]){"route", "--rules", rules, "--from", "2001", "--at",
	                                   "2026-11-24T19:30:00+01:00", NULL});
	TL_CHECK_INT(rc, 0);
	TL_CHECK(strstr(out, "route \"after-hours\": MATCH -> agent \"echo\" "
	                     "(ws://127.0.0.1:8090/), fallback sip:reception@pbx.example.com "
	                     "(redirect)\n  params: {\"caller\":\"2001\"}\n") != NULL);

	rc = run_cli(out, sizeof(out),
	             (const char *const[]){"route", "--rules", rules, "--header", "X-VIP: yes",
	                                   "--at", "2026-11-24T09:30:00Z", NULL});
	TL_CHECK_INT(rc, 0);
	TL_CHECK(strstr(out, "route \"vip\": MATCH -> forward sip:+14155550100@pbx.example.com "
	                     "(redirect)\n") != NULL);

	rc = run_cli(out, sizeof(out),
	             (const char *const[]){"route", "--rules", rules, "--from", "666", "--source",
	                                   "::ffff:10.9.8.7", "--pbx", "cucm", "--at",
	                                   "2026-11-24T09:30:00Z", NULL});
	TL_CHECK_INT(rc, 0);
	TL_CHECK(strstr(out, "\"pbx\":\"cucm\"") != NULL);
	TL_CHECK(strstr(out, "source: ::ffff:10.9.8.7,") != NULL);
	TL_CHECK(strstr(out, "route \"blocked\": MATCH -> reject 603\n") != NULL);

	rc = run_cli(out, sizeof(out),
	             (const char *const[]){"route", "--rules", rules, "--from", "666", "--source",
	                                   "192.0.2.1", "--to", "400", "--active", "default=2",
	                                   "--at", "2026-11-24T09:30:00Z", NULL});
	TL_CHECK_INT(rc, 1);
	TL_CHECK(strstr(out, "route \"blocked\": no match: source 192.0.2.1 is not in 10.0.0.0/8\n"
	                     "route \"default\": no match: max_calls: 2 call(s) active, limit 2\n"
	                     "no route matches: the call would be rejected with 404\n") != NULL);

	rc = run_cli(out, sizeof(out), (const char *const[]){"route", "--rules", bad, NULL});
	TL_CHECK_INT(rc, 2);
	snprintf(want, sizeof(want), "%s:3:22: bad regular expression \"(\": ", bad);
	TL_CHECK(strstr(out, want) == out);

	rc = run_cli(out, sizeof(out),
	             (const char *const[]){"route", "--rules", "/nonexistent/r.json", NULL});
	TL_CHECK_INT(rc, 2);
	TL_CHECK(strstr(out, "/nonexistent/r.json: cannot read") == out);

	TL_CHECK_INT(run_cli(out, sizeof(out), (const char *const[]){"route", NULL}), 2);
	TL_CHECK(strstr(out, "usage: trunkline route") != NULL);
	TL_CHECK_INT(run_cli(out, sizeof(out),
	                     (const char *const[]){"route", "--rules", rules, "--bogus", NULL}),
	             2);
	TL_CHECK_INT(run_cli(out, sizeof(out),
	                     (const char *const[]){"route", "--rules", rules, "extra", NULL}),
	             2);
	TL_CHECK_INT(
	    run_cli(out, sizeof(out),
	            (const char *const[]){"route", "--rules", rules, "--at", "9:30", NULL}),
	    2);
	TL_CHECK(strstr(out, "bad --at \"9:30\"") != NULL);
	TL_CHECK_INT(
	    run_cli(out, sizeof(out),
	            (const char *const[]){"route", "--rules", rules, "--source", "10.1", NULL}),
	    2);
	TL_CHECK_INT(
	    run_cli(out, sizeof(out),
	            (const char *const[]){"route", "--rules", rules, "--header", "NoColon", NULL}),
	    2);
	TL_CHECK_INT(
	    run_cli(out, sizeof(out),
	            (const char *const[]){"route", "--rules", rules, "--active", "nope=1", NULL}),
	    2);
	TL_CHECK(strstr(out, "no route named \"nope\"") != NULL);
	TL_CHECK_INT(run_cli(out, sizeof(out), (const char *const[]){"route", "--help", NULL}), 0);
	TL_CHECK(strstr(out, "usage: trunkline route") == out);
}

int main(void)
{
	int rc;

	if (tl_test_tmpdir("tl_test_route_cli") < 0)
		return 1;
	TL_TEST_RUN(test_cli);
	rc = TL_TEST_END();
	tl_test_tmpdir_remove();
	return rc;
}
