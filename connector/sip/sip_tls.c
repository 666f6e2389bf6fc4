/* SIP over TLS glue for Sofia-SIP 1.12: the certificate directory its TLS transport reads,
 * turning its handshake-failure debug output into one warning line, and SIGHUP's reload line
 * (tls_ctx.c swaps the context). The files are validated by the config loader (config_tls.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

#include "sip_int.h"

#include "trunkline/log.h"

static int append_file(int out, const char *path)
{
	char buf[4096];
	ssize_t n;
	int in = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (in < 0)
		return -errno;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			rc = -EIO;
			break;
		}
	if (n < 0)
		rc = -errno;
	/* PEM blocks of two files must not run together on one line. */
	if (rc == 0 && write(out, "\n", 1) != 1)
		rc = -EIO;
	explicit_bzero(buf, sizeof(buf));
	close(in);
	return rc;
}

static int write_pem(const char *dir, const char *name, const char *a, const char *b)
{
	char path[512];
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = append_file(fd, a);
	if (rc == 0 && b)
		rc = append_file(fd, b);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		tl_log_error(NULL, "TLS: cannot copy %s%s%s into %s: %s", a, b ? " and " : "",
		             b ? b : "", path, strerror(-rc));
	return rc;
}

int tl_sip_tls_dir(const struct tl_config *cfg, char *dir, size_t size)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, size, "%s/trunkline-tls-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		tl_log_error(NULL, "TLS: cannot create a private directory %s: %s", dir,
		             strerror(errno));
		dir[0] = '\0';
		return -EIO;
	}
	/* Key first: Sofia loads the first key and the first certificate of agent.pem. */
	if (write_pem(dir, "agent.pem", cfg->tls.private_key, cfg->tls.certificate) < 0 ||
	    (cfg->tls.ca && write_pem(dir, "cafile.pem", cfg->tls.ca, NULL) < 0)) {
		tl_sip_tls_dir_remove(dir);
		dir[0] = '\0';
		return -EIO;
	}
	return 0;
}

void tl_sip_tls_dir_remove(const char *dir)
{
	static const char *const names[] = {"agent.pem", "cafile.pem"};
	char path[512];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

/* Sofia (tport level 5) says, for one failed handshake:
 *   tls_connect(0x..): TLS setup failed (...)
 *   tls_read: SSL_read: 0a0000c7:SSL routines:(null):peer did not return a certificate
 *   tport_close(0x..): tls/127.0.0.1:40810/sips
 * The first OpenSSL reason is kept until the close line names the peer. Sofia thread only. */
int tl_sip_tls_log(const char *line)
{
	static char reason[128];
	static int pending;
	const char *p;

	if (strncmp(line, "tls_connect(", 12) == 0 && strstr(line, "TLS setup failed")) {
		/* Sofia runs on this thread: OpenSSL's error queue still holds the why. */
		unsigned long e = ERR_peek_last_error();
		const char *r = e ? ERR_reason_error_string(e) : NULL;

		pending = 1;
		snprintf(reason, sizeof(reason), "%s", r ? r : "");
		return 0;
	}
	if (!pending)
		return 0;
	if (strncmp(line, "tls_read: SSL_read:", 19) == 0 || strncmp(line, "tls_", 4) == 0) {
		p = strrchr(line, ':');
		if (!reason[0] && p && strcmp(p + 1, "(null)") != 0 && p[1])
			snprintf(reason, sizeof(reason), "%s", p + 1);
		return 0;
	}
	if (strncmp(line, "tport_close(", 12) == 0 && (p = strstr(line, "): tls/")) != NULL) {
		char addr[80];
		const char *end;

		p += 7;
		end = strstr(p, "/sip");
		snprintf(addr, sizeof(addr), "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
		tl_log_warn(NULL, "TLS handshake with %s failed: %s", addr,
		            reason[0] ? reason
		                      : "the peer closed the connection (no reason given)");
		pending = 0;
		return 1;
	}
	return 0;
}

void tl_sip_tls_recheck(const struct tl_config *cfg)
{
	char what[300];
	int rc;

	if (!cfg->tls.certificate)
		return;
	rc = tl_sip_tls_load(&cfg->tls, what, sizeof(what));
	if (rc < 0)
		tl_log_warn(NULL,
		            "SIGHUP: sip.tls: %s; new TLS connections keep the certificate in use",
		            what);
	else if (rc == 1)
		tl_log_info(NULL, "SIGHUP: sip.tls unchanged (%s)", what);
	else
		tl_log_info(NULL,
		            "SIGHUP: sip.tls reloaded: new TLS connections get %s; connections up "
		            "keep theirs",
		            what);
}
