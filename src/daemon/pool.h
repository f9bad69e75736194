/*
 * pool.h - the compute pool: threads that run CPU-heavy request work (large
 * sampling requests) off the HTTP threads.  libmicrohttpd pins a connection
 * to one HTTP thread, so two busy connections that share one would share a
 * core; on the pool they use two.
 */
#ifndef ICPNSD_POOL_H
#define ICPNSD_POOL_H

#include <stddef.h>

/* One unit of work: @fn(@task) runs on a pool thread.  Intrusive: the
 * caller embeds it and keeps it alive until @fn has run. */
typedef struct icpnsd_task icpnsd_task_t;
struct icpnsd_task {
    void (*fn)(icpnsd_task_t *task);
    void (*cancel)(icpnsd_task_t *task); /* instead of fn, when the pool stops first */
    icpnsd_task_t *next;
};

typedef struct icpnsd_pool icpnsd_pool_t;

/* Starts @threads threads (at most 64; 0 makes a pool that runs nothing,
 * see icpnsd_pool_threads).  NULL with a message in @err. */
icpnsd_pool_t *icpnsd_pool_new(unsigned threads, char *err, size_t errsize);

/* Threads of the pool (0: run the work on the caller's thread). */
unsigned icpnsd_pool_threads(const icpnsd_pool_t *p);

/* Queues @t; thread-safe. */
void icpnsd_pool_submit(icpnsd_pool_t *p, icpnsd_task_t *t);

/* Cancels the queued tasks (their cancel runs on the caller's thread);
 * the running ones finish.  Tasks submitted later are cancelled too. */
void icpnsd_pool_cancel(icpnsd_pool_t *p);

/* Runs the queued tasks to the end, joins the threads and frees @p.
 * Accepts NULL. */
void icpnsd_pool_free(icpnsd_pool_t *p);

#endif
