/* The rules loader thread: reads, parses and compiles rules files away from the SIP thread
 * (a large or slow file used to stall SIP for seconds), one at a time, requests coalesced; it
 * also frees the snapshots retired to it and trims the heap after them. It only builds and
 * frees snapshots: swapping them in is the SIP thread's (sip_rules.c). */
#include "trunkline/config_doc.h"
#include "trunkline/rules.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WHY_MAX    64
#define TRIM_BYTES (1024 * 1024) /* of rules file: trim the heap after freeing its snapshot */

struct retired {
	struct tl_rules *rules;
	struct retired *next;
};

struct tl_rules_loader {
	atomic_int refs; /* the owner, the thread, and each adopted snapshot */
	atomic_int cancel;
	char *path;
	struct tl_rules_opts opts;
	pthread_t thread;
	int efd;
	pthread_mutex_t mu; /* guards everything below */
	pthread_cond_t cv;
	int stop;
	int thread_done;
	int pending; /* a load was asked for since the last one started */
	int loading; /* a load is running */
	char pending_why[WHY_MAX];
	int ready; /* a finished load waits in result_* */
	struct tl_rules *result;
	struct tl_err result_err;
	char result_why[WHY_MAX];
	long result_ms;
	struct retired *retired;
};

static void loader_unref(struct tl_rules_loader *l)
{
	if (atomic_fetch_sub(&l->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	if (l->efd >= 0)
		close(l->efd);
	free(l->path);
	free(l);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

#if defined(__SANITIZE_ADDRESS__)
#define TL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TL_ASAN 1
#endif
#endif
/* Gives freed heap pages back to the system: a large snapshot leaves hundreds of MB of free
 * chunks that glibc would otherwise keep. Only after large files (TRIM_BYTES): malloc_trim
 * holds each arena's lock in turn, the SIP thread's too. Loader thread only. (Under ASan it
 * does nothing: ASan's allocator is not glibc's, and purging that one stalls every thread.) */
static void trim(size_t bytes)
{
#ifdef __GLIBC__
	if (bytes >= TRIM_BYTES)
		malloc_trim(0);
#endif
}

static size_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 0;
}

/* Called with l->mu held; returns it held. */
static void load_one(struct tl_rules_loader *l)
{
	struct tl_rules *rules = NULL, *stale = NULL;
	struct tl_err err = {0};
	size_t bytes;
	struct timespec t0;
	char why[WHY_MAX];
	int rc;

	l->pending = 0;
	l->loading = 1;
	memcpy(why, l->pending_why, sizeof(why));
	pthread_mutex_unlock(&l->mu);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = tl_rules_load_opts(&rules, l->path, &l->opts, &err);
	if (rc < 0 && rc != -ECANCELED && rc != -EFBIG)
		trim(file_size(l->path)); /* what the failed load allocated, if it was large */
	pthread_mutex_lock(&l->mu);
	l->loading = 0;
	if (l->stop) {
		stale = rules; /* nobody wants it any more */
	} else {
		stale = l->result; /* never taken: a newer load replaces it */
		l->result = rules;
		l->result_err = err;
		memcpy(l->result_why, why, sizeof(why));
		l->result_ms = ms_since(&t0);
		l->ready = 1;
		if (write(l->efd, &(uint64_t){1}, sizeof(uint64_t)) < 0) {
			/* The counter cannot overflow at one write per load; nothing else fails. */
		}
	}
	bytes = stale && !l->stop ? stale->bytes : 0;
	/* Freed without the lock, which the SIP thread takes to hand over and retire rules. */
	pthread_mutex_unlock(&l->mu);
	tl_rules_free(stale);
	trim(bytes);
	pthread_mutex_lock(&l->mu);
}

/* Called with l->mu held; returns it held. */
static void free_retired(struct tl_rules_loader *l)
{
	struct retired *list = l->retired, *next;
	size_t bytes = 0;

	l->retired = NULL;
	pthread_mutex_unlock(&l->mu);
	for (; list; list = next) {
		next = list->next;
		bytes += list->rules->bytes;
		tl_rules_free(list->rules);
		free(list);
		loader_unref(l); /* the snapshot's reference */
	}
	trim(bytes);
	pthread_mutex_lock(&l->mu);
}

static void *loader_main(void *arg)
{
	struct tl_rules_loader *l = arg;

#ifndef TL_ASAN
	/* Below the SIP, media and agent threads when the CPU is short: a reload can wait. Not
	 * under ASan, whose allocator locks are shared by all threads: the SIP thread would wait
	 * for a low-priority loader preempted while holding one. */
	setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
#endif
	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		if (l->retired)
			free_retired(l);
		else if (l->pending)
			load_one(l);
		else
			pthread_cond_wait(&l->cv, &l->mu);
	}
	if (l->retired)
		free_retired(l);
	l->thread_done = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	loader_unref(l);
	return NULL;
}

int tl_rules_loader_create(struct tl_rules_loader **out, const char *path,
                           const struct tl_rules_opts *opts)
{
	struct tl_rules_loader *l = calloc(1, sizeof(*l));
	int rc;

	*out = NULL;
	if (!l)
		return -ENOMEM;
	atomic_init(&l->refs, 1);
	atomic_init(&l->cancel, 0);
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	if (opts)
		l->opts = *opts;
	l->opts.cancel = &l->cancel;
	l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	l->path = strdup(path);
	if (l->efd < 0 || !l->path) {
		rc = l->efd < 0 ? -errno : -ENOMEM;
		loader_unref(l);
		return rc;
	}
	atomic_fetch_add(&l->refs, 1); /* the thread's */
	rc = -pthread_create(&l->thread, NULL, loader_main, l);
	if (rc < 0) {
		atomic_fetch_sub(&l->refs, 1);
		loader_unref(l);
		return rc;
	}
	pthread_setname_np(l->thread, "tl-rules");
	*out = l;
	return 0;
}

void tl_rules_loader_destroy(struct tl_rules_loader *l)
{
	struct tl_rules *result;
	struct timespec deadline;
	int done;

	if (!l)
		return;
	atomic_store(&l->cancel, 1);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 2;
	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_broadcast(&l->cv);
	while (!l->thread_done && pthread_cond_timedwait(&l->cv, &l->mu, &deadline) != ETIMEDOUT)
		;
	done = l->thread_done;
	result = l->result;
	l->result = NULL;
	l->ready = 0;
	pthread_mutex_unlock(&l->mu);
	tl_rules_free(result);
	/* A thread stuck in one long step (a huge regcomp) ends on its own, later: it holds a
	 * reference, and checks stop when that step returns. */
	if (done)
		pthread_join(l->thread, NULL);
	else
		pthread_detach(l->thread);
	loader_unref(l);
}

int tl_rules_loader_busy(struct tl_rules_loader *l)
{
	int busy;

	pthread_mutex_lock(&l->mu);
	busy = l->loading || l->pending;
	pthread_mutex_unlock(&l->mu);
	return busy;
}

int tl_rules_loader_fd(const struct tl_rules_loader *l)
{
	return l->efd;
}

void tl_rules_loader_request(struct tl_rules_loader *l, const char *why)
{
	pthread_mutex_lock(&l->mu);
	l->pending = 1;
	snprintf(l->pending_why, sizeof(l->pending_why), "%s", why ? why : "reload");
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

int tl_rules_loader_take(struct tl_rules_loader *l, struct tl_rules **rules, struct tl_err *err,
                         char *why, size_t why_size, long *ms)
{
	uint64_t n;
	int ready;

	if (read(l->efd, &n, sizeof(n)) < 0) {
		/* EAGAIN: nothing written since the last take; the flag below decides. */
	}
	pthread_mutex_lock(&l->mu);
	ready = l->ready;
	if (ready) {
		*rules = l->result;
		*err = l->result_err;
		snprintf(why, why_size, "%s", l->result_why);
		*ms = l->result_ms;
		l->result = NULL;
		l->ready = 0;
	}
	pthread_mutex_unlock(&l->mu);
	if (ready && *rules)
		tl_rules_loader_adopt(l, *rules);
	return ready;
}

/* The retire hook of adopted snapshots: runs where the last reference was dropped. */
static void retire(void *arg, struct tl_rules *rules)
{
	struct tl_rules_loader *l = arg;
	struct retired *r = malloc(sizeof(*r));

	pthread_mutex_lock(&l->mu);
	if (r && !l->stop) {
		r->rules = rules;
		r->next = l->retired;
		l->retired = r;
		pthread_cond_signal(&l->cv);
		pthread_mutex_unlock(&l->mu);
		return;
	}
	/* The loader is gone (shutting down) or no memory: free it here. */
	pthread_mutex_unlock(&l->mu);
	free(r);
	tl_rules_free(rules);
	loader_unref(l);
}

void tl_rules_loader_adopt(struct tl_rules_loader *l, struct tl_rules *rules)
{
	if (!rules || rules->retire)
		return;
	atomic_fetch_add(&l->refs, 1);
	rules->retire = retire;
	rules->retire_arg = l;
}
