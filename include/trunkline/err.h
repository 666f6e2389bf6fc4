/* Positioned errors for config and rules files: "file:line:col: message".
 * A fixed-size struct, like Jansson's json_error_t, so reporting never allocates. */
#ifndef TRUNKLINE_ERR_H
#define TRUNKLINE_ERR_H

#include <stddef.h>

struct tl_err {
	char file[512];
	int line; /* 1-based; 0 when unknown */
	int col;  /* 1-based; 0 when unknown */
	char msg[256];
};

/* Fills *err (may be NULL: then does nothing). */
void tl_err_set(struct tl_err *err, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Writes "file:line:col: msg" (or "file: msg" without a position) into buf; returns buf. */
const char *tl_err_str(const struct tl_err *err, char *buf, size_t size);

#endif
