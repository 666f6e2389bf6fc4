/* For the targets whose API takes a path (tl_rules_load, tl_config_load; zones via $TZDIR):
 * a private temporary directory made once per process and removed at exit, files written into
 * it, and a routing pass over loaded rules so compiled routes are exercised, not only loaded.
 * include/trunkline/config_doc.h has no in-memory loader (tl_config_doc_open reads a file). */
#ifndef TL_FUZZ_FILES_H
#define TL_FUZZ_FILES_H

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "fuzz.h"
#include "trunkline/config.h"
#include "trunkline/meta.h"
#include "trunkline/route.h"

static char fz_dir[256];
static char fz_made[4][320];
static int fz_n_made;

static inline void fz_cleanup(void)
{
	for (int i = 0; i < fz_n_made; i++)
		remove(fz_made[i]);
	if (fz_dir[0]) {
		char sub[300];

		snprintf(sub, sizeof(sub), "%s/Fuzz", fz_dir); /* fuzz_tzif's zone directory */
		rmdir(sub);
		rmdir(fz_dir);
	}
}

/* dir/name, created (or truncated) with len bytes of data; the path is static storage. */
static inline const char *fz_write(const char *name, const void *data, size_t len)
{
	char path[320];
	FILE *f;

	if (!fz_dir[0]) {
		const char *tmp = getenv("TMPDIR");

		snprintf(fz_dir, sizeof(fz_dir), "%s/tl-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		FUZZ_CHECK(mkdtemp(fz_dir) != NULL);
		atexit(fz_cleanup);
	}
	snprintf(path, sizeof(path), "%s/%s", fz_dir, name);
	for (int i = 0; i < fz_n_made; i++)
		if (strcmp(fz_made[i], path) == 0)
			goto write;
	FUZZ_CHECK(fz_n_made < 4);
	snprintf(fz_made[fz_n_made++], sizeof(fz_made[0]), "%s", path);
write:
	f = fopen(path, "wb");
	FUZZ_CHECK(f != NULL);
	FUZZ_CHECK(len == 0 || fwrite(data, 1, len, f) == len);
	FUZZ_CHECK(fclose(f) == 0);
	for (int i = 0; i < fz_n_made; i++)
		if (strcmp(fz_made[i], path) == 0)
			return fz_made[i];
	return NULL;
}

static inline void fz_trace(void *arg, const struct tl_route *route, const char *why)
{
	size_t *calls = arg;

	FUZZ_CHECK(route && route->name);
	FUZZ_CHECK(!why || strlen(why) < 1024);
	(*calls)++;
}

/* Routes a CUCM-like call at a few times and sources, with a trace and without, and builds the
 * params of the route taken. */
static inline void fz_route_calls(const struct tl_rules *rules)
{
	static const char invite[] = "INVITE sip:+14155550123@10.20.0.5:5060 SIP/2.0\r\n"
	                             "From: \"Alice Smith\" <sip:2001@10.10.0.10>;tag=1\r\n"
	                             "To: <sip:+14155550123@10.20.0.5>\r\n"
	                             "Call-ID: c81e7280@10.10.0.10\r\n"
	                             "User-Agent: Cisco-CUCM14.0\r\n"
	                             "Diversion: <sip:3000@10.10.0.10>;reason=unconditional\r\n"
	                             "X-VIP: yes\r\n"
	                             "X-Queue: 8000 Support\r\n\r\n";
	static const struct tl_route_header hdrs[] = {
	    {"From", "\"Alice Smith\" <sip:2001@10.10.0.10>;tag=1"},
	    {"t", "<sip:+14155550123@10.20.0.5>"},
	    {"X-VIP", "yes"},
	    {" x-queue ", "8000 Support"},
	    {"History-Info", "<sip:5000@avaya;cause%3D302>;index=1"},
	};
	static const time_t times[] = {0,
	                               1795512600 /* 2026-11-24T09:30Z */,
	                               1795548600 /* 19:30Z */,
	                               2147483647,
	                               4102444800 /* 2100 */,
	                               -86400};
	struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(5060)};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	const struct sockaddr *sources[] = {NULL, (const struct sockaddr *)&v4,
	                                    (const struct sockaddr *)&v6};
	unsigned active[64];
	json_t *meta = NULL;
	size_t calls;

	v4.sin_addr.s_addr = htonl(0x0a0a000a); /* 10.10.0.10 */
	memcpy(v6.sin6_addr.s6_addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff\x0a\x0a\x00\x0a", 16);
	FUZZ_CHECK(tl_meta_from_text(&meta, invite, sizeof(invite) - 1) == 0);
	for (size_t i = 0; i < 64; i++)
		active[i] = (unsigned)(i * 7 % 30);
	for (size_t t = 0; t < sizeof(times) / sizeof(times[0]); t++) {
		struct tl_route_call call = {
		    meta,           hdrs,     sizeof(hdrs) / sizeof(hdrs[0]),
		    sources[t % 3], times[t], rules->n_routes <= 64 ? active : NULL};
		struct tl_route_trace trace = {fz_trace, &calls};
		const struct tl_route *a, *b;
		json_t *params;

		calls = 0;
		a = tl_route_pick(rules, &call, &trace);
		b = tl_route_pick(rules, &call, NULL);
		FUZZ_CHECK(a == b);
		FUZZ_CHECK(calls <= rules->n_routes);
		if (!a)
			continue;
		FUZZ_CHECK(a >= rules->route_tab && a < rules->route_tab + rules->n_routes);
		params = tl_route_params(a, t & 1 ? meta : NULL);
		FUZZ_CHECK(json_is_object(params));
		json_decref(params);
	}
	json_decref(meta);
}

#endif
