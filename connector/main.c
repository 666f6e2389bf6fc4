/* The trunkline executable: command line, configuration, signals, and the SIP loop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "trunkline/config.h"
#include "trunkline/log.h"
#include "trunkline/route.h"
#include "trunkline/sip.h"
#include "trunkline/tcpwatch.h"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: trunkline --config FILE [--log-level LEVEL] [--log-format text|json]\n"
	    "       trunkline --check-config FILE\n"
	    "       trunkline --version | --help\n"
	    "\n"
	    "  --config FILE        run in the foreground with this configuration\n"
	    "  --check-config FILE  validate FILE and the rules file it names; exit 0 if valid,\n"
	    "                       else print file:line:col: message and exit 1\n"
	    "  --log-level LEVEL    error, warn, info (default) or debug\n"
	    "  --log-format FORMAT  text (default) or json (one JSON object a line)\n");
}

static int load(const char *path, struct tl_config **cfg)
{
	struct tl_err err = {0};
	char buf[1024];
	int rc = tl_config_load(cfg, path, &err);

	if (rc < 0)
		fprintf(stderr, "%s\n", tl_err_str(&err, buf, sizeof(buf)));
	return rc;
}

/* Each call holds sockets (RTP, RTCP, the agent's, maybe the PBX's TCP): take what we may. */
static void raise_nofile(void)
{
	unsigned long from = 0, to = 0;
	int err = tl_tcpwatch_raise_nofile(&from, &to);

	if (err < 0)
		tl_log_warn(NULL, "descriptor limit stays %lu: %s", from, strerror(-err));
	else if (to != from)
		tl_log_info(NULL, "descriptor limit raised from %lu to %lu", from, to);
	else
		tl_log_info(NULL, "descriptor limit %lu (the hard limit)", to);
}

/* --check-config: "rules.json: warning: ..." on stderr; the file is still valid. */
static void warn_stderr(void *arg, const char *msg)
{
	fprintf(stderr, "%s: warning: %s\n", (const char *)arg, msg);
}

static void warn_log(void *arg, const char *msg)
{
	tl_log_warn(NULL, "%s: %s", (const char *)arg, msg);
}

static int run(const char *path)
{
	struct tl_config *cfg = NULL;
	struct tl_sip *sip = NULL;
	sigset_t mask;
	int sigfd, rc;

	if (load(path, &cfg) < 0)
		return 1;
	tl_rules_lint(cfg->rules, warn_log, cfg->rules_path);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0) {
		tl_log_error(NULL, "signalfd: %s", strerror(errno));
		tl_config_destroy(cfg);
		return 1;
	}
	raise_nofile();
	rc = tl_sip_create(&sip, cfg);
	if (rc == 0) {
		/* The endpoint holds its own reference: without ours, the start-up rules are freed
		 * once a reload has replaced them and their calls have ended. */
		tl_rules_destroy(cfg->rules);
		cfg->rules = NULL;
		tl_log_info(NULL, "trunkline %s ready: point your PBX trunk at %s", TL_VERSION,
		            tl_sip_contact_hint(sip));
		rc = tl_sip_run(sip, sigfd);
		tl_sip_destroy(sip);
		tl_log_info(NULL, "stopped");
	}
	close(sigfd);
	tl_config_destroy(cfg);
	return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", required_argument, NULL, 'k'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"log-format", required_argument, NULL, 'f'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	enum tl_log_level level = TL_LOG_INFO;
	enum tl_log_format format = TL_LOG_TEXT;
	const char *config = NULL, *check = NULL;
	int c;

	if (argc > 1 && strcmp(argv[1], "route") == 0)
		return tl_route_cli(argc - 1, argv + 1);
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'k':
			check = optarg;
			break;
		case 'l':
			if (tl_log_level_parse(optarg, &level) < 0) {
				fprintf(stderr, "trunkline: unknown log level \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'f':
			if (tl_log_format_parse(optarg, &format) < 0) {
				fprintf(stderr, "trunkline: unknown log format \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'V':
			printf("trunkline %s\n", TL_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || (!config && !check)) {
		usage(stderr);
		return 2;
	}
	tl_log_setup(level, format);
	if (check) {
		struct tl_config *cfg = NULL;
		if (load(check, &cfg) < 0)
			return 1;
		tl_rules_lint(cfg->rules, warn_stderr, cfg->rules_path);
		printf("%s: OK (%zu agent(s), %zu route(s))\n", check, cfg->rules->n_agents,
		       json_array_size(cfg->rules->routes));
		tl_config_destroy(cfg);
		return 0;
	}
	return run(config);
}
