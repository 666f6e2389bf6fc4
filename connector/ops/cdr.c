/* Call records: one JSON line per finished call, appended to cdr.path (reopened on SIGHUP for
 * log rotation) or written to stderr. Written on the SIP thread, once per call end, through
 * stdio's buffer and one fflush: a local append does not block in practice; a path on a slow
 * network file system would, and is not recommended (docs/OPERATIONS.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trunkline/log.h"
#include "trunkline/ops.h"

struct tl_cdr {
	char *path; /* NULL: stderr */
	FILE *f;    /* NULL: records off */
	int off;
};

static FILE *open_append(const char *path)
{
	return fopen(path, "ae"); /* O_APPEND | O_CLOEXEC */
}

int tl_cdr_create(struct tl_cdr **out, const char *path, int off)
{
	struct tl_cdr *cdr = calloc(1, sizeof(*cdr));
	int err;

	if (!cdr)
		return -ENOMEM;
	cdr->off = off;
	if (!off && path) {
		cdr->path = strdup(path);
		cdr->f = cdr->path ? open_append(path) : NULL;
		if (!cdr->f) {
			err = cdr->path ? -errno : -ENOMEM;
			tl_log_error(NULL, "cannot open cdr.path %s: %s", path, strerror(-err));
			tl_cdr_destroy(cdr);
			return err;
		}
	} else if (!off) {
		cdr->f = stderr;
	}
	*out = cdr;
	return 0;
}

void tl_cdr_destroy(struct tl_cdr *cdr)
{
	if (!cdr)
		return;
	if (cdr->f && cdr->f != stderr)
		fclose(cdr->f);
	free(cdr->path);
	free(cdr);
}

int tl_cdr_reopen(struct tl_cdr *cdr)
{
	FILE *f;

	if (!cdr || !cdr->path)
		return 0;
	f = open_append(cdr->path);
	if (!f) {
		int err = -errno;
		tl_log_error(NULL, "cannot reopen cdr.path %s: %s (records go to the old file)",
		             cdr->path, strerror(-err));
		return err;
	}
	fclose(cdr->f);
	cdr->f = f;
	tl_log_info(NULL, "call records: reopened %s", cdr->path);
	return 0;
}

void tl_cdr_write(struct tl_cdr *cdr, const char *line)
{
	if (!cdr || !cdr->f)
		return;
	if (fputs(line, cdr->f) < 0 || fputc('\n', cdr->f) < 0 || fflush(cdr->f) != 0)
		tl_log_warn(NULL, "call record not written: %s", strerror(errno));
}
