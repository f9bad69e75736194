/*
 * auth.h - the bearer tokens that guard routes, and the throttling of
 * clients that guess them.
 *
 * Two kinds: the admin token (--admin-token-file, one token: the file's
 * first line) for the admin routes, and API tokens (--api-token-file, one token a
 * line, so that each trainer can hold its own and be revoked alone) for
 * the v1 routes when that file is set.  Files are re-read on reload (SIGHUP): a
 * bad file is refused and the tokens in use stay.  Comparison is in
 * constant time in the token's length; no token byte is ever logged.
 * An address that fails too often is answered 429 for a while, whatever
 * it sends.
 */
#ifndef ICPNSD_AUTH_H
#define ICPNSD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ICPNSD_TOKEN_MIN 16
#define ICPNSD_TOKEN_MAX 512
#define ICPNSD_TOKENS_MAX 1024

/* Failed attempts an address may make in a window before it is throttled,
 * and the window (seconds). */
#define ICPNSD_AUTH_FAILS 10
#define ICPNSD_AUTH_WINDOW 60

typedef struct icpnsd_auth icpnsd_auth_t;

typedef enum icpnsd_auth_kind { ICPNSD_AUTH_ADMIN, ICPNSD_AUTH_API } icpnsd_auth_kind_t;

typedef enum icpnsd_auth_result {
    ICPNSD_AUTH_OK,
    ICPNSD_AUTH_DISABLED,  /* admin: no token configured */
    ICPNSD_AUTH_MISSING,   /* no "Authorization: Bearer" */
    ICPNSD_AUTH_WRONG,
    ICPNSD_AUTH_THROTTLED, /* too many failures from this address */
} icpnsd_auth_result_t;

/*
 * Parses the text of a token file (@len bytes, @name for messages).
 * @many: one token a line (blank lines and '#' comments skipped), else
 * the first line is the token.  Tokens are printable (the token68
 * characters of RFC 6750: letters, digits, -._~+/ and trailing =) and at
 * least ICPNSD_TOKEN_MIN long; a NUL or another control byte is an error
 * naming the line and column (never the token).  Returns the number of
 * tokens written to @out (an array of @max strings of ICPNSD_TOKEN_MAX+1
 * bytes): 0 when the file holds no token (empty, or the word "disabled",
 * the systemd unit's fallback credential), or -1 with @err.
 */
int icpnsd_tokens_parse(const char *buf, size_t len, const char *name, bool many,
                        char (*out)[ICPNSD_TOKEN_MAX + 1], int max, char *err, size_t errsize);

/* An empty set of tokens (admin routes disabled, API routes open), or
 * NULL when out of memory. */
icpnsd_auth_t *icpnsd_auth_new(void);

/*
 * (Re)reads the token files (NULL or "": none).  Each must be a regular
 * file (a FIFO or a directory is an error naming it); a file readable by
 * others is logged.  On failure nothing changes and @err says why.
 */
int icpnsd_auth_load(icpnsd_auth_t *a, const char *admin_path, const char *api_path, char *err,
                     size_t errsize);

/* Whether the admin routes are enabled; whether the API routes need a
 * token. */
bool icpnsd_auth_admin_enabled(icpnsd_auth_t *a);
bool icpnsd_auth_api_required(icpnsd_auth_t *a);

/*
 * Checks the Authorization header @header (may be NULL) of a request from
 * the client at address @client (text: the peer's, or the one a trusted
 * proxy forwarded; see proxy.h) to @route against the tokens of @kind.
 * Failures are counted per address; past ICPNSD_AUTH_FAILS in a window the
 * address is throttled (*@retry_after gets the seconds left) and the
 * failures are logged (address and route, rate-limited).
 */
icpnsd_auth_result_t icpnsd_auth_check(icpnsd_auth_t *a, icpnsd_auth_kind_t kind,
                                       const char *header, const char *client,
                                       const char *route, unsigned *retry_after);

/* Zeroes and frees the tokens; accepts NULL. */
void icpnsd_auth_free(icpnsd_auth_t *a);

#endif
