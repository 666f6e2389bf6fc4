/* tl-echo-agent: an AI-agent stand-in for tests and the load benchmark. A single-threaded
 * libwebsockets server that speaks both trunkline dialects (Twilio Media Streams and native
 * PCM), echoes audio back and can hang up, transfer, vanish or refuse on command. This file:
 * options, the lws server and its callback, the stats file. Per-call logic is in echo_conn.c. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>

#include "echo_agent.h"

/* Set by SIGINT/SIGTERM; the only global, as a signal handler has nowhere else to write. */
static volatile sig_atomic_t stop_requested;

int64_t echo_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- stats ---- */

static const char *dialect_name(enum echo_dialect d)
{
	return d == ECHO_TWILIO ? "twilio" : d == ECHO_NATIVE ? "native" : "unknown";
}

static json_t *rec_json(const struct echo_rec *r)
{
	return json_pack(
	    "{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:b}", "call", r->call_sid,
	    "codec", r->codec, "stream", r->stream_sid, "dialect", dialect_name(r->dialect), "dtmf",
	    r->digits, "media_in", (json_int_t)r->media_in, "media_out", (json_int_t)r->media_out,
	    "marks_sent", (json_int_t)r->marks_sent, "marks_received", (json_int_t)r->marks_in,
	    "drops", (json_int_t)r->drops, "flood_sent", (json_int_t)r->flood_sent, "tone", r->tone,
	    "tone_holes", (json_int_t)r->tone_holes, "closed", r->closed);
}

static json_t *totals_json(const struct echo_app *app, size_t active)
{
	const struct echo_totals *t = &app->t;

	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "connections",
	                 (json_int_t)t->connections, "active", (json_int_t)active, "rejected",
	                 (json_int_t)t->rejected, "media_in", (json_int_t)t->media_in, "media_out",
	                 (json_int_t)t->media_out, "marks_sent", (json_int_t)t->marks_sent,
	                 "marks_received", (json_int_t)t->marks_in, "dtmf", (json_int_t)t->dtmf,
	                 "tones", (json_int_t)t->tones, "drops", (json_int_t)t->drops);
}

/* Writes the stats file through a temporary and rename(), so readers never see half of it. */
static void stats_write(struct echo_app *app)
{
	json_t *calls, *root;
	char tmp[PATH_MAX];
	size_t active = 0;

	if (!app->o.stats_path)
		return; /* no array made: it leaked each tick without --stats */
	calls = json_array();
	for (size_t i = 0; i < app->n_done; i++)
		json_array_append_new(calls, rec_json(&app->done[i]));
	for (const struct echo_conn *c = app->active; c; c = c->next, active++)
		json_array_append_new(calls, rec_json(&c->rec));
	root = totals_json(app, active);
	json_object_set_new(root, "calls", calls);
	snprintf(tmp, sizeof(tmp), "%s.tmp", app->o.stats_path);
	if (json_dump_file(root, tmp, JSON_INDENT(1)) || rename(tmp, app->o.stats_path))
		fprintf(stderr, "tl-echo-agent: cannot write %s: %s\n", app->o.stats_path,
		        strerror(errno));
	json_decref(root);
	app->dirty = 0;
}

static void stats_tick(lws_sorted_usec_list_t *sul)
{
	struct echo_app *app = lws_container_of(sul, struct echo_app, stats_sul);

	if (app->dirty)
		stats_write(app);
	lws_sul_schedule(app->ctx, 0, &app->stats_sul, stats_tick, LWS_US_PER_SEC);
}

/* ---- lws glue ---- */

static int confirm_upgrade(struct lws *wsi, struct echo_app *app)
{
	if (!app->o.reject)
		return 0;
	app->t.rejected++;
	app->dirty = 1;
	if (app->o.verbose)
		fprintf(stderr, "refusing upgrade with 503\n");
	/* >0: we answered ourselves; lws completes the HTTP transaction. */
	return lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, NULL) ? -1 : 1;
}

static int plain_http(struct lws *wsi)
{
	/* A GET that is no upgrade: say we are alive (handy for readiness checks). */
	if (lws_return_http_status(wsi, HTTP_STATUS_OK, NULL))
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
	struct echo_conn *c = user;
	struct echo_app *app = lws_context_user(lws_get_context(wsi));

	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return confirm_upgrade(wsi, app);
	case LWS_CALLBACK_HTTP:
		return plain_http(wsi);
	case LWS_CALLBACK_ESTABLISHED:
		echo_conn_open(c, app, wsi);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return c && c->app ? echo_conn_receive(c, in, len) : -1;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c && c->app ? echo_conn_writeable(c) : 0;
	case LWS_CALLBACK_TIMER:
		return c && c->app ? echo_conn_timer(c) : 0;
	case LWS_CALLBACK_CLOSED:
		if (c)
			echo_conn_close(c);
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

/* The first protocol is also the default, so clients that ask for no subprotocol get it. */
static const struct lws_protocols protocols[] = {
    {.name = "tl-echo",
     .callback = callback,
     .per_session_data_size = sizeof(struct echo_conn),
     .rx_buffer_size = 8192,
     .tx_packet_size = 65536},
    {0},
};

static void drain_tick(lws_sorted_usec_list_t *sul)
{
	struct echo_app *app = lws_container_of(sul, struct echo_app, stats_sul);

	lws_sul_schedule(app->ctx, 0, &app->stats_sul, drain_tick, 50 * LWS_US_PER_MS);
}

/* One turn of the loop: libev's (epoll) by default, else lws's own (TL_ECHO_POLL=1), which
 * poll()s every connection each time it wakes. */
static int service(struct echo_app *app)
{
	if (app->evl) {
		ev_run(app->evl, EVRUN_ONCE);
		return 0;
	}
	return lws_service(app->ctx, 0);
}

/* On SIGINT/SIGTERM: a close frame (1001 going away) to every peer, then up to 500 ms for the
 * closing handshakes; lws_context_destroy() drops whatever is left without a word. */
static void drain(struct echo_app *app)
{
	int64_t until = echo_now_us() + 500000;

	for (struct echo_conn *c = app->active; c; c = c->next) {
		c->stopping = 1;
		lws_callback_on_writable(c->wsi);
	}
	drain_tick(&app->stats_sul); /* the loop wakes at least every 50 ms */
	while (app->active && echo_now_us() < until && service(app) >= 0)
		;
}

/* ---- options and main ---- */

static void usage(FILE *f)
{
	fprintf(f, "usage: tl-echo-agent [--port N] [--host ADDR] [--delay-ms N] [--stats FILE]\n"
	           "         [--hangup-after-ms N] [--close-after-ms N]\n"
	           "         [--transfer-after-ms N [--transfer-target URI]]\n"
	           "         [--reject] [--tone-report] [--tone-hz N] [--no-tone] [--verbose]\n"
	           "         [--mark-flood N]\n"
	           "WebSocket agent for trunkline tests: echoes audio in the Twilio or native\n"
	           "dialect, marks every 50 frames, logs DTMF, answers digit 9 with DTMF 1.\n"
	           "--port 0 picks a free port (printed at start-up).\n"
	           "--mark-flood N: also sends N mark/clear messages a second (alternately) on\n"
	           "every call, as fast as trunkline reads them up to that rate.\n"
	           "--no-tone: no test-tone detector (the load benchmark: about 7 %% of this\n"
	           "agent's time at 1000 calls); the stats file then reports no tone.\n");
}

static int int_arg(const char *name, const char *s, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "tl-echo-agent: %s must be an integer in %d..%d\n", name, min, max);
		return -1;
	}
	*out = (int)v;
	return 0;
}

enum {
	OPT_PORT = 256,
	OPT_HOST,
	OPT_DELAY,
	OPT_STATS,
	OPT_HANGUP,
	OPT_CLOSE,
	OPT_XFER,
	OPT_TARGET,
	OPT_REJECT,
	OPT_TONE,
	OPT_VERBOSE,
	OPT_FLOOD,
	OPT_TONE_HZ,
	OPT_NO_TONE,
	OPT_HELP
};

static const struct option long_opts[] = {
    {"port", required_argument, NULL, OPT_PORT},
    {"host", required_argument, NULL, OPT_HOST},
    {"delay-ms", required_argument, NULL, OPT_DELAY},
    {"stats", required_argument, NULL, OPT_STATS},
    {"hangup-after-ms", required_argument, NULL, OPT_HANGUP},
    {"close-after-ms", required_argument, NULL, OPT_CLOSE},
    {"transfer-after-ms", required_argument, NULL, OPT_XFER},
    {"transfer-target", required_argument, NULL, OPT_TARGET},
    {"reject", no_argument, NULL, OPT_REJECT},
    {"tone-report", no_argument, NULL, OPT_TONE},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"mark-flood", required_argument, NULL, OPT_FLOOD},
    {"tone-hz", required_argument, NULL, OPT_TONE_HZ},
    {"no-tone", no_argument, NULL, OPT_NO_TONE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int opt_one(struct echo_opts *o, int opt)
{
	switch (opt) {
	case OPT_PORT:
		return int_arg("--port", optarg, 0, 65535, &o->port);
	case OPT_HOST:
		o->host = optarg;
		return 0;
	case OPT_DELAY:
		return int_arg("--delay-ms", optarg, 0, 60000, &o->delay_ms);
	case OPT_STATS:
		o->stats_path = optarg;
		return 0;
	case OPT_HANGUP:
		return int_arg("--hangup-after-ms", optarg, 0, INT_MAX / 1000, &o->hangup_ms);
	case OPT_CLOSE:
		return int_arg("--close-after-ms", optarg, 0, INT_MAX / 1000, &o->close_ms);
	case OPT_XFER:
		return int_arg("--transfer-after-ms", optarg, 0, INT_MAX / 1000, &o->transfer_ms);
	case OPT_TARGET:
		o->transfer_target = optarg;
		return 0;
	case OPT_FLOOD:
		return int_arg("--mark-flood", optarg, 0, 10000000, &o->mark_flood);
	case OPT_TONE_HZ:
		return int_arg("--tone-hz", optarg, 100, 20000, &o->tone_hz);
	case OPT_REJECT:
	case OPT_TONE:
	case OPT_NO_TONE:
	case OPT_VERBOSE:
		*(opt == OPT_REJECT    ? &o->reject
		  : opt == OPT_TONE    ? &o->tone_report
		  : opt == OPT_NO_TONE ? &o->no_tone
		                       : &o->verbose) = 1;
		return 0;
	case OPT_HELP:
		usage(stdout);
		exit(0);
	default:
		usage(stderr);
		return -1;
	}
}

static int parse_opts(struct echo_opts *o, int argc, char **argv)
{
	int opt;

	o->port = 8090;
	o->host = "127.0.0.1";
	o->tone_hz = (int)ECHO_TONE_HZ;
	while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1)
		if (opt_one(o, opt) < 0)
			return -1;
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void setup_process(void)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct rlimit rl;

	/* No SA_RESTART: the loop's wait (epoll_wait or poll) returns EINTR and the loop sees the
	 * flag; the 50 ms tick would wake it anyway. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Many connections for the load benchmark: lift the soft fd limit (lws sizes its tables
	 * from it at context creation). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 &&
	    rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Every 50 ms: the stop flag is seen, and (libev) lws 4.1.6's one libev timer, which its glue
 * re-arms with ev_timer_set on a running watcher (ignored by libev), stays at most this late
 * (the same as trunkline's agent loops, connector/agent/ws_loop.c). */
static void tick(lws_sorted_usec_list_t *sul)
{
	struct echo_app *app = lws_container_of(sul, struct echo_app, tick_sul);

	lws_sul_schedule(app->ctx, 0, &app->tick_sul, tick, 50 * LWS_US_PER_MS);
}

static struct lws_context *make_context(struct echo_app *app)
{
	struct lws_context_creation_info info;
	const char *h = app->o.host;
	int any = !strcmp(h, "0.0.0.0") || !strcmp(h, "::") || !strcmp(h, "*");
	const char *e = getenv("TL_ECHO_POLL");
	void *foreign[1];

	memset(&info, 0, sizeof(info));
	/* TL_ECHO_POLL=1: lws's own poll() loop, as before (to compare the two in the benchmark) */
	if (!(e && e[0] == '1')) {
		app->evl = ev_loop_new(EVBACKEND_EPOLL);
		if (!app->evl)
			return NULL;
		foreign[0] = app->evl;
		info.foreign_loops = foreign;
		info.options |= LWS_SERVER_OPTION_LIBEV;
	}
	info.port = app->o.port;
	info.iface = any ? NULL : h;
	info.protocols = protocols;
	info.user = app;
	info.vhost_name = "tl-echo-agent";
	if (!strchr(h, ':'))
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	return lws_create_context(&info);
}

int main(int argc, char **argv)
{
	struct echo_app app;
	struct lws_vhost *vh;

	memset(&app, 0, sizeof(app));
	if (parse_opts(&app.o, argc, argv) < 0)
		return 2;
	setup_process();
	lws_set_log_level(LLL_ERR | LLL_WARN | (app.o.verbose ? LLL_NOTICE : 0), NULL);
	app.ctx = make_context(&app);
	if (!app.ctx) {
		fprintf(stderr, "tl-echo-agent: cannot listen on %s:%d\n", app.o.host, app.o.port);
		return 1;
	}
	vh = lws_get_vhost_by_name(app.ctx, "tl-echo-agent");
	fprintf(stderr, "tl-echo-agent: listening on ws://%s:%d/%s\n", app.o.host,
	        vh ? lws_get_vhost_listen_port(vh) : app.o.port,
	        app.o.reject ? " (rejecting)" : "");
	app.dirty = 1;
	stats_tick(&app.stats_sul);
	tick(&app.tick_sul);
	while (!stop_requested && service(&app) >= 0)
		;
	drain(&app);
	lws_context_destroy(app.ctx); /* closes every connection: their records land in done */
	if (app.evl)
		ev_loop_destroy(app.evl);
	stats_write(&app);
	free(app.done);
	fprintf(stderr, "tl-echo-agent: stopped after %llu connections\n",
	        (unsigned long long)app.t.connections);
	return 0;
}
