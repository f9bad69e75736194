/* http.h - the HTTP API on libmicrohttpd (thread pool on epoll). */
#ifndef ICPNSD_HTTP_H
#define ICPNSD_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "sets.h"
#include "state.h"

typedef struct icpnsd_server icpnsd_server_t;

/*
 * Starts listening on cfg->listen (and cfg->admin_listen when set).  When
 * @listen_fd >= 0 (socket activation) that socket is used instead of binding.
 * Writes the bound port to *ret_port.  Returns NULL with a message in @err.
 */
icpnsd_server_t *icpnsd_server_start(const icpnsd_config_t *cfg, icpnsd_registry_t *reg,
                                     const char *token, int listen_fd, uint16_t *ret_port,
                                     uint16_t *ret_admin_port, char *err, size_t errsize);

/* Stops accepting new connections (readyz turns 503). */
void icpnsd_server_quiesce(icpnsd_server_t *srv);
/* Connections still open. */
unsigned icpnsd_server_connections(icpnsd_server_t *srv);
/* Stops the threads and frees the server; accepts NULL. */
void icpnsd_server_stop(icpnsd_server_t *srv);

#endif
