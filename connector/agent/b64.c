/* Base64 codec: 3 bytes <-> 4 characters through lookup tables, a whole group per step.
 * Standard alphabet only; the tail group handles padding. No streaming API. */
#include "trunkline/b64.h"

#include <errno.h>

static const char enc_tab[65] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Character -> 6-bit value + 1; the zero-initialized rest (and '=') means invalid. */
static const uint8_t dec_tab[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
};

/* 0..63, or above 63 (UINT_MAX) for an invalid character. */
#define DEC(c) ((unsigned)dec_tab[(uint8_t)(c)] - 1u)

ssize_t tl_b64_encode(char *dst, size_t cap, const uint8_t *src, size_t n)
{
	size_t full = n / 3 * 3, o = 0, i;
	uint32_t v;

	if (n > (SIZE_MAX / 4) * 3 - 2 || cap < TL_B64_ENC_LEN(n))
		return -ENOSPC;
	for (i = 0; i < full; i += 3) {
		v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
		dst[o++] = enc_tab[v >> 18];
		dst[o++] = enc_tab[(v >> 12) & 63];
		dst[o++] = enc_tab[(v >> 6) & 63];
		dst[o++] = enc_tab[v & 63];
	}
	if (n - full) {
		v = (uint32_t)src[i] << 16 | (n - full == 2 ? (uint32_t)src[i + 1] << 8 : 0);
		dst[o++] = enc_tab[v >> 18];
		dst[o++] = enc_tab[(v >> 12) & 63];
		dst[o++] = n - full == 2 ? enc_tab[(v >> 6) & 63] : '=';
		dst[o++] = '=';
	}
	return (ssize_t)o;
}

/* Last 2 or 3 characters (padding removed); trailing bits must be zero. */
static ssize_t decode_tail(uint8_t *dst, const char *src, size_t n)
{
	unsigned a = DEC(src[0]), b = DEC(src[1]), c = n == 3 ? DEC(src[2]) : 0;

	if ((a | b | c) > 63)
		return -EINVAL;
	dst[0] = (uint8_t)(a << 2 | b >> 4);
	if (n == 2)
		return (b & 0x0F) ? -EINVAL : 1;
	dst[1] = (uint8_t)(b << 4 | c >> 2);
	return (c & 0x03) ? -EINVAL : 2;
}

ssize_t tl_b64_decode(uint8_t *dst, size_t cap, const char *src, size_t n)
{
	size_t body, o = 0, i;
	ssize_t t = 0;
	unsigned a, b, c, d;

	if (n >= 4 && n % 4 == 0 && src[n - 1] == '=')
		n -= src[n - 2] == '=' ? 2 : 1;
	if (n % 4 == 1)
		return -EINVAL;
	body = n / 4 * 4;
	if (cap < body / 4 * 3 + (n > body ? n - body - 1 : 0))
		return -ENOSPC;
	for (i = 0; i < body; i += 4) {
		a = DEC(src[i]);
		b = DEC(src[i + 1]);
		c = DEC(src[i + 2]);
		d = DEC(src[i + 3]);
		if ((a | b | c | d) > 63)
			return -EINVAL;
		dst[o++] = (uint8_t)(a << 2 | b >> 4);
		dst[o++] = (uint8_t)(b << 4 | c >> 2);
		dst[o++] = (uint8_t)(c << 6 | d);
	}
	if (n > body)
		t = decode_tail(dst + o, src + body, n - body);
	return t < 0 ? t : (ssize_t)o + t;
}
