/* Minimal unit-test helpers: each check prints file:line on failure and counts it.
 * A test file's main() runs its cases and returns tl_test_failures != 0. */
#ifndef TL_TEST_H
#define TL_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tl_test_failures;
static int tl_test_checks;

#define TL_CHECK(cond)                                                                             \
	do {                                                                                       \
		tl_test_checks++;                                                                  \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			tl_test_failures++;                                                        \
		}                                                                                  \
	} while (0)

#define TL_CHECK_INT(a, b)                                                                         \
	do {                                                                                       \
		long long tl_a_ = (long long)(a), tl_b_ = (long long)(b);                          \
		tl_test_checks++;                                                                  \
		if (tl_a_ != tl_b_) {                                                              \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__,  \
			        #a, tl_a_, tl_b_);                                                 \
			tl_test_failures++;                                                        \
		}                                                                                  \
	} while (0)

#define TL_CHECK_STR(a, b)                                                                         \
	do {                                                                                       \
		const char *tl_a_ = (a), *tl_b_ = (b);                                             \
		tl_test_checks++;                                                                  \
		if (!tl_a_ || !tl_b_ || strcmp(tl_a_, tl_b_) != 0) {                               \
			fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__,        \
			        __LINE__, #a, tl_a_ ? tl_a_ : "(null)", tl_b_ ? tl_b_ : "(null)"); \
			tl_test_failures++;                                                        \
		}                                                                                  \
	} while (0)

#define TL_TEST_RUN(fn)                                                                            \
	do {                                                                                       \
		int tl_before_ = tl_test_failures;                                                 \
		fn();                                                                              \
		fprintf(stderr, "%s %s\n", tl_test_failures == tl_before_ ? "ok  " : "FAIL", #fn); \
	} while (0)

#define TL_TEST_END()                                                                              \
	(fprintf(stderr, "%d checks, %d failed\n", tl_test_checks, tl_test_failures),              \
	 (tl_test_failures != 0 || tl_test_checks == 0))

/* Reads a whole file into a malloc'd, NUL-terminated buffer; caller frees. */
static inline char *tl_test_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else if (buf) {
			buf[n] = '\0';
			if (len)
				*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

/* A scratch directory per test program: tl_test_dir after tl_test_tmpdir("name"). */
static char tl_test_dir[256];

static inline int tl_test_tmpdir(const char *name)
{
	snprintf(tl_test_dir, sizeof(tl_test_dir), "/tmp/%s.XXXXXX", name);
	if (!mkdtemp(tl_test_dir)) {
		perror("mkdtemp");
		return -1;
	}
	return 0;
}

static inline void tl_test_tmpdir_remove(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tl_test_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tl_test_dir);
}

/* Writes tl_test_dir/name and returns its path in a static buffer (one of four, reused in
 * turn). */
static inline const char *tl_test_put(const char *name, const char *text)
{
	static char paths[4][512];
	static int turn;
	char *p = paths[turn++ % 4];
	FILE *f;

	snprintf(p, sizeof(paths[0]), "%s/%s", tl_test_dir, name);
	f = fopen(p, "w");
	TL_CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

#endif
