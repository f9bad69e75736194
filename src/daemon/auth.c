/* auth.c - bearer tokens and the throttling of guessers (see auth.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "icpns.h"
#include "log.h"
#include "metrics.h"

typedef char token_t[ICPNSD_TOKEN_MAX + 1];

/* A failing address: its failures in the current window. */
#define SLOTS 1024
typedef struct slot {
    char addr[64];          /* the client's address as text */
    unsigned char len;
    double window_start;
    unsigned fails;
    unsigned logged;
} slot_t;

struct icpnsd_auth {
    pthread_rwlock_t lock;  /* the tokens (swapped on reload) */
    token_t *admin, *api;
    int n_admin, n_api;
    bool api_required;
    pthread_mutex_t slots_lock;
    slot_t slots[SLOTS];
};

static bool token68(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=';
}

int icpnsd_tokens_parse(const char *buf, size_t len, const char *name, bool many,
                        char (*out)[ICPNSD_TOKEN_MAX + 1], int max, char *err, size_t es)
{
    int n = 0;
    unsigned line = 0;
    for (const char *p = buf, *end = buf + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        line++;
        size_t l = (size_t)(le - p);
        while (l && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t'))
            l--;
        const char *next = eol ? eol + 1 : end;
        if (many && (l == 0 || p[0] == '#')) {
            p = next;
            continue;
        }
        for (size_t k = 0; k < l; k++) {
            unsigned char c = (unsigned char)p[k];
            if (c < 0x20 || c == 0x7f) {
                snprintf(err, es, "%s:%u: column %zu holds a control byte (0x%02x): a token is "
                         "printable text (for a random one: head -c 32 /dev/urandom | base64)",
                         name, line, k + 1, c);
                return -1;
            }
            if (!token68(c) || (c == '=' && k + 1 < l && p[k + 1] != '=')) {
                snprintf(err, es, "%s:%u: column %zu is not a token character: a token is "
                         "letters, digits and -._~+/ (base64 works), without blanks", name,
                         line, k + 1);
                return -1;
            }
        }
        if (!many && l == 0) {
            /* An empty admin token file: no admin token. */
            if (next < end) {
                snprintf(err, es, "%s:1: the first line is empty, but the file goes on: the "
                         "token is the first line", name);
                return -1;
            }
            return 0;
        }
        if (!many && l == 8 && !memcmp(p, "disabled", 8))
            return 0;
        if (l < ICPNSD_TOKEN_MIN || l > ICPNSD_TOKEN_MAX) {
            snprintf(err, es, "%s:%u: the token has %zu characters; between %d and %d are "
                     "needed", name, line, l, ICPNSD_TOKEN_MIN, ICPNSD_TOKEN_MAX);
            return -1;
        }
        if (n == max) {
            snprintf(err, es, "%s: more than %d tokens", name, max);
            return -1;
        }
        memcpy(out[n], p, l);
        out[n][l] = '\0';
        n++;
        if (!many)
            break;
        p = next;
    }
    return n;
}

icpnsd_auth_t *icpnsd_auth_new(void)
{
    icpnsd_auth_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->slots_lock, NULL);
    return a;
}

static void wipe(token_t *t, int n)
{
    if (t) {
        for (int k = 0; k < n; k++)
            explicit_bzero(t[k], sizeof(t[k]));
        free(t);
    }
}

/* Reads one token file into a new array (*ret, *ret_n). */
static int load_file(const char *path, const char *what, bool many, token_t **ret, int *ret_n,
                     char *err, size_t es)
{
    *ret = NULL;
    *ret_n = 0;
    if (!path || !path[0])
        return 0;
    int fd;
    struct stat st;
    icpns_error_t e;
    if (icpns_file_open_regular(path, &fd, &st, &e)) {
        char m[700];
        icpns_error_format(&e, m, sizeof(m));
        snprintf(err, es, "%s token file: %s", what, m);
        return -1;
    }
    if (st.st_mode & 077)
        log_warn("%s token file %s is readable by group or others (mode %03o); chmod 600 it",
                 what, path, (unsigned)(st.st_mode & 0777));
    size_t cap = (size_t)(many ? ICPNSD_TOKENS_MAX : 1) * (ICPNSD_TOKEN_MAX + 2) + 4096;
    char *buf = malloc(cap + 1);
    ssize_t len = buf ? read(fd, buf, cap + 1) : -1;
    close(fd);
    if (len < 0 || (size_t)len > cap) {
        if (buf)
            explicit_bzero(buf, cap + 1);
        free(buf);
        snprintf(err, es, "%s token file %s: %s", what, path,
                 len < 0 ? "cannot read it" : "too large");
        return -1;
    }
    token_t *t = calloc(many ? ICPNSD_TOKENS_MAX : 1, sizeof(token_t));
    int n = t ? icpnsd_tokens_parse(buf, (size_t)len, path, many, t,
                                    many ? ICPNSD_TOKENS_MAX : 1, err, es)
              : -1;
    explicit_bzero(buf, cap + 1);
    free(buf);
    if (!t)
        snprintf(err, es, "out of memory");
    if (n < 0) {
        wipe(t, many ? ICPNSD_TOKENS_MAX : 1);
        return -1;
    }
    *ret = t;
    *ret_n = n;
    return 0;
}

int icpnsd_auth_load(icpnsd_auth_t *a, const char *admin_path, const char *api_path, char *err,
                     size_t es)
{
    token_t *admin, *api;
    int n_admin, n_api;
    if (load_file(admin_path, "admin", false, &admin, &n_admin, err, es))
        return -1;
    if (load_file(api_path, "API", true, &api, &n_api, err, es)) {
        wipe(admin, 1);
        return -1;
    }
    bool api_required = api_path && api_path[0];
    if (api_required && n_api == 0) {
        wipe(admin, 1);
        wipe(api, ICPNSD_TOKENS_MAX);
        snprintf(err, es, "API token file %s holds no token (one token a line)", api_path);
        return -1;
    }
    if (admin_path && admin_path[0] && n_admin == 0)
        log_warn("admin token file %s holds no token: /admin/* is disabled (403)", admin_path);
    pthread_rwlock_wrlock(&a->lock);
    token_t *old_admin = a->admin, *old_api = a->api;
    int old_n_api = a->api ? ICPNSD_TOKENS_MAX : 0;
    a->admin = n_admin ? admin : NULL;
    a->n_admin = n_admin;
    a->api = api;
    a->n_api = n_api;
    a->api_required = api_required;
    pthread_rwlock_unlock(&a->lock);
    if (!n_admin)
        wipe(admin, 1);
    wipe(old_admin, old_admin ? 1 : 0);
    wipe(old_api, old_n_api);
    return 0;
}

bool icpnsd_auth_admin_enabled(icpnsd_auth_t *a)
{
    pthread_rwlock_rdlock(&a->lock);
    bool on = a->n_admin > 0;
    pthread_rwlock_unlock(&a->lock);
    return on;
}

bool icpnsd_auth_api_required(icpnsd_auth_t *a)
{
    pthread_rwlock_rdlock(&a->lock);
    bool on = a->api_required;
    pthread_rwlock_unlock(&a->lock);
    return on;
}

/* Constant time in the token's length: every byte of every token is
 * looked at, whether or not an earlier one matched. */
static bool matches(const token_t *t, int n, const char *presented, size_t len)
{
    unsigned char found = 0;
    for (int k = 0; k < n; k++) {
        size_t tl = strlen(t[k]);
        unsigned char diff = (unsigned char)(len != tl);
        for (size_t j = 0; j < tl; j++)
            diff |= (unsigned char)(t[k][j] ^ (j < len ? presented[j] : 0));
        found |= (unsigned char)(diff == 0);
    }
    return found != 0;
}

/* The slot of an address (the oldest one is reused when the table is full). */
static slot_t *slot_of(icpnsd_auth_t *a, const char *addr, size_t len, double now)
{
    uint64_t h = icpns_hash64(addr, len, 7);
    slot_t *oldest = NULL;
    for (unsigned probe = 0; probe < 8; probe++) {
        slot_t *s = &a->slots[(h + probe) % SLOTS];
        if (s->len == len && !memcmp(s->addr, addr, len))
            return s;
        if (!oldest || s->window_start < oldest->window_start)
            oldest = s;
    }
    memset(oldest, 0, sizeof(*oldest));
    memcpy(oldest->addr, addr, len);
    oldest->len = (unsigned char)len;
    oldest->window_start = now;
    return oldest;
}

icpnsd_auth_result_t icpnsd_auth_check(icpnsd_auth_t *a, icpnsd_auth_kind_t kind,
                                       const char *header, const char *client,
                                       const char *route, unsigned *retry_after)
{
    const char *text = client && client[0] ? client : "unknown";
    size_t alen = strlen(text) < sizeof(((slot_t *)0)->addr) ? strlen(text) : 0;
    double now = icpns_now();
    slot_t *s = NULL;
    if (alen) {
        pthread_mutex_lock(&a->slots_lock);
        s = slot_of(a, text, alen, now);
        if (now - s->window_start >= ICPNSD_AUTH_WINDOW) {
            if (s->fails > s->logged)
                log_warn("auth: %u more failed attempts from %s in the last window",
                         s->fails - s->logged, text);
            s->window_start = now;
            s->fails = s->logged = 0;
        }
        if (s->fails >= ICPNSD_AUTH_FAILS) {
            *retry_after = (unsigned)(ICPNSD_AUTH_WINDOW - (now - s->window_start)) + 1;
            pthread_mutex_unlock(&a->slots_lock);
            atomic_fetch_add(&icpnsd_metrics.auth_throttled, 1);
            return ICPNSD_AUTH_THROTTLED;
        }
        pthread_mutex_unlock(&a->slots_lock);
    }
    icpnsd_auth_result_t res;
    pthread_rwlock_rdlock(&a->lock);
    if (kind == ICPNSD_AUTH_ADMIN && a->n_admin == 0) {
        res = ICPNSD_AUTH_DISABLED;
    } else if (!header || strncasecmp(header, "Bearer ", 7)) {
        res = ICPNSD_AUTH_MISSING;
    } else {
        const char *t = header + 7;
        while (*t == ' ')
            t++;
        bool ok = kind == ICPNSD_AUTH_ADMIN ? matches(a->admin, a->n_admin, t, strlen(t))
                                            : matches(a->api, a->n_api, t, strlen(t));
        res = ok ? ICPNSD_AUTH_OK : ICPNSD_AUTH_WRONG;
    }
    pthread_rwlock_unlock(&a->lock);
    if (res != ICPNSD_AUTH_MISSING && res != ICPNSD_AUTH_WRONG)
        return res;
    atomic_fetch_add(kind == ICPNSD_AUTH_ADMIN ? &icpnsd_metrics.auth_failures_admin
                                               : &icpnsd_metrics.auth_failures_api,
                     1);
    if (s) {
        pthread_mutex_lock(&a->slots_lock);
        s->fails++;
        bool log = s->logged < 3;
        s->logged += log;
        unsigned fails = s->fails;
        pthread_mutex_unlock(&a->slots_lock);
        if (log)
            log_warn("auth: %s %s token from %s for %s (failure %u of %d allowed a minute)",
                     res == ICPNSD_AUTH_MISSING ? "no" : "a wrong",
                     kind == ICPNSD_AUTH_ADMIN ? "admin" : "API", text, route, fails,
                     ICPNSD_AUTH_FAILS);
    }
    return res;
}

void icpnsd_auth_free(icpnsd_auth_t *a)
{
    if (!a)
        return;
    wipe(a->admin, a->admin ? 1 : 0);
    wipe(a->api, a->api ? ICPNSD_TOKENS_MAX : 0);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->slots_lock);
    free(a);
}
