/* config.json and rules.json loading: defaults, path resolution, and the exact file:line:col
 * and message of every kind of error. Files are written to a fresh mkdtemp directory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tl_test.h"
#include "trunkline/rules.h"
#include "trunkline/config.h"

#ifndef TL_SOURCE_DIR
#define TL_SOURCE_DIR "."
#endif

static const char good_rules[] = "{\"agents\": {\"echo\": {\"url\": \"ws://127.0.0.1:8090/\"}}}\n";

static void rm(const char *name)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", tl_test_dir, name);
	unlink(p);
}

static void test_defaults(void)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	const char *path;

	tl_test_put("rules.json", good_rules);
	path = tl_test_put("config.json", "{\"rules\": \"rules.json\"}");
	TL_CHECK_INT(tl_config_load(&cfg, path, &err), 0);
	if (!cfg)
		return;
	TL_CHECK_STR(cfg->path, path);
	TL_CHECK_INT(cfg->n_listen, 2);
	TL_CHECK_INT(cfg->listen[0].transport, TL_TRANSPORT_UDP);
	TL_CHECK_STR(cfg->listen[0].host, "0.0.0.0");
	TL_CHECK_INT(cfg->listen[0].port, 5060);
	TL_CHECK_INT(cfg->listen[1].transport, TL_TRANSPORT_TCP);
	TL_CHECK_STR(cfg->listen[1].host, "0.0.0.0");
	TL_CHECK_INT(cfg->listen[1].port, 5060);
	TL_CHECK(cfg->public_address == NULL);
	TL_CHECK(cfg->user_agent && strncmp(cfg->user_agent, "trunkline/", 10) == 0);
	TL_CHECK_INT(cfg->tcp_idle_timeout_ms, 60000);
	TL_CHECK_INT(cfg->session_expires, 1800);
	TL_CHECK_INT(cfg->min_se, 90);
	TL_CHECK_INT(cfg->max_calls, 1000);
	TL_CHECK_STR(cfg->media_address, "0.0.0.0");
	TL_CHECK(cfg->media_public == NULL);
	TL_CHECK_INT(cfg->port_min, 20000);
	TL_CHECK_INT(cfg->port_max, 29999);
	TL_CHECK_INT(cfg->reorder_ms, 40);
	TL_CHECK_INT(cfg->playout_backlog_ms, 100);
	TL_CHECK_INT(cfg->overload_late_pct, 20);
	TL_CHECK_INT(cfg->shutdown_timeout_ms, 30000);
	TL_CHECK(cfg->rules != NULL);
	if (cfg->rules) {
		TL_CHECK_INT(cfg->rules->n_agents, 1);
		TL_CHECK(json_is_array(cfg->rules->routes));
		TL_CHECK_INT(json_array_size(cfg->rules->routes), 0);
	}
	tl_config_destroy(cfg);
	tl_config_destroy(NULL);
}

static const char full_config[] =
    "{\n"
    "  \"sip\": {\n"
    "    \"listen\": [\"udp:0.0.0.0:5071\", \"tcp:[::]:5071\", \"tcp:sip.example.com:5061\"],\n"
    "    \"public_address\": \"203.0.113.7:5070\",\n"
    "    \"user_agent\": \"pbx-bridge/2\",\n"
    "    \"tcp_idle_timeout_ms\": 5000,\n"
    "    \"session_expires\": 600,\n"
    "    \"min_se\": 120,\n"
    "    \"max_calls\": 50\n"
    "  },\n"
    "  \"media\": {\"address\": \"10.0.0.2\", \"public_address\": \"203.0.113.7\",\n"
    "            \"port_min\": 40000, \"port_max\": 40001, \"reorder_ms\": 0,\n"
    "            \"codecs\": [\"G722\", \"pcmu\"]},\n"
    "  \"rules\": \"sub/r.json\",\n"
    "  \"shutdown_timeout_ms\": 0\n"
    "}\n";

static void test_full(void)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	char want[512];
	const char *path;

	snprintf(want, sizeof(want), "%s/sub", tl_test_dir);
	mkdir(want, 0700);
	tl_test_put("sub/r.json", good_rules);
	path = tl_test_put("full.json", full_config);
	TL_CHECK_INT(tl_config_load(&cfg, path, &err), 0);
	if (!cfg)
		return;
	TL_CHECK_INT(cfg->n_listen, 3);
	TL_CHECK_INT(cfg->listen[1].transport, TL_TRANSPORT_TCP);
	TL_CHECK_STR(cfg->listen[1].host, "::");
	TL_CHECK_INT(cfg->listen[1].port, 5071);
	TL_CHECK_INT(cfg->listen[2].transport, TL_TRANSPORT_TCP);
	TL_CHECK_STR(cfg->listen[2].host, "sip.example.com");
	TL_CHECK_INT(cfg->listen[2].port, 5061);
	TL_CHECK_STR(cfg->public_address, "203.0.113.7:5070");
	TL_CHECK_STR(cfg->user_agent, "pbx-bridge/2");
	TL_CHECK_INT(cfg->tcp_idle_timeout_ms, 5000);
	TL_CHECK_INT(cfg->session_expires, 600);
	TL_CHECK_INT(cfg->min_se, 120);
	TL_CHECK_INT(cfg->max_calls, 50);
	TL_CHECK_STR(cfg->media_address, "10.0.0.2");
	TL_CHECK_STR(cfg->media_public, "203.0.113.7");
	TL_CHECK_INT(cfg->port_min, 40000);
	TL_CHECK_INT(cfg->port_max, 40001);
	TL_CHECK_INT(cfg->reorder_ms, 0);
	TL_CHECK_INT(cfg->codecs[0], TL_CODEC_G722);
	TL_CHECK_INT(cfg->codecs[1], TL_CODEC_PCMU);
	TL_CHECK_INT(cfg->codecs[2], TL_CODEC_NONE);
	TL_CHECK_INT(cfg->shutdown_timeout_ms, 0);
	snprintf(want, sizeof(want), "%s/sub/r.json", tl_test_dir);
	TL_CHECK_STR(cfg->rules_path, want);
	TL_CHECK_STR(cfg->rules->path, want);
	tl_config_destroy(cfg);
	rm("sub/r.json");
	snprintf(want, sizeof(want), "%s/sub", tl_test_dir);
	rmdir(want);
}

/* Absolute rules paths stay as they are; a config named without a directory resolves
 * relative paths against the working directory, which is then its directory. */
static void test_rules_path(void)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	char text[1024], cwd[512];
	const char *rules = tl_test_put("abs-rules.json", good_rules);
	const char *path;

	snprintf(text, sizeof(text), "{\"rules\": \"%s\"}", rules);
	path = tl_test_put("abs.json", text);
	TL_CHECK_INT(tl_config_load(&cfg, path, &err), 0);
	TL_CHECK_STR(cfg ? cfg->rules_path : NULL, rules);
	tl_config_destroy(cfg);

	tl_test_put("rel.json", "{\"rules\": \"abs-rules.json\"}");
	TL_CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	TL_CHECK_INT(chdir(tl_test_dir), 0);
	TL_CHECK_INT(tl_config_load(&cfg, "rel.json", &err), 0);
	TL_CHECK_STR(cfg ? cfg->rules_path : NULL, "abs-rules.json");
	tl_config_destroy(cfg);
	TL_CHECK_INT(chdir(cwd), 0);
}

/* Loads config text (with rules text as rules.json) and expects an error at file:line:col
 * whose message contains msg. */
static void expect_err(const char *config, const char *rules, const char *file, int line, int col,
                       const char *msg)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	int before = tl_test_failures;
	char want[512], buf[1024];
	const char *path;
	int rc;

	tl_test_put("rules.json", rules ? rules : good_rules);
	path = tl_test_put("config.json", config);
	rc = tl_config_load(&cfg, path, &err);
	TL_CHECK_INT(rc, -EINVAL);
	TL_CHECK(cfg == NULL);
	snprintf(want, sizeof(want), "%s/%s", tl_test_dir, file);
	TL_CHECK_STR(err.file, want);
	TL_CHECK_INT(err.line, line);
	TL_CHECK_INT(err.col, col);
	TL_CHECK(strstr(err.msg, msg) != NULL);
	if (tl_test_failures != before)
		fprintf(stderr, "  got \"%s\" for:\n%s\n%s\n", tl_err_str(&err, buf, sizeof(buf)),
		        config, rules ? rules : "");
	tl_config_destroy(cfg);
}

static void test_config_errors(void)
{
	const char *c = "config.json";

	expect_err("{\n  \"sip\": {\n    \"max_calls\": 10,\n    \"forwad\": 1\n  },\n"
	           "  \"rules\": \"rules.json\"\n}\n",
	           NULL, c, 4, 5, "unknown key \"forwad\"");
	expect_err("{\"rules\": \"rules.json\",\n \"extra\": {}}", NULL, c, 2, 2,
	           "unknown key \"extra\"");
	expect_err("{\"rules\": \"rules.json\",\n \"media\": {\n   \"port_min\": 80}}", NULL, c, 3,
	           16, "\"port_min\" must be an integer between 1024 and 65535");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"port_min\": 20000.0}}", NULL, c, 1,
	           47, "\"port_min\" must be an integer between 1024 and 65535");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"port_min\": \"20000\"}}", NULL, c, 1,
	           47, "must be an integer");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"port_min\": 20001}}", NULL, c, 1, 47,
	           "\"port_min\" must be even");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"playout_max_ms\": 1000, "
	           "\"playout_backlog_ms\": 1000}}",
	           NULL, c, 1, 81, "playout_backlog_ms (1000) must be below playout_max_ms (1000)");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"overload_late_pct\": 101}}", NULL, c,
	           1, 56, "\"overload_late_pct\" must be an integer between 0 and 100");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"playout_backlog_ms\": 70000}}", NULL,
	           c, 1, 57, "playout_backlog_ms (70000) must be below playout_max_ms (60000)");
	expect_err("{\"rules\": \"rules.json\",\n \"media\": {\"port_min\": 30000,\n"
	           "            \"port_max\": 20000}}",
	           NULL, c, 3, 25, "port_min (30000) must not exceed port_max (20000)");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"port_max\": 10000}}", NULL, c, 1, 47,
	           "port_min (20000) must not exceed port_max (10000)");
	expect_err(
	    "{\"rules\": \"rules.json\", \"media\": {\"port_min\": 30000, \"port_max\": 30000}}",
	    NULL, c, 1, 66, "must hold at least 2 ports");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"address\": 5}}", NULL, c, 1, 46,
	           "expected a string");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"address\": \"\"}}", NULL, c, 1, 46,
	           "\"address\" must not be empty");
	/* ops.listen on a SIP TCP or TLS listener's port: start-up's second bind failed */
	expect_err("{\"rules\": \"rules.json\",\n \"ops\": {\"listen\": \"127.0.0.1:5060\"}}", NULL,
	           c, 2, 20,
	           "\"listen\" (127.0.0.1:5060) takes the TCP port of sip.listen tcp:0.0.0.0:5060");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": [\"tcp:[::]:5070\"]},\n"
	           " \"ops\": {\"listen\": \"[::1]:5070\"}}",
	           NULL, c, 2, 20, "takes the TCP port of sip.listen tcp:[::]:5070");
	for (int i = 0; i < 3; i++) { /* no clash: UDP only, another address, another family */
		static const char *const ok[] = {"\"udp:0.0.0.0:5060\"", "\"tcp:127.0.0.2:5060\"",
		                                 "\"tcp:[::]:5060\""};
		char text[256];
		struct tl_config *cfg = NULL;
		struct tl_err err = {0};
		snprintf(text, sizeof(text),
		         "{\"rules\": \"rules.json\", \"sip\": {\"listen\": [%s]}, "
		         "\"ops\": {\"listen\": \"127.0.0.1:5060\"}}",
		         ok[i]);
		tl_test_put("rules.json", good_rules);
		TL_CHECK_INT(tl_config_load(&cfg, tl_test_put("config.json", text), &err), 0);
		tl_config_destroy(cfg);
	}
	/* start-up's port pool binds only an address: a name passed the check and stopped it */
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"address\": \"localhost\"}}", NULL, c,
	           1, 46, "media.address \"localhost\" must be an IPv4 or IPv6 address");
	expect_err("{\"rules\": \"rules.json\", \"media\": {\"address\": \"10.0.0.1 \"}}", NULL, c,
	           1, 46, "must be an IPv4 or IPv6 address (0.0.0.0 or :: for all), not a name");
	expect_err("{\"rules\": \"rules.json\", \"media\": [1]}", NULL, c, 1, 34,
	           "expected an object");
	expect_err("{\"rules\": \"rules.json\",\n \"media\": {\"codecs\": [\"opus\", \"G729\"]}}",
	           NULL, c, 2, 31, "unknown codec");
	expect_err("{\"rules\": \"rules.json\",\n \"media\": {\"codecs\": [\"PCMA\", \"pcma\"]}}",
	           NULL, c, 2, 31, "codec listed twice");
	expect_err("{\"rules\": \"rules.json\",\n \"media\": {\"codecs\": []}}", NULL, c, 2, 22,
	           "non-empty array");
	expect_err("{\"rules\": \"rules.json\"}",
	           "{\"agents\": {\"a\": {\"url\": \"ws://h/\"}},\n"
	           "\"routes\": [{\"agent\": \"a\", \"codecs\": [\"G722\", 9]}]}",
	           "rules.json", 2, 46, "unknown codec");
	expect_err("{\"rules\": 7}", NULL, c, 1, 11, "expected a string");
	expect_err("{\n  \"sip\": {}\n}", NULL, c, 1, 1, "missing required key \"rules\"");
	expect_err("[\"rules\"]", NULL, c, 1, 1, "expected an object");
	expect_err("{\"rules\": \"rules.json\", \"shutdown_timeout_ms\": -1}", NULL, c, 1, 48,
	           "\"shutdown_timeout_ms\" must be an integer between 0 and 3600000");
}

static void test_sip_errors(void)
{
	const char *c = "config.json";

	expect_err("{\"rules\": \"rules.json\",\n \"sip\": {\"listen\": [\"udp:0.0.0.0:5060\",\n"
	           "   \"foo\"]}}",
	           NULL, c, 3, 4,
	           "listen address \"foo\" must be proto:host:port (proto udp, tcp or tls)");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": [\"sctp:1.2.3.4:5060\"]}}",
	           NULL, c, 1, 44, "listen address \"sctp:1.2.3.4:5060\" must be proto:host:port");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": [\"udp:::1:5060\"]}}", NULL,
	           c, 1, 44, "must be proto:host:port");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": [\"udp:[::1]5060\"]}}", NULL,
	           c, 1, 44, "must be proto:host:port");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": [\"udp:1.2.3.4:65536\"]}}",
	           NULL, c, 1, 44, "must be proto:host:port");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": [\"udp::5060\"]}}", NULL, c,
	           1, 44, "must be proto:host:port");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": [\"udp:h:50x\"]}}", NULL, c,
	           1, 44, "must be proto:host:port");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": [5060]}}", NULL, c, 1, 44,
	           "expected a string");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": \"udp:h:1\"}}", NULL, c, 1,
	           43, "expected an array");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"listen\": []}}", NULL, c, 1, 43,
	           "\"listen\" must hold 1 to 8 addresses");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"session_expires\": 89}}", NULL, c, 1,
	           52, "\"session_expires\" must be an integer between 90 and");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"min_se\": 60}}", NULL, c, 1, 43,
	           "\"min_se\" must be an integer between 90 and");
	expect_err(
	    "{\"rules\": \"rules.json\",\n \"sip\": {\"session_expires\": 100, \"min_se\": 120}}",
	    NULL, c, 2, 44, "min_se (120) must not exceed session_expires (100)");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"max_calls\": 0}}", NULL, c, 1, 46,
	           "\"max_calls\" must be an integer between 1 and");
	/* A multi-byte character is one column, as in Jansson's own errors. */
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"user_agent\": \"Z\xc3\xbcrich\", "
	           "\"max_calls\": 0}}",
	           NULL, c, 1, 70, "\"max_calls\" must be an integer between 1 and");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"user_agent\": null}}", NULL, c, 1, 47,
	           "expected a string");
}

static const char rc_ok[] = "{\"rules\": \"rules.json\"}";

static void test_agent_errors(void)
{
	const char *r = "rules.json";

	expect_err(rc_ok,
	           "{\n  \"agents\": {\n    \"a\": {\n      \"url\": \"http://x/\"\n    }\n  }\n}",
	           r, 4, 14, "url \"http://x/\" must start with ws:// or wss:// and name a host");
	expect_err(rc_ok, "{\"agents\": {\"a\": {\"url\": \"ws:///path\"}}}", r, 1, 26,
	           "must start with ws:// or wss:// and name a host");
	expect_err(rc_ok, "{\"agents\": {\"a\": {\"url\": \"wss://\"}}}", r, 1, 26,
	           "and name a host");
	expect_err(rc_ok, "{\"agents\": {\"a\": {}}}", r, 1, 18, "missing required key \"url\"");
	expect_err(rc_ok, "{\"agents\": {\"a\": {\"url\": \"ws://h\", \"urll\": 1}}}", r, 1, 36,
	           "unknown key \"urll\"");
	expect_err(rc_ok, "{\"agents\": {\"a\": {\"url\": \"ws://h\", \"dialect\": \"openai\"}}}",
	           r, 1, 47, "\"dialect\" must be \"twilio\" or \"native\"");
	expect_err(rc_ok, "{\"agents\": {\"a\": {\"url\": \"ws://h\", \"sample_rate\": 44100}}}", r,
	           1, 51, "\"sample_rate\" must be 8000, 16000 or 24000");
	expect_err(rc_ok,
	           "{\"agents\": {\"a\": {\"url\": \"ws://h\", \"playout_backlog_ms\": -1}}}", r, 1,
	           58, "\"playout_backlog_ms\" must be an integer between 0 and 600000");
	expect_err(rc_ok, "{\"agents\": {\"a\": {\"url\": \"ws://h\", \"connect_timeout_ms\": 0}}}",
	           r, 1, 58, "\"connect_timeout_ms\" must be an integer between 1 and 60000");
	expect_err(rc_ok,
	           "{\"agents\": {\"a\": {\"url\": \"ws://h\", \"connect_timeout_ms\": 60001}}}", r,
	           1, 58, "between 1 and 60000");
	expect_err(rc_ok,
	           "{\"agents\": {\"a\": {\"url\": \"ws://h\",\n  \"headers\": {\"X-Key\": 1}}}}",
	           r, 2, 24, "expected a string");
	expect_err(rc_ok, "{\"agents\": {\"a\": {\"url\": \"ws://h\", \"params\": {\"k/1\": []}}}}",
	           r, 1, 54, "expected a string");
	expect_err(rc_ok, "{\"agents\": {\"a\": {\"url\": \"ws://h\", \"headers\": []}}}", r, 1, 47,
	           "expected an object");
	expect_err(
	    rc_ok,
	    "{\"agents\": {\"a\": {\"url\": \"ws://h\", \"headers\": {\"X\": \"a\\r\\nB: c\"}}}}",
	    r, 1, 48, "needs a token name and a value without CR or LF");
	expect_err(rc_ok, "{\"agents\": {\"a\": 1}}", r, 1, 18, "expected an object");
	expect_err(rc_ok, "{\"agents\": {}}", r, 1, 12, "must name at least one agent");
	expect_err(rc_ok, "{\"agents\": []}", r, 1, 12, "expected an object");
	expect_err(rc_ok, "{\"routes\": []}", r, 1, 1, "missing required key \"agents\"");
	expect_err(rc_ok, "{\"agents\": {\"\": {\"url\": \"ws://h\"}}}", r, 1, 13,
	           "agent name must not be empty");
}

#define AG "{\"agents\": {\"bot\": {\"url\": \"ws://h\"}},\n \"routes\": [\n"

static void test_route_errors(void)
{
	const char *r = "rules.json";

	expect_err(rc_ok, AG "  {\"agent\": \"x\"}]}", r, 3, 13, "unknown agent \"x\"");
	expect_err(rc_ok, AG "  {\"agent\": \"bot\"},\n  {\"agent\": \"bot\", \"forwad\": 1}]}", r,
	           4, 20, "unknown key \"forwad\"");
	expect_err(rc_ok, AG "  {\"name\": \"x\"}]}", r, 3, 3,
	           "a route needs one of \"agent\", \"forward\" or \"reject\"");
	expect_err(rc_ok, AG "  {\"agent\": \"bot\", \"reject\": 486}]}", r, 3, 20,
	           "\"reject\" cannot be combined with \"agent\"");
	expect_err(rc_ok, AG "  {\"reject\": 200}]}", r, 3, 14,
	           "\"reject\" must be an integer between 400 and 699");
	expect_err(rc_ok, AG "  {\"forward\": \"http://x\"}]}", r, 3, 15,
	           "\"forward\" must be a sip:, sips: or tel: URI");
	expect_err(rc_ok, AG "  {\"agent\": \"bot\", \"fallback\": \"sip\"}]}", r, 3, 32,
	           "\"fallback\" must be a sip:, sips: or tel: URI");
	expect_err(rc_ok, AG "  {\"forward\": \"tel:+1\", \"forward_method\": \"bye\"}]}", r, 3, 43,
	           "\"forward_method\" must be \"redirect\", \"refer\" or \"bridge\"");
	expect_err(rc_ok, AG "  {\"agent\": \"bot\", \"match\": []}]}", r, 3, 29,
	           "expected an object");
	expect_err(rc_ok, AG "  {\"agent\": \"bot\", \"name\": 1}]}", r, 3, 28,
	           "expected a string");
	expect_err(rc_ok, AG "  {\"agent\": 1}]}", r, 3, 13, "expected a string");
	expect_err(rc_ok, AG "  {\"agent\": \"bot\", \"params\": {\"a\": 1}}]}", r, 3, 36,
	           "expected a string");
	expect_err(rc_ok, AG "  \"bot\"]}", r, 3, 3, "expected an object");
	expect_err(rc_ok, "{\"agents\": {\"bot\": {\"url\": \"ws://h\"}}, \"routes\": {}}", r, 1,
	           50, "expected an array");
	expect_err(rc_ok, "{\"agents\": {\"bot\": {\"url\": \"ws://h\"}}, \"route\": []}", r, 1, 40,
	           "unknown key \"route\"");
}

/* Jansson's own errors keep Jansson's position and text. */
static void test_syntax_errors(void)
{
	expect_err("{\n  \"sip\": {,\n}", NULL, "config.json", 2, 11,
	           "string or '}' expected near ','");
	expect_err("{\"rules\": \"rules.json\",\n \"rules\": \"b\"}", NULL, "config.json", 2, 8,
	           "duplicate object key");
	expect_err("", NULL, "config.json", 1, 0, "'[' or '{' expected near end of file");
	expect_err(rc_ok, "{\"agents\": {\"a\": {\"url\": \"ws://h\"}},\n \"routes\": [1, 2,]}",
	           "rules.json", 2, 18, "unexpected token near ']'");
}

static void expect_missing(const char *config_name, const char *want_file)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	char path[512], want[512], buf[1024];

	snprintf(path, sizeof(path), "%s/%s", tl_test_dir, config_name);
	snprintf(want, sizeof(want), "%s/%s", tl_test_dir, want_file);
	TL_CHECK_INT(tl_config_load(&cfg, path, &err), -ENOENT);
	TL_CHECK(cfg == NULL);
	TL_CHECK_STR(err.file, want);
	TL_CHECK_INT(err.line, 0);
	tl_err_str(&err, buf, sizeof(buf));
	TL_CHECK(strstr(buf, want) == buf);
	TL_CHECK(strstr(buf, "No such file") != NULL);
}

static void test_missing_files(void)
{
	expect_missing("nope.json", "nope.json");
	tl_test_put("missing-rules.json", "{\"rules\": \"gone/rules.json\"}");
	expect_missing("missing-rules.json", "gone/rules.json");
}

static const char agents_rules[] =
    "{\"agents\": {\n"
    "  \"zeta\": {\"url\": \"wss://agent.example.com:8443/v1?x=1\", \"dialect\": \"native\",\n"
    "           \"sample_rate\": 24000, \"connect_timeout_ms\": 60000, \"idle_timeout_ms\": 5000,\n"
    "           \"playout_backlog_ms\": 0,\n"
    "           \"headers\": {\"Authorization\": \"Bearer x\"}, \"params\": {\"k\": \"v\"}},\n"
    "  \"a/b~c\": {\"url\": \"ws://127.0.0.1:8090/\", \"dialect\": \"twilio\"}},\n"
    " \"routes\": [{\"name\": \"sales/eu\", \"match\": {\"to\": \"^\\\\+4930\"}, \"agent\": "
    "\"a/b~c\",\n"
    "             \"fallback\": \"sips:queue@pbx\", \"params\": {\"lang\": \"de\"}},\n"
    "            {\"forward\": \"sip:op@pbx\", \"forward_method\": \"refer\"},\n"
    "            {\"reject\": 486}]}\n";

static void test_rules_load(void)
{
	struct tl_rules *rules = NULL;
	struct tl_err err = {0};
	const struct tl_agent *a;
	json_t *routes;

	TL_CHECK_INT(tl_rules_load(&rules, tl_test_put("agents.json", agents_rules), &err), 0);
	if (!rules)
		return;
	TL_CHECK_INT(rules->n_agents, 2);
	TL_CHECK_STR(rules->agents[0].name, "zeta"); /* file order */
	TL_CHECK_STR(rules->agents[1].name, "a/b~c");
	a = tl_rules_agent(rules, "zeta");
	TL_CHECK(a == &rules->agents[0]);
	TL_CHECK_STR(a->url, "wss://agent.example.com:8443/v1?x=1");
	TL_CHECK_INT(a->dialect, TL_DIALECT_NATIVE);
	TL_CHECK_INT(a->sample_rate, 24000);
	TL_CHECK_INT(a->connect_timeout_ms, 60000);
	TL_CHECK_INT(a->idle_timeout_ms, 5000);
	TL_CHECK_INT(a->playout_backlog_ms, 0); /* off for this agent's calls */
	TL_CHECK_STR(json_string_value(json_object_get(a->headers, "Authorization")), "Bearer x");
	TL_CHECK_STR(json_string_value(json_object_get(a->params, "k")), "v");
	a = tl_rules_agent(rules, "a/b~c");
	TL_CHECK(a == &rules->agents[1]);
	TL_CHECK_INT(a->dialect, TL_DIALECT_TWILIO);
	TL_CHECK_INT(a->sample_rate, 8000);
	TL_CHECK_INT(a->connect_timeout_ms, 1500);
	TL_CHECK_INT(a->idle_timeout_ms, 0);
	TL_CHECK_INT(a->playout_backlog_ms, -1); /* media.playout_backlog_ms */
	TL_CHECK(json_is_object(a->headers) && json_object_size(a->headers) == 0);
	TL_CHECK(json_is_object(a->params) && json_object_size(a->params) == 0);
	TL_CHECK(tl_rules_agent(rules, "nobody") == NULL);
	TL_CHECK(tl_rules_agent(rules, "zet") == NULL);
	TL_CHECK(tl_rules_agent(rules, NULL) == NULL);
	TL_CHECK(tl_rules_agent(NULL, "zeta") == NULL);
	routes = json_incref(rules->routes);
	TL_CHECK_INT(json_array_size(routes), 3);
	tl_rules_destroy(rules);
	/* The routes array outlives the rules for whoever holds a reference. */
	TL_CHECK_STR(json_string_value(json_object_get(json_array_get(routes, 0), "name")),
	             "sales/eu");
	json_decref(routes);
	tl_rules_destroy(NULL);
}

static void test_rules_load_errors(void)
{
	struct tl_rules *rules = NULL;
	struct tl_err err = {0};
	char buf[1024], want[600];
	const char *path =
	    tl_test_put("bad-agent.json", "{\"agents\": {\n  \"a/b\": {\"url\": \"x\"}}}");

	TL_CHECK_INT(tl_rules_load(&rules, path, &err), -EINVAL);
	TL_CHECK(rules == NULL);
	snprintf(want, sizeof(want),
	         "%s:2:18: url \"x\" must start with ws:// or wss:// and name a host", path);
	TL_CHECK_STR(tl_err_str(&err, buf, sizeof(buf)), want);
}

/* The shipped examples load. */
static void test_examples(void)
{
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	char buf[1024];
	int rc = tl_config_load(&cfg, TL_SOURCE_DIR "/deploy/config.example.json", &err);

	if (rc < 0)
		fprintf(stderr, "  %s\n", tl_err_str(&err, buf, sizeof(buf)));
	TL_CHECK_INT(rc, 0);
	if (!cfg)
		return;
	TL_CHECK_INT(cfg->n_listen, 2);
	TL_CHECK(tl_rules_agent(cfg->rules, "echo") != NULL);
	TL_CHECK_STR(tl_rules_agent(cfg->rules, "echo")->url, "ws://127.0.0.1:8090/");
	tl_config_destroy(cfg);
}

/* sip.transfer_ringback: "us" (default), "eu", "none"; anything else is refused where it is. */
static void test_transfer_ringback(void)
{
	static const struct {
		const char *value;
		enum tl_tone_ringback want;
	} ok[] = {{"\"us\"", TL_TONE_RINGBACK_US},
	          {"\"eu\"", TL_TONE_RINGBACK_EU},
	          {"\"none\"", TL_TONE_RINGBACK_NONE}};
	struct tl_config *cfg = NULL;
	struct tl_err err = {0};
	char text[256];
	const char *path;

	tl_test_put("rules.json", good_rules);
	path = tl_test_put("config.json", "{\"rules\": \"rules.json\"}");
	TL_CHECK_INT(tl_config_load(&cfg, path, &err), 0);
	TL_CHECK_INT(cfg ? (int)cfg->transfer_ringback : -1, TL_TONE_RINGBACK_US);
	tl_config_destroy(cfg);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text),
		         "{\"rules\": \"rules.json\", \"sip\": {\"transfer_ringback\": %s}}",
		         ok[i].value);
		path = tl_test_put("config.json", text);
		cfg = NULL;
		TL_CHECK_INT(tl_config_load(&cfg, path, &err), 0);
		TL_CHECK_INT(cfg ? (int)cfg->transfer_ringback : -1, ok[i].want);
		tl_config_destroy(cfg);
	}
	expect_err("{\"rules\": \"rules.json\",\n \"sip\": {\"transfer_ringback\": \"uk\"}}", NULL,
	           "config.json", 2, 31,
	           "\"transfer_ringback\" must be \"us\", \"eu\" or \"none\"");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"transfer_ringback\": 1}}", NULL,
	           "config.json", 1, 54, "\"transfer_ringback\" must be");
	expect_err("{\"rules\": \"rules.json\", \"sip\": {\"transfer_ringback\": \"US\"}}", NULL,
	           "config.json", 1, 54, "\"transfer_ringback\" must be");
}

static int listen_urls(const char *const *spec, size_t n, char urls[][TL_CONFIG_URL_MAX], char *why)
{
	static struct tl_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	for (size_t i = 0; i < n; i++) {
		struct tl_listen *l = &cfg.listen[i];
		char tp[4];
		unsigned port;
		sscanf(spec[i], "%3[a-z] %63s %u", tp, l->host, &port);
		l->transport = strcmp(tp, "tls") == 0   ? TL_TRANSPORT_TLS
		               : strcmp(tp, "tcp") == 0 ? TL_TRANSPORT_TCP
		                                        : TL_TRANSPORT_UDP;
		l->port = (uint16_t)port;
	}
	cfg.n_listen = n;
	return tl_config_listen_urls(&cfg, urls, why, 200);
}

/* Groups: the first plain one first, then the first TLS one (nua's two), then the rest. */
static void test_listen_urls(void)
{
	static const char *const four[] = {"tls 127.0.0.1 5061", "udp ::1 5062",
	                                   "udp 127.0.0.1 5060", "tcp 127.0.0.1 5060",
	                                   "tls ::1 5063",       "tcp ::1 5062"};
	static const char *const usual[] = {"udp 0.0.0.0 5060", "tcp 0.0.0.0 5060", "udp :: 5060",
	                                    "tcp :: 5060",      "tls 0.0.0.0 5061", "tls :: 5061"};
	static const char *const overlap[] = {"tcp 0.0.0.0 5060", "tls 127.0.0.1 5060"};
	static const char *const other_family[] = {"udp 0.0.0.0 5060", "udp ::1 5060",
	                                           "tcp sip.example.com 5060"};
	static const char *const tls_udp[] = {"udp 10.0.0.1 5060", "tls 10.0.0.1 5060"};
	char urls[TL_CONFIG_MAX_LISTEN][TL_CONFIG_URL_MAX], why[200];

	TL_CHECK_INT(listen_urls(four, 6, urls, why), 4);
	TL_CHECK_STR(urls[0], "sip:[::1]:5062");
	TL_CHECK_STR(urls[1], "sips:127.0.0.1:5061");
	TL_CHECK_STR(urls[2], "sip:127.0.0.1:5060");
	TL_CHECK_STR(urls[3], "sips:[::1]:5063");
	TL_CHECK_INT(listen_urls(usual, 6, urls, why), 2);
	TL_CHECK_STR(urls[0], "sip:*:5060");
	TL_CHECK_STR(urls[1], "sips:*:5061");
	TL_CHECK_INT(listen_urls(overlap, 2, urls, why), -EINVAL);
	TL_CHECK(strstr(why, "overlap") != NULL);
	TL_CHECK_INT(listen_urls(other_family, 3, urls, why), 3);
	TL_CHECK_STR(urls[2], "sip:sip.example.com:5060;transport=tcp");
	TL_CHECK_INT(listen_urls(tls_udp, 2, urls, why), -EINVAL);
	TL_CHECK(strstr(why, "cannot carry both TLS and UDP") != NULL);
}

int main(void)
{
	int rc;

	if (tl_test_tmpdir("tl_test_config") < 0)
		return 1;
	TL_TEST_RUN(test_defaults);
	TL_TEST_RUN(test_full);
	TL_TEST_RUN(test_rules_path);
	TL_TEST_RUN(test_config_errors);
	TL_TEST_RUN(test_sip_errors);
	TL_TEST_RUN(test_agent_errors);
	TL_TEST_RUN(test_route_errors);
	TL_TEST_RUN(test_syntax_errors);
	TL_TEST_RUN(test_missing_files);
	TL_TEST_RUN(test_rules_load);
	TL_TEST_RUN(test_rules_load_errors);
	TL_TEST_RUN(test_examples);
	TL_TEST_RUN(test_transfer_ringback);
	TL_TEST_RUN(test_listen_urls);
	rc = TL_TEST_END();
	tl_test_tmpdir_remove();
	return rc;
}
