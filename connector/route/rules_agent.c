/* The security settings of an agent in rules.json: "${env:NAME}" in header values (secrets stay
 * out of the file; a value is never logged), "tls_verify" and "ca" for wss:// agents. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "route_int.h"

#include "trunkline/config_doc.h"

/* Expands every ${env:NAME} of value into a new string (*out, caller frees); 0, -ENOENT with
 * the name in missing, -EINVAL (unterminated, bad name) or -ENOMEM. */
static int expand(const char *value, char **out, char *missing, size_t msize)
{
	size_t cap = strlen(value) + 1, len = 0;
	char *buf = malloc(cap);
	const char *p = value;

	if (!buf)
		return -ENOMEM;
	while (*p) {
		const char *start = strstr(p, "${env:"), *end, *v;
		size_t n = start ? (size_t)(start - p) : strlen(p), vlen;
		char name[128];

		if (len + n + 1 > cap && !(buf = realloc(buf, cap = len + n + 1)))
			return -ENOMEM;
		memcpy(buf + len, p, n);
		len += n;
		if (!start)
			break;
		end = strchr(start + 6, '}');
		if (!end || end == start + 6 || (size_t)(end - start - 6) >= sizeof(name) ||
		    strspn(start + 6,
		           "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
		        (size_t)(end - start - 6)) {
			free(buf);
			return -EINVAL;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(end - start - 6), start + 6);
		v = getenv(name);
		if (!v) {
			snprintf(missing, msize, "%s", name);
			free(buf);
			return -ENOENT;
		}
		vlen = strlen(v);
		if (len + vlen + strlen(end + 1) + 1 > cap) {
			char *nb = realloc(buf, cap = len + vlen + strlen(end + 1) + 1);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
		}
		memcpy(buf + len, v, vlen);
		len += vlen;
		p = end + 1;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

int tl_rules_agent_env(const struct tl_config_doc *doc, json_t *headers, const char *path)
{
	char sub[TL_CONFIG_PATH_MAX], item[TL_CONFIG_PATH_MAX], missing[128];
	const char *name;
	json_t *v;

	tl_config_path(sub, sizeof(sub), path, "headers");
	json_object_foreach(headers, name, v)
	{
		char *out = NULL;
		int rc;

		if (!strstr(json_string_value(v), "${env:"))
			continue;
		tl_config_path(item, sizeof(item), sub, name);
		rc = expand(json_string_value(v), &out, missing, sizeof(missing));
		if (rc == -ENOENT)
			return tl_config_doc_fail(
			    doc, item, 0, "header \"%s\": environment variable %s is not set", name,
			    missing);
		if (rc == -EINVAL)
			return tl_config_doc_fail(
			    doc, item, 0,
			    "header \"%s\": ${env:NAME} needs a name of letters, "
			    "digits and _ and a closing }",
			    name);
		if (rc < 0 || json_string_set(v, out) < 0) {
			free(out);
			tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
			return -ENOMEM;
		}
		explicit_bzero(out, strlen(out));
		free(out);
	}
	return 0;
}

int tl_rules_agent_tls(const struct tl_config_doc *doc, json_t *obj, const char *path,
                       struct tl_agent *a)
{
	char sub[TL_CONFIG_PATH_MAX];
	json_t *v = json_object_get(obj, "tls_verify");
	int rc;

	if (v) {
		tl_config_path(sub, sizeof(sub), path, "tls_verify");
		if (!json_is_boolean(v))
			return tl_config_doc_fail(doc, sub, 0, "expected true or false");
		a->tls_insecure = json_is_false(v);
	}
	if ((rc = tl_config_doc_str(doc, obj, path, "ca", &a->ca)) < 0 ||
	    (rc = tl_config_doc_resolve(doc, &a->ca)) < 0)
		return rc;
	if (a->ca) {
		tl_config_path(sub, sizeof(sub), path, "ca");
		if (strncmp(a->url, "wss://", 6) != 0)
			return tl_config_doc_fail(doc, sub, 0, "\"ca\" is for wss:// agents");
		if (access(a->ca, R_OK) != 0)
			return tl_config_doc_fail(doc, sub, 0, "%s: cannot read: %s", a->ca,
			                          strerror(errno));
	}
	return 0;
}

int tl_rules_route_srtp(const struct tl_config_doc *doc, json_t *obj, const char *path,
                        struct tl_route *r)
{
	static const char *const modes[] = {"optional", "required", "off"}; /* enum tl_srtp_mode */
	json_t *v = json_object_get(obj, "srtp");
	char sub[TL_CONFIG_PATH_MAX];

	for (int i = 0; v && json_is_string(v) && i < 3; i++)
		if (strcmp(json_string_value(v), modes[i]) == 0) {
			r->srtp = i + 1;
			return 0;
		}
	if (!v)
		return 0;
	tl_config_path(sub, sizeof(sub), path, "srtp");
	return tl_config_doc_fail(doc, sub, 0,
	                          "\"srtp\" must be \"optional\", \"required\" or \"off\"");
}
