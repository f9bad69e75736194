/* tls.c - HTTPS credentials and their rotation (see tls.h). */
#define _GNU_SOURCE
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "icpns.h"
#include "log.h"
#include "tls.h"

#define MAX_CHAIN 16

typedef struct creds {
    gnutls_pcert_st pcert[MAX_CHAIN];
    unsigned n;
    gnutls_privkey_t key;
    struct creds *older; /* kept until exit */
} creds_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static creds_t *current;

static void creds_free(creds_t *c)
{
    while (c) {
        creds_t *next = c->older;
        for (unsigned k = 0; k < c->n; k++)
            gnutls_pcert_deinit(&c->pcert[k]);
        if (c->key)
            gnutls_privkey_deinit(c->key);
        free(c);
        c = next;
    }
}

/* Reads @path (a regular file) into @ret; -1 with @err. */
static int read_pem(const char *path, const char *what, gnutls_datum_t *ret, char *err, size_t es)
{
    char *buf;
    size_t len;
    icpns_error_t e;
    if (icpns_file_read(path, 1 << 20, &buf, &len, &e)) {
        char m[700];
        icpns_error_format(&e, m, sizeof(m));
        snprintf(err, es, "TLS %s: %s", what, m);
        return -1;
    }
    ret->data = (unsigned char *)buf;
    ret->size = (unsigned)len;
    return 0;
}

/* Whether the private key and the certificate's public key are a pair:
 * the same key id. */
static bool key_matches(gnutls_privkey_t key, gnutls_pubkey_t pub)
{
    gnutls_pubkey_t from_key;
    if (gnutls_pubkey_init(&from_key) < 0)
        return false;
    unsigned char a[64], b[64];
    size_t al = sizeof(a), bl = sizeof(b);
    bool ok = gnutls_pubkey_import_privkey(from_key, key, 0, 0) >= 0 &&
              gnutls_pubkey_get_key_id(from_key, 0, a, &al) >= 0 &&
              gnutls_pubkey_get_key_id(pub, 0, b, &bl) >= 0 && al == bl && !memcmp(a, b, al);
    gnutls_pubkey_deinit(from_key);
    return ok;
}

int icpnsd_tls_load(const char *cert_path, const char *key_path, char *err, size_t es)
{
    struct stat st;
    if (stat(key_path, &st) == 0 && (st.st_mode & S_IROTH)) {
        snprintf(err, es, "TLS key %s is readable by others (mode %03o): chmod 600 it (or 640 "
                 "for a group the daemon is in)", key_path, (unsigned)(st.st_mode & 0777));
        return -1;
    }
    gnutls_datum_t cert = {0}, key = {0};
    if (read_pem(cert_path, "certificate", &cert, err, es) ||
        read_pem(key_path, "key", &key, err, es)) {
        free(cert.data);
        return -1;
    }
    creds_t *c = calloc(1, sizeof(*c));
    int rc = -1;
    if (!c) {
        snprintf(err, es, "out of memory");
        goto out;
    }
    c->n = MAX_CHAIN;
    int g = gnutls_pcert_list_import_x509_raw(c->pcert, &c->n, &cert, GNUTLS_X509_FMT_PEM, 0);
    if (g < 0) {
        c->n = 0;
        snprintf(err, es, "TLS certificate %s: %s", cert_path, gnutls_strerror(g));
        goto out;
    }
    if (c->n == 0) {
        snprintf(err, es, "TLS certificate %s holds no certificate", cert_path);
        goto out;
    }
    if ((g = gnutls_privkey_init(&c->key)) < 0 ||
        (g = gnutls_privkey_import_x509_raw(c->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        snprintf(err, es, "TLS key %s: %s", key_path, gnutls_strerror(g));
        goto out;
    }
    if (!key_matches(c->key, c->pcert[0].pubkey)) {
        snprintf(err, es, "TLS key %s does not belong to the certificate %s", key_path,
                 cert_path);
        goto out;
    }
    pthread_mutex_lock(&lock);
    c->older = current;
    current = c;
    pthread_mutex_unlock(&lock);
    c = NULL;
    rc = 0;
out:
    creds_free(c);
    if (key.data) {
        explicit_bzero(key.data, key.size);
        free(key.data);
    }
    free(cert.data);
    return rc;
}

static int retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                    gnutls_pcert_st **pcert, unsigned int *pcert_length,
                    gnutls_privkey_t *privkey)
{
    (void)session;
    (void)req_ca_dn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    pthread_mutex_lock(&lock);
    creds_t *c = current;
    pthread_mutex_unlock(&lock);
    if (!c)
        return -1;
    *pcert = c->pcert;
    *pcert_length = c->n;
    *privkey = c->key;
    return 0;
}

void *icpnsd_tls_callback(void)
{
    return (void *)retrieve;
}

bool icpnsd_tls_enabled(void)
{
    pthread_mutex_lock(&lock);
    bool on = current != NULL;
    pthread_mutex_unlock(&lock);
    return on;
}

void icpnsd_tls_free(void)
{
    pthread_mutex_lock(&lock);
    creds_t *c = current;
    current = NULL;
    pthread_mutex_unlock(&lock);
    creds_free(c);
}
