/* "codecs": an ordered codec preference list (media.codecs in config.json, a route's codecs in
 * rules.json), checked with positioned errors. What the order means is sdp.c's business. */
#include <strings.h>

#include "trunkline/config_doc.h"

static enum tl_codec codec_by_name(const char *s)
{
	static const struct {
		const char *name;
		enum tl_codec id;
	} names[] = {{"PCMU", TL_CODEC_PCMU},
	             {"PCMA", TL_CODEC_PCMA},
	             {"G722", TL_CODEC_G722},
	             {"opus", TL_CODEC_OPUS}};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(s, names[i].name) == 0)
			return names[i].id;
	return TL_CODEC_NONE;
}

int tl_config_doc_codecs(const struct tl_config_doc *doc, json_t *obj, const char *path,
                         const char *key, enum tl_codec out[TL_CONFIG_CODECS])
{
	json_t *v = json_object_get(obj, key), *e;
	char sub[TL_CONFIG_PATH_MAX], el[TL_CONFIG_PATH_MAX];
	enum tl_codec list[TL_CONFIG_CODECS] = {TL_CODEC_NONE};
	size_t i;

	if (!v)
		return 0;
	tl_config_path(sub, sizeof(sub), path, key);
	if (!json_is_array(v) || json_array_size(v) == 0)
		return tl_config_doc_fail(doc, sub, 0,
		                          "expected a non-empty array of codec names (\"opus\", "
		                          "\"G722\", \"PCMU\", \"PCMA\")");
	json_array_foreach(v, i, e)
	{
		tl_config_path_index(el, sizeof(el), sub, i);
		enum tl_codec id =
		    json_is_string(e) ? codec_by_name(json_string_value(e)) : TL_CODEC_NONE;
		if (id == TL_CODEC_NONE)
			return tl_config_doc_fail(doc, el, 0,
			                          "unknown codec: expected \"opus\", \"G722\", "
			                          "\"PCMU\" or \"PCMA\"");
		for (size_t j = 0; j < i; j++)
			if (list[j] == id)
				return tl_config_doc_fail(doc, el, 0, "codec listed twice");
		list[i] = id;
	}
	for (i = 0; i < TL_CONFIG_CODECS; i++)
		out[i] = list[i];
	return 0;
}
