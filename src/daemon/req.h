/*
 * req.h - one HTTP request as the handlers see it: its route, body, table
 * set and connection, and how a handler waits for work done elsewhere.
 *
 * Waiting: a handler that hands work to another thread (a rebuild, a
 * k-means run, a weights build, a large sampling task) arms the request,
 * publishes the work, then puts the request to sleep with the function to
 * run when it wakes; the other thread calls icpnsd_req_wake when done.  The
 * connection is suspended meanwhile, so no HTTP thread waits.  A wake that
 * comes before the sleep is not lost (the sleep then resumes at once).
 */
#ifndef ICPNSD_REQ_H
#define ICPNSD_REQ_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "env.h"
#include "error.h"
#include "icpns.h"

struct icpnsd_route;
struct icpnsd_set;

typedef struct icpnsd_req icpnsd_req_t;
typedef enum MHD_Result (*icpnsd_handler_fn)(icpnsd_req_t *r);

enum icpnsd_wake_state {
    ICPNSD_WAKE_IDLE = 0,
    ICPNSD_WAKE_ARMED,    /* work is being handed over */
    ICPNSD_WAKE_SLEEPING, /* the connection is suspended */
    ICPNSD_WAKE_WOKEN,    /* the work is done */
};

struct icpnsd_req {
    atomic_uint refs;                    /* libmicrohttpd's, and the worker's while armed */
    pthread_mutex_t lock;                /* gone, abandoned and cancelled vs. done */
    bool gone;                           /* libmicrohttpd is done with the request */
    bool abandoned;                      /* answered without its work: the worker keeps it */
    bool cancelled;                      /* resumed by the shutdown */
    struct icpnsd_req *live_prev, *live_next; /* the server's list of requests */
    icpnsd_env_t *env;
    bool begun;                          /* its headers are in (on_request ran) */
    size_t query_bytes, query_params;    /* of a query string too large to parse */
    struct MHD_Connection *conn;
    const char *method, *url;            /* valid for the request's life */
    const struct icpnsd_route *route;    /* NULL: no route for the method and path */
    const struct icpnsd_route *path_route; /* the first route of the path, any method */
    unsigned metric;                     /* metrics id of the route (or "other") */
    char param[256];                     /* the path parameter, when the route has one */
    char allow[64];                      /* methods of the path, for 405 */
    char location[64];                   /* of a 202 or 201, when set */
    bool admin_listener;                 /* arrived on the admin listener */
    double t0;
    uint64_t id;
    char rid[65];                        /* the client's X-Request-Id when sane, else id */
    icpns_buf_t body;
    bool too_large;                      /* the body passed its limit (and was dropped) */
    bool answered;
    unsigned status;                     /* of the answer, for metrics */
    const char *auth_realm;              /* of a 401's WWW-Authenticate */
    unsigned retry_after;                /* of a 429 */
    bool has_fingerprint;                /* send Icpns-Fingerprint */
    uint64_t fingerprint;
    struct icpnsd_set *set;              /* a reference, or NULL */
    /* Waiting for work done elsewhere. */
    icpnsd_handler_fn resume;            /* runs when the connection resumes */
    void *work;                          /* what the request waits for (the handler's) */
    void (*work_free)(void *work);       /* frees it when the request cannot take it */
    atomic_int wake;                     /* enum icpnsd_wake_state */
    icpns_snapshot_t *wait_snap;         /* negatives: the snapshot a weights wait is for */
};

/* A request header, or NULL. */
const char *icpnsd_req_header(icpnsd_req_t *r, const char *name);

/* The client's address as text: the peer's, or when the peer is one of
 * trusted_proxies, the client its X-Forwarded-For headers name (proxy.h). */
void icpnsd_req_client(icpnsd_req_t *r, char *out, size_t size);

/* A query-string argument, or NULL. */
const char *icpnsd_req_query(icpnsd_req_t *r, const char *name);

/*
 * Feeds every query-string argument to @fn until it returns non-zero;
 * returns that value (0 when all were taken).
 */
int icpnsd_req_query_each(icpnsd_req_t *r,
                          int (*fn)(void *arg, const char *key, const char *value, icpnsd_err_t *e),
                          void *arg, icpnsd_err_t *e);

/* Whether the Content-Type is @ctype (parameters after ';' allowed). */
bool icpnsd_req_ctype_is(icpnsd_req_t *r, const char *ctype);

/*
 * Points r->set at the table set @name (NULL or "": the only set, or the
 * one named "default").  Returns 0, or -1 with @e (unknown_tables, naming
 * the sets there are; tables_required when several and none is default).
 */
int icpnsd_req_use_set(icpnsd_req_t *r, const char *name, icpnsd_err_t *e);

/* icpnsd_req_use_set for a set the body may name (@body_name, NULL or ""
 * when it does not) and ?tables= may too: they must agree. */
int icpnsd_req_use_set_named(icpnsd_req_t *r, const char *body_name, icpnsd_err_t *e);

/* A new request on @conn (one reference, libmicrohttpd's), or NULL. */
icpnsd_req_t *icpnsd_req_new(icpnsd_env_t *env, struct MHD_Connection *conn);

/* Drops a reference; the last frees the request and what it holds. */
void icpnsd_req_unref(icpnsd_req_t *r);

/*
 * libmicrohttpd is done with @r (it completed or its client left).  Work
 * handed back to the request that its handler never took (the connection
 * ended between the wake-up and the handler) is freed here.
 */
void icpnsd_req_gone(icpnsd_req_t *r);

/*
 * Arms @r before handing work to another thread: the work holds a
 * reference from now until icpnsd_req_done (or icpnsd_req_disarm when it
 * was not handed over after all).
 */
void icpnsd_req_arm(icpnsd_req_t *r);
void icpnsd_req_disarm(icpnsd_req_t *r);

/*
 * Suspends @r until the work is done; then @resume runs on an HTTP thread
 * and takes r->work.  @work_free (NULL when r->work is NULL) frees r->work
 * if the connection ends before @resume could run.
 */
void icpnsd_req_sleep(icpnsd_req_t *r, icpnsd_handler_fn resume, void (*work_free)(void *work));

/*
 * The work of @r is done (any thread): wakes the request and drops the
 * work's reference.  true: the request takes the result (r->work); false:
 * the request is gone or was answered without it (shutdown), and the
 * caller disposes of its result.
 */
bool icpnsd_req_done(icpnsd_req_t *r);

/* Whether the request still wants its work (a worker may skip it). */
bool icpnsd_req_wanted(icpnsd_req_t *r);

/* The shutdown: resumes @r if it sleeps, to be answered 503 (any thread). */
void icpnsd_req_cancel(icpnsd_req_t *r);

/*
 * On resumption of a cancelled request whose work is not done: marks it
 * abandoned (its work stays with the worker) and returns true; false when
 * the work finished meanwhile (answer normally).
 */
bool icpnsd_req_abandon(icpnsd_req_t *r);

#endif
