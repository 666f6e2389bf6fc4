/* Allocation-failure injection for test_oom.c (one includer: everything here is static or a
 * link-time wrapper). The executable links with -Wl,--wrap=malloc,calloc,realloc,strdup,strndup,
 * free and --wrap=json_loadb,json_loads,json_load_callback (tests/CMakeLists.txt): every allocation
 * our static libraries make goes through __wrap_*, which counts it, fails the k-th on demand and
 * keeps the live block in a table; main() routes Jansson's allocations to the same functions with
 * json_set_alloc_funcs(__wrap_malloc, __wrap_free). Single-threaded. */
#ifndef TL_OOM_H
#define TL_OOM_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <jansson.h>

#include "tl_test.h"

/* ---- the allocator wrappers ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void __wrap_free(void *p);

/* volatile: the compiler must not move these stores across calls it knows as malloc. */
static volatile struct {
	int armed;        /* counting allocations of the code under test */
	long count;       /* allocations seen while armed */
	long fail_at;     /* fail the count'th one (0: none) */
	long failed;      /* allocations refused */
	long swallowed;   /* failures Jansson's parser ignored (see __wrap_json_loadb) */
	int parse_failed; /* Jansson's parser gave up because of the failure */
} oom;

/* Live blocks from the wrapped allocators: open addressing, linear probing. */
#define LIVE_CAP (1u << 16)
static void *live[LIVE_CAP];
static size_t n_live;

static size_t slot_of(const void *p)
{
	uint64_t x = (uint64_t)(uintptr_t)p;

	x ^= x >> 29;
	x *= 0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 40) & (LIVE_CAP - 1);
}

static void live_add(void *p)
{
	size_t i = slot_of(p);

	if (n_live >= LIVE_CAP / 2) {
		fprintf(stderr, "test_oom: live table full\n");
		abort();
	}
	while (live[i])
		i = (i + 1) & (LIVE_CAP - 1);
	live[i] = p;
	n_live++;
}

/* Removes p; 0 when it was not ours (allocated inside a shared library). */
static int live_del(void *p)
{
	size_t i = slot_of(p), j;

	while (live[i] != p) {
		if (!live[i])
			return 0;
		i = (i + 1) & (LIVE_CAP - 1);
	}
	live[i] = NULL;
	n_live--;
	/* Backward shift: move later entries of the cluster into the hole where they belong. */
	for (j = (i + 1) & (LIVE_CAP - 1); live[j]; j = (j + 1) & (LIVE_CAP - 1)) {
		size_t home = slot_of(live[j]);
		if (((j - home) & (LIVE_CAP - 1)) >= ((j - i) & (LIVE_CAP - 1))) {
			live[i] = live[j];
			live[j] = NULL;
			i = j;
		}
	}
	return 1;
}

static int refuse(void)
{
	if (!oom.armed)
		return 0;
	if (++oom.count != oom.fail_at)
		return 0;
	oom.failed++;
	return 1;
}

void *__wrap_malloc(size_t n)
{
	void *p = refuse() ? NULL : __real_malloc(n);

	if (p)
		live_add(p);
	return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
	void *p = refuse() ? NULL : __real_calloc(n, size);

	if (p)
		live_add(p);
	return p;
}

void *__wrap_realloc(void *p, size_t n)
{
	void *q;
	int ours;

	if (!p)
		return __wrap_malloc(n);
	if (refuse())
		return NULL; /* p stays valid, as with a real failure */
	ours = live_del(p);
	q = __real_realloc(p, n);
	if (q && ours)
		live_add(q);
	else if (!q && ours && n != 0)
		live_add(p); /* a real failure: p is still live */
	return q;
}

char *__wrap_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = __wrap_malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}

char *__wrap_strndup(const char *s, size_t n)
{
	size_t k = strnlen(s, n);
	char *p = __wrap_malloc(k + 1);

	if (p) {
		memcpy(p, s, k);
		p[k] = '\0';
	}
	return p;
}

void __wrap_free(void *p)
{
	if (p)
		live_del(p);
	__real_free(p);
}

/* Jansson 2.14 ignores a failed allocation while it grows its lexer's token buffer and goes on
 * with a byte missing ("example.com" parses as "exmple.com"): akheron/jansson#362, open upstream
 * (PR #747 proposes the fix). Our code cannot see that, so the wrapper makes such a parse fail
 * as a fixed Jansson would, and the run tests our error path instead; the summary counts them. */
json_t *__real_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error);
json_t *__real_json_loads(const char *text, size_t flags, json_error_t *error);
json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error);
json_t *__wrap_json_loads(const char *text, size_t flags, json_error_t *error);
json_t *__real_json_load_callback(json_load_callback_t callback, void *data, size_t flags,
                                  json_error_t *error);
json_t *__wrap_json_load_callback(json_load_callback_t callback, void *data, size_t flags,
                                  json_error_t *error);

static json_t *unswallow(json_t *root, long failed_before, json_error_t *error)
{
	if (oom.failed == failed_before)
		return root;
	oom.parse_failed = 1;
	if (!root)
		return NULL;
	json_decref(root);
	oom.swallowed++;
	if (error) {
		memset(error, 0, sizeof(*error));
		error->line = error->column = error->position = -1;
		snprintf(error->text, sizeof(error->text), "out of memory");
		error->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_out_of_memory;
	}
	return NULL;
}

json_t *__wrap_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error)
{
	long before = oom.failed;

	return unswallow(__real_json_loadb(buf, len, flags, error), before, error);
}

json_t *__wrap_json_loads(const char *text, size_t flags, json_error_t *error)
{
	long before = oom.failed;

	return unswallow(__real_json_loads(text, flags, error), before, error);
}

/* The config reader feeds Jansson through a callback (connector/config/config.c). */
json_t *__wrap_json_load_callback(json_load_callback_t callback, void *data, size_t flags,
                                  json_error_t *error)
{
	long before = oom.failed;

	return unswallow(__real_json_load_callback(callback, data, flags, error), before, error);
}

/* ---- the driver ---- */

/* Runs the code under test once and returns its result: 0 for success, a negative errno, or
 * TL_OOM_BAD for an error kind that is not an errno. On success it writes into fp a text that
 * captures everything the call produced, so that a success under a failed allocation can be
 * compared with the undisturbed one; on failure, why (for TL_OOM_VERBOSE=1). It arms the
 * counter itself around the calls under test only. */
#define TL_OOM_BAD INT32_MAX
typedef int (*oom_case)(const void *arg, char *fp, size_t cap);

/* What a run under a failed allocation may return besides success and -ENOMEM. */
enum {
	OK_BAD = 1, /* TL_OOM_BAD */
	/* -EINVAL when Jansson's parser failed: it reports some of its own allocation failures
	 * as syntax errors ("invalid token"), which no caller can tell apart. */
	OK_EINVAL_PARSER = 2,
	OK_EINVAL = 4, /* -EINVAL from anywhere */
};

static void arm(void)
{
	oom.count = 0;
	oom.failed = 0;
	oom.armed = 1;
}

static void disarm(void)
{
	oom.armed = 0;
}

#define FP_CAP 16384
static char fp_ref[FP_CAP], fp_run[FP_CAP];

struct tally {
	long ok, errors, bad, swallowed;
	int codes[4]; /* ENOMEM, EINVAL, BAD kind, other */
};

/* Is rc an acceptable error for a run whose undisturbed result is want? */
static int error_ok(int rc, int want, unsigned ok)
{
	if (want != 0)
		return rc < 0 || rc == TL_OOM_BAD; /* an error anyway: any error will do */
	if (rc == -ENOMEM)
		return 1;
	if (rc == TL_OOM_BAD)
		return ok & OK_BAD;
	if (rc == -EINVAL)
		return (ok & OK_EINVAL) || ((ok & OK_EINVAL_PARSER) && oom.parse_failed);
	return 0;
}

/* One run with allocation k failing: checks it and counts it into t. */
static void oom_one(const char *name, oom_case fn, const void *arg, int want, unsigned ok, long k,
                    long n, struct tally *t)
{
	size_t live0 = n_live;
	int rc;

	oom.fail_at = k;
	oom.swallowed = 0;
	oom.parse_failed = 0;
	fp_run[0] = '\0';
	rc = fn(arg, fp_run, sizeof(fp_run));
	oom.fail_at = 0;
	TL_CHECK_INT(oom.failed, 1); /* deterministic: the k-th allocation was reached */
	t->swallowed += oom.swallowed;
	if (getenv("TL_OOM_VERBOSE"))
		fprintf(stderr, "    %s #%ld: %d %s\n", name, k, rc, rc ? fp_run : "");
	if (n_live != live0) {
		fprintf(stderr, "  %s: allocation %ld of %ld failed: %zd blocks leaked\n", name, k,
		        n, (ssize_t)(n_live - live0));
		TL_CHECK_INT(n_live, live0);
		t->bad++;
	}
	if (rc == 0 && (want != 0 || strcmp(fp_run, fp_ref) != 0)) {
		fprintf(stderr,
		        "  %s: allocation %ld of %ld failed, yet success with a different "
		        "result:\n    got  %s\n    want %s\n",
		        name, k, n, fp_run, want ? "(an error)" : fp_ref);
		TL_CHECK(!"success with missing data");
		t->bad++;
	} else if (rc == 0) {
		t->ok++;
	} else if (!error_ok(rc, want, ok)) {
		fprintf(stderr, "  %s: allocation %ld of %ld failed: unexpected result %d (%s)\n",
		        name, k, n, rc, fp_run);
		TL_CHECK(!"the error an allocation failure gives");
		t->bad++;
	} else {
		t->errors++;
		t->codes[rc == -ENOMEM ? 0 : rc == -EINVAL ? 1 : rc == TL_OOM_BAD ? 2 : 3]++;
	}
}

/* The undisturbed run must return want; then every allocation of it fails in turn. Returns
 * the number of allocations (-1 when the undisturbed run did not give want). */
static long oom_check_want(const char *name, oom_case fn, const void *arg, int want, unsigned ok)
{
	size_t live0 = n_live;
	struct tally t = {0};
	long n;
	int rc;

	oom.fail_at = 0;
	fp_ref[0] = '\0';
	rc = fn(arg, fp_ref, sizeof(fp_ref));
	n = oom.count;
	TL_CHECK_INT(n_live, live0);
	if (rc != want) {
		fprintf(stderr, "  %s: the undisturbed run gave %d: %s\n", name, rc, fp_ref);
		TL_CHECK_INT(rc, want);
		return -1;
	}
	for (long k = 1; k <= n; k++)
		oom_one(name, fn, arg, want, ok, k, n, &t);
	fprintf(stderr,
	        "  %-36.36s %4ld allocations: %ld errors (ENOMEM %d, EINVAL %d, BAD %d, other "
	        "%d), %ld unaffected%s",
	        name, n, t.errors, t.codes[0], t.codes[1], t.codes[2], t.codes[3], t.ok,
	        t.bad ? ", FAILURES" : "");
	if (t.swallowed)
		fprintf(stderr, "; %ld failures swallowed by Jansson (#362)", t.swallowed);
	fprintf(stderr, "\n");
	return n;
}

static long oom_check(const char *name, oom_case fn, const void *arg, unsigned ok)
{
	return oom_check_want(name, fn, arg, 0, ok);
}

/* Appends to a fingerprint. */
static void fp_add(char *fp, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fp_add(char *fp, size_t cap, const char *fmt, ...)
{
	size_t n = strlen(fp);
	va_list ap;

	if (n + 1 >= cap)
		return;
	va_start(ap, fmt);
	vsnprintf(fp + n, cap - n, fmt, ap);
	va_end(ap);
}

static void fp_json(char *fp, size_t cap, const json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;

	fp_add(fp, cap, "%s", s ? s : "null");
	free(s);
}

#endif
