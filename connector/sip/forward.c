/* Forwarding mechanics: builds and sends a 302 with a Diversion header, a blind-transfer REFER
 * (with RFC 4488 Refer-Sub: false to a PBX that supports it), and reads the status out of a
 * REFER's NOTIFY. It decides nothing and changes no call state: call.c chooses when to
 * redirect or transfer and what each outcome does. SIP thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sip_int.h"

#include <sofia-sip/sip_extra.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

#include "trunkline/log.h"

/* sip.c's Supported plus RFC 4488's tag: nua keeps a request's Supported for the handle. */
#define TL_SUPPORTED_NOREFERSUB "timer, 100rel, norefersub"

void tl_forward_redirect(struct tl_call *call, const char *target, const char *reason)
{
	const char *to = json_string_value(json_object_get(call->meta, "to"));
	char contact[600], diversion[700];

	snprintf(contact, sizeof(contact), "<%s>", target);
	/* RFC 5806: the PBX and the person who answers see why the call came to them. */
	snprintf(diversion, sizeof(diversion), "Diversion: <sip:%s@%s>;reason=%s;counter=1",
	         to ? to : "unknown", call->ruri_host[0] ? call->ruri_host : "trunkline", reason);
	tl_log_info(call->call_id, "redirecting (302) to %s", target);
	nua_respond(call->nh, SIP_302_MOVED_TEMPORARILY, SIPTAG_CONTACT_STR(contact),
	            SIPTAG_HEADER_STR(diversion), TAG_END());
}

void tl_forward_refer(struct tl_call *call, const char *target)
{
	char refer_to[600];

	snprintf(refer_to, sizeof(refer_to), "<%s>", target);
	tl_log_info(call->call_id, "transferring (REFER%s) to %s",
	            call->norefersub ? ", Refer-Sub: false" : "", target);
	/* RFC 4488: a PBX that supports it reports nothing after its 2xx; NOTIFYs are not due. */
	nua_refer(call->nh, SIPTAG_REFER_TO_STR(refer_to),
	          TAG_IF(call->norefersub, SIPTAG_REFER_SUB_STR("false")),
	          TAG_IF(call->norefersub, SIPTAG_SUPPORTED_STR(TL_SUPPORTED_NOREFERSUB)),
	          TAG_END());
}

/* NOTIFY bodies are message/sipfrag: "SIP/2.0 200 OK" once the transfer target answered. */
int tl_forward_notify_status(const sip_t *notify)
{
	const sip_payload_t *pl = notify ? notify->sip_payload : NULL;

	if (pl && pl->pl_data && pl->pl_len > 8 && strncmp(pl->pl_data, "SIP/2.0 ", 8) == 0)
		return atoi(pl->pl_data + 8);
	return 0;
}
