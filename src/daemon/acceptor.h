/*
 * acceptor.h - the listening sockets and the thread that accepts on them.
 *
 * icpnsd accepts connections itself and hands them to libmicrohttpd
 * (MHD_add_connection) instead of letting libmicrohttpd listen: at its
 * connection limit libmicrohttpd stops polling the listening socket, so
 * new clients wait in the kernel's backlog, unanswered, until someone
 * leaves (health checks time out instead of failing).  Here every
 * connection is accepted at once and the owner decides: serve it, or
 * refuse it promptly with a 503.  Running out of file descriptors is
 * logged (rate-limited) and counted, and accepting pauses briefly instead
 * of spinning.
 */
#ifndef ICPNSD_ACCEPTOR_H
#define ICPNSD_ACCEPTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct icpnsd_acceptor icpnsd_acceptor_t;

/*
 * Called on the acceptor thread for each accepted socket @fd (non-blocking,
 * close-on-exec) from @addr; @admin: it came on the admin listener.  The
 * callee owns @fd from then on.
 */
typedef void (*icpnsd_accept_cb)(void *ctx, int fd, const struct sockaddr *addr, socklen_t len,
                                 bool admin);

/*
 * Listens on @listen ("HOST:PORT", "[V6]:PORT"; port 0 picks one), or on
 * the inherited socket @inherited_fd when >= 0, and on @admin_listen when
 * not NULL or "".  Writes the bound ports.  NULL with a message in @err.
 */
icpnsd_acceptor_t *icpnsd_acceptor_new(const char *listen, int inherited_fd,
                                       const char *admin_listen, uint16_t *ret_port,
                                       uint16_t *ret_admin_port, char *err, size_t errsize);

/* Starts accepting; 0 or an errno value. */
int icpnsd_acceptor_start(icpnsd_acceptor_t *a, icpnsd_accept_cb cb, void *ctx);

/* Accept errors for lack of file descriptors, so far. */
uint64_t icpnsd_acceptor_fd_errors(const icpnsd_acceptor_t *a);

/* Stops accepting and closes the listening sockets (new clients are then
 * refused by the kernel).  Idempotent; the object stays valid. */
void icpnsd_acceptor_stop(icpnsd_acceptor_t *a);

/* Stops and frees; accepts NULL. */
void icpnsd_acceptor_free(icpnsd_acceptor_t *a);

/*
 * Answers @fd with a canned HTTP @status error (code, message), for a
 * connection refused before any request was read, and closes it a moment
 * later (the acceptor's thread only: from the accept callback).
 */
void icpnsd_acceptor_refuse(icpnsd_acceptor_t *a, int fd, unsigned status, const char *code,
                            const char *message);

#endif
