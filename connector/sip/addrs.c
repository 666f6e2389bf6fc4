/* The start-up line that names every address a PBX can dial: each listener's own address, or,
 * for a wildcard listener (0.0.0.0, ::), every address of every interface that is up. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#include "sip_int.h"

#include "trunkline/log.h"

static const char *tp_name(enum tl_transport tp)
{
	return tp == TL_TRANSPORT_TCP ? "tcp" : tp == TL_TRANSPORT_TLS ? "tls" : "udp";
}

static void add(char *out, size_t size, const char *host, int v6, const struct tl_listen *l)
{
	size_t n = strlen(out);

	snprintf(out + n, size - n, "%s%s:%s%s%s:%u", n ? ", " : "",
	         l->transport == TL_TRANSPORT_TLS ? "sips" : "sip", v6 ? "[" : "", host,
	         v6 ? "]" : "", l->port);
	n = strlen(out);
	if (l->transport != TL_TRANSPORT_TLS)
		snprintf(out + n, size - n, ";transport=%s", tp_name(l->transport));
}

void tl_sip_log_dialable(const struct tl_config *cfg)
{
	struct ifaddrs *ifa = NULL;
	char out[2048] = "";

	if (getifaddrs(&ifa) < 0)
		ifa = NULL;
	for (size_t i = 0; i < cfg->n_listen; i++) {
		const struct tl_listen *l = &cfg->listen[i];
		int any4 = strcmp(l->host, "0.0.0.0") == 0, any6 = strcmp(l->host, "::") == 0;

		if (!any4 && !any6) {
			add(out, sizeof(out), l->host, strchr(l->host, ':') != NULL, l);
			continue;
		}
		for (struct ifaddrs *a = ifa; a; a = a->ifa_next) {
			char host[INET6_ADDRSTRLEN];
			int fam = a->ifa_addr ? a->ifa_addr->sa_family : 0;
			const void *p =
			    fam == AF_INET
			        ? (const void *)&((struct sockaddr_in *)a->ifa_addr)->sin_addr
			        : (const void *)&((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr;
			if (!(a->ifa_flags & IFF_UP) || (fam != AF_INET && fam != AF_INET6) ||
			    (fam == AF_INET6 && !any6) ||
			    (fam == AF_INET6 &&
			     IN6_IS_ADDR_LINKLOCAL(
			         &((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr)) ||
			    !inet_ntop(fam, p, host, sizeof(host)))
				continue;
			add(out, sizeof(out), host, fam == AF_INET6, l);
		}
	}
	if (ifa)
		freeifaddrs(ifa);
	tl_log_info(NULL, "a PBX can dial: %s", out);
}
