/* The bridge between a SIP call and its audio: creates, updates and stops the call's media
 * stream on the negotiated SDP and its agent WebSocket connection. It decides nothing about the
 * call (call.c does, agent events included). Runs on the SIP thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "sip_int.h"

#include "trunkline/log.h"
#include "trunkline/route.h"

static void random_sid(char *out, size_t size, const char *prefix)
{
	unsigned char r[16];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		memset(r, 0, sizeof(r));
	snprintf(out, size, "%s", prefix);
	for (size_t i = 0; i < sizeof(r) && strlen(out) + 2 < size; i++)
		snprintf(out + strlen(out), size - strlen(out), "%02x", r[i]);
}

/* The negotiated remote address as a socket address; AF_UNSPEC when there is none yet
 * (delayed offer before the ACK, or hold with 0.0.0.0). */
void tl_bridge_sdp_addr(const struct tl_sdp_media *m, int have_media, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (!have_media || m->remote_port == 0)
		return;
	if (m->remote_ipv6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, m->remote_addr, &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons(m->remote_port);
		}
	} else {
		struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
		if (inet_pton(AF_INET, m->remote_addr, &in4->sin_addr) == 1 &&
		    in4->sin_addr.s_addr != 0) {
			in4->sin_family = AF_INET;
			in4->sin_port = htons(m->remote_port);
		}
	}
}

static void remote_addr(const struct tl_call *call, struct sockaddr_storage *ss)
{
	tl_bridge_sdp_addr(&call->media, call->have_media, ss);
}

/* "1.2.3.4:5" or "[::1]:5"; "" for AF_UNSPEC. */
static void addr_text(const struct sockaddr_storage *ss, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	out[0] = '\0';
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip)))
			snprintf(out, size, "%s:%u", ip, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		if (inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip)))
			snprintf(out, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
	}
}

/* cell NULL: no agent (and no uplink consumer) for this stream. */
static int make_stream(struct tl_call *call, void *cell)
{
	const struct tl_agent *a = cell ? call->agent : NULL;
	struct tl_media_stream_params p = {
	    .rtp_fd = call->rtp_fd,
	    .rtcp_fd = call->rtcp_fd,
	    .sdp = call->media,
	    .agent_format =
	        a && a->dialect == TL_DIALECT_NATIVE ? TL_MEDIA_AGENT_L16 : TL_MEDIA_AGENT_ULAW,
	    .agent_rate = a ? a->sample_rate : 8000,
	    .playout_backlog_ms = !a || a->playout_backlog_ms < 0 ? TL_MEDIA_BACKLOG_DEFAULT
	                          : a->playout_backlog_ms == 0    ? TL_MEDIA_BACKLOG_OFF
	                                                          : a->playout_backlog_ms,
	    .notify = cell ? tl_ws_notify : NULL,
	    .notify_arg = cell,
	    .notify_release = cell ? tl_ws_notify_release : NULL,
	    .rtp_source = call->sip->cfg->rtp_strict ? TL_MEDIA_RTP_STRICT : TL_MEDIA_RTP_LEARN,
	    .rtp_relearn_ms = call->sip->cfg->rtp_relearn_ms,
	};
	int err, worker;

	if (!call->have_media) {
		/* Delayed offer: no answer yet. Codec and address come with the ACK. */
		p.sdp.codec = TL_CODEC_PCMU;
		p.sdp.pt = 0;
		p.sdp.te_pt = -1;
		p.sdp.ptime = 20;
	}
	/* Nothing goes to the caller before our answer is sent (RFC 3264 §6): receive only until
	 * tl_bridge_update at answer time. */
	if (p.sdp.dir == TL_SDP_SENDRECV)
		p.sdp.dir = TL_SDP_RECVONLY;
	else if (p.sdp.dir == TL_SDP_SENDONLY)
		p.sdp.dir = TL_SDP_INACTIVE;
	remote_addr(call, &p.remote);
	worker = cell ? tl_ws_cell_worker(cell) : -1;
	/* Hosted agent loops: the stream on the worker whose thread carries its WebSocket. */
	if (worker >= 0)
		err = tl_media_stream_create_on(&call->stream, call->sip->media, &p,
		                                (unsigned)worker);
	else
		err = tl_media_stream_create(&call->stream, call->sip->media, &p);
	if (err == 0)
		call->rtp_fd = call->rtcp_fd = -1; /* the stream owns them now */
	return err;
}

int tl_bridge_start(struct tl_call *call)
{
	struct tl_ws_conn_params p = {0};
	void *cell = NULL;
	char *meta;
	int err;

	call->agent = call->route ? call->route->agent : NULL;
	if (!call->agent)
		return -ENOENT;
	random_sid(call->call_sid, sizeof(call->call_sid), "CA");
	random_sid(call->stream_sid, sizeof(call->stream_sid), "MZ");
	err = tl_ws_cell_create(call->sip->ws, call->num, &cell);
	if (err < 0)
		return err;
	err = make_stream(call, cell);
	if (err < 0) {
		tl_ws_notify_release(cell);
		return err;
	}
	/* The agent sees the call metadata plus the agent's and route's params. */
	json_t *start = tl_route_params(call->route, call->meta);
	if (start)
		json_object_update(start, call->meta);
	meta = json_dumps(start ? start : call->meta, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(start);
	p.call = call->num;
	p.cell = cell;
	p.agent = call->agent;
	p.call_sid = call->call_sid;
	p.stream_sid = call->stream_sid;
	p.account_sid = call->sip->cfg->twilio_account_sid;
	p.meta_json = meta ? meta : "{}";
	p.stream = call->stream;
	tl_sip_ops_agent_asked(call);
	p.codec = call->have_media ? tl_sdp_codec_name(call->media.codec) : NULL;
	err = tl_ws_connect(call->sip->ws, &p);
	free(meta);
	if (err < 0)
		return err;
	call->agent_loop = (unsigned)err;
	call->agent_started = 1;
	tl_log_info(call->call_id, "connecting agent \"%s\" at %s (%s), callSid %s, agent loop %u",
	            call->agent->name, call->agent->url,
	            call->agent->dialect == TL_DIALECT_NATIVE ? "native" : "twilio", call->call_sid,
	            call->agent_loop);
	return 0;
}

int tl_bridge_start_media(struct tl_call *call)
{
	return call->stream ? 0 : make_stream(call, NULL);
}

void tl_bridge_update(struct tl_call *call)
{
	struct sockaddr_storage ss;

	if (!call->stream || !call->have_media)
		return;
	remote_addr(call, &ss);
	tl_media_stream_update(call->stream, &ss, &call->media);
}

void tl_bridge_stop_agent(struct tl_call *call)
{
	if (call->agent_started)
		tl_ws_close(call->sip->ws, call->agent_loop, call->num);
	call->agent_started = 0;
}

static void log_media_stats(struct tl_call *call)
{
	struct tl_media_stats st;
	char from[INET6_ADDRSTRLEN + 8] = "";

	tl_media_stream_stats(call->stream, &st);
	call->rec.media = st; /* for the call record */
	call->rec.have_media = 1;
	tl_log_info(
	    call->call_id,
	    "media: rx %llu packets (lost %llu, %llu rebuilt by FEC, late %llu, duplicate %llu, "
	    "bad %llu, "
	    "foreign %llu, jitter %u ms), tx %llu packets (%llu silence), uplink drops %llu",
	    (unsigned long long)st.rx_packets, (unsigned long long)st.rx_lost,
	    (unsigned long long)st.rx_fec, (unsigned long long)st.rx_late,
	    (unsigned long long)st.rx_dup, (unsigned long long)st.rx_bad,
	    (unsigned long long)st.rx_foreign, st.jitter_ms, (unsigned long long)st.tx_packets,
	    (unsigned long long)st.tx_silence, (unsigned long long)st.uplink_drops);
	if (st.rx_srtp_fail)
		tl_log_warn(call->call_id,
		            "media: dropped %llu SRTP/SRTCP packets that failed authentication or "
		            "the replay check",
		            (unsigned long long)st.rx_srtp_fail);
	if (st.rx_foreign == 0 && st.rtcp_dropped == 0)
		return;
	/* Once per call, here rather than per packet: someone else sent to the call's ports. */
	addr_text(&st.foreign_from, from, sizeof(from));
	tl_log_warn(call->call_id,
	            "media: dropped %llu RTP and %llu RTCP packets not from the call's source%s%s",
	            (unsigned long long)st.rx_foreign, (unsigned long long)st.rtcp_dropped,
	            from[0] ? ", the first from " : "", from);
}

void tl_bridge_stop(struct tl_call *call)
{
	tl_bridge_stop_agent(call);
	tl_leg_end(call); /* the bridge's other leg, if any: BYE or CANCEL */
	if (call->stream)
		log_media_stats(call);
	if (call->stream) {
		/* The agent connection may hold the stream a little longer: not with a tone. */
		tl_media_stream_ringback(call->stream, TL_TONE_RINGBACK_NONE);
		tl_media_stream_unref(call->stream);
	}
	call->stream = NULL;
}

void tl_bridge_agent_gone(struct tl_call *call)
{
	call->agent_started = 0; /* the agent client already forgot the connection */
}

/* Until the PBX reports a transfer's outcome the caller hears ringback, not silence. The
 * stream stays when the agent goes; tl_bridge_stop ends the tone with the call. */
void tl_bridge_ringback(struct tl_call *call)
{
	enum tl_tone_ringback kind = call->sip->cfg->transfer_ringback;
	int err;

	if (!call->stream || kind == TL_TONE_RINGBACK_NONE)
		return;
	err = tl_media_stream_ringback(call->stream, kind);
	if (err < 0)
		tl_log_warn(call->call_id, "no ringback during the transfer: %s", strerror(-err));
}
