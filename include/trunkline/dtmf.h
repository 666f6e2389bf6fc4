/* DTMF carried in SIP INFO bodies, as CUCM and Avaya can send it:
 * application/dtmf-relay ("Signal=5\r\nDuration=160") and application/dtmf ("5"). Pure. */
#ifndef TRUNKLINE_DTMF_H
#define TRUNKLINE_DTMF_H

#include <stddef.h>

/* Returns the digit ('0'-'9', '*', '#', 'A'-'D'), or -EINVAL when the body holds none and
 * -ENOTSUP for another content type. Both strings are borrowed until return; body need not be
 * NUL-terminated. */
int tl_dtmf_info_parse(const char *content_type, const char *body, size_t len);

#endif
