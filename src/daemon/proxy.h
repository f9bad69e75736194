/*
 * proxy.h - trusted proxies (the `trusted_proxies` setting): which peers
 * may say, in X-Forwarded-For, who the client behind them is.  Behind
 * nginx every request comes from nginx's address; the per-address
 * throttling of failed tokens and the logs want the trainer's.  Pure
 * functions, unit-tested alone.
 */
#ifndef ICPNSD_PROXY_H
#define ICPNSD_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define ICPNSD_MAX_PROXIES 32

/* An address range: @bits leading bits of @addr (4 or 16 bytes). */
typedef struct icpnsd_cidr {
    unsigned char addr[16];
    unsigned char len;   /* 4 or 16 */
    unsigned char bits;
} icpnsd_cidr_t;

typedef struct icpnsd_proxies {
    icpnsd_cidr_t v[ICPNSD_MAX_PROXIES];
    unsigned n;
} icpnsd_proxies_t;

/*
 * Parses "ADDR[/BITS], ..." (IPv4 or IPv6, commas or spaces between; ""
 * for none) into @p.  0, or -1 with @err naming the bad entry.
 */
int icpnsd_proxies_parse(const char *text, icpnsd_proxies_t *p, char *err, size_t es);

/* Whether address @a (4 or 16 bytes; IPv4-mapped IPv6 counts as IPv4)
 * is in one of the ranges. */
bool icpnsd_proxies_trust(const icpnsd_proxies_t *p, const unsigned char *a, size_t len);

/*
 * The client's address as text into @out: @peer's, unless @peer is a
 * trusted proxy and @xff (X-Forwarded-For, may be NULL) names one; then
 * the rightmost address of @xff that is not itself a trusted proxy (the
 * leftmost when all are).  Returns false, with @peer's address in @out,
 * when a trusted proxy sent an X-Forwarded-For that does not parse.
 */
bool icpnsd_proxies_client(const icpnsd_proxies_t *p, const struct sockaddr *peer,
                           const char *xff, char *out, size_t size);

#endif
