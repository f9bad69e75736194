/*
 * proxy.c - trusted proxies and X-Forwarded-For (see proxy.h).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

/* "1.2.3.4" or "::1" (@len chars) into @out; 4, 16, or 0 when neither. */
static size_t parse_addr(const char *s, size_t len, unsigned char *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, buf, out) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(out, mapped, 12)) {
            memmove(out, out + 12, 4);
            return 4;
        }
        return 16;
    }
    return 0;
}

int icpnsd_proxies_parse(const char *text, icpnsd_proxies_t *p, char *err, size_t es)
{
    p->n = 0;
    const char *s = text ? text : "";
    while (*s) {
        while (*s == ',' || *s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        size_t len = strcspn(s, ", \t");
        const char *slash = memchr(s, '/', len);
        size_t alen = slash ? (size_t)(slash - s) : len;
        icpnsd_cidr_t c;
        memset(&c, 0, sizeof(c));
        c.len = (unsigned char)parse_addr(s, alen, c.addr);
        unsigned long bits = c.len * 8;
        bool ok = c.len != 0;
        if (ok && slash) {
            char *end;
            bits = strtoul(slash + 1, &end, 10);
            ok = end == s + len && end > slash + 1 && bits <= (unsigned long)c.len * 8 &&
                 slash[1] >= '0' && slash[1] <= '9';
        }
        if (!ok) {
            snprintf(err, es, "trusted_proxies: '%.*s' is not an address or ADDRESS/BITS", (int)len,
                     s);
            return -1;
        }
        if (p->n == ICPNSD_MAX_PROXIES) {
            snprintf(err, es, "trusted_proxies: at most %d entries", ICPNSD_MAX_PROXIES);
            return -1;
        }
        c.bits = (unsigned char)bits;
        p->v[p->n++] = c;
        s += len;
    }
    return 0;
}

static bool in_range(const icpnsd_cidr_t *c, const unsigned char *a, size_t len)
{
    if (c->len != len)
        return false;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, full))
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (a[full] & mask);
}

bool icpnsd_proxies_trust(const icpnsd_proxies_t *p, const unsigned char *a, size_t len)
{
    for (unsigned k = 0; k < p->n; k++)
        if (in_range(&p->v[k], a, len))
            return true;
    return false;
}

/* @peer's address: bytes into @out (4 or 16, IPv4-mapped as IPv4) and text. */
static size_t peer_addr(const struct sockaddr *peer, unsigned char *out, char *text, size_t ts)
{
    text[0] = '\0';
    if (peer && peer->sa_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)peer;
        memcpy(out, &a4->sin_addr, 4);
        inet_ntop(AF_INET, out, text, (socklen_t)ts);
        return 4;
    }
    if (peer && peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)peer;
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof(buf));
        size_t n = parse_addr(buf, strlen(buf), out);
        inet_ntop(n == 4 ? AF_INET : AF_INET6, out, text, (socklen_t)ts);
        return n;
    }
    snprintf(text, ts, "unknown");
    return 0;
}

bool icpnsd_proxies_client(const icpnsd_proxies_t *p, const struct sockaddr *peer,
                           const char *xff, char *out, size_t size)
{
    unsigned char a[16];
    size_t len = peer_addr(peer, a, out, size);
    if (!xff || !p->n || !len || !icpnsd_proxies_trust(p, a, len))
        return true;
    /* Right to left: the nearest hop first; skip our own proxies. */
    const char *end = xff + strlen(xff);
    const char *first = NULL;
    size_t first_len = 0;
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *s = start, *e = end;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        unsigned char h[16];
        size_t hl = parse_addr(s, (size_t)(e - s), h);
        if (!hl)
            return false;
        first = s;
        first_len = (size_t)(e - s);
        if (!icpnsd_proxies_trust(p, h, hl))
            break;
        end = start > xff ? start - 1 : xff;
    }
    if (!first)
        return false;
    snprintf(out, size, "%.*s", (int)first_len, first);
    return true;
}
