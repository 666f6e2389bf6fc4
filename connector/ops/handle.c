/* What each HTTP request of the operations endpoint does, on the HTTP thread: authentication,
 * then either an answer from this thread alone (/healthz) or a question to the SIP thread
 * (tl_ops_ask) turned into JSON, Prometheus text or Twilio's call resource. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ops_int.h"
#include "trunkline/b64.h"
#include "trunkline/log.h"

#define CT_JSON "application/json"
#define CT_TEXT "text/plain; charset=utf-8"
#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"

static void reply(struct tl_ops_sess *s, int status, const char *ctype, char *body)
{
	s->status = status;
	s->ctype = ctype;
	free(s->resp);
	s->resp = body ? body : strdup("");
	s->resp_len = s->resp ? strlen(s->resp) : 0;
}

static void reply_text(struct tl_ops_sess *s, int status, const char *text)
{
	reply(s, status, CT_TEXT, strdup(text));
}

static void reply_error(struct tl_ops_sess *s, int status, const char *msg)
{
	json_t *o = json_pack("{s:s,s:i}", "error", msg, "status", status);

	reply(s, status, CT_JSON, o ? json_dumps(o, JSON_COMPACT) : NULL);
	json_decref(o);
}

/* Equal strings, in time that depends on the length of want only. */
static int secret_equal(const char *got, const char *want)
{
	size_t n = strlen(want), g = strlen(got);
	unsigned char diff = (unsigned char)(g != n);

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(want[i] ^ (i < g ? got[i] : 0));
	return diff == 0;
}

static int bearer_ok(const struct tl_ops *ops, const struct tl_ops_sess *s)
{
	const char *token = ops->cfg->ops_token;

	if (!token)
		return 1;
	return strncmp(s->auth, "Bearer ", 7) == 0 && secret_equal(s->auth + 7, token);
}

/* HTTP basic auth with the Twilio account SID and auth token, as Twilio's API takes it. */
static int basic_ok(const struct tl_ops *ops, const struct tl_ops_sess *s)
{
	const struct tl_config *cfg = ops->cfg;
	char plain[256], want[TL_B64_ENC_LEN(256) + 1];
	int n = snprintf(plain, sizeof(plain), "%s:%s", cfg->twilio_account_sid,
	                 cfg->twilio_auth_token);
	ssize_t w;

	if (n < 0 || (size_t)n >= sizeof(plain))
		return 0;
	w = tl_b64_encode(want, sizeof(want) - 1, (const uint8_t *)plain, (size_t)n);
	if (w < 0)
		return 0;
	want[w] = '\0';
	return strncmp(s->auth, "Basic ", 6) == 0 && secret_equal(s->auth + 6, want);
}

static void unauthorized(struct tl_ops *ops, struct tl_ops_sess *s, const char *scheme)
{
	tl_metrics_add(&ops->metrics->http_unauthorized, 1);
	snprintf(s->challenge, sizeof(s->challenge), "%s realm=\"trunkline\"", scheme);
	reply_error(s, 401, "unauthorized");
}

static void on_readyz(struct tl_ops *ops, struct tl_ops_sess *s)
{
	struct tl_ops_req req = {.kind = TL_OPS_REQ_SNAPSHOT};
	struct tl_ops_snapshot snap;
	char *body;
	int st = tl_ops_ask(ops, &req, &body, &snap);

	free(body);
	free(snap.calls_total);
	if (st != 200)
		reply_text(s, 503, "not ready: the SIP thread did not answer\n");
	else if (snap.draining)
		reply_text(s, 503, "not ready: draining\n");
	else if (snap.overloaded)
		reply_text(s, 503, "not ready: overloaded\n");
	else if (snap.agents_total > 0 && snap.agents_reachable == 0)
		reply_text(s, 503, "not ready: no agent of the rules is reachable\n");
	else
		reply_text(s, 200, "ready\n");
}

static void on_metrics(struct tl_ops *ops, struct tl_ops_sess *s)
{
	struct tl_ops_req req = {.kind = TL_OPS_REQ_SNAPSHOT};
	struct tl_ops_snapshot snap;
	char *body, *text;
	int st = tl_ops_ask(ops, &req, &body, &snap);

	free(body);
	if (st != 200) {
		free(snap.calls_total);
		reply_text(s, 503, "the SIP thread did not answer\n");
		return;
	}
	text = tl_metrics_render(ops->metrics, &snap);
	free(snap.calls_total);
	if (text)
		reply(s, 200, CT_PROM, text);
	else
		reply_text(s, 500, "out of memory\n");
}

/* A question about the calls; the SIP thread's JSON answer goes out as it is. */
static void ask_json(struct tl_ops *ops, struct tl_ops_sess *s, enum tl_ops_req_kind kind,
                     const char *id, const char *target)
{
	struct tl_ops_req req = {.kind = kind};
	struct tl_ops_snapshot snap;
	char *body;
	int st;

	snprintf(req.id, sizeof(req.id), "%s", id ? id : "");
	snprintf(req.target, sizeof(req.target), "%s", target ? target : "");
	st = tl_ops_ask(ops, &req, &body, &snap);
	free(snap.calls_total);
	if (body)
		reply(s, st, CT_JSON, body);
	else
		reply_error(s, st, st == 503 ? "the SIP thread did not answer" : "failed");
}

static int target_ok(const char *t)
{
	return strncmp(t, "sip:", 4) == 0 || strncmp(t, "sips:", 5) == 0 ||
	       strncmp(t, "tel:", 4) == 0;
}

static void on_transfer(struct tl_ops *ops, struct tl_ops_sess *s, const char *id)
{
	json_t *o = s->body ? json_loadb(s->body, s->body_len, 0, NULL) : NULL;
	const char *t = json_string_value(json_object_get(o, "target"));

	if (!t || !target_ok(t) || strlen(t) >= sizeof(((struct tl_ops_req *)0)->target) ||
	    strpbrk(t, " \r\n<>\"")) {
		json_decref(o);
		reply_error(s, 400, "expected {\"target\": \"sip:...\"}");
		return;
	}
	ask_json(ops, s, TL_OPS_REQ_TRANSFER, id, t);
	json_decref(o);
}

void tl_ops_twilio(struct tl_ops *ops, struct tl_ops_sess *s, const char *account, const char *sid);

void tl_ops_handle(struct tl_ops *ops, struct tl_ops_sess *s)
{
	char id[TL_OPS_ID_MAX] = "", account[TL_OPS_ID_MAX] = "";
	enum tl_ops_route r = tl_ops_route_parse(s->method, s->path, id, account);

	if (s->body_too_big) {
		reply_error(s, 413, "request body too large");
		return;
	}
	if (r == TL_OPS_R_TWILIO_CALL) {
		tl_ops_twilio(ops, s, account, id);
		return;
	}
	if (r != TL_OPS_R_HEALTHZ && r != TL_OPS_R_READYZ && r != TL_OPS_R_NOT_FOUND &&
	    !bearer_ok(ops, s)) {
		unauthorized(ops, s, "Bearer");
		return;
	}
	switch (r) {
	case TL_OPS_R_HEALTHZ:
		reply_text(s, 200, "ok\n");
		break;
	case TL_OPS_R_READYZ:
		on_readyz(ops, s);
		break;
	case TL_OPS_R_METRICS:
		on_metrics(ops, s);
		break;
	case TL_OPS_R_CALLS:
		ask_json(ops, s, TL_OPS_REQ_LIST, NULL, NULL);
		break;
	case TL_OPS_R_CALL:
		ask_json(ops, s, TL_OPS_REQ_GET, id, NULL);
		break;
	case TL_OPS_R_CALL_HANGUP:
		ask_json(ops, s, TL_OPS_REQ_HANGUP, id, NULL);
		break;
	case TL_OPS_R_CALL_TRANSFER:
		on_transfer(ops, s, id);
		break;
	case TL_OPS_R_BAD_METHOD:
		reply_error(s, 405, "method not allowed");
		break;
	default:
		reply_error(s, 404, "not found");
		break;
	}
}

/* ---- Twilio's REST API: POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json ---- */

/* Twilio's error shape (https://www.twilio.com/docs/errors/<code>). */
static void twilio_error(struct tl_ops_sess *s, int status, int code, const char *msg)
{
	char more[64];
	json_t *o;

	snprintf(more, sizeof(more), "https://www.twilio.com/docs/errors/%d", code);
	o = json_pack("{s:i,s:s,s:s,s:i}", "code", code, "message", msg, "more_info", more,
	              "status", status);
	reply(s, status, CT_JSON, o ? json_dumps(o, JSON_COMPACT) : NULL);
	json_decref(o);
}

/* Twilio's call resource, from the call's JSON (what GET /calls/{id} shows). */
static char *twilio_call(const struct tl_config *cfg, const char *sid, const char *status,
                         const char *call_json)
{
	json_t *c = call_json ? json_loads(call_json, 0, NULL) : NULL, *o;
	char uri[256];
	char *out;

	snprintf(uri, sizeof(uri), "/2010-04-01/Accounts/%s/Calls/%s.json", cfg->twilio_account_sid,
	         sid);
	o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:s}", "sid", sid, "account_sid",
	              cfg->twilio_account_sid, "api_version", "2010-04-01", "status", status,
	              "direction", "inbound", "from", json_string_value(json_object_get(c, "from")),
	              "to", json_string_value(json_object_get(c, "to")), "start_time",
	              json_string_value(json_object_get(c, "answered_at")), "date_created",
	              json_string_value(json_object_get(c, "invited_at")), "uri", uri);
	out = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	json_decref(c);
	return out;
}

void tl_ops_twilio(struct tl_ops *ops, struct tl_ops_sess *s, const char *account, const char *sid)
{
	const struct tl_config *cfg = ops->cfg;
	char status[32] = "", twiml[1024] = "";
	struct tl_ops_req req = {0};
	struct tl_ops_snapshot snap;
	char *body = NULL;
	int st;

	if (!cfg->twilio_auth_token) {
		twilio_error(s, 404, 20404, "The requested resource was not found");
		return;
	}
	if (!basic_ok(ops, s) || strcmp(account, cfg->twilio_account_sid) != 0) {
		tl_metrics_add(&ops->metrics->http_unauthorized, 1);
		snprintf(s->challenge, sizeof(s->challenge), "Basic realm=\"Twilio API\"");
		twilio_error(s, 401, 20003, "Authenticate");
		return;
	}
	const char *b = s->body ? s->body : "";
	tl_ops_form_get(b, s->body_len, "Status", status, sizeof(status));
	tl_ops_form_get(b, s->body_len, "Twiml", twiml, sizeof(twiml));
	if (strcmp(status, "completed") == 0 || strcmp(status, "canceled") == 0) {
		req.kind = TL_OPS_REQ_HANGUP;
	} else if (twiml[0] && tl_ops_twiml_dial(twiml, req.target, sizeof(req.target)) == 0) {
		req.kind = TL_OPS_REQ_TRANSFER;
	} else {
		twilio_error(s, 400, 21218,
		             "Only Status=completed, Status=canceled and Twiml with <Dial> are "
		             "supported");
		return;
	}
	snprintf(req.id, sizeof(req.id), "%s", sid);
	st = tl_ops_ask(ops, &req, &body, &snap);
	free(snap.calls_total);
	if (st == 404)
		twilio_error(s, 404, 20404, "The requested resource was not found");
	else if (st >= 300)
		twilio_error(s, st, 20001,
		             st == 503 ? "Service unavailable"
		                       : "Call not in a state "
		                         "to be modified");
	else
		reply(s, 200, CT_JSON,
		      twilio_call(cfg, sid,
		                  req.kind == TL_OPS_REQ_HANGUP ? "completed" : "in-progress",
		                  body));
	free(body);
}
