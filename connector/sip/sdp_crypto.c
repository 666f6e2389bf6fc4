/* SDES (RFC 4568) for the one audio stream: picks the offer's first a=crypto line we can use,
 * makes our key, and writes our a=crypto line into the answer sdp.c built. media.srtp decides
 * what a plain or SRTP offer gets. Works on the SDP text; keys never reach a log. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sip_int.h"

#include "trunkline/b64.h"
#include "trunkline/log.h"
#include "trunkline/route.h"

/* The SDP text need not end in a NUL: every look stays before end. */
static int starts(const char *p, const char *end, const char *with)
{
	size_t n = strlen(with);

	return (size_t)(end - p) >= n && memcmp(p, with, n) == 0;
}

/* The audio section of the offer sdp.c answers: the first m=audio with a non-zero port. */
static const char *audio_section(const char *sdp, size_t len, const char **end)
{
	const char *p = sdp, *stop = sdp + len, *m = NULL;

	while (p < stop) {
		const char *nl = memchr(p, '\n', (size_t)(stop - p));
		const char *next = nl ? nl + 1 : stop;
		if (stop - p >= 2 && p[0] == 'm' && p[1] == '=') {
			if (m) {
				*end = p;
				return m;
			}
			if (starts(p, stop, "m=audio ") && !starts(p, stop, "m=audio 0 "))
				m = p;
		}
		p = next;
	}
	*end = stop;
	return m;
}

static size_t line_len(const char *p, const char *end)
{
	size_t n = 0;

	while (p + n < end && p[n] != '\r' && p[n] != '\n')
		n++;
	return n;
}

/* "a=crypto:<tag> <suite> inline:<key||salt>[|lifetime][|MKI:len] [params]": 0 when usable.
 * An MKI, several keys or any session parameter but WSH makes the line unusable (the next
 * one is tried); a lifetime is accepted (libsrtp enforces the 2^48 packet limit). */
static int crypto_line(const char *p, size_t n, struct tl_sdp_crypto *cr)
{
	char line[400], *save = NULL, *tag, *suite, *kp, *param;
	enum tl_srtp_suite s;
	uint8_t key[64];
	ssize_t klen;
	char *bar;

	if (n >= sizeof(line))
		return -EINVAL;
	memcpy(line, p, n);
	line[n] = '\0';
	tag = strtok_r(line + 9, " \t", &save);
	suite = strtok_r(NULL, " \t", &save);
	kp = strtok_r(NULL, " \t", &save);
	if (!tag || !suite || !kp)
		return -EINVAL;
	if (strlen(cr->offered) + strlen(suite) + 2 < sizeof(cr->offered))
		snprintf(cr->offered + strlen(cr->offered),
		         sizeof(cr->offered) - strlen(cr->offered), "%s%s",
		         cr->offered[0] ? " " : "", suite);
	s = tl_srtp_suite_parse(suite, strlen(suite));
	if (s == TL_SRTP_NONE || strncmp(kp, "inline:", 7) != 0 || strchr(kp, ';'))
		return -ENOTSUP;
	while ((param = strtok_r(NULL, " \t", &save)) != NULL)
		if (strncmp(param, "WSH=", 4) != 0)
			return -ENOTSUP;
	kp += 7;
	bar = strchr(kp, '|');
	if (bar && strchr(bar + 1, '|'))
		return -ENOTSUP; /* lifetime and MKI */
	if (bar && strchr(bar + 1, ':'))
		return -ENOTSUP; /* MKI */
	klen = tl_b64_decode(key, sizeof(key), kp, bar ? (size_t)(bar - kp) : strlen(kp));
	if (klen < 0 || (size_t)klen != tl_srtp_key_len(s)) {
		explicit_bzero(key, sizeof(key));
		return -EINVAL;
	}
	cr->tag = atoi(tag);
	cr->keys.suite = s;
	memcpy(cr->keys.remote, key, (size_t)klen);
	explicit_bzero(key, sizeof(key));
	return 0;
}

static const char *mode_name(int mode)
{
	return mode == TL_SRTP_MODE_REQUIRED ? "required"
	       : mode == TL_SRTP_MODE_OFF    ? "off"
	                                     : "optional";
}

int tl_sdp_crypto_pick(const char *sdp, size_t len, int mode, const struct tl_srtp_keys *current,
                       struct tl_sdp_crypto *cr)
{
	const char *end, *m = audio_section(sdp, len, &end), *p;
	int found = 0;

	memset(cr, 0, sizeof(*cr));
	if (!m)
		return 0; /* sdp.c says what is wrong */
	cr->savp = memmem(m, line_len(m, end), "SAVP", 4) != NULL;
	for (p = m; p < end && !found;
	     p += line_len(p, end), p += p < end && *p == '\r', p += p < end && *p == '\n')
		if (starts(p, end, "a=crypto:") && crypto_line(p, line_len(p, end), cr) == 0)
			found = 1;
	if (mode == TL_SRTP_MODE_OFF && cr->savp) {
		snprintf(cr->why, sizeof(cr->why), "SRTP offered (RTP/SAVP) but srtp is off here");
		return -EKEYREJECTED;
	}
	if (mode == TL_SRTP_MODE_OFF || (!found && !cr->savp && mode != TL_SRTP_MODE_REQUIRED)) {
		memset(&cr->keys, 0, sizeof(cr->keys)); /* plain RTP */
		cr->savp = 0;
		return 0;
	}
	if (!found) {
		snprintf(cr->why, sizeof(cr->why), "SRTP %s: no usable crypto suite (offered: %s)",
		         mode_name(mode), cr->offered[0] ? cr->offered : "none");
		return -EKEYREJECTED;
	}
	/* The same key again (a re-INVITE that keeps the keys): ours stays too. */
	if (current->suite == cr->keys.suite &&
	    memcmp(current->remote, cr->keys.remote, tl_srtp_key_len(cr->keys.suite)) == 0)
		memcpy(cr->keys.local, current->local, sizeof(cr->keys.local));
	else if (tl_srtp_random_key(cr->keys.local, tl_srtp_key_len(cr->keys.suite)) < 0)
		return -EIO;
	return 1;
}

int tl_sdp_crypto_add(char *out, size_t size, size_t n, const struct tl_sdp_crypto *cr)
{
	char line[160], b64[TL_B64_ENC_LEN(TL_SRTP_KEY_MAX) + 1];
	const char *end, *m = audio_section(out, n, &end);
	ssize_t k =
	    tl_b64_encode(b64, sizeof(b64) - 1, cr->keys.local, tl_srtp_key_len(cr->keys.suite));
	size_t l, at;

	if (!m || k < 0)
		return -EPROTO;
	b64[k] = '\0';
	l = (size_t)snprintf(line, sizeof(line), "a=crypto:%d %s inline:%s\r\n", cr->tag,
	                     tl_srtp_suite_name(cr->keys.suite), b64);
	explicit_bzero(b64, sizeof(b64));
	at = (size_t)(end - out);
	if (n + l + 1 > size) {
		explicit_bzero(line, sizeof(line));
		return -ENOSPC;
	}
	memmove(out + at + l, out + at, n - at + 1);
	memcpy(out + at, line, l);
	explicit_bzero(line, sizeof(line));
	return (int)(n + l);
}

/* The route's "srtp", else media.srtp. */
static int srtp_mode(const struct tl_call *call)
{
	return call->route && call->route->srtp ? call->route->srtp - 1 : call->sip->cfg->srtp_mode;
}

int tl_call_srtp_pick(struct tl_call *call, const char *sdp, size_t len, struct tl_sdp_crypto *cr)
{
	enum tl_srtp_suite was = call->media.srtp.suite;
	int rc = tl_sdp_crypto_pick(sdp, len, srtp_mode(call), &call->media.srtp, cr);

	call->local.savp = rc > 0 && cr->savp;
	if (rc == -EKEYREJECTED) {
		free(call->srtp_warning);
		if (asprintf(&call->srtp_warning, "399 trunkline \"%s\"", cr->why) < 0)
			call->srtp_warning = NULL; /* the 488 then goes without a Warning */
		tl_log_warn(call->call_id, "SRTP negotiation failed: %s", cr->why);
	} else if (rc > 0 && cr->keys.suite != was) {
		tl_log_info(call->call_id, "SRTP %s%s (offered: %s)",
		            tl_srtp_suite_name(cr->keys.suite), cr->savp ? "" : " on RTP/AVP",
		            cr->offered);
	}
	return rc;
}

int tl_call_srtp_offer(struct tl_call *call, char *out, size_t size, size_t n)
{
	int mode = srtp_mode(call);
	struct tl_sdp_crypto cr = {.tag = 1};
	const char *end, *m = audio_section(out, n, &end);
	char *avp = m ? memmem(m, line_len(m, end), " RTP/AVP", 8) : NULL;

	if (mode == TL_SRTP_MODE_OFF || (mode == TL_SRTP_MODE_OPTIONAL && !call->over_tls) || !avp)
		return (int)n;
	if (call->offer_keys.suite == TL_SRTP_NONE) { /* one key for the call's offers */
		call->offer_keys.suite = TL_SRTP_AES_CM_128_HMAC_SHA1_80;
		if (tl_srtp_random_key(call->offer_keys.local,
		                       tl_srtp_key_len(TL_SRTP_AES_CM_128_HMAC_SHA1_80)) < 0)
			return -EIO;
	}
	if (n + 2 > size)
		return -ENOSPC;
	/* " RTP/AVP" -> " RTP/SAVP" */
	memmove(avp + 6, avp + 5, n - (size_t)(avp + 5 - out) + 1);
	avp[5] = 'S';
	cr.keys = call->offer_keys;
	n = (size_t)tl_sdp_crypto_add(out, size, n + 1, &cr);
	explicit_bzero(&cr, sizeof(cr));
	return (int)n;
}

int tl_call_srtp_answered(struct tl_call *call, const char *sdp, size_t len)
{
	struct tl_sdp_crypto cr;
	int mode = srtp_mode(call), rc;

	if (call->offer_keys.suite == TL_SRTP_NONE) {
		memset(&call->media.srtp, 0, sizeof(call->media.srtp));
		return 0;
	}
	rc = tl_sdp_crypto_pick(sdp, len, TL_SRTP_MODE_OPTIONAL, &call->media.srtp, &cr);
	if (rc > 0 && cr.keys.suite == call->offer_keys.suite && cr.tag == 1) {
		memcpy(cr.keys.local, call->offer_keys.local, sizeof(cr.keys.local));
		call->media.srtp = cr.keys;
		explicit_bzero(&cr, sizeof(cr));
		return 0;
	}
	explicit_bzero(&cr, sizeof(cr));
	memset(&call->media.srtp, 0, sizeof(call->media.srtp));
	if (mode == TL_SRTP_MODE_REQUIRED) {
		tl_log_warn(call->call_id, "SRTP required: the answer to our SRTP offer has no "
		                           "matching crypto line");
		return -EKEYREJECTED;
	}
	return 0;
}
