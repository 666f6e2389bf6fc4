/* Time for routing: UTC offsets read from the system's TZif files (RFC 8536: the 64-bit
 * transitions of v2+ files, or v1's 32-bit ones, and the footer's POSIX TZ rule for times past
 * the last transition), calendar arithmetic and ISO 8601 parsing. Zones are loaded once, at
 * rules load; lookups are pure, unlike localtime_r with a switched TZ, which is not thread-safe.
 * Leap-second ("right/") zones are read as if their transitions were POSIX times. */
#include "route_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZ_FILE_MAX (1 << 20)

/* One date rule of a POSIX TZ string: Jn (1..365, Feb 29 never counted), n (0..365) or
 * Mm.w.d (day d of week w of month m, w 5 = last), at time seconds after local midnight. */
struct tz_date {
	char kind; /* 'J', 'n' or 'M' */
	int n, m, w, d;
	long time;
};

struct tz_posix {
	long std_off, dst_off; /* seconds east of UTC */
	int has_dst;
	struct tz_date start, end;
};

struct tl_route_tz {
	char *name;
	int64_t *trans; /* transition times, ascending */
	uint8_t *idx;   /* type after each transition */
	size_t n_trans;
	long *offs; /* UTC offset of each type */
	size_t n_types;
	int has_rule;
	struct tz_posix rule;
};

int64_t tl_route_days_from_civil(int64_t y, int m, int d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (unsigned)((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1);
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

void tl_route_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* --- POSIX TZ strings ("GMT0BST,M3.5.0/1,M10.5.0") --- */

static const char *tz_skip_name(const char *s)
{
	const char *start = s;

	if (*s == '<') {
		s = strchr(s, '>');
		return s && s - start >= 4 ? s + 1 : NULL;
	}
	while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))
		s++;
	return s - start >= 3 ? s : NULL;
}

/* [+-]hh[:mm[:ss]] into seconds; hours up to max_h. */
static const char *tz_parse_hms(const char *s, int max_h, long *out)
{
	long sign = 1, part[3] = {0, 0, 0};
	int i;

	if (*s == '+' || *s == '-')
		sign = *s++ == '-' ? -1 : 1;
	for (i = 0; i < 3; i++) {
		if (*s < '0' || *s > '9')
			return NULL;
		part[i] = 0;
		while (*s >= '0' && *s <= '9' && part[i] < 1000)
			part[i] = part[i] * 10 + (*s++ - '0');
		if (*s != ':' || i == 2)
			break;
		s++;
	}
	if (part[0] > max_h || part[1] > 59 || part[2] > 59)
		return NULL;
	*out = sign * (part[0] * 3600 + part[1] * 60 + part[2]);
	return s;
}

static const char *tz_parse_num(const char *s, int lo, int hi, int *out)
{
	int v = 0;

	if (*s < '0' || *s > '9')
		return NULL;
	while (*s >= '0' && *s <= '9' && v <= hi)
		v = v * 10 + (*s++ - '0');
	if (v < lo || v > hi)
		return NULL;
	*out = v;
	return s;
}

static const char *tz_parse_date(const char *s, struct tz_date *dt)
{
	dt->time = 7200;
	if (*s == 'M') {
		dt->kind = 'M';
		if (!(s = tz_parse_num(s + 1, 1, 12, &dt->m)) || *s != '.' ||
		    !(s = tz_parse_num(s + 1, 1, 5, &dt->w)) || *s != '.' ||
		    !(s = tz_parse_num(s + 1, 0, 6, &dt->d)))
			return NULL;
	} else if (*s == 'J') {
		dt->kind = 'J';
		if (!(s = tz_parse_num(s + 1, 1, 365, &dt->n)))
			return NULL;
	} else {
		dt->kind = 'n';
		if (!(s = tz_parse_num(s, 0, 365, &dt->n)))
			return NULL;
	}
	if (*s == '/')
		s = tz_parse_hms(s + 1, 167, &dt->time);
	return s;
}

static int tz_parse_posix(const char *s, struct tz_posix *p)
{
	long off;

	memset(p, 0, sizeof(*p));
	if (!(s = tz_skip_name(s)) || !(s = tz_parse_hms(s, 24, &off)))
		return -1;
	p->std_off = -off;
	if (!*s)
		return 0;
	if (!(s = tz_skip_name(s)))
		return -1;
	p->has_dst = 1;
	p->dst_off = p->std_off + 3600;
	if (*s && *s != ',') {
		if (!(s = tz_parse_hms(s, 24, &off)))
			return -1;
		p->dst_off = -off;
	}
	if (!*s) /* POSIX leaves the default rules to the implementation: use the US ones */
		s = ",M3.2.0,M11.1.0";
	if (*s != ',' || !(s = tz_parse_date(s + 1, &p->start)) || *s != ',' ||
	    !(s = tz_parse_date(s + 1, &p->end)))
		return -1;
	return *s ? -1 : 0;
}

/* Seconds from the epoch to local midnight starting the rule's day in year y, plus its time. */
static int64_t tz_date_local(const struct tz_date *dt, int64_t y)
{
	int64_t days = tl_route_days_from_civil(y, 1, 1);
	int first, day;

	if (dt->kind == 'J') {
		days += dt->n - 1 + (is_leap(y) && dt->n >= 60);
	} else if (dt->kind == 'n') {
		days += dt->n;
	} else {
		days = tl_route_days_from_civil(y, dt->m, 1);
		first = (int)((days % 7 + 7 + 4) % 7); /* weekday of the 1st, 0 = Sunday */
		day = 1 + (dt->d - first + 7) % 7 + (dt->w - 1) * 7;
		while (day > month_days(y, dt->m))
			day -= 7;
		days += day - 1;
	}
	return days * 86400 + dt->time;
}

static long tz_posix_offset(const struct tz_posix *p, int64_t t)
{
	int64_t y, start, end;
	int m, d;

	if (!p->has_dst)
		return p->std_off;
	tl_route_civil_from_days(floor_div(t + p->std_off, 86400), &y, &m, &d);
	start = tz_date_local(&p->start, y) - p->std_off;
	end = tz_date_local(&p->end, y) - p->dst_off;
	if (start < end)
		return t >= start && t < end ? p->dst_off : p->std_off;
	return t >= end && t < start ? p->std_off : p->dst_off;
}

/* --- TZif files --- */

struct tzif_counts {
	uint32_t isut, isstd, leap, time, type, chars;
};

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static int tzif_header(const unsigned char *p, size_t len, struct tzif_counts *c)
{
	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return -1;
	c->isut = be32(p + 20);
	c->isstd = be32(p + 24);
	c->leap = be32(p + 28);
	c->time = be32(p + 32);
	c->type = be32(p + 36);
	c->chars = be32(p + 40);
	if (c->type == 0 || c->type > 256 || c->time > 100000 || c->chars > 65536 ||
	    c->leap > 100000 || (c->isut && c->isut != c->type) ||
	    (c->isstd && c->isstd != c->type))
		return -1;
	return 0;
}

static size_t tzif_block_size(const struct tzif_counts *c, size_t tsize)
{
	return c->time * tsize + c->time + c->type * 6 + c->chars + c->leap * (tsize + 4) +
	       c->isstd + c->isut;
}

/* Reads the data block at p (after its header), times tsize (4 or 8) bytes wide. */
static int tzif_block(struct tl_route_tz *tz, const unsigned char *p, const struct tzif_counts *c,
                      size_t tsize)
{
	tz->n_trans = c->time;
	tz->n_types = c->type;
	tz->trans = calloc(c->time + 1, sizeof(*tz->trans));
	tz->idx = calloc(c->time + 1, 1);
	tz->offs = calloc(c->type, sizeof(*tz->offs));
	if (!tz->trans || !tz->idx || !tz->offs)
		return -ENOMEM;
	for (size_t i = 0; i < c->time; i++) {
		tz->trans[i] = tsize == 8 ? be64(p + i * 8) : (int32_t)be32(p + i * 4);
		if (i > 0 && tz->trans[i] <= tz->trans[i - 1])
			return -EINVAL;
	}
	p += c->time * tsize;
	for (size_t i = 0; i < c->time; i++)
		if ((tz->idx[i] = p[i]) >= c->type)
			return -EINVAL;
	p += c->time;
	for (size_t i = 0; i < c->type; i++) {
		tz->offs[i] = (int32_t)be32(p + i * 6);
		if (tz->offs[i] < -89999 || tz->offs[i] > 93599)
			return -EINVAL;
	}
	return 0;
}

static int tzif_parse(struct tl_route_tz *tz, const unsigned char *p, size_t len)
{
	struct tzif_counts c;
	size_t v1, v2;
	const char *foot, *nl;
	char rule[256];
	int rc;

	if (tzif_header(p, len, &c) < 0)
		return -EINVAL;
	v1 = 44 + tzif_block_size(&c, 4);
	if (v1 > len)
		return -EINVAL;
	if (p[4] < '2')
		return tzif_block(tz, p + 44, &c, 4);
	p += v1;
	len -= v1;
	if (tzif_header(p, len, &c) < 0)
		return -EINVAL;
	v2 = 44 + tzif_block_size(&c, 8);
	if (v2 > len)
		return -EINVAL;
	rc = tzif_block(tz, p + 44, &c, 8);
	if (rc < 0)
		return rc; /* -ENOMEM must not read as "not a TZif file" */
	/* Footer: "\n<POSIX TZ>\n"; empty means no rule past the last transition. */
	foot = (const char *)p + v2;
	if (len - v2 < 2 || foot[0] != '\n')
		return 0;
	nl = memchr(foot + 1, '\n', len - v2 - 1);
	if (!nl || nl == foot + 1 || (size_t)(nl - foot - 1) >= sizeof(rule))
		return 0;
	memcpy(rule, foot + 1, (size_t)(nl - foot - 1));
	rule[nl - foot - 1] = '\0';
	if (tz_parse_posix(rule, &tz->rule) < 0)
		return -EINVAL;
	tz->has_rule = 1;
	return 0;
}

/* Zone names are relative paths of letters, digits and "/_+-." without ".." parts. */
static int tz_name_ok(const char *name)
{
	if (!*name || name[0] == '/' || strlen(name) > 200 || strstr(name, ".."))
		return 0;
	for (const char *s = name; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+-.",
		            *s))
			return 0;
	return 1;
}

static int read_zone(const char *name, unsigned char **buf, size_t *len)
{
	const char *dir = getenv("TZDIR");
	char path[512];
	FILE *f;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
	f = fopen(path, "rb");
	if (!f)
		return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -errno;
	*buf = malloc(TZ_FILE_MAX);
	if (!*buf)
		rc = -ENOMEM;
	else
		*len = fread(*buf, 1, TZ_FILE_MAX, f);
	if (rc == 0 && ferror(f))
		rc = errno == EISDIR ? -ENOENT : -EIO;
	fclose(f);
	return rc;
}

int tl_route_tz_load(struct tl_route_tz **out, const char *name)
{
	struct tl_route_tz *tz = NULL;
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (!tz_name_ok(name))
		return -ENOENT;
	rc = read_zone(name, &buf, &len);
	if (rc < 0)
		goto out;
	tz = calloc(1, sizeof(*tz));
	if (!tz || !(tz->name = strdup(name))) {
		rc = -ENOMEM;
		goto out;
	}
	rc = tzif_parse(tz, buf, len);
	if (rc < 0)
		goto out;
	*out = tz;
	tz = NULL;
out:
	free(buf);
	tl_route_tz_destroy(tz);
	return rc;
}

void tl_route_tz_destroy(struct tl_route_tz *tz)
{
	if (!tz)
		return;
	free(tz->name);
	free(tz->trans);
	free(tz->idx);
	free(tz->offs);
	free(tz);
}

const char *tl_route_tz_name(const struct tl_route_tz *tz)
{
	return tz ? tz->name : "UTC";
}

long tl_route_tz_offset(const struct tl_route_tz *tz, int64_t t)
{
	size_t lo = 0, hi;

	if (!tz)
		return 0;
	if (tz->n_trans == 0 || t >= tz->trans[tz->n_trans - 1]) {
		if (tz->has_rule)
			return tz_posix_offset(&tz->rule, t);
		return tz->n_trans ? tz->offs[tz->idx[tz->n_trans - 1]] : tz->offs[0];
	}
	if (t < tz->trans[0])
		return tz->offs[0];
	/* Last transition at or before t: trans[lo] <= t < trans[hi]. */
	hi = tz->n_trans - 1;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (tz->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return tz->offs[tz->idx[lo]];
}

void tl_route_tz_local(const struct tl_route_tz *tz, int64_t t, int *wday, int *minute)
{
	int64_t local = t + tl_route_tz_offset(tz, t);
	int64_t days = floor_div(local, 86400);

	*wday = (int)(((days + 4) % 7 + 7) % 7);
	*minute = (int)((local - days * 86400) / 60);
}

/* --- ISO 8601 --- */

static const char *iso_digits(const char *s, int n, int *out)
{
	*out = 0;
	for (int i = 0; i < n; i++, s++) {
		if (*s < '0' || *s > '9')
			return NULL;
		*out = *out * 10 + (*s - '0');
	}
	return s;
}

/* "Z", "+hh:mm", "+hhmm", "+hh" or nothing: seconds east of UTC. */
static int iso_zone(const char *s, long *off)
{
	int h, m = 0, sign;

	*off = 0;
	if (!*s || ((*s == 'Z' || *s == 'z') && !s[1]))
		return 0;
	if (*s != '+' && *s != '-')
		return -1;
	sign = *s++ == '-' ? -1 : 1;
	if (!(s = iso_digits(s, 2, &h)))
		return -1;
	if (*s == ':')
		s++;
	if (*s && !(s = iso_digits(s, 2, &m)))
		return -1;
	if (*s || h > 23 || m > 59)
		return -1;
	*off = sign * (h * 3600L + m * 60L);
	return 0;
}

int tl_route_iso_parse(const char *s, time_t *out)
{
	int y, mo, d, h, mi, sec = 0;
	long off;

	if (!(s = iso_digits(s, 4, &y)) || *s++ != '-' || !(s = iso_digits(s, 2, &mo)) ||
	    *s++ != '-' || !(s = iso_digits(s, 2, &d)) || (*s != 'T' && *s != 't' && *s != ' ') ||
	    !(s = iso_digits(s + 1, 2, &h)) || *s++ != ':' || !(s = iso_digits(s, 2, &mi)))
		return -EINVAL;
	if (*s == ':' && !(s = iso_digits(s + 1, 2, &sec)))
		return -EINVAL;
	if (*s == '.' || *s == ',')
		for (s++; *s >= '0' && *s <= '9'; s++)
			;
	if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 || sec > 60 ||
	    iso_zone(s, &off) < 0)
		return -EINVAL;
	*out =
	    (time_t)(tl_route_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off);
	return 0;
}
