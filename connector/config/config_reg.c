/* config.json's "registrations" (trunkline as a registering user agent) and "registrar" (PBXs
 * register to trunkline), with positioned errors. Passwords may be "${env:NAME}". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config_access.h"
#include "trunkline/registration.h"

struct tl_registration_counters tl_registration_stats;

static const char *const reg_keys[] = {"name",           "registrar",   "user",    "domain",
                                       "auth_user",      "password",    "expires", "transport",
                                       "outbound_proxy", "keepalive_s", NULL};

static int name_ok(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

static int uri_key(const struct tl_config_doc *doc, json_t *obj, const char *path, const char *key,
                   char **out)
{
	char sub[TL_CONFIG_PATH_MAX];
	int rc = tl_config_doc_str(doc, obj, path, key, out);

	if (rc < 0 || !*out)
		return rc;
	tl_config_path(sub, sizeof(sub), path, key);
	if (strncmp(*out, "sip:", 4) != 0 && strncmp(*out, "sips:", 5) != 0)
		return tl_config_doc_fail(doc, sub, 0, "\"%s\" must be a sip: or sips: URI", key);
	return 0;
}

static int load_one(const struct tl_config_doc *doc, json_t *obj, const char *path,
                    struct tl_registration *r)
{
	char sub[TL_CONFIG_PATH_MAX];
	int rc;

	r->expires = 300;
	r->keepalive_s = 30;
	if ((rc = tl_config_doc_keys(doc, obj, path, reg_keys)) < 0 ||
	    (rc = tl_config_doc_str(doc, obj, path, "name", &r->name)) < 0 ||
	    (rc = uri_key(doc, obj, path, "registrar", &r->registrar)) < 0 ||
	    (rc = tl_config_doc_str(doc, obj, path, "user", &r->user)) < 0 ||
	    (rc = tl_config_doc_str(doc, obj, path, "domain", &r->domain)) < 0 ||
	    (rc = tl_config_doc_str(doc, obj, path, "auth_user", &r->auth_user)) < 0 ||
	    (rc = tl_config_secret(doc, obj, path, "password", &r->password)) < 0 ||
	    (rc = tl_config_doc_int(doc, obj, path, "expires", 10, 86400, &r->expires)) < 0 ||
	    (rc = tl_config_doc_str(doc, obj, path, "transport", &r->transport)) < 0 ||
	    (rc = uri_key(doc, obj, path, "outbound_proxy", &r->outbound_proxy)) < 0 ||
	    (rc = tl_config_doc_int(doc, obj, path, "keepalive_s", 0, 3600, &r->keepalive_s)) < 0)
		return rc;
	if (!r->name || !name_ok(r->name))
		return tl_config_doc_fail(
		    doc, r->name ? (tl_config_path(sub, sizeof(sub), path, "name"), sub) : path, 0,
		    "a registration needs \"name\" of letters, digits, '.', '_', '-'");
	if (!r->registrar || !r->user)
		return tl_config_doc_fail(doc, path, 0,
		                          "a registration needs \"registrar\" and \"user\"");
	if (r->transport && strcmp(r->transport, "udp") != 0 && strcmp(r->transport, "tcp") != 0 &&
	    strcmp(r->transport, "tls") != 0) {
		tl_config_path(sub, sizeof(sub), path, "transport");
		return tl_config_doc_fail(doc, sub, 0,
		                          "\"transport\" must be \"udp\", \"tcp\" or \"tls\"");
	}
	return 0;
}

int tl_config_reg_load(const struct tl_config_doc *doc, struct tl_registration **out, size_t *n)
{
	json_t *arr = json_object_get(doc->root, "registrations"), *v;
	char path[TL_CONFIG_PATH_MAX];
	size_t i;
	int rc;

	if (!arr)
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) > TL_REG_MAX)
		return tl_config_doc_fail(
		    doc, "/registrations", 0,
		    "\"registrations\" must be an array of at most %d objects", TL_REG_MAX);
	*out = calloc(json_array_size(arr) + 1, sizeof(**out));
	if (!*out) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	json_array_foreach(arr, i, v)
	{
		tl_config_path_index(path, sizeof(path), "/registrations", i);
		(*n)++;
		if ((rc = load_one(doc, v, path, &(*out)[i])) < 0)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (strcmp((*out)[j].name, (*out)[i].name) == 0)
				return tl_config_doc_fail(doc, path, 0,
				                          "registration name \"%s\" used twice",
				                          (*out)[i].name);
	}
	return 0;
}

static const char *const registrar_keys[] = {"realm",       "users",      "max_expires",
                                             "min_expires", "algorithms", NULL};

int tl_config_registrar_load(const struct tl_config_doc *doc, struct tl_registrar *r)
{
	json_t *obj = json_object_get(doc->root, "registrar"), *users, *v;
	char sub[TL_CONFIG_PATH_MAX];
	const char *name;
	int rc;

	r->max_expires = 3600;
	r->min_expires = 60;
	if (!obj)
		return 0;
	if ((rc = tl_config_doc_keys(doc, obj, "/registrar", registrar_keys)) < 0 ||
	    (rc = tl_config_doc_str(doc, obj, "/registrar", "realm", &r->realm)) < 0 ||
	    (rc = tl_config_doc_int(doc, obj, "/registrar", "max_expires", 10, 86400,
	                            &r->max_expires)) < 0 ||
	    (rc = tl_config_doc_int(doc, obj, "/registrar", "min_expires", 1, 86400,
	                            &r->min_expires)) < 0 ||
	    (rc = tl_config_algorithms(doc, obj, "/registrar", &r->sha256, &r->md5)) < 0)
		return rc;
	if (r->min_expires > r->max_expires)
		return tl_config_doc_fail(doc, "/registrar/min_expires", 0,
		                          "min_expires must not exceed max_expires");
	users = json_object_get(obj, "users");
	if (!json_is_object(users) || json_object_size(users) == 0)
		return tl_config_doc_fail(doc, users ? "/registrar/users" : "/registrar", 0,
		                          "\"users\" must be an object of user name -> password");
	r->users = calloc(json_object_size(users), sizeof(char *));
	r->passwords = calloc(json_object_size(users), sizeof(char *));
	if (!r->users || !r->passwords || (!r->realm && !(r->realm = strdup("trunkline")))) {
		tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
		return -ENOMEM;
	}
	json_object_foreach(users, name, v)
	{
		tl_config_path(sub, sizeof(sub), "/registrar/users", name);
		if (!name_ok(name))
			return tl_config_doc_fail(doc, sub, 1,
			                          "a user name is letters, digits, '.', '_', '-'");
		if (!(r->users[r->n_users] = strdup(name))) {
			tl_err_set(doc->err, doc->file, 0, 0, "out of memory");
			return -ENOMEM;
		}
		r->n_users++;
		if ((rc = tl_config_secret(doc, users, "/registrar/users", name,
		                           &r->passwords[r->n_users - 1])) < 0)
			return rc;
	}
	r->enabled = 1;
	return 0;
}

static void secret_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void tl_registrations_free(struct tl_registration *regs, size_t n)
{
	for (size_t i = 0; regs && i < n; i++) {
		struct tl_registration *r = &regs[i];
		free(r->name);
		free(r->registrar);
		free(r->user);
		free(r->domain);
		free(r->auth_user);
		secret_free(r->password);
		free(r->transport);
		free(r->outbound_proxy);
	}
	free(regs);
}

void tl_registrar_free(struct tl_registrar *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_users; i++) {
		free(r->users[i]);
		secret_free(r->passwords[i]);
	}
	free(r->users);
	free(r->passwords);
	free(r->realm);
	memset(r, 0, sizeof(*r));
}
