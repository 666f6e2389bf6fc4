/* The SIP trunk endpoint: Sofia-SIP nua on one thread (su_root_threading off, so no hidden
 * stack thread), OPTIONS, INVITE early and delayed offer, re-INVITE/UPDATE, session timers,
 * graceful drain on SIGTERM. Runs on the calling thread until shut down. */
#ifndef TRUNKLINE_SIP_H
#define TRUNKLINE_SIP_H

#include "trunkline/config.h"

struct tl_sip;

/* Binds every listen address of cfg. cfg is borrowed for the life of the endpoint.
 * Returns 0, or a negative errno with the reason logged. */
int tl_sip_create(struct tl_sip **out, const struct tl_config *cfg);
void tl_sip_destroy(struct tl_sip *sip);

/* Runs the signalling loop until drained and shut down. sigfd is a signalfd for SIGTERM,
 * SIGINT and SIGHUP (borrowed): TERM/INT drain (new INVITEs get 503, calls end by the
 * configured deadline), HUP reloads the rules file. Returns 0 after a clean shutdown. */
int tl_sip_run(struct tl_sip *sip, int sigfd);

/* The first listen address as a SIP URI for people ("sip:127.0.0.1:5060;transport=udp"). */
const char *tl_sip_contact_hint(const struct tl_sip *sip);

#endif
