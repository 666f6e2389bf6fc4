/* Positioned error reporting shared by the config and rules loaders. */
#include "trunkline/err.h"

#include <stdarg.h>
#include <stdio.h>

void tl_err_set(struct tl_err *err, const char *file, int line, int col, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
	err->line = line;
	err->col = col;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

const char *tl_err_str(const struct tl_err *err, char *buf, size_t size)
{
	if (err->line > 0)
		snprintf(buf, size, "%s:%d:%d: %s", err->file, err->line,
		         err->col > 0 ? err->col : 1, err->msg);
	else
		snprintf(buf, size, "%s: %s", err->file, err->msg);
	return buf;
}
