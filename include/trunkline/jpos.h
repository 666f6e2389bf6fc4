/* JSON value positions: Jansson keeps none, so this indexes a JSON text once and answers
 * "where is the value at path /sip/listen/1" with its line and column, for error messages. */
#ifndef TRUNKLINE_JPOS_H
#define TRUNKLINE_JPOS_H

#include <stddef.h>

struct tl_jpos;

/* Indexes text (len bytes, need not be NUL-terminated). Text that is not valid JSON indexes
 * as far as it goes. Caller frees with tl_jpos_destroy. */
int tl_jpos_create(struct tl_jpos **out, const char *text, size_t len);
void tl_jpos_destroy(struct tl_jpos *jp);

/* Position of the value at path ("" is the root; "/a/b/0" is key b of object a, element 0),
 * or with key_pos != 0 the position of the key itself (for "unknown key" errors).
 * Returns 0 and sets *line, *col (1-based), or -ENOENT. Path segments are raw key names;
 * keys containing '/' are matched with "~1", '~' with "~0" (RFC 6901). */
int tl_jpos_lookup(const struct tl_jpos *jp, const char *path, int key_pos, int *line, int *col);

#endif
