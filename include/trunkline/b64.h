/* Base64 (RFC 4648 section 4, standard alphabet) for audio frames in WebSocket JSON messages.
 * Into caller buffers only: no allocation, no NUL terminator, no line breaks, no URL-safe
 * alphabet. Decoding is strict: no whitespace, canonical trailing bits, padding optional. */
#ifndef TRUNKLINE_B64_H
#define TRUNKLINE_B64_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Encoded length of n bytes (with padding), and the most bytes n characters can decode to. */
#define TL_B64_ENC_LEN(n) ((((n) + 2) / 3) * 4)
#define TL_B64_DEC_MAX(n) ((((n) + 3) / 4) * 3)

/* Encodes src (n bytes) into dst (cap bytes); both borrowed until return. Returns the length
 * written (TL_B64_ENC_LEN(n)) or -ENOSPC. */
ssize_t tl_b64_encode(char *dst, size_t cap, const uint8_t *src, size_t n);

/* Decodes src (n characters, need not be NUL-terminated) into dst (cap bytes); both borrowed
 * until return; dst contents are unspecified after an error. Accepts "Zg==" and "Zg". Returns the
 * byte count, -EINVAL for a character outside the alphabet, misplaced '=', a length of 4k+1 or
 * non-zero trailing bits, or -ENOSPC. */
ssize_t tl_b64_decode(uint8_t *dst, size_t cap, const char *src, size_t n);

#endif
