/* The call state machine (connector/sip/call.c) driven through the real endpoint: tl_sip_create
 * on a config and rules from a scratch directory, the SIP loop stepped on this thread
 * (tl_sip_step, a test seam), a fake PBX on a plain UDP socket sending hand-written SIP, and the
 * in-process agent server of tl_agent_server.h. Each case checks the wire (what trunkline
 * answers or sends) and the states the call went through, read from sip->calls after every
 * step: answer and ACK, 302 to the fallback, REFER after the agent leaves (NOTIFY 200, 400, none),
 * the agent's hangup, CANCEL, max_call_duration_s during a pending REFER, and a re-INVITE
 * without a common codec. One loop turn can hold several events, so a state that lasts only
 * until another thread reports would be missed: the agent server holds each upgrade until the
 * call has been seen NEW. Every wait is bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sip_int.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function" /* its helpers this test has no use for */
#include "tl_agent_server.h"
#pragma GCC diagnostic pop
#include "tl_test.h"
#include "trunkline/log.h"
#include "trunkline/rules.h"
#include "trunkline/sip.h"

#define FALLBACK "sip:desk@127.0.0.1"

/* ---- sockets ---- */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000 + ts.tv_nsec / 1e6;
}

/* A socket of type bound to 127.0.0.1:port (0: the kernel picks); -1 on failure. */
static int bind_local(int type, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static int local_port(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		return -1;
	return ntohs(a.sin_port);
}

/* A UDP port free right now (trunkline binds it a moment later). */
static int free_udp_port(void)
{
	int fd = bind_local(SOCK_DGRAM, 0), port = fd >= 0 ? local_port(fd) : -1;

	if (fd >= 0)
		close(fd);
	return port;
}

/* n consecutive UDP ports from an even one, all free right now; keep: leave them bound in fds
 * (the PBX's RTP/RTCP pair), else closed (trunkline's media range). Returns the first or -1. */
static int free_udp_range(int n, int *fds, int keep)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		int base = free_udp_port() & ~1, i, ok;

		if (base < 1024 || base + n > 65536)
			continue;
		for (i = 0; i < n && (fds[i] = bind_local(SOCK_DGRAM, base + i)) >= 0; i++)
			;
		ok = i == n;
		if (ok && keep)
			return base;
		while (i-- > 0)
			close(fds[i]);
		if (ok)
			return base;
	}
	return -1;
}

/* ---- the endpoint under test ---- */

static struct {
	struct tl_config *cfg;
	struct tl_sip *sip;
	int sip_port;
	int media_min;
	int pbx_fd, pbx_port; /* the PBX's SIP socket */
	int rtp_fd[2];        /* the PBX's RTP/RTCP pair: trunkline's audio lands here */
	int dead_fd;          /* a TCP port bound, never listening: connection refused */
	struct srv agent;     /* the agent; it can hold upgrades, or refuse them */
} env = {.pbx_fd = -1, .rtp_fd = {-1, -1}, .dead_fd = -1};

static int env_start(int max_call_duration_s)
{
	char config[1024], rules[1024], dur[64] = "";
	struct tl_err err = {0};
	int fds[8];

	env.sip_port = free_udp_port();
	env.media_min = free_udp_range(8, fds, 0);
	if (env.sip_port <= 0 || env.media_min <= 0)
		return -1;
	if (max_call_duration_s)
		snprintf(dur, sizeof(dur), ", \"max_call_duration_s\": %d", max_call_duration_s);
	snprintf(config, sizeof(config),
	         "{\"sip\": {\"listen\": [\"udp:127.0.0.1:%d\"], \"max_calls\": 4%s},\n"
	         " \"media\": {\"address\": \"127.0.0.1\", \"port_min\": %d, \"port_max\": %d},\n"
	         " \"shutdown_timeout_ms\": 1000, \"rules\": \"rules.json\",\n"
	         " \"ops\": {\"listen\": null}, \"cdr\": {\"path\": null}}\n",
	         env.sip_port, dur, env.media_min, env.media_min + 7);
	/* "down" picks the dead agent, anything else the in-process server. */
	snprintf(rules, sizeof(rules),
	         "{\"agents\": {\"live\": {\"url\": \"ws://127.0.0.1:%d/agent\"},\n"
	         "  \"dead\": {\"url\": \"ws://127.0.0.1:%d/agent\"}},\n"
	         " \"routes\": [\n"
	         "  {\"name\": \"down\", \"match\": {\"to\": \"^down$\"}, \"agent\": \"dead\",\n"
	         "   \"fallback\": \"" FALLBACK "\"},\n"
	         "  {\"name\": \"ai\", \"agent\": \"live\", \"fallback\": \"" FALLBACK "\"}]}\n",
	         env.agent.port, local_port(env.dead_fd));
	tl_test_put("rules.json", rules);
	if (tl_config_load(&env.cfg, tl_test_put("config.json", config), &err) < 0) {
		fprintf(stderr, "config: %s:%d:%d: %s\n", err.file, err.line, err.col, err.msg);
		return -1;
	}
	return tl_sip_create(&env.sip, env.cfg);
}

static void env_stop(void)
{
	tl_sip_destroy(env.sip);
	env.sip = NULL;
	tl_config_destroy(env.cfg);
	env.cfg = NULL;
}

/* ---- the PBX: one call at a time, its messages from trunkline kept in an inbox ---- */

struct pcall {
	char id[64];      /* Call-ID */
	char tag[32];     /* our From tag */
	char user[32];    /* the Request-URI's user: picks the route */
	char branch[48];  /* the last INVITE's branch: its CANCEL and the ACK of a failure */
	char to[256];     /* trunkline's To with its tag, once a response carried one */
	char target[256]; /* trunkline's Contact URI: in-dialog requests go there */
	char hist[16];    /* the call's states, one letter each (N A C E), x once it is gone */
};

#define INBOX 128
static struct msg {
	char text[8192];
	int used;
	double t; /* when it was read, now_ms() */
} inbox[INBOX];
static int n_inbox;
static struct pcall *tracked; /* whose states observe() records */
static unsigned n_branch;

static void pbx_read(void)
{
	char buf[8192];
	ssize_t n;

	while ((n = recv(env.pbx_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
		buf[n] = '\0';
		if (strspn(buf, "\r\n") == (size_t)n || n_inbox == INBOX)
			continue; /* keep-alive, or a full inbox (the checks then fail) */
		memcpy(inbox[n_inbox].text, buf, (size_t)n + 1);
		inbox[n_inbox].t = now_ms();
		inbox[n_inbox++].used = 0;
	}
	for (int i = 0; i < 2; i++) /* trunkline's RTP and RTCP: not looked at */
		while (recv(env.rtp_fd[i], buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
}

/* Appends the tracked call's state to its history when it changed: this thread owns sip->calls
 * (it is the SIP thread), so reading them between steps is safe. */
static void observe(void)
{
	struct pcall *p = tracked;
	struct tl_call *c = env.sip ? env.sip->calls : NULL;
	size_t n = p ? strlen(p->hist) : 0;
	char st;

	if (!p)
		return;
	while (c && strcmp(c->call_id, p->id) != 0)
		c = c->next;
	if (c)
		st = "NACE"[c->state];
	else if (n)
		st = 'x';
	else
		return;
	if ((!n || p->hist[n - 1] != st) && n + 1 < sizeof(p->hist)) {
		p->hist[n] = st;
		p->hist[n + 1] = '\0';
	}
}

/* One turn: the SIP loop for at most 5 ms, what reached the PBX, the call's state. */
static void pump(void)
{
	tl_sip_step(env.sip, 5);
	pbx_read();
	observe();
}

static void run_for(int ms)
{
	double end = now_ms() + ms;

	while (now_ms() < end)
		pump();
}

/* The value of header name (full form) in a message, copied to out; 0 when absent. */
static int hdr(const char *m, const char *name, char *out, size_t size)
{
	const char *end = strstr(m, "\r\n\r\n"), *p = m;
	size_t len = strlen(name);

	while ((p = strstr(p, "\r\n")) != NULL && (!end || p < end)) {
		p += 2;
		if (strncasecmp(p, name, len) == 0 && (p[len] == ':' || p[len] == ' ')) {
			const char *v = strchr(p, ':') + 1, *e = strstr(v, "\r\n");
			v += strspn(v, " \t");
			snprintf(out, size, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
			return 1;
		}
	}
	if (size)
		out[0] = '\0';
	return 0;
}

static const char *body_of(const char *m)
{
	const char *b = strstr(m, "\r\n\r\n");
	return b ? b + 4 : "";
}

/* status > 0: a response with that status to method; 0: a request method. */
static int matches(const char *m, const struct pcall *p, int status, const char *method)
{
	char id[128], cseq[64];
	const char *cm;

	if (!hdr(m, "Call-ID", id, sizeof(id)) || strcmp(id, p->id) != 0)
		return 0;
	if (!status)
		return strncmp(m, method, strlen(method)) == 0 && m[strlen(method)] == ' ';
	hdr(m, "CSeq", cseq, sizeof(cseq));
	cm = strchr(cseq, ' ');
	return strncmp(m, "SIP/2.0 ", 8) == 0 && atoi(m + 8) == status && cm &&
	       strcmp(cm + 1, method) == 0;
}

static struct msg *find_msg(const struct pcall *p, int status, const char *method, int unused)
{
	for (int i = 0; i < n_inbox; i++)
		if ((!unused || !inbox[i].used) && matches(inbox[i].text, p, status, method))
			return &inbox[i];
	return NULL;
}

/* Index in the inbox of the first message that matches, -1 if none. */
static int first_msg(const struct pcall *p, int status, const char *method)
{
	const struct msg *m = find_msg(p, status, method, 0);
	return m ? (int)(m - inbox) : -1;
}

static int count_msg(const struct pcall *p, int status, const char *method)
{
	int n = 0;

	for (int i = 0; i < n_inbox; i++)
		n += matches(inbox[i].text, p, status, method);
	return n;
}

/* The first message not yet taken that matches, within ms (stepping the loop); NULL if none. */
static const char *wait_msg(struct pcall *p, int status, const char *method, int ms, double *t)
{
	double end = now_ms() + ms;
	struct msg *m;

	while (!(m = find_msg(p, status, method, 1)) && now_ms() < end)
		pump();
	if (!m) {
		fprintf(stderr, "  no %d %s for %s within %d ms\n", status, method, p->id, ms);
		return NULL;
	}
	m->used = 1;
	if (t)
		*t = m->t;
	return m->text;
}

/* The call's state as last seen, '-' before it was seen at all. */
static char last_state(const struct pcall *p)
{
	size_t n = strlen(p->hist);

	return n ? p->hist[n - 1] : '-';
}

/* Until the call's last state is st ('x': gone), within ms. */
static int wait_state(struct pcall *p, char st, int ms)
{
	double end = now_ms() + ms;

	for (;;) {
		if (last_state(p) == st)
			return 1;
		if (now_ms() >= end)
			return 0;
		pump();
	}
}

static void pbx_send(const char *text)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)env.sip_port)};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sendto(env.pbx_fd, text, strlen(text), 0, (struct sockaddr *)&a, sizeof(a)) < 0)
		fprintf(stderr, "  sendto: %s\n", strerror(errno));
}

/* A request from the PBX. ruri and to NULL: the initial INVITE's (to trunkline, no tag);
 * branch NULL: a new one; extra: header lines, each ending in CRLF. */
static void send_req(struct pcall *p, const char *method, int cseq, const char *branch,
                     const char *ruri, const char *to, const char *extra, const char *ctype,
                     const char *body)
{
	char r0[256], t0[256], br[48], msg[8192];

	snprintf(r0, sizeof(r0), "sip:%s@127.0.0.1:%d", p->user, env.sip_port);
	snprintf(t0, sizeof(t0), "<%s>", r0);
	if (!branch) {
		snprintf(br, sizeof(br), "z9hG4bK-ct%u", ++n_branch);
		branch = br;
	}
	if (strcmp(method, "INVITE") == 0)
		snprintf(p->branch, sizeof(p->branch), "%s", branch);
	snprintf(msg, sizeof(msg),
	         "%s %s SIP/2.0\r\n"
	         "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport\r\n"
	         "From: <sip:+15550001111@127.0.0.1:%d>;tag=%s\r\n"
	         "To: %s\r\n"
	         "Call-ID: %s\r\n"
	         "CSeq: %d %s\r\n"
	         "Contact: <sip:pbx@127.0.0.1:%d>\r\n"
	         "Max-Forwards: 70\r\n"
	         "%s%s%s%s"
	         "Content-Length: %zu\r\n\r\n%s",
	         method, ruri ? ruri : r0, env.pbx_port, branch, env.pbx_port, p->tag, to ? to : t0,
	         p->id, cseq, method, env.pbx_port, extra ? extra : "",
	         ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
	         body ? strlen(body) : 0, body ? body : "");
	pbx_send(msg);
}

/* A request in the dialog trunkline's 200 OK set up. */
static void send_in_dialog(struct pcall *p, const char *method, int cseq, const char *extra,
                           const char *ctype, const char *body)
{
	send_req(p, method, cseq, NULL, p->target, p->to, extra, ctype, body);
}

/* An offer of one codec (pt and name) on the PBX's RTP port, session version ver. */
static const char *offer(int pt, const char *name, int ver)
{
	static char sdp[512];

	snprintf(sdp, sizeof(sdp),
	         "v=0\r\no=pbx 1 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	         "m=audio %d RTP/AVP %d\r\na=rtpmap:%d %s/8000\r\na=sendrecv\r\n",
	         ver, local_port(env.rtp_fd[0]), pt, pt, name);
	return sdp;
}

/* Answers a request trunkline sent, with its Via, From, To, Call-ID and CSeq. */
static void respond(const char *req, int status, const char *phrase)
{
	static const char *const copy[] = {"Via", "From", "To", "Call-ID", "CSeq"};
	char msg[4096], v[1024];
	int n = snprintf(msg, sizeof(msg), "SIP/2.0 %d %s\r\n", status, phrase);

	for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++)
		if (hdr(req, copy[i], v, sizeof(v)))
			n += snprintf(msg + n, sizeof(msg) - (size_t)n, "%s: %s\r\n", copy[i], v);
	snprintf(msg + n, sizeof(msg) - (size_t)n,
	         "Contact: <sip:pbx@127.0.0.1:%d>\r\nContent-Length: 0\r\n\r\n", env.pbx_port);
	pbx_send(msg);
}

/* Starts a call to user (the route) and tracks its states. */
static void call_begin(struct pcall *p, const char *user)
{
	static unsigned n;

	memset(p, 0, sizeof(*p));
	n++;
	snprintf(p->id, sizeof(p->id), "calltest-%u-%d@127.0.0.1", n, (int)getpid());
	snprintf(p->tag, sizeof(p->tag), "pbx%u", n);
	snprintf(p->user, sizeof(p->user), "%s", user);
	n_inbox = 0;
	tracked = p;
	send_req(p, "INVITE", 1, NULL, NULL, NULL,
	         "Allow: INVITE, ACK, BYE, CANCEL, REFER, NOTIFY\r\n", "application/sdp",
	         offer(0, "PCMU", 1));
}

/* trunkline's To (with tag) and Contact from a response: the dialog. */
static void learn_dialog(struct pcall *p, const char *resp)
{
	char contact[256];
	const char *lt, *gt;

	hdr(resp, "To", p->to, sizeof(p->to));
	hdr(resp, "Contact", contact, sizeof(contact));
	lt = strchr(contact, '<');
	gt = lt ? strchr(lt, '>') : NULL;
	if (lt && gt)
		snprintf(p->target, sizeof(p->target), "%.*s", (int)(gt - lt - 1), lt + 1);
	else
		snprintf(p->target, sizeof(p->target), "%s", contact);
}

/* The ACK of a failure response to the INVITE of cseq (1: the initial one, else a re-INVITE
 * in the dialog): the INVITE's branch and Request-URI, the response's To. */
static void ack_failure(struct pcall *p, const char *resp, int cseq)
{
	char to[256];

	hdr(resp, "To", to, sizeof(to));
	send_req(p, "ACK", cseq, p->branch, cseq > 1 ? p->target : NULL, to, NULL, NULL, NULL);
}

/* Connections the agent server accepted (and closed) so far. */
static int agent_connections(int *closed)
{
	int n;

	*closed = srv_closed(&env.agent);
	pthread_mutex_lock(&env.agent.lock);
	n = env.agent.connections;
	pthread_mutex_unlock(&env.agent.lock);
	return n;
}

/* Until the agent server holds no open connection, within ms. */
static int wait_agent_idle(int ms)
{
	double end = now_ms() + ms;
	int closed;

	while (agent_connections(&closed) != closed)
		if (now_ms() >= end)
			return 0;
		else
			pump();
	return 1;
}

/* Until the agent server holds an open connection that has received "start", within ms. */
static int wait_agent_started(int ms)
{
	double end = now_ms() + ms;

	for (;;) {
		int closed, open = agent_connections(&closed) > closed;
		size_t n = srv_count(&env.agent);
		for (size_t i = 0; open && i < n; i++) {
			json_t *j = srv_json(&env.agent, i);
			const char *e = json_string_value(json_object_get(j, "event"));
			int hit = e && strcmp(e, "start") == 0;
			json_decref(j);
			if (hit)
				return 1;
		}
		if (now_ms() >= end)
			return 0;
		pump();
	}
}

/* The end of every case: the call is gone, and so is its agent connection. A call a failed
 * check left behind is dropped, so that the next case starts clean. */
static void call_end(struct pcall *p)
{
	TL_CHECK(wait_state(p, 'x', 3000));
	TL_CHECK_INT(env.sip->n_calls, 0);
	while (env.sip->calls) {
		nua_handle_t *nh = env.sip->calls->nh;
		tl_call_destroy(env.sip->calls);
		nua_handle_bind(nh, NULL);
		nua_handle_destroy(nh);
	}
	srv_hold(&env.agent, 0);
	srv_reject(&env.agent, 0);
	TL_CHECK(wait_agent_idle(3000));
	tracked = NULL;
}

/* A call whose agent connection the server holds: INVITE, 100, 180, the upgrade request at
 * the server; the call stays NEW and unanswered meanwhile. Returns 0, or -1 with the failure
 * counted. The caller lets the upgrade go (srv_hold 0). */
static int call_held(struct pcall *p, const char *user)
{
	double end;
	int before = srv_upgrades(&env.agent);

	srv_hold(&env.agent, 1);
	call_begin(p, user);
	TL_CHECK(wait_msg(p, 180, "INVITE", 3000, NULL) != NULL);
	for (end = now_ms() + 3000; srv_upgrades(&env.agent) == before && now_ms() < end;)
		pump();
	TL_CHECK(srv_upgrades(&env.agent) > before);
	run_for(50); /* time for a 200 that should not come */
	TL_CHECK(find_msg(p, 200, "INVITE", 0) == NULL);
	TL_CHECK_STR(p->hist, "N");
	return strcmp(p->hist, "N") == 0 ? 0 : -1;
}

/* A call to the agent up to CONFIRMED: INVITE, 100, 180, held until the server lets the
 * upgrade go, 200 with SDP, ACK. *t: when the 200 arrived. Returns 0, or -1 with the failure
 * counted. */
static int call_answer(struct pcall *p, double *t)
{
	const char *m, *media;
	char v[256];
	int port;

	if (call_held(p, "ai") < 0)
		return -1;
	srv_hold(&env.agent, 0);
	m = wait_msg(p, 200, "INVITE", 5000, t);
	TL_CHECK(m != NULL);
	if (!m)
		return -1;
	TL_CHECK_STR(p->hist, "NA");
	hdr(m, "Content-Type", v, sizeof(v));
	TL_CHECK_STR(v, "application/sdp");
	/* Our PCMU offer answered with PCMU on a port of the media range. */
	media = strstr(body_of(m), "m=audio ");
	port = media ? atoi(media + 8) : 0;
	TL_CHECK(port >= env.media_min && port <= env.media_min + 7 && port % 2 == 0);
	TL_CHECK(media && strncmp(strchr(media + 8, ' '), " RTP/AVP 0", 10) == 0);
	TL_CHECK(wait_agent_started(3000));
	learn_dialog(p, m);
	send_in_dialog(p, "ACK", 1, NULL, NULL, NULL);
	TL_CHECK(wait_state(p, 'C', 3000));
	TL_CHECK_STR(p->hist, "NAC");
	return strcmp(p->hist, "NAC") == 0 ? 0 : -1;
}

/* 1. INVITE -> 100, 180; the agent connects -> 200 with SDP (NEW -> ANSWERED); ACK ->
 * CONFIRMED; BYE -> 200 and the call is gone. */
static void test_answer_ack_bye(void)
{
	struct pcall p;

	if (call_answer(&p, NULL) == 0) {
		/* 100 and 180 first, once each, then the 200 */
		int trying = first_msg(&p, 100, "INVITE"), ringing = first_msg(&p, 180, "INVITE");
		TL_CHECK(trying >= 0 && trying < ringing && ringing < first_msg(&p, 200, "INVITE"));
		TL_CHECK_INT(count_msg(&p, 100, "INVITE"), 1);
		TL_CHECK_INT(count_msg(&p, 180, "INVITE"), 1);
		send_in_dialog(&p, "BYE", 2, NULL, NULL, NULL);
		TL_CHECK(wait_msg(&p, 200, "BYE", 3000, NULL) != NULL);
	}
	call_end(&p);
	TL_CHECK_STR(p.hist, "NACx");
}

/* The 302 to the fallback for the call to user: Contact <fallback>, Diversion with the reason
 * "unavailable". (The call may be gone by the time it is read: the caller checks that it was
 * ENDING, in its history.) */
static void expect_302(struct pcall *p, const char *user)
{
	const char *m = wait_msg(p, 302, "INVITE", 5000, NULL);
	char v[256], want[128];

	TL_CHECK(m != NULL);
	if (!m)
		return;
	hdr(m, "Contact", v, sizeof(v));
	TL_CHECK_STR(v, "<" FALLBACK ">");
	hdr(m, "Diversion", v, sizeof(v));
	snprintf(want, sizeof(want), "<sip:%s@127.0.0.1>;reason=unavailable;counter=1", user);
	TL_CHECK_STR(v, want);
	ack_failure(p, m, 1);
}

/* 2a. The agent refuses the upgrade (503) before the answer; the route has a fallback: 302,
 * the call NEW -> ENDING, never a 200. */
static void test_refused_302(void)
{
	struct pcall p;

	srv_reject(&env.agent, 1);
	if (call_held(&p, "ai") == 0) {
		srv_hold(&env.agent, 0);
		expect_302(&p, "ai");
	}
	call_end(&p);
	run_for(300); /* a late 200 would come now */
	TL_CHECK(find_msg(&p, 200, "INVITE", 0) == NULL);
	TL_CHECK_STR(p.hist, "NEx");
}

/* 2b. The agent is unreachable (connection refused): the same 302. Here the agent thread may
 * report the failure within the loop turn that read the INVITE, so NEW may not be seen. */
static void test_unreachable_302(void)
{
	struct pcall p;

	call_begin(&p, "down");
	expect_302(&p, "down");
	call_end(&p);
	run_for(300);
	TL_CHECK(find_msg(&p, 200, "INVITE", 0) == NULL);
	TL_CHECK(strcmp(p.hist, "NEx") == 0 || strcmp(p.hist, "Ex") == 0);
}

/* The agent's server closes its connection mid-call: trunkline REFERs the PBX to the fallback.
 * Returns the REFER, or NULL with the failure counted. */
static const char *agent_leaves(struct pcall *p)
{
	const char *m;
	char v[256];

	srv_send(&env.agent, 0, NULL, 0, 1000);
	m = wait_msg(p, 0, "REFER", 5000, NULL);
	TL_CHECK(m != NULL);
	if (!m)
		return NULL;
	hdr(m, "Refer-To", v, sizeof(v));
	TL_CHECK_STR(v, "<" FALLBACK ">");
	TL_CHECK_STR(p->hist, "NAC");
	return m;
}

/* trunkline's BYE, whose Reason must contain reason; answered 200. */
static void expect_bye(struct pcall *p, const char *reason, int ms)
{
	const char *m = wait_msg(p, 0, "BYE", ms, NULL);
	char v[256];

	TL_CHECK(m != NULL);
	if (!m)
		return;
	hdr(m, "Reason", v, sizeof(v));
	TL_CHECK(strstr(v, reason) != NULL);
	if (!strstr(v, reason))
		fprintf(stderr, "  Reason: %s, expected %s\n", v, reason);
	TL_CHECK_STR(p->hist, "NACE");
	respond(m, 200, "OK");
}

/* 3a. After the answer the agent leaves: REFER to the fallback; 202, then NOTIFY
 * "SIP/2.0 200 OK" -> BYE (Call transferred). */
static void test_agent_closes_refer_notify(void)
{
	struct pcall p;
	const char *m;

	if (call_answer(&p, NULL) == 0 && (m = agent_leaves(&p)) != NULL) {
		respond(m, 202, "Accepted");
		run_for(200); /* the 202 alone ends nothing (no norefersub) */
		TL_CHECK_STR(p.hist, "NAC");
		TL_CHECK(find_msg(&p, 0, "BYE", 0) == NULL);
		send_in_dialog(
		    &p, "NOTIFY", 2,
		    "Event: refer\r\nSubscription-State: terminated;reason=noresource\r\n",
		    "message/sipfrag;version=2.0", "SIP/2.0 200 OK\r\n");
		TL_CHECK(wait_msg(&p, 200, "NOTIFY", 3000, NULL) != NULL);
		expect_bye(&p, "Call transferred", 3000);
	}
	call_end(&p);
	TL_CHECK_STR(p.hist, "NACEx");
}

/* 3b. The PBX refuses the REFER with a status that rules out a bridge too (400, or a 6xx other
 * than 603 such as 600; a 604 ends the dialog itself, RFC 5057): BYE (Transfer refused). 403, 405,
 * 501, 603 start the bridge instead (test_bridge.py, test_fallback.py). */
static void refer_refused(int status, const char *phrase)
{
	struct pcall p;
	const char *m;

	if (call_answer(&p, NULL) == 0 && (m = agent_leaves(&p)) != NULL) {
		respond(m, status, phrase);
		expect_bye(&p, "Transfer refused", 3000);
	}
	call_end(&p);
	TL_CHECK_STR(p.hist, "NACEx");
}

static void test_agent_closes_refer_refused(void)
{
	refer_refused(400, "Bad Request");
}

static void test_agent_closes_refer_refused_6xx(void)
{
	refer_refused(600, "Busy Everywhere");
}

/* A REFER accepted (202) whose outcome never comes: the BYE (reason) comes lo..3000 ms after
 * the 202, or after the 200 OK (from_answer). */
static void refer_unreported(int from_answer, double lo, const char *reason)
{
	struct pcall p;
	const char *m;
	double t200 = 0, t0 = 0, tbye = 0;
	char v[256];

	if (call_answer(&p, &t200) == 0 && (m = agent_leaves(&p)) != NULL) {
		respond(m, 202, "Accepted");
		t0 = from_answer ? t200 : now_ms();
		m = wait_msg(&p, 0, "BYE", 5000, &tbye);
		TL_CHECK(m != NULL);
		if (m) {
			fprintf(stderr, "  BYE %.0f ms after the %s\n", tbye - t0,
			        from_answer ? "200 OK" : "202");
			TL_CHECK(tbye - t0 >= lo && tbye - t0 <= 3000);
			hdr(m, "Reason", v, sizeof(v));
			TL_CHECK(strstr(v, reason) != NULL);
			TL_CHECK_STR(p.hist, "NACE");
			respond(m, 200, "OK");
		}
	}
	call_end(&p);
	TL_CHECK_STR(p.hist, "NACEx");
}

/* 3c. The PBX accepts the REFER (202) and never reports its outcome: the call ends when the
 * REFER's timer runs out (docs/ROUTING.md: 32 s; 700 ms here, tl_call_refer_timeout_ms), with
 * BYE (Transfer not confirmed), not before. */
static void test_refer_not_confirmed(void)
{
	tl_call_refer_timeout_ms = 700;
	refer_unreported(0, 600, "Transfer not confirmed");
	tl_call_refer_timeout_ms = 32000;
}

/* 4. The agent sends {"event":"hangup"} (docs/PROTOCOL.md): BYE (Agent hung up). */
static void test_agent_hangup(void)
{
	struct pcall p;

	if (call_answer(&p, NULL) == 0) {
		srv_text(&env.agent, "{\"event\":\"hangup\"}");
		expect_bye(&p, "Agent hung up", 3000);
	}
	call_end(&p);
	TL_CHECK_STR(p.hist, "NACEx");
}

/* 5. CANCEL while the agent's connection is still opening (held): 200 for the CANCEL, 487
 * for the INVITE, the call gone, never a 200 for the INVITE. */
static void test_cancel(void)
{
	struct pcall p;
	const char *m;

	if (call_held(&p, "ai") == 0) {
		send_req(&p, "CANCEL", 1, p.branch, NULL, NULL, NULL, NULL, NULL);
		TL_CHECK(wait_msg(&p, 200, "CANCEL", 3000, NULL) != NULL);
		m = wait_msg(&p, 487, "INVITE", 3000, NULL);
		TL_CHECK(m != NULL);
		if (m)
			ack_failure(&p, m, 1);
		TL_CHECK(wait_state(&p, 'x', 3000));
		srv_hold(&env.agent, 0); /* the upgrade goes on, to a connection closed by now */
		run_for(200);
		TL_CHECK(find_msg(&p, 200, "INVITE", 0) == NULL);
	}
	call_end(&p);
	TL_CHECK_STR(p.hist, "Nx");
}

/* 6. max_call_duration_s 1 with a REFER accepted (202) and no NOTIFY: BYE at about 1 s from
 * the answer (Maximum call duration), not at the REFER's 32 s timeout. */
static void test_max_duration_during_refer(void)
{
	refer_unreported(1, 900, "Maximum call duration");
}

/* 7. A re-INVITE offering only G.729 (pt 18): 488, and the call stays CONFIRMED (a BYE then
 * ends it normally). */
static void test_reinvite_no_codec(void)
{
	struct pcall p;
	const char *m;

	if (call_answer(&p, NULL) == 0) {
		send_in_dialog(&p, "INVITE", 2, NULL, "application/sdp", offer(18, "G729", 2));
		m = wait_msg(&p, 488, "INVITE", 3000, NULL);
		TL_CHECK(m != NULL);
		if (m)
			ack_failure(&p, m, 2);
		run_for(200);
		TL_CHECK_STR(p.hist, "NAC");
		TL_CHECK(find_msg(&p, 0, "BYE", 0) == NULL);
		send_in_dialog(&p, "BYE", 3, NULL, NULL, NULL);
		TL_CHECK(wait_msg(&p, 200, "BYE", 3000, NULL) != NULL);
	}
	call_end(&p);
	TL_CHECK_STR(p.hist, "NACx");
}

static int setup(void)
{
	const char *level = getenv("TL_TEST_LOG"); /* "info" or "debug" to see trunkline's log */
	enum tl_log_level lv = TL_LOG_WARN;

	if (level)
		tl_log_level_parse(level, &lv);
	tl_log_setup(lv, TL_LOG_TEXT);
	signal(SIGPIPE, SIG_IGN);
	if (tl_test_tmpdir("test_call") < 0)
		return -1;
	env.pbx_fd = bind_local(SOCK_DGRAM, 0);
	env.pbx_port = env.pbx_fd >= 0 ? local_port(env.pbx_fd) : -1;
	env.dead_fd = bind_local(SOCK_STREAM, 0);
	if (env.pbx_port <= 0 || env.dead_fd < 0 || free_udp_range(2, env.rtp_fd, 1) < 0)
		return -1;
	return srv_start(&env.agent, 0);
}

int main(void)
{
	int ok = setup() == 0;

	TL_CHECK(ok);
	if (ok && env_start(0) == 0) {
		TL_TEST_RUN(test_answer_ack_bye);
		TL_TEST_RUN(test_refused_302);
		TL_TEST_RUN(test_unreachable_302);
		TL_TEST_RUN(test_agent_closes_refer_notify);
		TL_TEST_RUN(test_agent_closes_refer_refused);
		TL_TEST_RUN(test_agent_closes_refer_refused_6xx);
		TL_TEST_RUN(test_refer_not_confirmed);
		TL_TEST_RUN(test_agent_hangup);
		TL_TEST_RUN(test_cancel);
		TL_TEST_RUN(test_reinvite_no_codec);
	} else {
		TL_CHECK(!"endpoint started");
	}
	env_stop();
	if (ok && env_start(1) == 0)
		TL_TEST_RUN(test_max_duration_during_refer);
	else
		TL_CHECK(!"endpoint with max_call_duration_s 1 started");
	env_stop();
	if (env.agent.ctx)
		srv_stop(&env.agent);
	int *fds[] = {&env.rtp_fd[0], &env.rtp_fd[1], &env.pbx_fd, &env.dead_fd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] >= 0)
			close(*fds[i]);
	tl_test_tmpdir_remove();
	return TL_TEST_END();
}
