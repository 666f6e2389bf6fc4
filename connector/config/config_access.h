/* Private to connector/config: config.c hands the access keys of "sip" to config_access.c. */
#ifndef TL_CONFIG_ACCESS_H
#define TL_CONFIG_ACCESS_H

#include "trunkline/access.h"
#include "trunkline/config_doc.h"

/* A zeroed policy with its defaults, or NULL (no memory). Free with tl_access_free. */
struct tl_access *tl_config_access_new(void);
/* The access keys of the "sip" object into a. 0, -EINVAL (doc->err says where) or -ENOMEM. */
int tl_config_access_load(const struct tl_config_doc *doc, json_t *sip, struct tl_access *a);
/* A listen entry written as an object (at path): its settings into a->listener[index], its
 * "address" string into *address (borrowed from obj). */
int tl_config_access_listener(const struct tl_config_doc *doc, json_t *obj, const char *path,
                              struct tl_access *a, size_t index, const char **address);
/* A secret string (key of obj at path), "${env:NAME}" resolved; replaces *out. */
int tl_config_secret(const struct tl_config_doc *doc, json_t *obj, const char *path,
                     const char *key, char **out);

/* "algorithms" of obj (at path): ["SHA-256", "MD5"] (default both) or one of them. */
int tl_config_algorithms(const struct tl_config_doc *doc, json_t *obj, const char *path,
                         int *sha256, int *md5);
/* config_reg.c: the top-level "registrations" array and "registrar" object. */
struct tl_registration;
struct tl_registrar;
int tl_config_reg_load(const struct tl_config_doc *doc, struct tl_registration **out, size_t *n);
int tl_config_registrar_load(const struct tl_config_doc *doc, struct tl_registrar *r);

#endif
