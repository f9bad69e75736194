/*
 * tls.h - the daemon's certificate and key for HTTPS (libmicrohttpd's
 * GnuTLS support), re-read on reload so that a rotated certificate needs
 * no restart.
 *
 * libmicrohttpd asks for the certificate at every handshake through a
 * GnuTLS callback, which carries no user pointer: the credentials in use
 * are one process-wide pointer, swapped under a mutex on reload.  Old
 * credentials are kept until exit (a handshake in progress may still use
 * them; rotations are rare and a certificate is a few kilobytes).
 */
#ifndef ICPNSD_TLS_H
#define ICPNSD_TLS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Loads the PEM certificate chain @cert_path and private key @key_path and
 * makes them the ones served.  Refuses a key readable by others, files that
 * are not regular files, a key that does not match the certificate.  0, or
 * -1 with @err (the served credentials, if any, stay).
 */
int icpnsd_tls_load(const char *cert_path, const char *key_path, char *err, size_t errsize);

/* The GnuTLS certificate callback for MHD_OPTION_HTTPS_CERT_CALLBACK. */
void *icpnsd_tls_callback(void);

/* Whether credentials are loaded. */
bool icpnsd_tls_enabled(void);

/* Frees every credential loaded (at exit, after the listeners stopped). */
void icpnsd_tls_free(void);

#endif
