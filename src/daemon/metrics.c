/*
 * metrics.c - lock-free counters and their Prometheus rendering: the
 * daemon-wide families, the process families, and the counter families of
 * the table sets.  Every family is written with its HELP and TYPE lines
 * exactly once, followed by all of its series.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "icpns/common.h"
#include "icpns/snapshot.h"

#include "metrics.h"

icpnsd_metrics_t icpnsd_metrics;

/* The statuses the daemon answers; anything else is counted as "other"
 * (the last slot). */
static const unsigned statuses[ICPNSD_METRICS_STATUSES] = {
    200, 201, 202, 400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 429, 500, 503, 507, 0};
static const double buckets[ICPNSD_METRICS_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                       0.005,  0.01,    0.025,  0.05,  0.1,
                                                       0.25,   0.5,     1.0,    2.5};
static const char *route_names[ICPNSD_METRICS_ROUTES];
static unsigned n_routes;

unsigned icpnsd_metrics_route(const char *name)
{
    for (unsigned k = 0; k < n_routes; k++)
        if (!strcmp(route_names[k], name))
            return k;
    if (n_routes == ICPNSD_METRICS_ROUTES)
        return ICPNSD_METRICS_ROUTES - 1;
    route_names[n_routes] = name;
    return n_routes++;
}

const char *icpnsd_metrics_route_name(unsigned id)
{
    return id < n_routes ? route_names[id] : "other";
}

void icpnsd_metrics_request(unsigned r, unsigned status, double seconds)
{
    if (r >= ICPNSD_METRICS_ROUTES)
        r = ICPNSD_METRICS_ROUTES - 1;
    int k = ICPNSD_METRICS_STATUSES - 1;
    for (int i = 0; i < ICPNSD_METRICS_STATUSES - 1; i++)
        if (statuses[i] == status) {
            k = i;
            break;
        }
    atomic_fetch_add_explicit(&icpnsd_metrics.requests[r][k], 1, memory_order_relaxed);
    for (int b = 0; b < ICPNSD_METRICS_BUCKETS; b++)
        if (seconds <= buckets[b]) {
            atomic_fetch_add_explicit(&icpnsd_metrics.latency_bucket[r][b], 1, memory_order_relaxed);
            break;
        }
    atomic_fetch_add_explicit(&icpnsd_metrics.latency_count[r], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&icpnsd_metrics.latency_sum_us[r], (uint64_t)(seconds * 1e6),
                              memory_order_relaxed);
}

static uint64_t ld(const atomic_uint_fast64_t *a)
{
    return atomic_load_explicit((atomic_uint_fast64_t *)a, memory_order_relaxed);
}

static void family(icpns_buf_t *b, const char *name, const char *type, const char *help)
{
    icpns_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- the process ------------------------------------------------------------------ */

/* What /proc/self/stat says about this process: its start time (seconds
 * since the epoch), virtual and resident memory (bytes).  false when /proc
 * cannot be read (nothing is written then). */
static bool proc_stat(double *ret_start, uint64_t *ret_vsize, uint64_t *ret_rss)
{
    char buf[2048];
    FILE *f = fopen("/proc/self/stat", "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name (field 2) is in parentheses and may hold spaces
     * and parentheses itself: the fields that follow start after the last
     * ')'.  Field 3 is the state; 22 starttime (clock ticks after boot),
     * 23 vsize (bytes), 24 rss (pages). */
    char *p = strrchr(buf, ')');
    if (!p)
        return false;
    unsigned long long start_ticks = 0, vsize = 0;
    long long rss = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 22)
            start_ticks = strtoull(tok, NULL, 10);
        else if (field == 23)
            vsize = strtoull(tok, NULL, 10);
        else if (field == 24) {
            rss = strtoll(tok, NULL, 10);
            break;
        }
    }
    if (field != 24)
        return false;
    /* The boot time, from /proc/stat's btime line. */
    unsigned long long btime = 0;
    f = fopen("/proc/stat", "re");
    if (!f)
        return false;
    char line[256];
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %llu", &btime) == 1)
            break;
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (!btime || hz <= 0 || page <= 0)
        return false;
    *ret_start = (double)btime + (double)start_ticks / (double)hz;
    *ret_vsize = vsize;
    *ret_rss = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
    return true;
}

/* Open file descriptors, from /proc/self/fd (the descriptor that reads
 * the directory not counted); -1 when it cannot be read. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

static void render_process(icpns_buf_t *b)
{
    /* CPU from getrusage: microseconds, where /proc/self/stat has clock
     * ticks (10 ms); both count every thread, ended ones included. */
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        family(b, "process_cpu_seconds_total", "counter",
               "Total user and system CPU time spent in seconds.");
        icpns_buf_printf(b, "process_cpu_seconds_total %.6f\n",
                         (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                             ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6);
    }
    double start;
    uint64_t vsize, rss;
    if (proc_stat(&start, &vsize, &rss)) {
        family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        icpns_buf_printf(b, "process_resident_memory_bytes %llu\n", (unsigned long long)rss);
        family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        icpns_buf_printf(b, "process_virtual_memory_bytes %llu\n", (unsigned long long)vsize);
        family(b, "process_start_time_seconds", "gauge",
               "Start time of the process since unix epoch in seconds.");
        icpns_buf_printf(b, "process_start_time_seconds %.2f\n", start);
    }
    long fds = open_fds();
    if (fds >= 0) {
        family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
        icpns_buf_printf(b, "process_open_fds %ld\n", fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        family(b, "process_max_fds", "gauge",
               "Maximum number of open file descriptors (the soft limit).");
        if (rl.rlim_cur == RLIM_INFINITY)
            icpns_buf_lit(b, "process_max_fds +Inf\n");
        else
            icpns_buf_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
}

/* ---- the daemon --------------------------------------------------------------------- */

static void counter(icpns_buf_t *b, const char *name, const char *help,
                    const atomic_uint_fast64_t *v)
{
    family(b, name, "counter", help);
    icpns_buf_printf(b, "%s %llu\n", name, (unsigned long long)ld(v));
}

static void gauge(icpns_buf_t *b, const char *name, const char *help, uint64_t v)
{
    family(b, name, "gauge", help);
    icpns_buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void status_label(char *buf, size_t size, int k)
{
    if (statuses[k])
        snprintf(buf, size, "%u", statuses[k]);
    else
        snprintf(buf, size, "other");
}

void icpnsd_metrics_render(icpns_buf_t *b, const icpnsd_metrics_daemon_t *d)
{
    icpnsd_metrics_t *m = &icpnsd_metrics;
    family(b, "icpnsd_build_info", "gauge",
           "Always 1: the daemon's version and the sampler revision (the same seed gives "
           "the same negatives only under the same revision).");
    icpns_buf_printf(b, "icpnsd_build_info{version=\"%s\",sampler_revision=\"%d\"} 1\n",
                     ICPNS_VERSION_STRING, ICPNS_SAMPLER_REVISION);
    family(b, "icpnsd_ready", "gauge",
           "1 when every table set serves a snapshot and the daemon is not stopping (as GET "
           "/readyz answers 200), else 0.");
    icpns_buf_printf(b, "icpnsd_ready %d\n", d->ready ? 1 : 0);

    family(b, "icpnsd_requests_total", "counter",
           "HTTP requests answered, by route and status (status \"other\" for a status not "
           "listed; requests refused at the connection cap never reach a route).");
    for (unsigned r = 0; r < n_routes; r++)
        for (int k = 0; k < ICPNSD_METRICS_STATUSES; k++) {
            uint64_t v = ld(&m->requests[r][k]);
            char st[8];
            status_label(st, sizeof(st), k);
            if (v)
                icpns_buf_printf(b, "icpnsd_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                                 route_names[r], st, (unsigned long long)v);
        }
    family(b, "icpnsd_request_duration_seconds", "histogram",
           "Time from a request's headers being read to its answer being sent whole (or its "
           "connection ending), by route: the client's reading speed is in it.");
    for (unsigned r = 0; r < n_routes; r++) {
        uint64_t count = ld(&m->latency_count[r]);
        if (!count)
            continue;
        uint64_t cum = 0;
        for (int k = 0; k < ICPNSD_METRICS_BUCKETS; k++) {
            cum += ld(&m->latency_bucket[r][k]);
            icpns_buf_printf(b, "icpnsd_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                             route_names[r], buckets[k], (unsigned long long)cum);
        }
        icpns_buf_printf(b, "icpnsd_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                         route_names[r], (unsigned long long)count);
        icpns_buf_printf(b, "icpnsd_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                         route_names[r], (double)ld(&m->latency_sum_us[r]) / 1e6);
        icpns_buf_printf(b, "icpnsd_request_duration_seconds_count{route=\"%s\"} %llu\n",
                         route_names[r], (unsigned long long)count);
    }
    counter(b, "icpnsd_request_bytes_total", "Request body bytes received.", &m->bytes_in);
    counter(b, "icpnsd_response_bytes_total", "Response body bytes sent.", &m->bytes_out);
    gauge(b, "icpnsd_connections", "Connections open on the main listener.", d->connections);
    gauge(b, "icpnsd_connections_max", "max_connections: the cap on the main listener's "
          "connections (0: none).", d->max_connections);
    counter(b, "icpnsd_connections_refused_total",
            "Connections refused at max_connections or max_connections_per_ip (503 "
            "too_many_connections).", &m->connections_refused);
    counter(b, "icpnsd_accept_errors_total",
            "Connections not accepted for lack of file descriptors (accepting pauses).",
            &m->accept_errors);
    counter(b, "icpnsd_tls_handshake_failures_total",
            "TLS handshakes that failed (clients speaking plain HTTP to an HTTPS listener, "
            "or refusing its certificate).", &m->tls_handshake_failures);
    family(b, "icpnsd_auth_failures_total", "counter",
           "Requests with a missing or wrong bearer token (401 or 403), by the kind of token "
           "the route needs.");
    icpns_buf_printf(b, "icpnsd_auth_failures_total{kind=\"admin\"} %llu\n"
                        "icpnsd_auth_failures_total{kind=\"api\"} %llu\n",
                     (unsigned long long)ld(&m->auth_failures_admin),
                     (unsigned long long)ld(&m->auth_failures_api));
    counter(b, "icpnsd_auth_throttled_total",
            "Requests answered 429 because their address failed authentication too often.",
            &m->auth_throttled);
    counter(b, "icpnsd_answers_streamed_total",
            "Answers above answer_buffer_bytes, drawn a piece at a time as the client read.",
            &m->answers_streamed);
    counter(b, "icpnsd_answers_refused_total",
            "Sampling requests refused because answers_in_flight_bytes was reached (503 "
            "answers_in_flight).", &m->answers_refused);
    gauge(b, "icpnsd_answers_in_flight_bytes", "Bytes held by answers being drawn or sent.",
          d->answer_bytes);
    gauge(b, "icpnsd_answers_in_flight_max_bytes",
          "answers_in_flight_bytes: the cap on what answers hold (0: none).", d->answer_bytes_max);
    gauge(b, "icpnsd_memory_budget_bytes",
          "memory_budget: the cap on all sets' snapshots and weight caches (0: none).", d->budget);
    gauge(b, "icpnsd_memory_budget_used_bytes",
          "What memory_budget counts now: the serving snapshots and weight caches of every set.",
          d->budget_used);
    render_process(b);
}

/* ---- table sets ----------------------------------------------------------------------- */

icpnsd_setstats_t *icpnsd_setstats_new(void)
{
    icpnsd_setstats_t *st = calloc(1, sizeof(*st));
    if (st)
        atomic_init(&st->refs, 1);
    return st;
}

icpnsd_setstats_t *icpnsd_setstats_ref(icpnsd_setstats_t *st)
{
    if (st)
        atomic_fetch_add(&st->refs, 1);
    return st;
}

void icpnsd_setstats_unref(icpnsd_setstats_t *st)
{
    if (st && atomic_fetch_sub(&st->refs, 1) == 1)
        free(st);
}

