/*
 * icpnsd - serves ICPNS negatives over HTTP.
 *
 * The main thread runs the libuv loop: signals (SIGHUP reload, SIGTERM and
 * SIGINT graceful stop), the systemd watchdog timer, the optional file
 * watch, and the completion of background rebuilds.  libmicrohttpd's own
 * thread pool serves the requests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "auth.h"
#include "config.h"
#include "env.h"
#include "log.h"
#include "notify.h"
#include "pool.h"
#include "registry.h"
#include "server.h"
#include "tls.h"
#include "tracker.h"

static const char help[] =
    "Usage: icpnsd [OPTIONS]\n"
    "Serve In-Community Popularity Negative Sampling over HTTP/JSON and binary frames.\n\n"
    "  -c, --config FILE          key = value configuration (see configs/icpnsd.conf)\n"
    "  -l, --listen ADDR:PORT     listen address (default 127.0.0.1:8470; port 0 picks\n"
    "                             a free port, printed on stdout)\n"
    "      --admin-listen A:P     serve /admin/* only on this second address\n"
    "  -t, --tables DIR           table directory (default: a built-in synthetic dataset)\n"
    "  -t, --tables NAME=DIR      a named table set (repeatable; requests choose one\n"
    "                             with \"tables\": NAME or ?tables=NAME)\n"
    "  -j, --threads N            HTTP worker threads (default 2)\n"
    "      --admin-token-file F   enables /admin/* with the bearer token in F\n"
    "      --api-token-file F     /v1/* need a bearer token of F (one a line)\n"
    "      --tls-cert FILE        serve HTTPS with this PEM certificate chain...\n"
    "      --tls-key FILE         ...and this key (re-read on SIGHUP)\n"
    "      --state-dir DIR        keep table sets uploaded over HTTP in DIR/sets\n"
    "                             (POST /admin/sets with the data; they load again\n"
    "                             at start)\n"
    "      --log-level L          error|warn|info|debug (default info)\n"
    "      --watch                reload when the table directory changes\n"
    "      --check-config         load the configuration, token and tables, then exit\n"
    "                             (0 when all is well) without binding\n"
    "  -h, --help                 this text\n"
    "      --version              print the version\n\n"
    "Signals: SIGHUP reloads every table set; SIGTERM/SIGINT stop gracefully.\n"
    "The HTTP API is in proto/openapi.yaml; try  curl -s localhost:8470/v1/communities\n";

/* After shutdown_timeout: how long cancelled requests get to answer, and
 * how long background work may keep the process once the listeners are
 * stopped.  Both are part of the stop's budget (docs/operations.md:
 * TimeoutStopSec must exceed shutdown_timeout + 4 s). */
#define CANCEL_GRACE 2.0
#define IDLE_GRACE 1.0
#define HARD_EXIT_MS 2000

typedef struct app {
    icpnsd_config_t cfg;
    icpnsd_env_t env;
    icpnsd_auth_t *auth;
    icpnsd_registry_t *reg;
    icpnsd_tracker_t *tracker;
    icpnsd_pool_t *pool;
    icpnsd_server_t *srv;
    uv_loop_t loop;
    uv_signal_t sighup, sigterm, sigint;
    uv_timer_t watchdog, drain, hard_exit;
    double cancel_started;
    bool watching;
    bool stopping;
    double drain_started;
} app_t;

/* SIGHUP: the token files again (rotation: a bad file keeps the tokens in
 * use), then every table set. */
static void on_sighup(uv_signal_t *h, int sig)
{
    (void)sig;
    app_t *a = h->data;
    char err[1024];
    if (icpnsd_auth_load(a->auth, a->cfg.admin_token_file, a->cfg.api_token_file, err,
                         sizeof(err)))
        log_error("reload: the token files are refused, the tokens in use stay: %s", err);
    else
        log_info("reload: token files read");
    if (a->cfg.tls_cert[0]) {
        if (icpnsd_tls_load(a->cfg.tls_cert, a->cfg.tls_key, err, sizeof(err)))
            log_error("reload: the TLS certificate is refused, the one in use stays: %s", err);
        else
            log_info("reload: TLS certificate %s read", a->cfg.tls_cert);
    }
    icpnsd_registry_reload_all(a->reg, "SIGHUP");
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

static void close_all(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, close_cb);
}

/* The compute pool first: it finishes the tasks it holds (their
 * connections are still open), then the HTTP threads stop. */
static void stop_serving(app_t *a)
{
    icpnsd_pool_free(a->pool);
    a->pool = NULL;
    a->env.pool = NULL;
    icpnsd_server_stop(a->srv);
    a->srv = NULL;
}

/* Closes what is left on the loop, frees everything; returns @rc. */
static int teardown(app_t *a, int rc)
{
    stop_serving(a);
    uv_walk(&a->loop, close_all, NULL);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    icpnsd_registry_free(a->reg);
    a->reg = NULL;
    icpnsd_tracker_free(a->tracker);
    a->tracker = NULL;
    icpnsd_auth_free(a->auth);
    a->auth = NULL;
    icpnsd_tls_free();
    int lc = uv_loop_close(&a->loop);
    if (lc)
        log_warn("event loop closed with handles open: %s", uv_strerror(lc));
    return rc;
}

/* Background work still running when the loop should end: its files are
 * consistent at any instant (atomic renames, fsynced journal lines), so
 * the process exits without it. */
static void on_hard_exit(uv_timer_t *t)
{
    (void)t;
    log_warn("shutdown: background work (a build or k-means) still running %.1fs after the "
             "listeners stopped; exiting without it (its files stay consistent)",
             HARD_EXIT_MS / 1000.0);
    log_info("stopped");
    fflush(stderr);
    _exit(0);
}

/*
 * The graceful stop, every 20 ms after SIGTERM: requests in flight finish
 * (new connections are refused, idle ones closed at the end); at
 * shutdown_timeout the requests still waiting for work (a rebuild, k-means,
 * weights, the compute pool) are answered 503 shutting_down, k-means is
 * cancelled and queued sampling dropped; then the listeners stop.
 * libmicrohttpd must not be stopped while a connection is suspended, so
 * the stop waits (a bounded grace) until every cancelled request answered.
 */
static void on_drain(uv_timer_t *t)
{
    app_t *a = t->data;
    unsigned sleeping, active = icpnsd_server_active(a->srv, &sleeping);
    double now = icpns_now();
    if (active > 0 && now - a->drain_started < a->cfg.shutdown_timeout)
        return;
    /* No request is running.  Connections accepted just before the stop
     * get a moment to send theirs; idle keep-alive ones are then closed. */
    if (active == 0 && icpnsd_server_connections(a->srv) > 0 &&
        now - a->drain_started < IDLE_GRACE)
        return;
    if (active > 0 && !a->cancel_started) {
        a->cancel_started = now;
        unsigned n = icpnsd_server_cancel(a->srv);
        icpnsd_pool_cancel(a->pool);
        icpnsd_registry_cancel(a->reg);
        log_warn("shutdown: %u request(s) still running after %us; %u waiting for work answered "
                 "503 shutting_down", active, a->cfg.shutdown_timeout, n);
        return;
    }
    if (active > 0 && now - a->cancel_started < CANCEL_GRACE) {
        icpnsd_server_cancel(a->srv); /* any that went to sleep since */
        return;
    }
    if (sleeping > 0) {
        /* Cannot happen: every sleeping request was resumed above.  Do not
         * let libmicrohttpd abort on it. */
        log_error("shutdown: %u request(s) still suspended; exiting", sleeping);
        fflush(stderr);
        _exit(0);
    }
    if (active > 0)
        log_warn("shutdown: closing %u request(s) still running", active);
    uv_timer_stop(&a->drain);
    stop_serving(a);
    uv_walk(&a->loop, close_all, NULL);
    /* Unreferenced: it only fires if background work keeps the loop. */
    uv_timer_init(&a->loop, &a->hard_exit);
    uv_timer_start(&a->hard_exit, on_hard_exit, HARD_EXIT_MS, 0);
    uv_unref((uv_handle_t *)&a->hard_exit);
}

static void on_stop_signal(uv_signal_t *h, int sig)
{
    app_t *a = h->data;
    if (a->stopping)
        return;
    a->stopping = true;
    log_info("received %s: finishing in-flight requests, then exiting", strsignal(sig));
    icpnsd_notify("STOPPING=1\nSTATUS=stopping");
    icpnsd_server_quiesce(a->srv);
    a->drain_started = icpns_now();
    uv_timer_start(&a->drain, on_drain, 0, 20);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    icpnsd_notify("WATCHDOG=1");
}

/* LISTEN_FDS from systemd socket activation: the first fd (3) if it is ours. */
static int inherited_socket(void)
{
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
    if (!fds || !pid || strtol(pid, NULL, 10) != getpid() || strtol(fds, NULL, 10) < 1)
        return -1;
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    return 3;
}

int main(int argc, char **argv)
{
    static app_t app;
    app_t *a = &app;
    /* Writes to closed sockets and files over RLIMIT_FSIZE are errors, not
     * deaths. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    /* glibc gives every thread that allocates its own arena; with rebuilds
     * and weight builds on pool threads the arenas fragment and RSS creeps
     * up over hours (docs/reliability.md: a soak grew ~3 MB in 4 minutes
     * with the default, stayed level with 2).  MALLOC_ARENA_MAX overrides. */
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, 2);
    icpnsd_config_default(&a->cfg);
    char err[1400];
    enum { O_ADMIN_LISTEN = 1000, O_TOKEN, O_API_TOKEN, O_TLS_CERT, O_TLS_KEY, O_STATE, O_LOG, O_WATCH, O_VERSION, O_CHECK };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"admin-listen", required_argument, NULL, O_ADMIN_LISTEN},
        {"tables", required_argument, NULL, 't'},
        {"threads", required_argument, NULL, 'j'},
        {"admin-token-file", required_argument, NULL, O_TOKEN},
        {"api-token-file", required_argument, NULL, O_API_TOKEN},
        {"tls-cert", required_argument, NULL, O_TLS_CERT},
        {"tls-key", required_argument, NULL, O_TLS_KEY},
        {"state-dir", required_argument, NULL, O_STATE},
        {"log-level", required_argument, NULL, O_LOG},
        {"watch", no_argument, NULL, O_WATCH},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {"check-config", no_argument, NULL, O_CHECK},
        {0}};
    bool check_only = false;
    /* The config file first, then the flags over it. */
    for (int k = 1; k < argc; k++) {
        const char *path = NULL;
        if ((!strcmp(argv[k], "-c") || !strcmp(argv[k], "--config")) && k + 1 < argc)
            path = argv[k + 1];
        else if (!strncmp(argv[k], "--config=", 9))
            path = argv[k] + 9;
        if (path && icpnsd_config_load(&a->cfg, path, err, sizeof(err))) {
            fprintf(stderr, "icpnsd: error: %s\n", err);
            return 1;
        }
    }
    int c;
    while ((c = getopt_long(argc, argv, "c:l:t:j:h", longopts, NULL)) != -1) {
        const char *key = NULL;
        switch (c) {
        case 'c': continue;
        case 'l': key = "listen"; break;
        case O_ADMIN_LISTEN: key = "admin_listen"; break;
        case 't': {
            /* NAME=DIR is a named set; anything else the default set. */
            const char *eq = strchr(optarg, '=');
            char name[ICPNSD_SET_NAME];
            if (eq && eq != optarg && eq - optarg < ICPNSD_SET_NAME)
                snprintf(name, sizeof(name), "%.*s", (int)(eq - optarg), optarg);
            if (eq && eq != optarg && eq - optarg < ICPNSD_SET_NAME && icpnsd_set_name_ok(name)) {
                char k2[ICPNSD_SET_NAME + 8];
                snprintf(k2, sizeof(k2), "tables.%.*s", (int)(eq - optarg), optarg);
                if (icpnsd_config_set(&a->cfg, k2, eq + 1, err, sizeof(err))) {
                    fprintf(stderr, "icpnsd: error: --tables: %s\nTry 'icpnsd --help'.\n", err);
                    return 2;
                }
                continue;
            }
            key = "tables";
            break;
        }
        case 'j': key = "threads"; break;
        case O_TOKEN: key = "admin_token_file"; break;
        case O_API_TOKEN: key = "api_token_file"; break;
        case O_TLS_CERT: key = "tls_cert"; break;
        case O_TLS_KEY: key = "tls_key"; break;
        case O_STATE: key = "state_dir"; break;
        case O_LOG: key = "log_level"; break;
        case O_WATCH: a->cfg.watch = true; continue;
        case O_CHECK: check_only = true; continue;
        case 'h': fputs(help, stdout); return 0;
        case O_VERSION: printf("icpnsd %s\n", ICPNS_VERSION_STRING); return 0;
        default: fprintf(stderr, "Try 'icpnsd --help'.\n"); return 2;
        }
        if (icpnsd_config_set(&a->cfg, key, optarg, err, sizeof(err))) {
            char flag[64];
            snprintf(flag, sizeof(flag), "%s", key);
            for (char *f = flag; *f; f++)
                *f = *f == '_' ? '-' : *f;
            fprintf(stderr, "icpnsd: error: --%s: %s\nTry 'icpnsd --help'.\n", flag, err);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "icpnsd: error: unexpected argument '%s'\nTry 'icpnsd --help'.\n", argv[optind]);
        return 2;
    }
    icpnsd_log_level = a->cfg.log_level;
    if (!a->cfg.tls_cert[0] != !a->cfg.tls_key[0]) {
        log_error("TLS needs both tls_cert and tls_key (--tls-cert, --tls-key)");
        return 1;
    }
    if (a->cfg.metrics_auth == ICPNSD_METRICS_API && !a->cfg.api_token_file[0]) {
        log_error("metrics_auth = api needs api_token_file (--api-token-file): without it no "
                  "token could ever read /metrics");
        return 1;
    }
    if (a->cfg.tls_cert[0] && icpnsd_tls_load(a->cfg.tls_cert, a->cfg.tls_key, err, sizeof(err))) {
        log_error("%s", err);
        return 1;
    }
    a->auth = icpnsd_auth_new();
    if (!a->auth || icpnsd_auth_load(a->auth, a->cfg.admin_token_file, a->cfg.api_token_file,
                                     err, sizeof(err))) {
        log_error("%s", a->auth ? err : "out of memory");
        icpnsd_auth_free(a->auth);
        return 1;
    }
    uv_loop_init(&a->loop);
    log_info("icpnsd %s starting: %u configured table set(s)%s, threads=%u",
             ICPNS_VERSION_STRING, a->cfg.n_sets + (a->cfg.tables[0] || !a->cfg.n_sets),
             a->cfg.state_dir[0] ? " and the uploaded ones of state_dir" : "", a->cfg.threads);
    a->env = (icpnsd_env_t){
        .cfg = &a->cfg,
        .auth = a->auth,
        .admin_separate = a->cfg.admin_listen[0] != '\0',
        .default_strategy = icpns_strategy_parse(a->cfg.default_strategy),
        .started = icpns_now(),
    };
    a->tracker = icpnsd_tracker_new();
    a->env.tracker = a->tracker;
    a->reg = icpnsd_registry_new(&a->loop, &a->cfg);
    a->env.reg = a->reg;
    if (!a->tracker || !a->reg || icpnsd_registry_load(a->reg, err, sizeof(err))) {
        log_error("cannot load the tables: %s", a->reg && a->tracker ? err : "out of memory");
        return teardown(a, 1);
    }
    icpnsd_set_t *sets[ICPNSD_MAX_SETS];
    unsigned nsets = icpnsd_registry_list(a->reg, sets, ICPNSD_MAX_SETS);
    for (unsigned k = 0; k < nsets; k++) {
        icpnsd_meta_t m;
        icpns_snapshot_t *s = icpnsd_set_acquire_meta(sets[k], &m);
        log_info("tables=%s snapshot version=%llu fingerprint=%016llx users=%u items=%u "
                 "interactions=%llu communities=%u bytes=%zu built in %.3fs",
                 icpnsd_set_name(sets[k]), (unsigned long long)s->version,
                 (unsigned long long)s->fingerprint, s->users.n, s->items.n,
                 (unsigned long long)s->n_interactions, s->comms.n, s->bytes, m.build_seconds);
        uint32_t no_comm = 0;
        for (uint32_t u = 0; u < s->users.n; u++)
            no_comm += s->user_comm[u] == ICPNS_NONE;
        if (no_comm)
            log_warn("tables=%s: %u of %u users have no community: ICPNS requests for them fail "
                     "with no_community", icpnsd_set_name(sets[k]), no_comm, s->users.n);
        icpns_snapshot_unref(s);
        icpnsd_set_unref(sets[k]);
    }
    if (check_only) {
        printf("configuration ok: tables load and build; listen %s\n", a->cfg.listen);
        return teardown(a, 0);
    }
    /* Signals are caught before the first connection can be accepted, so a
     * SIGHUP or SIGTERM right after start-up is never fatal.  libuv queues
     * them until the loop runs. */
    uv_signal_init(&a->loop, &a->sighup);
    uv_signal_init(&a->loop, &a->sigterm);
    uv_signal_init(&a->loop, &a->sigint);
    a->sighup.data = a->sigterm.data = a->sigint.data = a;
    uv_signal_start(&a->sighup, on_sighup, SIGHUP);
    uv_signal_start(&a->sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&a->sigint, on_stop_signal, SIGINT);
    /* Watches start before the port is announced: a change made right
     * after "listening on" is never missed. */
    icpnsd_registry_watch(a->reg);
    a->pool = icpnsd_pool_new(a->cfg.threads, err, sizeof(err));
    a->env.pool = a->pool;
    uint16_t port = 0, admin_port = 0;
    if (a->pool)
        a->srv = icpnsd_server_start(&a->env, inherited_socket(), &port, &admin_port, err,
                                     sizeof(err));
    if (!a->srv) {
        log_error("%s", err);
        return teardown(a, 1);
    }
    /* Tests and scripts read the port from this line when they asked for 0. */
    char host[256];
    snprintf(host, sizeof(host), "%s", a->cfg.listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    printf("listening on %s:%u\n", host, port);
    if (a->cfg.admin_listen[0])
        printf("admin listening on port %u\n", admin_port);
    fflush(stdout);
    log_info("listening on %s:%u%s: %s; /v1 %s; /admin %s; /metrics %s", host, port,
             a->cfg.admin_listen[0] ? " (admin on a separate listener)" : "",
             a->cfg.tls_cert[0] ? "HTTPS only" : "plain HTTP",
             icpnsd_auth_api_required(a->auth) ? "needs an API token" : "open",
             icpnsd_auth_admin_enabled(a->auth) ? "needs the admin token" : "disabled",
             a->cfg.metrics_auth == ICPNSD_METRICS_ADMIN ? "needs the admin token"
             : a->cfg.metrics_auth == ICPNSD_METRICS_API ? "needs an API token"
                                                          : "open");

    uv_timer_init(&a->loop, &a->drain);
    uv_timer_init(&a->loop, &a->watchdog);
    a->drain.data = a->watchdog.data = a;
    uint64_t wd = icpnsd_watchdog_interval_ms();
    if (wd)
        uv_timer_start(&a->watchdog, on_watchdog, wd, wd);
    char msg[256];
    icpnsd_set_t *def = icpnsd_registry_main(a->reg);
    icpns_snapshot_t *s = def ? icpnsd_set_acquire(def) : NULL;
    if (s)
        snprintf(msg, sizeof(msg),
                 "READY=1\nSTATUS=serving tables=%s version %llu (fingerprint %016llx) on port %u"
                 "\nMAINPID=%d",
                 icpnsd_set_name(def), (unsigned long long)s->version,
                 (unsigned long long)s->fingerprint, port, (int)getpid());
    else
        snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving on port %u\nMAINPID=%d", port,
                 (int)getpid());
    icpns_snapshot_unref(s);
    icpnsd_set_unref(def);
    icpnsd_notify(msg);

    uv_run(&a->loop, UV_RUN_DEFAULT);
    teardown(a, 0);
    log_info("stopped");
    return 0;
}
