/*
 * server.h - the HTTP listeners on libmicrohttpd (a thread pool on epoll,
 * its fastest mode): connection lifecycle and body buffering.  Requests go
 * to the route table (routes.h) once their body is in.
 */
#ifndef ICPNSD_SERVER_H
#define ICPNSD_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"

typedef struct icpnsd_server icpnsd_server_t;

/*
 * Starts listening on cfg->listen (and cfg->admin_listen when set) for the
 * handlers of @env.  When @listen_fd >= 0 (socket activation) that socket
 * is used instead of binding.  Writes the bound ports.  NULL with a message
 * in @err.
 */
icpnsd_server_t *icpnsd_server_start(icpnsd_env_t *env, int listen_fd, uint16_t *ret_port,
                                     uint16_t *ret_admin_port, char *err, size_t errsize);

/* Stops accepting new connections (readyz turns 503). */
void icpnsd_server_quiesce(icpnsd_server_t *srv);

/* Requests received and not yet completed (idle keep-alive connections do
 * not count); *@ret_sleeping (may be NULL) gets those waiting for work. */
unsigned icpnsd_server_active(icpnsd_server_t *srv, unsigned *ret_sleeping);

/* The shutdown: every request waiting for work is resumed and answered
 * 503 shutting_down (its work goes on or is cancelled elsewhere, and is
 * freed by its thread).  Returns how many. */
unsigned icpnsd_server_cancel(icpnsd_server_t *srv);

/* Connections still open, including those accepted and handed to
 * libmicrohttpd that its threads have not taken up yet. */
unsigned icpnsd_server_connections(icpnsd_server_t *srv);

/* Stops the threads and frees the server; accepts NULL. */
void icpnsd_server_stop(icpnsd_server_t *srv);

#endif
