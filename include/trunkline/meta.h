/* Caller metadata: turns an incoming INVITE into the flat string map that agents receive
 * (from, from_name, to, diversion, call_id, pbx, user_to_user, cisco_guid, privacy, X-*).
 * The key names are a public contract, documented in docs/METADATA.md. Pure: no I/O. */
#ifndef TRUNKLINE_META_H
#define TRUNKLINE_META_H

#include <stddef.h>

#include <jansson.h>

/* One header of the INVITE as it arrived: canonical or original name, raw value text. */
struct tl_meta_header {
	const char *name;
	const char *value;
};

/* Builds the metadata object from the INVITE's Request-URI (the whole URI text, e.g.
 * "sip:+14155550123@10.20.0.5:5060") and its headers in wire order (a header line repeated
 * appears repeatedly). Everything is borrowed until return. On success *out is a new JSON
 * object of string values (caller json_decref's it) and 0 is returned; -ENOMEM otherwise. */
int tl_meta_build(json_t **out, const char *request_uri, const struct tl_meta_header *hdrs,
                  size_t n_hdrs);

/* Convenience for raw SIP text (a whole request, CRLF or LF line ends, folded lines allowed),
 * as in tests/data/pbx-samples: splits the request line and headers and calls tl_meta_build.
 * Returns -EPROTO when text is not a SIP request. */
int tl_meta_from_text(json_t **out, const char *text, size_t len);

#endif
