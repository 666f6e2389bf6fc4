/* SDP offer/answer for trunkline's one audio stream (RFC 3264), parsed with Sofia-SIP's
 * sdp_parse() and written with snprintf. Answers pick one codec plus telephone-event and keep
 * the offer's payload numbers; every other m= line is refused with port 0. No SRTP, no ICE. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/su_alloc.h>
#include <sofia-sip/sdp.h>

#include "sdp_codec.h"
#include "trunkline/sdp.h"

#define SDP_MAX_FMTS  64
#define SDP_MAX_INPUT (64 * 1024)
#define DIR_SEND      1u
#define DIR_RECV      2u

/* One payload type of an m= line, with its rtpmap/fmtp if any. */
struct sdp_fmt {
	unsigned pt;
	const char *enc; /* "" when neither rtpmap nor a static assignment names it */
	unsigned long rate;
	const char *params;
	const char *fmtp;
};

/* What we picked from one m=audio line. */
struct sdp_pick {
	const sdp_session_t *sdp;
	const sdp_media_t *m;
	struct sdp_fmt codec;
	enum tl_codec id;
	struct sdp_fmt te;
	int has_te;
};

/* Output buffer that records the first overflow instead of writing past the end. */
struct sdp_out {
	char *buf;
	size_t size;
	size_t len;
	int err;
};

const char *tl_sdp_codec_name(enum tl_codec codec)
{
	switch (codec) {
	case TL_CODEC_PCMU:
		return "PCMU";
	case TL_CODEC_PCMA:
		return "PCMA";
	case TL_CODEC_G722:
		return "G722";
	case TL_CODEC_OPUS:
		return "opus";
	default:
		return "none";
	}
}

static void out_printf(struct sdp_out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->size - o->len) {
		o->err = -ENOSPC;
		o->buf[o->len] = '\0';
		return;
	}
	o->len += (size_t)n;
}

static int out_finish(struct sdp_out *o)
{
	if (o->err) {
		o->buf[0] = '\0';
		return o->err;
	}
	return (int)o->len;
}

static unsigned local_codecs(const struct tl_sdp_local *local)
{
	unsigned all = (1u << TL_CODEC_PCMU) | (1u << TL_CODEC_PCMA) | (1u << TL_CODEC_G722) |
	               (1u << TL_CODEC_OPUS);

	return local->codecs & all ? local->codecs & all
	                           : (1u << TL_CODEC_PCMU) | (1u << TL_CODEC_PCMA);
}

static uint32_t codec_rate(enum tl_codec id)
{
	return id == TL_CODEC_OPUS ? 48000 : 8000;
}

/* Maps an rtpmap to our codec; G722's RTP clock is 8000 although it samples at 16 kHz. */
static enum tl_codec fmt_codec(const struct sdp_fmt *f)
{
	if (strcasecmp(f->enc, "PCMU") == 0 && f->rate == 8000)
		return TL_CODEC_PCMU;
	if (strcasecmp(f->enc, "PCMA") == 0 && f->rate == 8000)
		return TL_CODEC_PCMA;
	if (strcasecmp(f->enc, "G722") == 0 && f->rate == 8000)
		return TL_CODEC_G722;
	if (strcasecmp(f->enc, "opus") == 0 && f->rate == 48000 &&
	    (!f->params || strcmp(f->params, "2") == 0))
		return TL_CODEC_OPUS;
	return TL_CODEC_NONE;
}

static int fmt_is_te(const struct sdp_fmt *f)
{
	return strcasecmp(f->enc, "telephone-event") == 0 && (f->rate == 8000 || f->rate == 48000);
}

/* Parses "<digits>" in 0..max, the whole string. */
static int parse_uint(const char *s, unsigned long max, unsigned long *v)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtoul(s, &end, 10);
	return errno || *v > max ? -1 : (int)(end - s);
}

static const sdp_attribute_t *attr_find(const sdp_attribute_t *a, const char *name)
{
	for (; a; a = a->a_next)
		if (a->a_name && strcasecmp(a->a_name, name) == 0)
			return a;
	return NULL;
}

/* Finds "a=<name>:<pt> <rest>" and returns rest; for protocols Sofia does not treat as RTP. */
static const char *attr_for_pt(const sdp_attribute_t *a, const char *name, unsigned pt)
{
	unsigned long v;
	int n;

	for (; a; a = a->a_next) {
		if (!a->a_name || !a->a_value || strcasecmp(a->a_name, name) != 0)
			continue;
		n = parse_uint(a->a_value, 127, &v);
		if (n > 0 && v == pt && (a->a_value[n] == ' ' || a->a_value[n] == '\t'))
			return a->a_value + n + strspn(a->a_value + n, " \t");
	}
	return NULL;
}

/* Splits "name/rate[/params]" (an rtpmap value without the payload type). */
static void fmt_from_rtpmap(struct sdp_fmt *f, const char *s, char *scratch, size_t size)
{
	char *slash, *end;

	snprintf(scratch, size, "%s", s);
	f->enc = scratch;
	slash = strchr(scratch, '/');
	if (!slash)
		return;
	*slash++ = '\0';
	f->rate = strtoul(slash, &end, 10);
	if (*end == '/')
		f->params = end + 1;
}

/* Sofia 1.12 parses rtpmaps only for RTP/AVP and RTP/SAVP; RTP/AVPF keeps a text format list
 * and plain attributes, so both shapes are read into the same array. */
static int media_fmts(const sdp_media_t *m, struct sdp_fmt *f, char (*scratch)[64], int max)
{
	const sdp_rtpmap_t *rm;
	const sdp_list_t *l;
	const char *map;
	unsigned long pt;
	int n = 0;

	for (rm = m->m_rtpmaps; rm && n < max; rm = rm->rm_next, n++) {
		f[n] = (struct sdp_fmt){rm->rm_pt, rm->rm_encoding ? rm->rm_encoding : "",
		                        rm->rm_rate, rm->rm_params, rm->rm_fmtp};
	}
	for (l = m->m_rtpmaps ? NULL : m->m_format; l && n < max; l = l->l_next) {
		int len = parse_uint(l->l_text, 127, &pt);

		if (len <= 0 || l->l_text[len] != '\0')
			continue;
		f[n] = (struct sdp_fmt){(unsigned)pt, "", 0, NULL, NULL};
		map = attr_for_pt(m->m_attributes, "rtpmap", (unsigned)pt);
		if (map)
			fmt_from_rtpmap(&f[n], map, scratch[n], sizeof(scratch[n]));
		else if (sdp_rtpmap_well_known[pt]) {
			f[n].enc = sdp_rtpmap_well_known[pt]->rm_encoding;
			f[n].rate = sdp_rtpmap_well_known[pt]->rm_rate;
		}
		f[n].fmtp = attr_for_pt(m->m_attributes, "fmtp", (unsigned)pt);
		n++;
	}
	return n;
}

static int proto_is_plain_rtp(const sdp_media_t *m)
{
	return m->m_proto == sdp_proto_rtp ||
	       (m->m_proto_name && strcasecmp(m->m_proto_name, "RTP/AVPF") == 0);
}

static int proto_is_srtp(const sdp_media_t *m)
{
	return m->m_proto == sdp_proto_srtp || (m->m_proto_name && strstr(m->m_proto_name, "SAVP"));
}

/* Picks from m the format of codecs that local prefers most (the first, without a preference
 * order), plus telephone-event (at the codec's clock when offered, else 8000). */
static int pick_codec(const sdp_media_t *m, const struct tl_sdp_local *local, unsigned codecs,
                      struct sdp_pick *pick)
{
	struct sdp_fmt f[SDP_MAX_FMTS];
	char scratch[SDP_MAX_FMTS][64];
	int n = media_fmts(m, f, scratch, SDP_MAX_FMTS), best = -1, rank, has_te48 = 0;
	struct sdp_fmt te48 = {0};
	enum tl_codec id;

	memset(pick, 0, sizeof(*pick));
	for (int i = 0; i < n; i++) {
		id = fmt_codec(&f[i]);
		rank = id ? tl_sdp_pref_rank(local, codecs, id) : -1;
		if (rank >= 0 && (best < 0 || rank < best)) {
			pick->codec = f[i];
			pick->id = id;
			best = rank;
		} else if (fmt_is_te(&f[i]) && f[i].rate == 48000 && !has_te48) {
			te48 = f[i];
			has_te48 = 1;
		} else if (!pick->has_te && fmt_is_te(&f[i]) && f[i].rate == 8000) {
			pick->te = f[i];
			pick->has_te = 1;
		}
	}
	/* RFC 4733 §2.1: telephone-event at the audio's clock when offered (WebRTC offers both
	 * /48000 and /8000 with Opus); else /8000. */
	if (has_te48 && pick->id == TL_CODEC_OPUS) {
		pick->te = te48;
		pick->has_te = 1;
	}
	/* scratch dies here: only static strings and Sofia's strings (fmtp) may leave. */
	pick->codec.enc = tl_sdp_codec_name(pick->id);
	pick->codec.params = NULL;
	pick->te.enc = "telephone-event";
	pick->te.params = NULL;
	pick->m = m;
	return pick->id ? 0 : -ENOTSUP;
}

/* The first usable audio stream: -EPROTO when there is none, -ENOTSUP when none fits. */
static int pick_audio(const sdp_session_t *sdp, const struct tl_sdp_local *local, unsigned codecs,
                      struct sdp_pick *pick)
{
	const sdp_media_t *m;
	int err = -EPROTO;

	for (m = sdp->sdp_media; m; m = m->m_next) {
		if (m->m_type != sdp_media_audio || m->m_port == 0)
			continue;
		err = -ENOTSUP;
		if (proto_is_srtp(m) ? !local->savp : !proto_is_plain_rtp(m))
			continue;
		if (pick_codec(m, local, codecs, pick) == 0) {
			pick->sdp = sdp;
			return 0;
		}
	}
	return err;
}

static unsigned dir_bits_of_attrs(const sdp_attribute_t *a, unsigned dflt)
{
	for (; a; a = a->a_next) {
		if (!a->a_name)
			continue;
		if (strcasecmp(a->a_name, "sendrecv") == 0)
			return DIR_SEND | DIR_RECV;
		if (strcasecmp(a->a_name, "sendonly") == 0)
			return DIR_SEND;
		if (strcasecmp(a->a_name, "recvonly") == 0)
			return DIR_RECV;
		if (strcasecmp(a->a_name, "inactive") == 0)
			return 0;
	}
	return dflt;
}

static unsigned dir_bits(enum tl_sdp_dir dir)
{
	switch (dir) {
	case TL_SDP_SENDONLY:
		return DIR_SEND;
	case TL_SDP_RECVONLY:
		return DIR_RECV;
	case TL_SDP_INACTIVE:
		return 0;
	default:
		return DIR_SEND | DIR_RECV;
	}
}

static enum tl_sdp_dir dir_enum(unsigned bits)
{
	if (bits == (DIR_SEND | DIR_RECV))
		return TL_SDP_SENDRECV;
	return bits == DIR_SEND   ? TL_SDP_SENDONLY
	       : bits == DIR_RECV ? TL_SDP_RECVONLY
	                          : TL_SDP_INACTIVE;
}

static const char *dir_name(enum tl_sdp_dir dir)
{
	static const char *const names[] = {"sendrecv", "sendonly", "recvonly", "inactive"};

	return (unsigned)dir < 4 ? names[dir] : names[0];
}

static int addr_is_any(const sdp_connection_t *c)
{
	return strcmp(c->c_address, "0.0.0.0") == 0 || strcmp(c->c_address, "::") == 0;
}

static void fill_ptime(const struct sdp_pick *pick, struct tl_sdp_media *neg)
{
	const sdp_attribute_t *a = attr_find(pick->m->m_attributes, "ptime");
	unsigned long v;

	if (!a)
		a = attr_find(pick->sdp->sdp_attributes, "ptime");
	const sdp_attribute_t *mx = attr_find(pick->m->m_attributes, "maxptime");
	unsigned long maxp = 0;

	neg->ptime = 20;
	neg->ptime_given = 0;
	if (a && parse_uint(a->a_value, 1000, &v) > 0 && v > 0) {
		neg->ptime = (int)v;
		neg->ptime_given = 1;
	}
	if (!mx || parse_uint(mx->a_value, 1000, &maxp) <= 0)
		maxp = (unsigned long)neg->opus.maxptime;
	/* What we send and answer: 10..60 ms in whole ticks, an Opus frame size, <= maxptime. */
	neg->ptime = tl_sdp_ptime_fit(pick->id, neg->ptime, (int)maxp);
}

/* Fills *neg from the peer's description; media-level c= and direction win over session level. */
static int fill_neg(const struct sdp_pick *pick, const struct tl_sdp_local *local,
                    struct tl_sdp_media *neg)
{
	const sdp_media_t *m = pick->m;
	const sdp_connection_t *c = m->m_connections ? m->m_connections : pick->sdp->sdp_connection;
	unsigned peer = DIR_SEND | DIR_RECV, ours;

	if (!c || !c->c_address || strlen(c->c_address) >= sizeof(neg->remote_addr))
		return -EPROTO;
	memset(neg, 0, sizeof(*neg));
	snprintf(neg->remote_addr, sizeof(neg->remote_addr), "%s", c->c_address);
	neg->remote_port = (uint16_t)m->m_port;
	neg->remote_ipv6 = c->c_addrtype == sdp_addr_ip6;
	neg->codec = pick->id;
	neg->pt = (uint8_t)pick->codec.pt;
	neg->clock_rate = codec_rate(pick->id);
	neg->te_pt = pick->has_te ? (int)pick->te.pt : -1;
	neg->te_rate = pick->has_te ? (uint32_t)pick->te.rate : 8000;
	if (pick->id == TL_CODEC_OPUS)
		tl_sdp_opus_parse(pick->codec.fmtp, &neg->opus);
	fill_ptime(pick, neg);
	peer = dir_bits_of_attrs(pick->sdp->sdp_attributes, peer);
	peer = dir_bits_of_attrs(m->m_attributes, peer);
	if (addr_is_any(c))
		peer &= ~DIR_RECV; /* RFC 2543 hold: the peer receives nothing */
	neg->hold = !(peer & DIR_RECV);
	/* The peer's send is our receive and vice versa. */
	ours = ((peer & DIR_SEND) ? DIR_RECV : 0) | ((peer & DIR_RECV) ? DIR_SEND : 0);
	neg->dir = dir_enum(ours & dir_bits(local->dir));
	return 0;
}

static int local_ok(const struct tl_sdp_local *local)
{
	return local && local->addr && local->addr[0] && strlen(local->addr) < 64 &&
	       strcspn(local->addr, " \t\r\n") == strlen(local->addr);
}

static void write_head(struct sdp_out *o, const struct tl_sdp_local *local)
{
	const char *ipv = strchr(local->addr, ':') ? "IP6" : "IP4";

	out_printf(o, "v=0\r\no=trunkline %llu %llu IN %s %s\r\ns=trunkline\r\n",
	           (unsigned long long)local->sess_id, (unsigned long long)local->sess_version, ipv,
	           local->addr);
	out_printf(o, "c=IN %s %s\r\nt=0 0\r\n", ipv, local->addr);
}

static void write_rtpmap(struct sdp_out *o, unsigned pt, enum tl_codec id)
{
	out_printf(o, "a=rtpmap:%u %s/%u%s\r\n", pt, tl_sdp_codec_name(id), codec_rate(id),
	           id == TL_CODEC_OPUS ? "/2" : "");
}

/* RFC 3264 §6: a refused stream keeps its place, with port 0 and one of its formats. */
static void write_rejected(struct sdp_out *o, const sdp_media_t *m)
{
	const char *type = m->m_type_name ? m->m_type_name : "audio";
	const char *proto = m->m_proto_name ? m->m_proto_name : "RTP/AVP";

	if (m->m_rtpmaps)
		out_printf(o, "m=%s 0 %s %u\r\n", type, proto, (unsigned)m->m_rtpmaps->rm_pt);
	else
		out_printf(o, "m=%s 0 %s %s\r\n", type, proto,
		           m->m_format && m->m_format->l_text ? m->m_format->l_text : "0");
}

static void write_audio(struct sdp_out *o, const struct sdp_pick *pick,
                        const struct tl_sdp_local *local, const struct tl_sdp_media *neg)
{
	out_printf(o, "m=audio %u %s %u", (unsigned)local->port, pick->m->m_proto_name,
	           pick->codec.pt);
	if (pick->has_te)
		out_printf(o, " %u", pick->te.pt);
	out_printf(o, "\r\n");
	write_rtpmap(o, pick->codec.pt, pick->id);
	if (pick->id == TL_CODEC_OPUS) {
		char fmtp[128];
		tl_sdp_opus_fmtp(fmtp, sizeof(fmtp), local->opus_rate);
		out_printf(o, "a=fmtp:%u %s\r\n", pick->codec.pt, fmtp);
	}
	if (pick->has_te) {
		out_printf(o, "a=rtpmap:%u telephone-event/%lu\r\n", pick->te.pt, pick->te.rate);
		out_printf(o, "a=fmtp:%u %s\r\n", pick->te.pt,
		           pick->te.fmtp && pick->te.fmtp[0] ? pick->te.fmtp : "0-16");
	}
	if (neg->ptime_given)
		out_printf(o, "a=ptime:%d\r\n", neg->ptime);
	out_printf(o, "a=%s\r\n", dir_name(neg->dir));
}

static int is_token(char c)
{
	return c && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	                   "-!#$%&'*+.^_`{|}~",
	                   c);
}

/* Word w of "m=<media> <port>[/<n>] <proto> <fmt> ...". */
static int m_word_ok(const char *s, size_t n, int w)
{
	for (size_t i = 0; i < n; i++) {
		if (w == 1 ? !(s[i] >= '0' && s[i] <= '9') && !(s[i] == '/' && i > 0)
		           : !is_token(s[i]) && !(w == 2 && s[i] == '/'))
			return 0;
	}
	return 1;
}

static int m_line_ok(const char *s, size_t n)
{
	size_t i = 0, start;
	int words = 0;

	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	while (i < n) {
		for (start = i; i < n && s[i] != ' '; i++)
			;
		if (!m_word_ok(s + start, i - start, words > 3 ? 3 : words))
			return 0;
		words++;
		while (i < n && s[i] == ' ')
			i++;
	}
	return words >= 3;
}

/* Sofia 1.12.11 loops forever, allocating, on an m= format list it cannot split into tokens
 * ("m=audio 1 UDP \t", a non-ASCII byte), so m= lines are checked against RFC 4566 first. */
static int m_lines_ok(const char *text, size_t len)
{
	size_t i = 0, s, end;

	while (i < len) {
		for (end = i; end < len && text[end] != '\r' && text[end] != '\n'; end++)
			;
		for (s = i; s < end && (text[s] == ' ' || text[s] == '\t'); s++)
			;
		if (end - s >= 2 && text[s] == 'm' && text[s + 1] == '=' &&
		    !m_line_ok(text + s + 2, end - s - 2))
			return 0;
		i = end + 1;
	}
	return 1;
}

/* Parses text into *parser (free with sdp_parser_free) and returns its session or NULL. */
static sdp_session_t *parse(su_home_t *home, const char *text, size_t len, sdp_parser_t **parser)
{
	*parser = NULL;
	if (!text || len == 0 || len > SDP_MAX_INPUT || memchr(text, '\0', len) ||
	    !m_lines_ok(text, len))
		return NULL;
	/* Direction attributes stay attributes: we apply media-over-session precedence ourselves.
	 */
	*parser = sdp_parse(home, text, (issize_t)len, sdp_f_mode_manual);
	return sdp_session(*parser);
}

/* Parses text and picks its audio stream and codec into *pick and *neg. */
static int negotiate(su_home_t *home, const char *text, size_t len,
                     const struct tl_sdp_local *local, struct sdp_pick *pick,
                     struct tl_sdp_media *neg, sdp_parser_t **parser)
{
	sdp_session_t *sdp = parse(home, text, len, parser);
	int err = sdp ? pick_audio(sdp, local, local_codecs(local), pick) : -EPROTO;

	return err ? err : fill_neg(pick, local, neg);
}

static int answer_write(const sdp_session_t *sdp, const struct sdp_pick *pick,
                        const struct tl_sdp_local *local, const struct tl_sdp_media *neg, char *out,
                        size_t size)
{
	struct sdp_out o = {out, size, 0, 0};

	write_head(&o, local);
	for (const sdp_media_t *m = sdp->sdp_media; m; m = m->m_next) {
		if (m == pick->m)
			write_audio(&o, pick, local, neg);
		else
			write_rejected(&o, m);
	}
	return out_finish(&o);
}

int tl_sdp_answer(const char *offer, size_t len, const struct tl_sdp_local *local,
                  struct tl_sdp_media *neg, char *out, size_t size)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	sdp_parser_t *parser;
	struct sdp_pick pick;
	struct tl_sdp_media res;
	int err;

	if (!local_ok(local) || !neg)
		return -EINVAL;
	if (!out || size == 0)
		return -ENOSPC;
	out[0] = '\0';
	err = negotiate(home, offer, len, local, &pick, &res, &parser);
	if (err == 0)
		err = answer_write(pick.sdp, &pick, local, &res, out, size);
	if (err >= 0)
		*neg = res;
	sdp_parser_free(parser);
	su_home_deinit(home);
	return err;
}

int tl_sdp_offer(const struct tl_sdp_local *local, char *out, size_t size)
{
	static const unsigned pts[] = {0, 0, 8, 9, 111}; /* indexed by enum tl_codec */
	struct sdp_out o = {out, size, 0, 0};
	unsigned codecs;
	enum tl_codec id;

	if (!local_ok(local))
		return -EINVAL;
	if (!out || size == 0)
		return -ENOSPC;
	char fmtp[128];
	enum tl_codec list[4];
	int n = 0;

	codecs = local_codecs(local);
	/* Our preference order; without one, the enum's (PCMU, PCMA, G722, opus). */
	for (int i = 0; i < 4 && local->order[i] != TL_CODEC_NONE; i++)
		if (tl_sdp_pref_rank(local, codecs, local->order[i]) >= 0)
			list[n++] = local->order[i];
	for (id = TL_CODEC_PCMU; local->order[0] == TL_CODEC_NONE && id <= TL_CODEC_OPUS; id++)
		if (codecs & (1u << id))
			list[n++] = id;
	write_head(&o, local);
	out_printf(&o, "m=audio %u RTP/AVP", (unsigned)local->port);
	for (int i = 0; i < n; i++)
		out_printf(&o, " %u", pts[list[i]]);
	out_printf(&o, " 101\r\n");
	for (int i = 0; i < n; i++) {
		write_rtpmap(&o, pts[list[i]], list[i]);
		if (list[i] == TL_CODEC_OPUS) {
			tl_sdp_opus_fmtp(fmtp, sizeof(fmtp), local->opus_rate);
			out_printf(&o, "a=fmtp:%u %s\r\n", pts[list[i]], fmtp);
		}
	}
	out_printf(&o, "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n");
	out_printf(&o, "a=ptime:20\r\na=%s\r\n", dir_name(local->dir));
	return out_finish(&o);
}

int tl_sdp_read_answer(const char *answer, size_t len, const struct tl_sdp_local *local,
                       struct tl_sdp_media *neg)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	sdp_parser_t *parser;
	struct sdp_pick pick;
	struct tl_sdp_media res;
	int err;

	if (!local_ok(local) || !neg)
		return -EINVAL;
	err = negotiate(home, answer, len, local, &pick, &res, &parser);
	if (err == 0)
		*neg = res;
	sdp_parser_free(parser);
	su_home_deinit(home);
	return err;
}
