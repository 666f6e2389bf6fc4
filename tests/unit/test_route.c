/* Routing: conditions (metadata regexes, headers, source CIDRs, time windows in real zones,
 * max_calls), first-match order, params substitution, load-time errors with their exact
 * file:line:col, zone offsets around DST changes (and TZif parsing), ISO 8601 times. The clock
 * is fixed through tl_route_call.now. Needs the system tzdata (/usr/share/zoneinfo). The
 * `trunkline route` dry run is tested in test_route_cli.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "route_int.h"
#include "tl_test.h"
#include "trunkline/route.h"

#define AG "{\"agents\": {\"bot\": {\"url\": \"ws://h/\"}, \"human\": {\"url\": \"ws://p/\"}},\n"

static struct tl_rules *load(const char *text)
{
	struct tl_rules *rules = NULL;
	struct tl_err err = {0};
	char buf[1024];

	if (tl_rules_load(&rules, tl_test_put("rules.json", text), &err) < 0)
		fprintf(stderr, "  load failed: %s\n", tl_err_str(&err, buf, sizeof(buf)));
	TL_CHECK(rules != NULL);
	return rules;
}

static time_t at(const char *iso)
{
	time_t t = 0;

	TL_CHECK_INT(tl_route_iso_parse(iso, &t), 0);
	return t;
}

/* Name of the route a call with these properties takes, or "-" when none. */
static const char *pick_full(const struct tl_rules *rules, const json_t *meta,
                             const struct tl_route_header *hdrs, size_t n_hdrs,
                             const struct sockaddr *source, time_t now, const unsigned *active)
{
	struct tl_route_call call = {meta, hdrs, n_hdrs, source, now, active};
	const struct tl_route *r = tl_route_pick(rules, &call, NULL);

	return r ? r->name : "-";
}

static const char *pick_meta(const struct tl_rules *rules, const char *meta_text)
{
	json_t *meta = json_loads(meta_text, 0, NULL);
	static char name[64];

	TL_CHECK(meta != NULL);
	snprintf(name, sizeof(name), "%s", pick_full(rules, meta, NULL, 0, NULL, 0, NULL));
	json_decref(meta);
	return name;
}

static void test_fields(void)
{
	struct tl_rules *rules =
	    load(AG "\"routes\": [\n"
	            " {\"name\": \"f\", \"match\": {\"from\": \"^2001$\"}, "
	            "\"agent\": \"bot\"},\n"
	            " {\"name\": \"t\", \"match\": {\"to\": \"^\\\\+1415\"}, "
	            "\"agent\": \"bot\"},\n"
	            " {\"name\": \"n\", \"match\": {\"from_name\": \"Smith$\"}, "
	            "\"agent\": \"bot\"},\n"
	            " {\"name\": \"d\", \"match\": {\"diversion\": \"^30[0-9]{2}$\"}, "
	            "\"agent\": \"bot\"},\n"
	            " {\"name\": \"p\", \"match\": {\"pbx\": \"^(cucm|avaya)$\"}, "
	            "\"agent\": \"bot\"},\n"
	            " {\"name\": \"all\", \"match\": {\"from\": \"^1\", \"to\": \"^2\"},"
	            " \"agent\": \"bot\"}]}");

	if (!rules)
		return;
	TL_CHECK_INT(rules->n_routes, 6);
	TL_CHECK_STR(pick_meta(rules, "{\"from\": \"2001\", \"pbx\": \"3cx\"}"), "f");
	TL_CHECK_STR(pick_meta(rules, "{\"from\": \"20011\", \"pbx\": \"3cx\"}"), "-");
	TL_CHECK_STR(pick_meta(rules, "{\"to\": \"+14155550100\", \"pbx\": \"3cx\"}"), "t");
	TL_CHECK_STR(pick_meta(rules, "{\"to\": \"14155550100\", \"pbx\": \"3cx\"}"), "-");
	TL_CHECK_STR(pick_meta(rules, "{\"from_name\": \"Alice Smith\", \"pbx\": \"x\"}"), "n");
	TL_CHECK_STR(pick_meta(rules, "{\"diversion\": \"3000\", \"pbx\": \"x\"}"), "d");
	TL_CHECK_STR(pick_meta(rules, "{\"diversion\": \"300\", \"pbx\": \"x\"}"), "-");
	TL_CHECK_STR(pick_meta(rules, "{\"pbx\": \"avaya\"}"), "p");
	TL_CHECK_STR(pick_meta(rules, "{\"pbx\": \"avaya2\"}"), "-");
	/* Every condition of a route must hold. */
	TL_CHECK_STR(pick_meta(rules, "{\"from\": \"1\", \"to\": \"2\", \"pbx\": \"x\"}"), "all");
	TL_CHECK_STR(pick_meta(rules, "{\"from\": \"1\", \"to\": \"3\", \"pbx\": \"x\"}"), "-");
	tl_rules_destroy(rules);
}

/* An absent field is tested as "": only expressions matching the empty string accept it. */
static void test_absent(void)
{
	struct tl_rules *rules =
	    load(AG "\"routes\": [\n"
	            " {\"name\": \"any\", \"match\": {\"diversion\": \".\"}, "
	            "\"agent\": \"bot\"},\n"
	            " {\"name\": \"none\", \"match\": {\"diversion\": \"^$\"}, "
	            "\"agent\": \"bot\"}]}");

	if (!rules)
		return;
	TL_CHECK_STR(pick_meta(rules, "{\"diversion\": \"3000\"}"), "any");
	TL_CHECK_STR(pick_meta(rules, "{\"from\": \"3000\"}"), "none");
	TL_CHECK_STR(pick_full(rules, NULL, NULL, 0, NULL, 0, NULL), "none");
	tl_rules_destroy(rules);
}

static void test_headers(void)
{
	struct tl_rules *rules = load(AG "\"routes\": [\n"
	                                 " {\"name\": \"vip\", \"match\": {\"header\": "
	                                 "{\"x-vip\": \"^yes$\"}}, \"agent\": \"human\"},\n"
	                                 " {\"name\": \"from\", \"match\": {\"header\": "
	                                 "{\"From\": \"@10\\\\.1\\\\.\"}}, \"agent\": \"bot\"},\n"
	                                 " {\"name\": \"noq\", \"match\": {\"header\": "
	                                 "{\"X-Queue\": \"^$\"}}, \"agent\": \"bot\"}]}");
	struct tl_route_header two[] = {{"X-VIP", "no"}, {"x-Vip", "yes"}};
	struct tl_route_header one[] = {{"X-VIP", "no"}, {"X-Queue", "8000 Support"}};
	struct tl_route_header compact[] = {{"f", "<sip:2001@10.1.0.5>;tag=1"},
	                                    {"X-Queue", "8000"}};
	struct tl_route_header full[] = {{" FROM ", "<sip:2001@10.1.0.5>"}, {"X-Queue", "1"}};

	if (!rules)
		return;
	/* Any occurrence matching is enough; names compare case-insensitively. */
	TL_CHECK_STR(pick_full(rules, NULL, two, 2, NULL, 0, NULL), "vip");
	TL_CHECK_STR(pick_full(rules, NULL, one, 2, NULL, 0, NULL), "-");
	TL_CHECK_STR(pick_full(rules, NULL, two, 1, NULL, 0, NULL), "noq");
	/* Compact forms count as the full name. */
	TL_CHECK_STR(pick_full(rules, NULL, compact, 2, NULL, 0, NULL), "from");
	TL_CHECK_STR(pick_full(rules, NULL, full, 2, NULL, 0, NULL), "from");
	/* No header at all: tested as "". */
	TL_CHECK_STR(pick_full(rules, NULL, NULL, 0, NULL, 0, NULL), "noq");
	tl_rules_destroy(rules);
}

static const struct sockaddr *sa(const char *addr, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
	} else {
		TL_CHECK_INT(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
	}
	return (const struct sockaddr *)ss;
}

static const char *pick_src(const struct tl_rules *rules, const char *addr)
{
	struct sockaddr_storage ss;

	return pick_full(rules, NULL, NULL, 0, addr ? sa(addr, &ss) : NULL, 0, NULL);
}

static void test_source(void)
{
	struct tl_rules *rules = load(
	    AG "\"routes\": [\n"
	       " {\"name\": \"lan\", \"match\": {\"source\": [\"10.0.0.0/8\", \"172.16.0.0/12\", "
	       "\"192.0.2.7\"]}, \"agent\": \"bot\"},\n"
	       " {\"name\": \"v6\", \"match\": {\"source\": [\"2001:db8::/33\", \"::1\"]}, "
	       "\"agent\": \"bot\"},\n"
	       " {\"name\": \"one\", \"match\": {\"source\": \"198.51.100.1/32\"}, "
	       "\"agent\": \"bot\"},\n"
	       " {\"name\": \"mapped6\", \"match\": {\"source\": \"::ffff:0:0/96\"}, "
	       "\"agent\": \"bot\"}]}");

	if (!rules)
		return;
	TL_CHECK_STR(pick_src(rules, "10.200.3.4"), "lan");
	TL_CHECK_STR(pick_src(rules, "11.0.0.1"), "-");
	TL_CHECK_STR(pick_src(rules, "172.31.255.255"), "lan");
	TL_CHECK_STR(pick_src(rules, "172.32.0.0"), "-");
	TL_CHECK_STR(pick_src(rules, "192.0.2.7"), "lan");
	TL_CHECK_STR(pick_src(rules, "192.0.2.8"), "-");
	TL_CHECK_STR(pick_src(rules, "198.51.100.1"), "one");
	TL_CHECK_STR(pick_src(rules, "2001:db8:7fff::1"), "v6");
	TL_CHECK_STR(pick_src(rules, "2001:db8:8000::1"), "-");
	TL_CHECK_STR(pick_src(rules, "::1"), "v6");
	TL_CHECK_STR(pick_src(rules, "::2"), "-");
	/* IPv4-mapped sources match IPv4 CIDRs, and IPv6 ones covering them. */
	TL_CHECK_STR(pick_src(rules, "::ffff:10.1.2.3"), "lan");
	TL_CHECK_STR(pick_src(rules, "::ffff:192.0.2.7"), "lan");
	TL_CHECK_STR(pick_src(rules, "::ffff:8.8.8.8"), "mapped6");
	TL_CHECK_STR(pick_src(rules, NULL), "-");
	tl_rules_destroy(rules);
}

static void test_zone_offsets(void)
{
	struct tl_route_tz *tz = NULL;

	TL_CHECK_INT(tl_route_tz_load(&tz, "Europe/London"), 0);
	TL_CHECK_STR(tl_route_tz_name(tz), "Europe/London");
	/* 2026-03-29 01:00 UTC: GMT -> BST; 2026-10-25 01:00 UTC: back. */
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2026-03-29T00:59:59Z")), 0);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2026-03-29T01:00:00Z")), 3600);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2026-10-25T00:59:59Z")), 3600);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2026-10-25T01:00:00Z")), 0);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("1990-07-01T00:00:00Z")), 3600);
	/* Past the last transition (2037 in "fat" files, 2007 in "slim"): the footer rule. */
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2100-03-28T00:59:59Z")), 0);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2100-03-28T01:00:00Z")), 3600);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2100-10-31T00:59:59Z")), 3600);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2100-10-31T01:00:00Z")), 0);
	tl_route_tz_destroy(tz);

	TL_CHECK_INT(tl_route_tz_load(&tz, "America/New_York"), 0);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2026-03-08T06:59:59Z")), -18000);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2026-03-08T07:00:00Z")), -14400);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2099-11-01T05:59:59Z")), -14400);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2099-11-01T06:00:00Z")), -18000);
	tl_route_tz_destroy(tz);

	/* Southern hemisphere: DST spans the new year. */
	TL_CHECK_INT(tl_route_tz_load(&tz, "Australia/Sydney"), 0);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2100-01-15T00:00:00Z")), 39600);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2100-07-15T00:00:00Z")), 36000);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2026-04-04T15:59:59Z")), 39600);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2026-04-04T16:00:00Z")), 36000);
	tl_route_tz_destroy(tz);

	TL_CHECK_INT(tl_route_tz_load(&tz, "Asia/Kolkata"), 0);
	TL_CHECK_INT(tl_route_tz_offset(tz, at("2100-01-01T00:00:00Z")), 19800);
	tl_route_tz_destroy(tz);

	TL_CHECK_INT(tl_route_tz_offset(NULL, 12345), 0);
	TL_CHECK_STR(tl_route_tz_name(NULL), "UTC");
	TL_CHECK_INT(tl_route_tz_load(&tz, "Mars/Olympus_Mons"), -ENOENT);
	TL_CHECK_INT(tl_route_tz_load(&tz, "../../etc/passwd"), -ENOENT);
	TL_CHECK_INT(tl_route_tz_load(&tz, "/etc/passwd"), -ENOENT);
	TL_CHECK_INT(tl_route_tz_load(&tz, "Europe"), -ENOENT); /* a directory */
	TL_CHECK_INT(tl_route_tz_load(&tz, "tzdata.zi"), -EINVAL);
	TL_CHECK(tz == NULL);
}

static void put_bytes(const char *name, const unsigned char *b, size_t n)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", tl_test_dir, name);
	f = fopen(p, "wb");
	TL_CHECK(f != NULL);
	if (f) {
		TL_CHECK_INT(fwrite(b, 1, n, f), n);
		fclose(f);
	}
}

/* A hand-made version 1 TZif file (32-bit transitions, no footer), read via $TZDIR. */
static void test_tzif_v1(void)
{
	static const unsigned char v1[] = {
	    'T', 'Z', 'i', 'f', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 8,
	    /* transitions 1000000000, 1100000000 */
	    0x3b, 0x9a, 0xca, 0x00, 0x41, 0x90, 0xab, 0x00, 1, 0, /* types after them */
	    0, 0, 0, 0, 0, 0, 0, 0, 0x1c, 0x20, 1, 4,             /* STD +0, DST +7200 */
	    'S', 'T', 'D', 0, 'D', 'S', 'T', 0};
	struct tl_route_tz *tz = NULL;

	put_bytes("V1", v1, sizeof(v1));
	put_bytes("Short", v1, sizeof(v1) - 9);
	setenv("TZDIR", tl_test_dir, 1);
	TL_CHECK_INT(tl_route_tz_load(&tz, "V1"), 0);
	TL_CHECK_INT(tl_route_tz_offset(tz, 999999999), 0);
	TL_CHECK_INT(tl_route_tz_offset(tz, 1000000000), 7200);
	TL_CHECK_INT(tl_route_tz_offset(tz, 1099999999), 7200);
	TL_CHECK_INT(tl_route_tz_offset(tz, 1100000000), 0);
	tl_route_tz_destroy(tz);
	TL_CHECK_INT(tl_route_tz_load(&tz, "Short"), -EINVAL);
	TL_CHECK_INT(tl_route_tz_load(&tz, "Europe/London"), -ENOENT);
	unsetenv("TZDIR");
}

static void test_iso(void)
{
	time_t t = 0;

	TL_CHECK_INT(tl_route_iso_parse("1970-01-01T00:00:00Z", &t), 0);
	TL_CHECK_INT(t, 0);
	TL_CHECK_INT(at("2026-11-24T09:30:00Z"), 1795512600);
	TL_CHECK_INT(at("2026-11-24T10:30:00+01:00"), 1795512600);
	TL_CHECK_INT(at("2026-11-24T04:30-0500"), 1795512600);
	TL_CHECK_INT(at("2026-11-24 09:30"), 1795512600);
	TL_CHECK_INT(at("2026-11-24T09:30:00.250Z"), 1795512600);
	TL_CHECK_INT(at("1969-12-31T23:59:59Z"), -1);
	TL_CHECK_INT(tl_route_iso_parse("2026-02-29T00:00Z", &t), -EINVAL);
	TL_CHECK_INT(tl_route_iso_parse("2026-11-24", &t), -EINVAL);
	TL_CHECK_INT(tl_route_iso_parse("2026-11-24T25:00Z", &t), -EINVAL);
	TL_CHECK_INT(tl_route_iso_parse("2026-11-24T09:30:00Q", &t), -EINVAL);
	TL_CHECK_INT(tl_route_iso_parse("2026-11-24T09:30+1", &t), -EINVAL);
	TL_CHECK_INT(tl_route_iso_parse("tomorrow", &t), -EINVAL);
}

static const char *pick_at(const struct tl_rules *rules, const char *iso)
{
	return pick_full(rules, NULL, NULL, 0, NULL, at(iso), NULL);
}

static void test_time(void)
{
	struct tl_rules *rules = load(
	    AG
	    "\"routes\": [\n"
	    " {\"name\": \"office\", \"match\": {\"time\": {\"days\": [\"mon\", \"tue\", \"wed\", "
	    "\"thu\", \"Fri\"], \"start\": \"08:00\", \"end\": \"18:00\", \"tz\": "
	    "\"Europe/London\"}}, \"agent\": \"human\"},\n"
	    " {\"name\": \"night\", \"match\": {\"time\": {\"days\": [\"fri\"], \"start\": "
	    "\"22:00\", \"end\": \"06:00\"}}, \"agent\": \"bot\"},\n"
	    " {\"name\": \"dst\", \"match\": {\"time\": {\"start\": \"02:00\", \"end\": \"03:00\", "
	    "\"tz\": \"Europe/London\"}}, \"agent\": \"bot\"},\n"
	    " {\"name\": \"two\", \"match\": {\"time\": [{\"days\": [\"tue\"], \"end\": \"01:00\"},"
	    " {\"days\": [\"sat\"], \"start\": \"23:00\", \"tz\": \"Asia/Tokyo\"}]}, "
	    "\"agent\": \"bot\"}]}");

	if (!rules)
		return;
	/* 2026-11-24 is a Tuesday; London is on GMT in November, BST in July. */
	TL_CHECK_STR(pick_at(rules, "2026-11-24T09:30:00Z"), "office");
	TL_CHECK_STR(pick_at(rules, "2026-11-24T08:00:00Z"), "office");
	TL_CHECK_STR(pick_at(rules, "2026-11-24T07:59:59Z"), "-");
	TL_CHECK_STR(pick_at(rules, "2026-11-24T18:00:00Z"), "-");
	TL_CHECK_STR(pick_at(rules, "2026-11-28T10:00:00Z"), "-"); /* Saturday */
	TL_CHECK_STR(pick_at(rules, "2026-11-27T17:59:00Z"), "office");
	TL_CHECK_STR(pick_at(rules, "2026-07-14T07:30:00Z"), "office"); /* 08:30 BST */
	TL_CHECK_STR(pick_at(rules, "2026-07-14T06:59:00Z"), "-");
	TL_CHECK_STR(pick_at(rules, "2026-07-14T17:30:00Z"), "-"); /* 18:30 BST */
	/* Crossing midnight (UTC): from Friday 22:00 into Saturday 06:00 only. */
	TL_CHECK_STR(pick_at(rules, "2026-11-27T22:00:00Z"), "night");
	TL_CHECK_STR(pick_at(rules, "2026-11-27T23:59:59Z"), "night");
	TL_CHECK_STR(pick_at(rules, "2026-11-28T05:59:59Z"), "night");
	TL_CHECK_STR(pick_at(rules, "2026-11-28T06:00:00Z"), "-");
	TL_CHECK_STR(pick_at(rules, "2026-11-27T05:00:00Z"), "-"); /* Thursday night */
	TL_CHECK_STR(pick_at(rules, "2026-11-28T22:30:00Z"), "-"); /* Saturday */
	/* The London DST change: 01:00 UTC on 2026-03-29 is 02:00 BST. */
	TL_CHECK_STR(pick_at(rules, "2026-03-29T00:59:00Z"), "-");   /* 00:59 GMT */
	TL_CHECK_STR(pick_at(rules, "2026-03-29T01:30:00Z"), "dst"); /* 02:30 BST */
	TL_CHECK_STR(pick_at(rules, "2026-03-29T02:00:00Z"), "-");   /* 03:00 BST */
	TL_CHECK_STR(pick_at(rules, "2026-03-27T02:30:00Z"), "dst"); /* 02:30 GMT */
	TL_CHECK_STR(pick_at(rules, "2026-03-30T01:30:00Z"), "dst"); /* 02:30 BST */
	/* Several windows: any may match, each in its own zone. */
	TL_CHECK_STR(pick_at(rules, "2026-11-24T00:30:00Z"), "two"); /* Tue 00:30 UTC */
	TL_CHECK_STR(pick_at(rules, "2026-11-28T14:30:00Z"), "two"); /* Sat 23:30 Tokyo */
	TL_CHECK_STR(pick_at(rules, "2026-11-28T13:30:00Z"), "-");   /* Sat 22:30 Tokyo */
	tl_rules_destroy(rules);
}

static void test_max_calls_and_order(void)
{
	struct tl_rules *rules = load(AG "\"routes\": [\n"
	                                 " {\"name\": \"a\", \"match\": {\"max_calls\": 2}, "
	                                 "\"agent\": \"bot\"},\n"
	                                 " {\"name\": \"b\", \"match\": {\"to\": \"1\"}, "
	                                 "\"agent\": \"bot\"},\n"
	                                 " {\"name\": \"c\", \"agent\": \"human\"},\n"
	                                 " {\"name\": \"d\", \"agent\": \"human\"}]}");
	unsigned active[4] = {0, 0, 0, 0};
	json_t *meta = json_pack("{s:s}", "to", "100");

	if (!rules)
		return;
	TL_CHECK_STR(pick_full(rules, meta, NULL, 0, NULL, 0, active), "a");
	active[0] = 1;
	TL_CHECK_STR(pick_full(rules, meta, NULL, 0, NULL, 0, active), "a");
	active[0] = 2;
	TL_CHECK_STR(pick_full(rules, meta, NULL, 0, NULL, 0, active), "b");
	active[0] = 7;
	TL_CHECK_STR(pick_full(rules, NULL, NULL, 0, NULL, 0, active), "c");
	TL_CHECK_STR(pick_full(rules, NULL, NULL, 0, NULL, 0, NULL), "a");
	TL_CHECK(tl_route_pick(NULL, NULL, NULL) == NULL);
	json_decref(meta);
	tl_rules_destroy(rules);

	rules = load(AG "\"routes\": [{\"match\": {\"to\": \"^1\"}, \"reject\": 486}]}");
	if (!rules)
		return;
	TL_CHECK_STR(pick_meta(rules, "{\"to\": \"2\"}"), "-");
	TL_CHECK_STR(pick_meta(rules, "{\"to\": \"1\"}"), "routes[0]");
	tl_rules_destroy(rules);
	rules = load(AG "\"routes\": []}");
	TL_CHECK_STR(pick_meta(rules, "{\"to\": \"1\"}"), "-");
	tl_rules_destroy(rules);
}

static void test_targets(void)
{
	struct tl_rules *rules = load(
	    AG "\"routes\": [\n"
	       " {\"name\": \"after-hours\", \"agent\": \"bot\", \"fallback\": \"sip:r@pbx\"},\n"
	       " {\"name\": \"vip\", \"forward\": \"sip:+14155550100@pbx\"},\n"
	       " {\"forward\": \"tel:+1\", \"forward_method\": \"refer\"},\n"
	       " {\"agent\": \"human\", \"fallback\": \"sips:q@pbx\", \"forward_method\": "
	       "\"refer\"},\n"
	       " {\"name\": \"blocked\", \"reject\": 603},\n"
	       " {\"agent\": \"bot\", \"fallback\": \"sip:d@pbx\", \"forward_method\": "
	       "\"bridge\"}]}");
	const struct tl_route *r;

	if (!rules)
		return;
	TL_CHECK_INT(rules->n_routes, 6);
	TL_CHECK_INT(json_array_size(rules->routes), 6);
	r = &rules->route_tab[0];
	TL_CHECK_INT(r->index, 0);
	TL_CHECK_INT(r->kind, TL_ROUTE_AGENT);
	TL_CHECK(r->agent == tl_rules_agent(rules, "bot"));
	TL_CHECK_STR(r->fallback, "sip:r@pbx");
	TL_CHECK(r->forward == NULL);
	TL_CHECK_INT(r->method, TL_ROUTE_REDIRECT);
	TL_CHECK(r->match == NULL);
	TL_CHECK_INT(r->max_calls, 0);
	TL_CHECK(json_is_object(r->params) && json_object_size(r->params) == 0);
	r = &rules->route_tab[1];
	TL_CHECK_INT(r->kind, TL_ROUTE_FORWARD);
	TL_CHECK_STR(r->forward, "sip:+14155550100@pbx");
	TL_CHECK(r->agent == NULL);
	TL_CHECK_INT(r->method, TL_ROUTE_REDIRECT);
	r = &rules->route_tab[2];
	TL_CHECK_STR(r->name, "routes[2]");
	TL_CHECK_INT(r->method, TL_ROUTE_REFER);
	r = &rules->route_tab[3];
	TL_CHECK(r->agent == tl_rules_agent(rules, "human"));
	TL_CHECK_STR(r->fallback, "sips:q@pbx");
	TL_CHECK_INT(r->method, TL_ROUTE_REFER);
	r = &rules->route_tab[4];
	TL_CHECK_INT(r->index, 4);
	TL_CHECK_INT(r->kind, TL_ROUTE_REJECT);
	TL_CHECK_INT(r->reject, 603);
	r = &rules->route_tab[5];
	TL_CHECK_STR(r->fallback, "sip:d@pbx");
	TL_CHECK_INT(r->method, TL_ROUTE_BRIDGE);
	tl_rules_destroy(rules);
}

static void test_params(void)
{
	struct tl_rules *rules =
	    load("{\"agents\": {\"bot\": {\"url\": \"ws://h/\", \"params\": {\"lang\": \"en\", "
	         "\"who\": \"${from_name} <${from}>\", \"price\": \"$$5 ${nope}$\", "
	         "\"pbx\": \"mine\"}}},\n"
	         " \"routes\": [{\"agent\": \"bot\", \"params\": {\"lang\": \"de\", "
	         "\"tenant\": \"${X-Tenant}\"}},\n"
	         "            {\"reject\": 403, \"params\": {\"a\": \"${to}\"}}]}");
	json_t *meta = json_pack("{s:s, s:s, s:s, s:s}", "from", "2001", "from_name", "Alice",
	                         "pbx", "cucm", "X-Tenant", "acme");
	json_t *p;
	char *s;

	if (!rules)
		return;
	p = tl_route_params(&rules->route_tab[0], meta);
	TL_CHECK(p != NULL);
	TL_CHECK_INT(json_object_size(p), 4);
	TL_CHECK_STR(json_string_value(json_object_get(p, "lang")), "de");
	TL_CHECK_STR(json_string_value(json_object_get(p, "who")), "Alice <2001>");
	TL_CHECK_STR(json_string_value(json_object_get(p, "price")), "$5 $");
	TL_CHECK_STR(json_string_value(json_object_get(p, "tenant")), "acme");
	TL_CHECK(json_object_get(p, "pbx") == NULL); /* the real metadata key wins */
	json_decref(p);
	p = tl_route_params(&rules->route_tab[0], NULL);
	TL_CHECK_STR(json_string_value(json_object_get(p, "who")), " <>");
	TL_CHECK_STR(json_string_value(json_object_get(p, "pbx")), "mine");
	json_decref(p);
	p = tl_route_params(&rules->route_tab[1], meta);
	TL_CHECK_INT(json_object_size(p), 1);
	TL_CHECK_STR(json_string_value(json_object_get(p, "a")), "");
	json_decref(p);
	s = tl_route_expand("$${from}${from}$", meta);
	TL_CHECK_STR(s, "${from}2001$");
	free(s);
	s = tl_route_expand("", NULL);
	TL_CHECK_STR(s, "");
	free(s);
	json_decref(meta);
	tl_rules_destroy(rules);
}

static void expect_err(const char *text, int line, int col, const char *msg)
{
	struct tl_rules *rules = NULL;
	struct tl_err err = {0};
	int before = tl_test_failures;
	char buf[1024];
	const char *path = tl_test_put("bad.json", text);

	TL_CHECK_INT(tl_rules_load(&rules, path, &err), -EINVAL);
	TL_CHECK(rules == NULL);
	TL_CHECK_STR(err.file, path);
	TL_CHECK_INT(err.line, line);
	TL_CHECK_INT(err.col, col);
	TL_CHECK(strstr(err.msg, msg) != NULL);
	if (tl_test_failures != before)
		fprintf(stderr, "  got \"%s\" for:\n%s\n", tl_err_str(&err, buf, sizeof(buf)),
		        text);
	tl_rules_destroy(rules);
}

#define R AG "\"routes\": [\n"

static void test_errors(void)
{
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"from\": \"((\"}}]}", 3, 38,
	           "bad regular expression \"((\": Unmatched ( or \\(");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"to\": \"+4930\"}}]}", 3, 36,
	           "bad regular expression \"+4930\": Invalid preceding regular expression (a "
	           "literal + is written \"\\\\+\" in JSON)");
	expect_err(R "  {\"agent\": \"bot\",\n   \"match\": {\"pbx\": 1}}]}", 4, 21,
	           "expected a string");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"header\": {\"X-A\": \"[\"}}}]}", 3, 48,
	           "bad regular expression \"[\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"header\": {\"X A\": \"a\"}}}]}", 3, 41,
	           "bad header name \"X A\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"header\": [\"X-A\"]}}]}", 3, 40,
	           "expected an object");
	expect_err(
	    R "  {\"agent\": \"bot\", \"match\": {\"source\": [\"10.0.0.0/8\", \"10.1/8\"]}}]}", 3,
	    55, "bad CIDR \"10.1/8\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"source\": \"10.0.0.0/33\"}}]}", 3, 40,
	           "bad CIDR \"10.0.0.0/33\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"source\": \"::/129\"}}]}", 3, 40,
	           "bad CIDR");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"source\": \"10.0.0.0/\"}}]}", 3, 40,
	           "bad CIDR");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"source\": []}}]}", 3, 40,
	           "\"source\" must list at least one CIDR");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"source\": [7]}}]}", 3, 41,
	           "expected a string");
	expect_err(
	    R "  {\"agent\": \"bot\", \"match\": {\"time\": {\"days\": [\"mon\", \"fry\"]}}}]}", 3,
	    55, "unknown day \"fry\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": {\"days\": []}}}]}", 3, 47,
	           "\"days\" must list at least one day");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": {\"start\": \"8:00\"}}}]}", 3,
	           48, "bad time \"8:00\": expected HH:MM, 00:00 to 23:59");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": {\"start\": \"24:00\"}}}]}", 3,
	           48, "bad time \"24:00\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": {\"end\": \"18:60\"}}}]}", 3, 46,
	           "bad time \"18:60\": expected HH:MM, 00:00 to 24:00");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": {\"start\": \"08:00\",\n"
	             "    \"end\": \"08:00\"}}}]}",
	           4, 12, "\"end\" must differ from \"start\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": {\"tz\": \"Europe/Londn\"}}}]}",
	           3, 45, "unknown time zone \"Europe/Londn\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": {\"tz\": \"../etc/passwd\"}}}]}",
	           3, 45, "unknown time zone");
	expect_err(R
	           "  {\"agent\": \"bot\", \"match\": {\"time\": {\"start\": \"08:00\", \"zone\": "
	           "\"UTC\"}}}]}",
	           3, 57, "unknown key \"zone\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": [{}, 3]}}]}", 3, 43,
	           "expected an object");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": \"08-18\"}}]}", 3, 38,
	           "expected an object or an array");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"time\": []}}]}", 3, 38,
	           "\"time\" must hold at least one window");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"form\": \"1\"}}]}", 3, 30,
	           "unknown key \"form\"");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"max_calls\": 0}}]}", 3, 43,
	           "\"max_calls\" must be a positive integer");
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"max_calls\": 1.5}}]}", 3, 43,
	           "\"max_calls\" must be a positive integer");
	expect_err(R "  {\"reject\": 700}]}", 3, 14,
	           "\"reject\" must be an integer between 400 and 699");
	expect_err(R "  {\"reject\": 399}]}", 3, 14, "between 400 and 699");
	expect_err(R "  {\"forward\": \"mailto:x@y\"}]}", 3, 15,
	           "\"forward\" must be a sip:, sips: or tel: URI");
	expect_err(R "  {\"agent\": \"bot\", \"fallback\": \"http://x\"}]}", 3, 32,
	           "\"fallback\" must be a sip:, sips: or tel: URI");
	expect_err(R "  {\"agent\": \"bot\", \"forward_method\": \"refer\"}]}", 3, 20,
	           "\"forward_method\" needs \"forward\" or \"fallback\"");
	expect_err(R "  {\"reject\": 486, \"forward_method\": \"redirect\"}]}", 3, 19,
	           "\"forward_method\" needs \"forward\" or \"fallback\"");
	expect_err(R "  {\"reject\": 486, \"fallback\": \"sip:a@b\"}]}", 3, 19,
	           "\"fallback\" only applies to a route with \"agent\"");
	expect_err(R "  {\"agent\": \"nobody\"}]}", 3, 13, "unknown agent \"nobody\"");
	expect_err(R "  {\"agent\": \"bot\", \"params\": {\"a\": \"${from\"}}]}", 3, 36,
	           "bad substitution in \"${from\"");
	expect_err(R "  {\"agent\": \"bot\", \"params\": {\"a\": \"x ${} y\"}}]}", 3, 36,
	           "bad substitution");
	expect_err("{\"agents\": {\"bot\": {\"url\": \"ws://h/\",\n"
	           "  \"params\": {\"k\": \"${a${b}}\"}}}}",
	           2, 19, "bad substitution in \"${a${b}}\"");
	/* A later route's error is found after earlier routes compiled: nothing leaks. */
	expect_err(
	    R "  {\"agent\": \"bot\", \"match\": {\"from\": \"^1\", \"header\": {\"X-A\": \"a\"},"
	      " \"source\": \"::1\", \"time\": {\"tz\": \"Europe/London\"}}},\n"
	      "  {\"agent\": \"bot\", \"match\": {\"time\": {\"tz\": \"Nowhere/X\"}}}]}",
	    4, 45, "unknown time zone \"Nowhere/X\"");
}

/* Repetition counts multiply what regcomp builds: past 1000 positions a regex is refused before
 * regcomp runs ("[a-z]{1,32767}" alone took glibc over 20 s and 1.7 GB). */
static void test_rx_size(void)
{
	static const char *const ok[] = {"^(\\\\+?1)?(9005550[0-9]{3}|2025550199)$",
	                                 "[0-9]{1,1000}",
	                                 "[[:digit:]]{1000}",
	                                 "[]x{}]{999}a",
	                                 "(a|b){1,500}",
	                                 "x{2,}{333}",
	                                 "\\\\{{1000}"};
	static const char *const big[] = {"[0-9]{1,1001}", "(a|b){1,501}", "a+{501}",
	                                  "((a{1,100}){1,100}){1,100}", "(.{1,40}x){25}"};
	char text[512];
	double t0 = (double)clock();

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text),
		         R "  {\"agent\": \"bot\", \"match\": {\"from\": \"%s\"}}]}", ok[i]);
		tl_rules_destroy(load(text));
	}
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		char msg[200];

		snprintf(text, sizeof(text),
		         R "  {\"agent\": \"bot\", \"match\": {\"from\": \"%s\"}}]}", big[i]);
		snprintf(msg, sizeof(msg),
		         "regular expression \"%s\" is too large: its repetition counts expand it "
		         "past 1000 positions",
		         big[i]);
		expect_err(text, 3, 38, msg);
	}
	expect_err(R "  {\"agent\": \"bot\", \"match\": {\"header\": {\"X-A\": "
	             "\"^[a-z]{1,32767}(x|y|z|0123456789abcdefghijklmnopqrstuvwxyz)$\"}}}]}",
	           3, 48,
	           "regular expression \"^[a-z]{1,32767}(x|y|z|0123456789abcdefgh...\" is too "
	           "large");
	TL_CHECK((double)clock() - t0 < 0.5 * CLOCKS_PER_SEC);
}

struct trace_log {
	char text[2048];
};

static void on_trace(void *arg, const struct tl_route *r, const char *why)
{
	struct trace_log *log = arg;
	size_t n = strlen(log->text);

	snprintf(log->text + n, sizeof(log->text) - n, "%s: %s\n", r->name, why ? why : "MATCH");
}

static void test_trace(void)
{
	struct tl_rules *rules = load(
	    AG
	    "\"routes\": [\n"
	    " {\"name\": \"after-hours\", \"match\": {\"time\": {\"days\": [\"mon\", \"tue\", "
	    "\"wed\", \"thu\", \"fri\"], \"start\": \"18:00\", \"end\": \"08:00\", \"tz\": "
	    "\"Europe/London\"}}, \"agent\": \"bot\"},\n"
	    " {\"name\": \"weekend\", \"match\": {\"time\": [{\"days\": [\"sat\", \"sun\"]}, "
	    "{\"days\": [\"mon\", \"wed\", \"fri\"], \"end\": \"01:00\"}]}, \"agent\": \"bot\"},\n"
	    " {\"name\": \"vip\", \"match\": {\"header\": {\"X-VIP\": \"^yes$\"}}, "
	    "\"forward\": \"sip:+14155550100@pbx\"},\n"
	    " {\"name\": \"q\", \"match\": {\"header\": {\"X-Q\": \"^1$\"}}, \"agent\": \"bot\"},\n"
	    " {\"name\": \"div\", \"match\": {\"diversion\": \"^3\"}, \"agent\": \"bot\"},\n"
	    " {\"name\": \"fr\", \"match\": {\"from\": \"^9\"}, \"agent\": \"bot\"},\n"
	    " {\"name\": \"lan\", \"match\": {\"source\": [\"10.0.0.0/8\", \"::1\"]}, "
	    "\"agent\": \"bot\"},\n"
	    " {\"name\": \"busy\", \"match\": {\"max_calls\": 3}, \"agent\": \"bot\"},\n"
	    " {\"name\": \"default\", \"agent\": \"bot\"}]}");
	struct trace_log log = {""};
	struct tl_route_trace trace = {on_trace, &log};
	struct tl_route_header hdrs[] = {{"X-VIP", "no"}};
	struct sockaddr_storage ss;
	unsigned active[9] = {0, 0, 0, 0, 0, 0, 0, 3, 0};
	json_t *meta = json_pack("{s:s}", "from", "2001");
	struct tl_route_call call = {
	    meta, hdrs, 1, sa("192.0.2.1", &ss), at("2026-11-24T09:30:00Z"), active};
	const struct tl_route *r;

	if (!rules)
		return;
	r = tl_route_pick(rules, &call, &trace);
	TL_CHECK_STR(r ? r->name : NULL, "default");
	TL_CHECK_STR(log.text,
	             "after-hours: time 09:30 Tue Europe/London is outside 18:00-08:00 mon..fri\n"
	             "weekend: time 09:30 Tue UTC is outside 00:00-24:00 sat,sun; 09:30 Tue UTC is "
	             "outside 00:00-01:00 mon,wed,fri\n"
	             "vip: header X-VIP: no header matches ^yes$\n"
	             "q: header X-Q: absent (does not match ^1$)\n"
	             "div: diversion (absent) does not match ^3\n"
	             "fr: from \"2001\" does not match ^9\n"
	             "lan: source 192.0.2.1 is not in 10.0.0.0/8, ::1\n"
	             "busy: max_calls: 3 call(s) active, limit 3\n"
	             "default: MATCH\n");
	log.text[0] = '\0';
	call.source = NULL;
	call.active = NULL;
	call.now = at("2026-11-24T19:00:00Z");
	r = tl_route_pick(rules, &call, &trace);
	TL_CHECK_STR(r ? r->name : NULL, "after-hours");
	TL_CHECK_STR(log.text, "after-hours: MATCH\n");
	json_decref(meta);
	tl_rules_destroy(rules);
}

static char lint_out[1024];
static void lint_warn(void *arg, const char *msg)
{
	(*(int *)arg)++;
	snprintf(lint_out + strlen(lint_out), sizeof(lint_out) - strlen(lint_out), "%s\n", msg);
}

/* Warnings for settings that load but do not do what was meant. */
static void test_lint(void)
{
	struct tl_rules *rules =
	    load("{\"agents\": {\"a\": {\"url\": \"ws://127.0.0.1:1/\"}}, \"routes\": ["
	         "{\"name\": \"busy\", \"match\": {\"to\": \"^1$\"}, \"reject\": 486},"
	         "{\"name\": \"gone\", \"match\": {\"to\": \"^2$\"}, \"reject\": 600},"
	         "{\"name\": \"ok\", \"match\": {\"to\": \"^3$\"}, \"reject\": 503},"
	         "{\"name\": \"tel\", \"match\": {\"to\": \"^4$\"}, \"forward\": \"tel:+1555\"},"
	         "{\"name\": \"fb\", \"agent\": \"a\", \"fallback\": \"tel:+1666\"},"
	         "{\"name\": \"br\", \"agent\": \"a\", \"fallback\": \"tel:+1777\","
	         " \"forward_method\": \"bridge\"}]}");
	int n = 0;

	TL_CHECK(rules != NULL);
	lint_out[0] = '\0';
	TL_CHECK_INT(tl_rules_lint(rules, lint_warn, &n), 4);
	TL_CHECK_INT(n, 4);
	TL_CHECK(strstr(lint_out, "route \"busy\": reject 486") != NULL);
	TL_CHECK(strstr(lint_out, "route \"gone\": reject 600") != NULL);
	TL_CHECK(strstr(lint_out, "\"ok\"") == NULL);
	TL_CHECK(strstr(lint_out, "\"br\"") == NULL); /* a bridge calls tel: numbers itself */
	TL_CHECK(strstr(lint_out, "route \"tel\": forward \"tel:+1555\" is a tel: URI") != NULL);
	TL_CHECK(strstr(lint_out, "route \"fb\": fallback \"tel:+1666\" is a tel: URI") != NULL);
	tl_rules_destroy(rules);
	TL_CHECK_INT(tl_rules_lint(NULL, lint_warn, &n), 0);
}

int main(void)
{
	int rc;

	if (tl_test_tmpdir("tl_test_route") < 0)
		return 1;
	TL_TEST_RUN(test_fields);
	TL_TEST_RUN(test_absent);
	TL_TEST_RUN(test_headers);
	TL_TEST_RUN(test_source);
	TL_TEST_RUN(test_zone_offsets);
	TL_TEST_RUN(test_tzif_v1);
	TL_TEST_RUN(test_iso);
	TL_TEST_RUN(test_time);
	TL_TEST_RUN(test_max_calls_and_order);
	TL_TEST_RUN(test_targets);
	TL_TEST_RUN(test_params);
	TL_TEST_RUN(test_errors);
	TL_TEST_RUN(test_rx_size);
	TL_TEST_RUN(test_trace);
	TL_TEST_RUN(test_lint);
	rc = TL_TEST_END();
	tl_test_tmpdir_remove();
	return rc;
}
