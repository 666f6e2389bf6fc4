/* The config file reader shared by config.c, rules.c and route.c: a parsed JSON file with its value
 * positions, and checkers that read one typed field and, when it is wrong, report "file:line:col:
 * message". */
#ifndef TRUNKLINE_CONFIG_DOC_H
#define TRUNKLINE_CONFIG_DOC_H

#include <stdatomic.h>
#include <stddef.h>

#include <jansson.h>

#include "trunkline/config.h"
#include "trunkline/jpos.h"

/* Paths are RFC 6901 pointers as tl_jpos_lookup takes them. */
#define TL_CONFIG_PATH_MAX 1024

struct tl_config_doc {
	const char *file; /* borrowed */
	char *text;
	size_t len;
	json_t *root;
	struct tl_jpos *jp;
	struct tl_err *err;       /* borrowed, may be NULL */
	const atomic_int *cancel; /* borrowed, may be NULL: see tl_config_doc_cancelled */
};

/* Reads and parses file (JSON_REJECT_DUPLICATES). A file of more than max_bytes is refused
 * before it is read (fstat), and the read stops there anyway: -EFBIG, "too large (N bytes,
 * limit M)". Returns 0, -ENOENT (or another -errno) when the file cannot be read, -EINVAL on
 * a syntax error, -ENOMEM, -ECANCELED once *cancel is set (checked while reading and parsing);
 * *err is filled on failure. Call tl_config_doc_close either way. */
int tl_config_doc_open(struct tl_config_doc *doc, const char *file, size_t max_bytes,
                       const atomic_int *cancel, struct tl_err *err);
/* Non-zero once the load this document belongs to is no longer wanted; then it also fills
 * doc->err ("load abandoned"). Loops over many items check it. */
int tl_config_doc_cancelled(const struct tl_config_doc *doc);
void tl_config_doc_close(struct tl_config_doc *doc);

/* Fills doc->err with the position of the value at path (key != 0: of its key) and the
 * formatted message; returns -EINVAL. */
int tl_config_doc_fail(const struct tl_config_doc *doc, const char *path, int key, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

/* buf = parent + "/" + key, key escaped per RFC 6901. */
void tl_config_path(char *buf, size_t size, const char *parent, const char *key);
void tl_config_path_index(char *buf, size_t size, const char *parent, size_t index);

/* obj (at path) must be an object whose keys are all in allowed (NULL-terminated). */
int tl_config_doc_keys(const struct tl_config_doc *doc, json_t *obj, const char *path,
                       const char *const *allowed);

/* Optional member key of obj (at path): absent leaves *out alone. */
int tl_config_doc_int(const struct tl_config_doc *doc, json_t *obj, const char *path,
                      const char *key, long long lo, long long hi, int *out);
/* String member: replaces (and frees) *out with a copy; empty strings are refused. */
int tl_config_doc_str(const struct tl_config_doc *doc, json_t *obj, const char *path,
                      const char *key, char **out);
/* A relative path in doc (*p, may be NULL) becomes relative to doc's own directory, not to the
 * working directory: *p is replaced (and freed). 0 or -ENOMEM. */
int tl_config_doc_resolve(const struct tl_config_doc *doc, char **p);
/* Object of string values: *out becomes a new reference (an empty object when absent). */
int tl_config_doc_strmap(const struct tl_config_doc *doc, json_t *obj, const char *path,
                         const char *key, json_t **out);

/* config_ops.c: the "ops" and "cdr" sections into cfg (defaults when absent), and their
 * release. */
int tl_config_load_ops(const struct tl_config_doc *doc, struct tl_config *cfg);
void tl_config_free_ops(struct tl_config *cfg);
/* Codec preference list member key of obj (at path): an array of distinct names of "opus",
 * "G722", "PCMU", "PCMA" (any case), best first. Absent leaves out alone; out gets the list,
 * the rest TL_CODEC_NONE. (codecs.c) */
int tl_config_doc_codecs(const struct tl_config_doc *doc, json_t *obj, const char *path,
                         const char *key, enum tl_codec out[TL_CONFIG_CODECS]);
/* config_tls.c: sip.tls (files checked with OpenSSL) and what the listen entries can bind;
 * sip may be NULL. */
int tl_config_load_transport(const struct tl_config_doc *doc, struct tl_config *cfg, json_t *sip);

/* route.c: compiles routes[index] (obj at path, already checked for shape by rules.c) into
 * *r, which the caller zeroed. Errors point at the offending value. */
struct tl_route;
int tl_route_compile(const struct tl_config_doc *doc, const struct tl_rules *rules, json_t *obj,
                     const char *path, size_t index, struct tl_route *r);
/* rules.c: frees a snapshot now, whatever its references and retire hook (the loader calls it
 * for the snapshots handed to it). NULL-safe. */
void tl_rules_free(struct tl_rules *rules);
/* Frees what tl_route_compile allocated in r (not r itself); NULL-safe. */
void tl_route_release(struct tl_route *r);
/* Each value of the string map params (member key of obj at path) must have well-formed
 * ${name} substitutions. */
int tl_route_check_params(const struct tl_config_doc *doc, json_t *obj, const char *path,
                          const char *key);

#endif
