/*
 * icpns - the command-line tool over libicpns: generate synthetic tables,
 * validate and build a table directory, split it into user shards, draw
 * negatives offline, cluster embeddings.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "icpns.h"

#define EXIT_USAGE 2

static const char *prog = "icpns";

static int fail(const icpns_error_t *err)
{
    char buf[1024];
    icpns_error_format(err, buf, sizeof(buf));
    fprintf(stderr, "%s: error: %s\n", prog, buf);
    return 1;
}

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "%s %s: ", prog, cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '%s %s --help'.\n", prog, cmd);
    return EXIT_USAGE;
}

/* Command-line numbers are plain decimal: digits only (no sign, no "0x",
 * no spaces), so that "-1" or "0x10" is refused rather than wrapped or
 * read in another base. */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s[0] || strspn(s, "0123456789") != strlen(s))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* An id: decimal, 0..2^63-1. */
static bool parse_id(const char *s, int64_t *out)
{
    uint64_t v;
    if (!parse_u64(s, &v) || v > (uint64_t)INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

/* A seed: decimal, 0..2^63-1, the range icpnsd accepts too. */
#define SEED_HELP "a decimal number in 0..9223372036854775807 (2^63-1)"
static bool parse_seed(const char *s, uint64_t *out)
{
    int64_t v;
    if (!parse_id(s, &v))
        return false;
    *out = (uint64_t)v;
    return true;
}

/* A decimal number (no hex floats, inf or nan). */
static bool parse_f64(const char *s, double *out)
{
    if (!s[0] || strspn(s, "0123456789+-.eE") != strlen(s))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* ---- where the tables come from (shared by build, check, sample, shard) --- */

typedef struct source {
    const char *tables, *interactions, *communities, *popularity, *items;
    icpns_table_opts_t opts;
    /* command-line overrides win over tables.json */
    bool set_alpha, set_eps, set_beta, set_format, set_rating, set_extra;
    icpns_params_t params;
    icpns_format_t format;
    double min_rating;
    bool extra_ignore;
} source_t;

enum { OPT_TABLES = 1000, OPT_INTER, OPT_COMM, OPT_POP, OPT_ITEMS, OPT_FORMAT, OPT_RATING,
       OPT_EXTRA, OPT_ALPHA, OPT_EPS, OPT_BETA, OPT_UNKNOWN, OPT_USER_BASE, OPT_ITEM_BASE,
       OPT_AFFINITY, OPT_STDOUT, OPT_POP_OUT, OPT_SHARDS };

#define SOURCE_OPTIONS                                                         \
    {"tables", required_argument, NULL, OPT_TABLES},                           \
    {"interactions", required_argument, NULL, OPT_INTER},                      \
    {"communities", required_argument, NULL, OPT_COMM},                        \
    {"popularity", required_argument, NULL, OPT_POP},                          \
    {"items", required_argument, NULL, OPT_ITEMS},                             \
    {"format", required_argument, NULL, OPT_FORMAT},                           \
    {"min-rating", required_argument, NULL, OPT_RATING},                       \
    {"extra-columns", required_argument, NULL, OPT_EXTRA},                     \
    {"alpha", required_argument, NULL, OPT_ALPHA},                             \
    {"epsilon", required_argument, NULL, OPT_EPS},                             \
    {"beta", required_argument, NULL, OPT_BETA}

#define SOURCE_HELP                                                            \
    "Tables (a directory, or the files one by one):\n"                         \
    "  --tables DIR           interactions.tsv, communities.tsv, [tables.json],\n" \
    "                         [items.tsv], [popularity.tsv with \"popularity_source\":\n" \
    "                         \"file\"], [interactions.journal: the daemon's updates]\n" \
    "                         (see proto/tables.md)\n"                        \
    "  --interactions FILE    interactions (format: --format)\n"              \
    "  --communities FILE     user<TAB>community\n"                            \
    "  --popularity FILE      community<TAB>item<TAB>count: serve these counts\n" \
    "                         (else pop_c is counted from the interactions)\n" \
    "  --items FILE           catalogue: one item id per line (optional)\n"   \
    "  --format F             auto|pairs|recbole|adjacency|lists (default auto:\n" \
    "                         detected, or refused when ambiguous)\n"         \
    "  --min-rating R         keep only rows rated >= R (pairs, recbole)\n"    \
    "  --extra-columns X      error|ignore: pairs lines with more than 4 columns\n" \
    "                         (default error)\n"                               \
    "  --alpha A              in-community exponent (default 0.8)\n"          \
    "  --epsilon E            mass added to every item (default 0)\n"          \
    "  --beta B               global popularity exponent for PNS (default 1)\n"

/* Returns 1 if @c was a source option, 0 if not, negative on a bad value. */
static int source_option(source_t *s, int c, const char *cmd)
{
    switch (c) {
    case OPT_TABLES: s->tables = optarg; return 1;
    case OPT_INTER: s->interactions = optarg; return 1;
    case OPT_COMM: s->communities = optarg; return 1;
    case OPT_POP: s->popularity = optarg; return 1;
    case OPT_ITEMS: s->items = optarg; return 1;
    case OPT_FORMAT: {
        int f = icpns_format_parse(optarg);
        if (f < 0)
            return -usage_error(cmd, "unknown format '%s' (auto, pairs, recbole, adjacency, lists)",
                                optarg);
        s->format = (icpns_format_t)f;
        s->set_format = true;
        return 1;
    }
    case OPT_RATING:
        if (!parse_f64(optarg, &s->min_rating))
            return -usage_error(cmd, "--min-rating: bad number '%s'", optarg);
        s->set_rating = true;
        return 1;
    case OPT_EXTRA:
        if (strcmp(optarg, "error") && strcmp(optarg, "ignore"))
            return -usage_error(cmd, "--extra-columns: expected error or ignore, got '%s'", optarg);
        s->extra_ignore = !strcmp(optarg, "ignore");
        s->set_extra = true;
        return 1;
    case OPT_ALPHA:
        if (!parse_f64(optarg, &s->params.alpha))
            return -usage_error(cmd, "--alpha: bad number '%s'", optarg);
        s->set_alpha = true;
        return 1;
    case OPT_EPS:
        if (!parse_f64(optarg, &s->params.epsilon))
            return -usage_error(cmd, "--epsilon: bad number '%s'", optarg);
        s->set_eps = true;
        return 1;
    case OPT_BETA:
        if (!parse_f64(optarg, &s->params.beta))
            return -usage_error(cmd, "--beta: bad number '%s'", optarg);
        s->set_beta = true;
        return 1;
    default:
        return 0;
    }
}

static void source_apply(source_t *s)
{
    if (s->set_alpha) s->opts.params.alpha = s->params.alpha;
    if (s->set_eps) s->opts.params.epsilon = s->params.epsilon;
    if (s->set_beta) s->opts.params.beta = s->params.beta;
    if (s->set_format) {
        s->opts.format = s->format;
        snprintf(s->opts.format_origin, sizeof(s->opts.format_origin), "by --format");
    }
    if (s->set_rating) {
        s->opts.has_min_rating = true;
        s->opts.min_rating = s->min_rating;
    }
    if (s->set_extra)
        s->opts.extra_columns_ignore = s->extra_ignore;
}

/* Copies @src into a path buffer; false when it does not fit. */
static bool set_path(char *dst, size_t size, const char *src)
{
    return (size_t)snprintf(dst, size, "%s", src) < size;
}

/* Loads the dataset and builds the snapshot; reports errors itself. */
static int source_load(source_t *s, const char *cmd, icpns_dataset_t **ret_d,
                       icpns_snapshot_t **ret_s, double *ret_load_s)
{
    icpns_error_t err;
    icpns_error_clear(&err);
    icpns_dataset_t *d = NULL;
    icpns_table_paths_t paths;
    memset(&paths, 0, sizeof(paths));
    int rc;
    double t0 = icpns_now();
    if (s->tables) {
        if (s->interactions || s->communities || s->popularity || s->items)
            return usage_error(cmd, "%s", "give either --tables DIR or the files (--interactions, "
                                          "--communities, [--popularity], [--items]); a directory "
                                          "names its files in tables.json");
        /* tables.json first, then command-line overrides. */
        if ((rc = icpns_table_opts_load(&s->opts, s->tables, &err)))
            return fail(&err);
        source_apply(s);
        /* With the journal: the tool sees what the daemon serves. */
        if ((rc = icpns_table_paths_resolve(s->tables, &s->opts, &paths, &err)))
            return fail(&err);
    } else {
        if (!s->interactions || !s->communities)
            return usage_error(cmd, "%s", "give --tables DIR, or --interactions and --communities");
        source_apply(s);
        if (s->popularity)
            s->opts.pop_source = ICPNS_POP_FROM_FILE;
        if (!set_path(paths.interactions, sizeof(paths.interactions), s->interactions) ||
            !set_path(paths.communities, sizeof(paths.communities), s->communities) ||
            !set_path(paths.popularity, sizeof(paths.popularity), s->popularity ? s->popularity : "") ||
            !set_path(paths.items, sizeof(paths.items), s->items ? s->items : ""))
            return usage_error(cmd, "%s", "a file name is too long");
    }
    if ((rc = icpns_dataset_load_paths(&paths, &s->opts, &d, &err)))
        return fail(&err);
    if ((rc = icpns_params_check(&s->opts.params, &err))) {
        icpns_dataset_free(d);
        return fail(&err);
    }
    double t1 = icpns_now();
    if (ret_s && (rc = icpns_snapshot_build(d, &s->opts.params, ret_s, &err))) {
        icpns_dataset_free(d);
        return fail(&err);
    }
    if (ret_load_s)
        *ret_load_s = t1 - t0;
    if (ret_d)
        *ret_d = d;
    else
        icpns_dataset_free(d);
    return 0;
}

static void source_init(source_t *s)
{
    memset(s, 0, sizeof(*s));
    icpns_table_opts_default(&s->opts);
    s->params = s->opts.params;
}

/* One line per file read: format and why, lines, rows, what was skipped. */
static void print_reports(FILE *f, const icpns_dataset_t *d, const char *indent)
{
    char line[2048];
    for (uint32_t k = 0; k < d->n_reports; k++) {
        icpns_load_report_format(&d->reports[k], line, sizeof(line));
        fprintf(f, "%s%s\n", indent, line);
    }
}

/* Where pop_c comes from, in words. */
static void describe_popularity(const icpns_snapshot_t *s, const icpns_dataset_t *d,
                                char *buf, size_t size)
{
    if (s->pop_from_file)
        snprintf(buf, size, "popularity_source file: pop_c from %s, pop = sum over communities",
                 d->pop_path);
    else
        snprintf(buf, size, "popularity_source interactions: pop_c counted from the interactions");
}

/* ---- gen ------------------------------------------------------------------ */

static const char gen_help[] =
    "Usage: icpns gen [OPTIONS] -o DIR\n"
    "Write a synthetic table directory with planted communities and power-law\n"
    "popularity (seeded: the same options give the same files).\n\n"
    "  --users U           users (default 1000)\n"
    "  --items I           items (default 2000)\n"
    "  --communities K     planted communities (default 8)\n"
    "  --interactions N    interaction draws; duplicates are dropped (default 30000)\n"
    "  --seed S            random seed, 0..2^63-1 (default 2026)\n"
    "  --affinity A        share of in-community draws, 0..1 (default 0.8)\n"
    "  --user-base ID      external id of the first user (default 1)\n"
    "  --item-base ID      external id of the first item (default 1)\n"
    "  --alpha/--epsilon/--beta   written to tables.json\n"
    "  -o, --output DIR    directory to write (created if missing)\n"
    "  -h, --help          this text\n";

static int cmd_gen(int argc, char **argv)
{
    icpns_gen_opts_t g;
    icpns_gen_opts_default(&g);
    icpns_params_t p;
    icpns_params_default(&p);
    const char *out = NULL;
    static const struct option longopts[] = {
        {"users", required_argument, NULL, 'u'},
        {"items", required_argument, NULL, 'i'},
        {"communities", required_argument, NULL, 'k'},
        {"interactions", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 's'},
        {"affinity", required_argument, NULL, OPT_AFFINITY},
        {"user-base", required_argument, NULL, OPT_USER_BASE},
        {"item-base", required_argument, NULL, OPT_ITEM_BASE},
        {"alpha", required_argument, NULL, OPT_ALPHA},
        {"epsilon", required_argument, NULL, OPT_EPS},
        {"beta", required_argument, NULL, OPT_BETA},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {0}};
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': if (!parse_u64(optarg, &v) || v > UINT32_MAX / 2) return usage_error("gen", "--users: bad count '%s'", optarg); g.users = (uint32_t)v; break;
        case 'i': if (!parse_u64(optarg, &v) || v > UINT32_MAX / 2) return usage_error("gen", "--items: bad count '%s'", optarg); g.items = (uint32_t)v; break;
        case 'k': if (!parse_u64(optarg, &v) || v > UINT32_MAX / 2) return usage_error("gen", "--communities: bad count '%s'", optarg); g.communities = (uint32_t)v; break;
        case 'n': if (!parse_u64(optarg, &v) || v > (UINT64_C(1) << 32)) return usage_error("gen", "--interactions: bad count '%s'", optarg); g.interactions = v; break;
        case 's': if (!parse_seed(optarg, &g.seed)) return usage_error("gen", "--seed: bad seed '%s' (" SEED_HELP ")", optarg); break;
        case OPT_AFFINITY: if (!parse_f64(optarg, &g.affinity)) return usage_error("gen", "--affinity: bad number '%s'", optarg); break;
        case OPT_USER_BASE: if (!parse_id(optarg, &g.user_base)) return usage_error("gen", "--user-base: bad id '%s'", optarg); break;
        case OPT_ITEM_BASE: if (!parse_id(optarg, &g.item_base)) return usage_error("gen", "--item-base: bad id '%s'", optarg); break;
        case OPT_ALPHA: if (!parse_f64(optarg, &p.alpha)) return usage_error("gen", "--alpha: bad number '%s'", optarg); break;
        case OPT_EPS: if (!parse_f64(optarg, &p.epsilon)) return usage_error("gen", "--epsilon: bad number '%s'", optarg); break;
        case OPT_BETA: if (!parse_f64(optarg, &p.beta)) return usage_error("gen", "--beta: bad number '%s'", optarg); break;
        case 'o': out = optarg; break;
        case 'h': fputs(gen_help, stdout); return 0;
        default: return usage_error("gen", "%s", "unknown option");
        }
    }
    if (!out)
        return usage_error("gen", "%s", "missing -o DIR");
    icpns_error_t err;
    icpns_error_clear(&err);
    if (icpns_params_check(&p, &err))
        return fail(&err);
    icpns_dataset_t *d;
    double t0 = icpns_now();
    if (icpns_gen(&g, &d, &err))
        return fail(&err);
    int rc = icpns_gen_write_dir(d, &p, out, &err);
    if (!rc)
        fprintf(stderr, "%s gen: wrote %s: %u users, %u items, %u communities, "
                        "%zu distinct interactions (%.2f s)\n",
                prog, out, g.users, g.items, g.communities, d->n_inter, icpns_now() - t0);
    icpns_dataset_free(d);
    return rc ? fail(&err) : 0;
}

/* ---- build ---------------------------------------------------------------- */

static const char build_help[] =
    "Usage: icpns build (--tables DIR | --interactions F --communities F)\n"
    "                   [--popularity-out FILE]\n"
    "Load and validate the tables, build the snapshot icpnsd would serve from\n"
    "them, and report how each file was read, the sizes and the fingerprint.\n"
    "Writes nothing into the table directory: pop_c(i) is counted from the\n"
    "interactions at every load (unless tables.json says \"popularity_source\":\n"
    "\"file\"), so no copy can go stale.\n\n"
    SOURCE_HELP
    "  --popularity-out FILE  export pop_c(i) as community<TAB>item<TAB>count\n"
    "                      (atomically; '-' for stdout), e.g. for other tools or\n"
    "                      a deployment with \"popularity_source\": \"file\"\n"
    "  -o FILE             the same as --popularity-out\n"
    "  -h, --help          this text\n";

static int cmd_build(int argc, char **argv)
{
    source_t src;
    source_init(&src);
    const char *out = NULL;
    static const struct option longopts[] = {
        SOURCE_OPTIONS,
        {"popularity-out", required_argument, NULL, OPT_POP_OUT},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {0}};
    int c, r;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        if ((r = source_option(&src, c, "build")) < 0)
            return -r;
        if (r)
            continue;
        switch (c) {
        case 'o':
        case OPT_POP_OUT: out = optarg; break;
        case 'h': fputs(build_help, stdout); return 0;
        default: return usage_error("build", "%s", "unknown option");
        }
    }
    if (optind < argc)
        return usage_error("build", "unexpected argument '%s'", argv[optind]);
    icpns_dataset_t *d;
    icpns_snapshot_t *s;
    if ((r = source_load(&src, "build", &d, &s, NULL)))
        return r;
    char pop[1200];
    describe_popularity(s, d, pop, sizeof(pop));
    print_reports(stderr, d, "icpns build: read ");
    fprintf(stderr, "%s build: %u users, %u items, %llu distinct interactions, %u communities "
                    "(%s); fingerprint %016llx\n",
            prog, s->users.n, s->items.n, (unsigned long long)s->n_interactions, s->comms.n, pop,
            (unsigned long long)s->fingerprint);
    int rc = 0;
    icpns_error_t err;
    icpns_error_clear(&err);
    if (out) {
        char *buf;
        size_t len;
        if (icpns_snapshot_popularity_tsv(s, &buf, &len)) {
            rc = icpns_error_set(&err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
        } else {
            if (!strcmp(out, "-"))
                rc = fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0
                         ? 0
                         : icpns_error_set(&err, ICPNS_EIO, "stdout", 0, NULL, "write failed");
            else
                rc = icpns_file_write_atomic(out, buf, len, &err);
            if (!rc && strcmp(out, "-"))
                fprintf(stderr, "%s build: wrote %s: %llu counts over %u communities\n", prog, out,
                        (unsigned long long)s->sup_off[s->comms.n], s->comms.n);
            free(buf);
        }
    }
    icpns_dataset_free(d);
    icpns_snapshot_unref(s);
    return rc ? fail(&err) : 0;
}

/* ---- check ---------------------------------------------------------------- */

static const char check_help[] =
    "Usage: icpns check (--tables DIR | --interactions F --communities F)\n"
    "Validate the tables and print how each file was read (format and why,\n"
    "lines, rows, what was skipped), then statistics: users, items,\n"
    "interactions, communities, per-community support, the snapshot's\n"
    "fingerprint (as icpnsd reports it for the same tables), snapshot memory\n"
    "and build time.  Exits 1 with file:line: field: message on the first\n"
    "problem.\n\n"
    SOURCE_HELP
    "  -h, --help          this text\n";

static int cmd_check(int argc, char **argv)
{
    source_t src;
    source_init(&src);
    static const struct option longopts[] = {
        SOURCE_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {0}};
    int c, r;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if ((r = source_option(&src, c, "check")) < 0)
            return -r;
        if (r)
            continue;
        if (c == 'h') {
            fputs(check_help, stdout);
            return 0;
        }
        return usage_error("check", "%s", "unknown option");
    }
    if (optind < argc)
        return usage_error("check", "unexpected argument '%s'", argv[optind]);
    icpns_dataset_t *d;
    icpns_snapshot_t *s;
    double load_s;
    if ((r = source_load(&src, "check", &d, &s, &load_s)))
        return r;
    uint32_t no_comm = 0, no_pos = 0, maxdeg = 0;
    for (uint32_t u = 0; u < s->users.n; u++) {
        no_comm += s->user_comm[u] == ICPNS_NONE;
        uint32_t dg = icpns_snapshot_degree(s, u);
        no_pos += dg == 0;
        if (dg > maxdeg)
            maxdeg = dg;
    }
    uint32_t no_members = 0;
    for (uint32_t k = 0; k < s->comms.n; k++)
        no_members += s->comm_size[k] == 0;
    char pop[1200];
    describe_popularity(s, d, pop, sizeof(pop));
    if (src.tables)
        printf("tables:        %s\n", src.tables);
    else
        printf("source:        %s\n", src.interactions);
    printf("files:\n");
    print_reports(stdout, d, "  ");
    printf("parameters:    alpha %g, epsilon %g, beta %g\n", s->params.alpha,
           s->params.epsilon, s->params.beta);
    printf("rows read:     %zu interactions (%llu dropped by min_rating), %zu assignments\n",
           d->n_inter, (unsigned long long)d->skipped_rating, d->n_comm);
    printf("users:         %u (%u without community, %u without positives, max degree %u)\n",
           s->users.n, no_comm, no_pos, maxdeg);
    printf("items:         %u%s\n", s->items.n,
           d->has_items ? " (the interactions' and the items file's)" : "");
    printf("interactions:  %llu distinct (density %.3g%%)\n",
           (unsigned long long)s->n_interactions,
           100.0 * (double)s->n_interactions / ((double)s->users.n * s->items.n));
    printf("communities:   %u", s->comms.n);
    if (no_members)
        printf(" (%u without members here)", no_members);
    printf("\npopularity:    %s\n", pop);
    printf("%12s %8s %9s %10s %12s\n", "community", "users", "support", "max_pop", "mass");
    for (uint32_t k = 0; k < s->comms.n; k++) {
        uint32_t mx = 0;
        for (uint64_t j = s->sup_off[k]; j < s->sup_off[k + 1]; j++)
            if (s->sup_count[j] > mx)
                mx = s->sup_count[j];
        const icpns_wtable_t *t = &s->weights->comm[k];
        printf("%12lld %8u %9u %10u %12.6g\n", (long long)s->comms.ids[k], s->comm_size[k],
               t->m, mx, t->cdf[t->m]);
    }
    printf("fingerprint:   %016llx\n", (unsigned long long)s->fingerprint);
    if (src.tables) {
        uint64_t v, fp;
        icpns_error_t verr;
        int vr = icpns_version_record_read(src.tables, &v, &fp, &verr);
        if (vr == 0 && fp == s->fingerprint)
            printf("icpnsd:        published this content as version %llu\n", (unsigned long long)v);
        else if (vr == 0)
            printf("icpnsd:        last published version %llu (fingerprint %016llx); other content "
                   "since: a restart serves this as %llu\n",
                   (unsigned long long)v, (unsigned long long)fp, (unsigned long long)v + 1);
        else if (vr < 0)
            printf("icpnsd:        %s is damaged; a restart numbers versions from 1\n",
                   ICPNS_VERSION_FILE);
    }
    printf("snapshot:      %.1f MiB (weights %.1f MiB)\n", (double)s->bytes / 1048576.0,
           (double)s->weights->bytes / 1048576.0);
    printf("time:          load %.3f s, build %.3f s (weights %.3f s)\n", load_s,
           s->build_seconds, s->weights->build_seconds);
    if (no_comm == s->users.n)
        fprintf(stderr, "icpns: warning: no user has a community: ICPNS requests fail with "
                        "no_community for every user (uniform and popularity work); assign "
                        "communities (communities.tsv, POST /admin/cluster)\n");
    else if (no_comm)
        fprintf(stderr, "icpns: warning: %u of %u users have no community: ICPNS requests fail "
                        "for them with no_community\n", no_comm, s->users.n);
    icpns_dataset_free(d);
    icpns_snapshot_unref(s);
    return 0;
}

/* ---- shard ---------------------------------------------------------------- */

static const char shard_help[] =
    "Usage: icpns shard (--tables DIR | ...) --shards N -o OUTDIR\n"
    "Split the tables into N user shards OUTDIR/s0 .. s{N-1} for user-sharded\n"
    "replicas: shard s holds the users with mix64(user) mod N == s (the\n"
    "Python client's shard_of), their interactions and communities, the\n"
    "global catalogue (items.tsv), the global pop_c(i) (popularity.tsv) and a\n"
    "tables.json with \"popularity_source\": \"file\" and the same alpha, epsilon\n"
    "and beta.  Every user then gets the same uniform and ICPNS distributions\n"
    "from its shard as from the whole tables (PNS too when every user has a\n"
    "community).  The journal is included; min_rating is applied.\n\n"
    SOURCE_HELP
    "  --shards N          number of shards (1..65536)\n"
    "  -o, --output OUTDIR where to write (created; s0.. must not exist)\n"
    "  -h, --help          this text\n";

static int cmd_shard(int argc, char **argv)
{
    source_t src;
    source_init(&src);
    const char *out = NULL;
    uint64_t shards = 0;
    static const struct option longopts[] = {
        SOURCE_OPTIONS,
        {"shards", required_argument, NULL, OPT_SHARDS},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {0}};
    int c, r;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        if ((r = source_option(&src, c, "shard")) < 0)
            return -r;
        if (r)
            continue;
        switch (c) {
        case OPT_SHARDS:
            if (!parse_u64(optarg, &shards) || shards < 1 || shards > 65536)
                return usage_error("shard", "--shards: expected 1..65536, got '%s'", optarg);
            break;
        case 'o': out = optarg; break;
        case 'h': fputs(shard_help, stdout); return 0;
        default: return usage_error("shard", "%s", "unknown option");
        }
    }
    if (optind < argc)
        return usage_error("shard", "unexpected argument '%s'", argv[optind]);
    if (!shards)
        return usage_error("shard", "%s", "--shards N is required");
    if (!out)
        return usage_error("shard", "%s", "-o OUTDIR is required");
    icpns_dataset_t *d;
    icpns_snapshot_t *s;
    if ((r = source_load(&src, "shard", &d, &s, NULL)))
        return r;
    uint32_t no_comm = 0;
    for (uint32_t u = 0; u < s->users.n; u++)
        no_comm += s->user_comm[u] == ICPNS_NONE;
    icpns_shard_stats_t *st = calloc(shards, sizeof(*st));
    icpns_error_t err;
    icpns_error_clear(&err);
    int rc = st ? icpns_shard_write(s, (uint32_t)shards, out,
                                    src.tables ? src.tables : src.interactions, st, &err)
                : icpns_error_set(&err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    if (!rc) {
        for (uint32_t k = 0; k < shards; k++)
            fprintf(stderr, "%s shard: %s/s%u: %llu users, %llu interactions\n", prog, out, k,
                    (unsigned long long)st[k].users, (unsigned long long)st[k].pairs);
        fprintf(stderr, "%s shard: every shard has the %u items and the pop_c(i) of the whole "
                        "tables (fingerprint %016llx)\n",
                prog, s->items.n, (unsigned long long)s->fingerprint);
        if (no_comm && !s->pop_from_file)
            fprintf(stderr, "%s shard: warning: %u users have no community: the shards' PNS "
                            "counts pop(i) as the sum over communities of pop_c(i), without "
                            "them, unlike the whole tables\n",
                    prog, no_comm);
    }
    free(st);
    icpns_dataset_free(d);
    icpns_snapshot_unref(s);
    return rc ? fail(&err) : 0;
}

/* ---- sample --------------------------------------------------------------- */

static const char sample_help[] =
    "Usage: icpns sample (--tables DIR | ...) --strategy S --user U [--user U2 ...]\n"
    "                    [--n N] [--seed S] [--probabilities] [--candidates M]\n"
    "Draw negatives offline and print user<TAB>item[<TAB>probability] lines\n"
    "(n x candidates lines per user, in request order).  The same seed and\n"
    "tables give the same output as the daemon for the same request rows.\n\n"
    SOURCE_HELP
    "Sampling:\n"
    "  --strategy S        uniform|popularity|icpns (default icpns)\n"
    "  --user U            a user id (repeatable; or a comma-separated list)\n"
    "  --n N               negatives per user (default 4)\n"
    "  --candidates M      candidates per negative (default 1)\n"
    "  --seed S            random seed, 0..2^63-1 (default 0)\n"
    "  --probabilities     also print P(item | user)\n"
    "  --unknown-users P   error|popularity: what to do with unknown users\n"
    "                      (default error)\n"
    "  -h, --help          this text\n";

static int cmd_sample(int argc, char **argv)
{
    source_t src;
    source_init(&src);
    int strategy = ICPNS_STRATEGY_ICPNS;
    uint64_t n = 4, m = 1, seed = 0;
    bool probs = false;
    unsigned flags = 0;
    int64_t *users = NULL;
    size_t nusers = 0, capusers = 0;
    static const struct option longopts[] = {
        SOURCE_OPTIONS,
        {"strategy", required_argument, NULL, 'S'},
        {"user", required_argument, NULL, 'u'},
        {"n", required_argument, NULL, 'n'},
        {"candidates", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 's'},
        {"probabilities", no_argument, NULL, 'p'},
        {"unknown-users", required_argument, NULL, OPT_UNKNOWN},
        {"help", no_argument, NULL, 'h'},
        {0}};
    int c, r, rc = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if ((r = source_option(&src, c, "sample")) < 0) {
            rc = -r;
            goto out;
        }
        if (r)
            continue;
        switch (c) {
        case 'S':
            if ((strategy = icpns_strategy_parse(optarg)) < 0) {
                rc = usage_error("sample", "unknown strategy '%s' (uniform, popularity, icpns)", optarg);
                goto out;
            }
            break;
        case 'u': {
            char *save, *tok, *copy = strdup(optarg);
            for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int64_t id;
                if (!parse_id(tok, &id)) {
                    rc = usage_error("sample", "--user: bad id '%s' (non-negative integer)", tok);
                    free(copy);
                    goto out;
                }
                if (nusers == capusers) {
                    capusers = capusers ? capusers * 2 : 16;
                    int64_t *nu = realloc(users, capusers * sizeof(*nu));
                    if (!nu) {
                        free(copy);
                        rc = 1;
                        goto out;
                    }
                    users = nu;
                }
                users[nusers++] = id;
            }
            free(copy);
            break;
        }
        case 'n':
            if (!parse_u64(optarg, &n) || n == 0 || n > 1000000) {
                rc = usage_error("sample", "--n: expected 1..1000000, got '%s'", optarg);
                goto out;
            }
            break;
        case 'm':
            if (!parse_u64(optarg, &m) || m == 0 || m > 1024) {
                rc = usage_error("sample", "--candidates: expected 1..1024, got '%s'", optarg);
                goto out;
            }
            break;
        case 's':
            if (!parse_seed(optarg, &seed)) {
                rc = usage_error("sample", "--seed: bad seed '%s' (" SEED_HELP ")", optarg);
                goto out;
            }
            break;
        case 'p': probs = true; break;
        case OPT_UNKNOWN:
            if (!strcmp(optarg, "popularity"))
                flags |= ICPNS_SAMPLE_SUBSTITUTE_PNS;
            else if (strcmp(optarg, "error")) {
                rc = usage_error("sample", "--unknown-users: expected error or popularity, got '%s'", optarg);
                goto out;
            }
            break;
        case 'h': fputs(sample_help, stdout); goto out;
        default: rc = usage_error("sample", "%s", "unknown option"); goto out;
        }
    }
    if (nusers == 0) {
        rc = usage_error("sample", "%s", "give at least one --user");
        goto out;
    }
    if (n * m > 1000000) {
        rc = usage_error("sample", "%s", "--n x --candidates is above 1000000");
        goto out;
    }
    icpns_snapshot_t *s;
    if ((rc = source_load(&src, "sample", NULL, &s, NULL)))
        goto out;
    uint32_t count = (uint32_t)(n * m);
    /* The rows go through icpns_sample_rows in chunks of about 64k
     * negatives; each row's stream is keyed on its user and the user's
     * occurrence in the whole list, so chunking changes nothing and the
     * output equals the daemon's for the same users in the same order. */
    uint32_t chunk = count < 65536 ? 65536 / count : 1;
    uint32_t *items = malloc((size_t)chunk * count * sizeof(*items));
    double *p = malloc((size_t)chunk * count * sizeof(*p));
    unsigned *rfs = malloc(chunk * sizeof(*rfs));
    uint32_t *occ = malloc(nusers * sizeof(*occ));
    icpns_work_t *work = icpns_work_new();
    if (!items || !p || !rfs || !occ || !work || icpns_occurrences(users, (uint32_t)nusers, occ)) {
        fprintf(stderr, "%s sample: out of memory\n", prog);
        rc = 1;
    }
    icpns_part_t part = {(icpns_strategy_t)strategy, count};
    icpns_rows_t req = {users, occ, (uint32_t)nusers, &part, 1, seed, flags};
    for (uint32_t first = 0; !rc && first < nusers; first += chunk) {
        uint32_t rows = (uint32_t)(nusers - first < chunk ? nusers - first : chunk), failed = 0;
        int e = icpns_sample_rows(s, s->weights, work, &req, first, rows, items,
                                  probs ? p : NULL, rfs, NULL, &failed);
        /* Rows before a failed one are complete: print them, then fail. */
        uint32_t done = e && failed != ICPNS_NONE ? failed - first : e ? 0 : rows;
        for (uint32_t k = 0; k < done; k++) {
            size_t row = (size_t)first + k;
            uint32_t u = icpns_idmap_find(&s->users, users[row]);
            if (rfs[k] & ICPNS_ROW_FALLBACK)
                fprintf(stderr, "%s sample: user %lld: community mass exhausted, "
                                "served by the uniform fallback\n", prog, (long long)users[row]);
            if (rfs[k] & ICPNS_ROW_SUBSTITUTED)
                fprintf(stderr, "%s sample: user %lld: served by popularity (%s)\n", prog,
                        (long long)users[row], u == ICPNS_NONE ? "unknown user" : "no community");
            const uint32_t *it = items + (size_t)k * count;
            const double *q = p + (size_t)k * count;
            for (uint32_t j = 0; j < count; j++) {
                if (probs)
                    printf("%lld\t%lld\t%.17g\n", (long long)users[row],
                           (long long)s->items.ids[it[j]], q[j]);
                else
                    printf("%lld\t%lld\n", (long long)users[row], (long long)s->items.ids[it[j]]);
            }
        }
        if (e) {
            icpns_error_t err;
            if (failed != ICPNS_NONE)
                icpns_error_set(&err, e, NULL, 0, "user", "user %lld (row %u): %s",
                                (long long)users[failed], failed, icpns_strerror(e));
            else
                icpns_error_set(&err, e, NULL, 0, NULL, "%s", icpns_strerror(e));
            rc = fail(&err);
        }
    }
    free(rfs);
    free(occ);
    free(items);
    free(p);
    icpns_work_free(work);
    icpns_snapshot_unref(s);
out:
    free(users);
    if (fflush(stdout) != 0 && !rc) {
        fprintf(stderr, "%s sample: write failed: %s\n", prog, strerror(errno));
        rc = 1;
    }
    return rc;
}

/* ---- cluster -------------------------------------------------------------- */

static const char cluster_help[] =
    "Usage: icpns cluster --embeddings FILE --k K [OPTIONS] [-o FILE]\n"
    "Cluster user embeddings into K communities with k-means (k-means++\n"
    "seeding, Lloyd iterations, restarts keeping the lowest inertia) and write\n"
    "user<TAB>community lines (atomically; '-' or no -o for stdout).  The same\n"
    "embeddings, k and seed give the same communities.\n\n"
    "  --embeddings FILE   .npy (2-D float32/float64) or text 'user v1 v2 ...'\n"
    "  --users FILE        user ids of the .npy rows, one per line (default:\n"
    "                      row r is user --user-base + r)\n"
    "  --user-base ID      id of row 0 when there is no --users (default 0)\n"
    "  --k K               number of communities (default 8)\n"
    "  --seed S            random seed, 0..2^63-1 (default 2026)\n"
    "  --restarts R        k-means++ restarts, the best is kept (default 4)\n"
    "  --max-iter N        Lloyd iterations per restart (default 300)\n"
    "  --tol T             stop when centres move less than T x the mean\n"
    "                      feature variance (default 1e-4)\n"
    "  --threads N         threads (default: the online CPUs); the result is\n"
    "                      the same for every N\n"
    "  -o, --output FILE   where to write (default stdout)\n"
    "  -q, --quiet         no progress on stderr\n"
    "  -h, --help          this text\n";

static void cluster_progress(void *arg, uint32_t r, uint32_t n, double inertia)
{
    (void)arg;
    fprintf(stderr, "%s cluster: restart %u/%u inertia %.6g\n", prog, r + 1, n, inertia);
}

/* Reads user ids, one per line ('#' comments, blank lines skipped). */
static int read_ids(const char *path, uint32_t want, int64_t **ret, icpns_error_t *err)
{
    char *buf;
    size_t len;
    int rc = icpns_file_read(path, (size_t)1 << 36, &buf, &len, err);
    if (rc)
        return rc;
    int64_t *ids = malloc(((size_t)want + 1) * sizeof(*ids));
    if (!ids) {
        free(buf);
        return icpns_error_set(err, ICPNS_ENOMEM, path, 0, NULL, "out of memory");
    }
    uint32_t n = 0;
    uint64_t line = 0;
    for (char *p = buf, *eol; p < buf + len; p = eol + 1) {
        eol = memchr(p, '\n', (size_t)(buf + len - p));
        if (!eol)
            eol = buf + len;
        *eol = '\0';
        line++;
        while (*p == ' ' || *p == '\t')
            p++;
        char *e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            *--e = '\0';
        if (!*p || *p == '#')
            continue;
        int64_t v;
        if (!parse_id(p, &v)) {
            char q[ICPNS_QUOTE_BUF];
            rc = icpns_error_set(err, ICPNS_EPARSE, path, line, "user", "bad user id '%s'",
                                 icpns_escape(p, strlen(p), q, sizeof(q)));
            break;
        }
        if (n == want) {
            rc = icpns_error_set(err, ICPNS_EPARSE, path, line, "user",
                                 "more ids than embedding rows (%u)", want);
            break;
        }
        ids[n++] = v;
    }
    if (!rc && n != want)
        rc = icpns_error_set(err, ICPNS_EPARSE, path, line, "user",
                             "%u ids for %u embedding rows", n, want);
    free(buf);
    if (rc)
        free(ids);
    else
        *ret = ids;
    return rc;
}

static int cmd_cluster(int argc, char **argv)
{
    const char *emb = NULL, *users = NULL, *out = "-";
    int64_t base = 0;
    bool quiet = false;
    icpns_kmeans_opts_t ko;
    icpns_kmeans_opts_default(&ko);
    enum { O_EMB = 1000, O_USERS, O_BASE, O_K, O_SEED, O_RESTARTS, O_MAXIT, O_TOL, O_THREADS };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    ko.threads = cpus < 1 ? 1 : cpus > 256 ? 256 : (uint32_t)cpus;
    static const struct option longopts[] = {
        {"embeddings", required_argument, NULL, O_EMB},
        {"users", required_argument, NULL, O_USERS},
        {"user-base", required_argument, NULL, O_BASE},
        {"k", required_argument, NULL, O_K},
        {"seed", required_argument, NULL, O_SEED},
        {"restarts", required_argument, NULL, O_RESTARTS},
        {"max-iter", required_argument, NULL, O_MAXIT},
        {"tol", required_argument, NULL, O_TOL},
        {"threads", required_argument, NULL, O_THREADS},
        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {0}};
    int c;
    uint64_t u;
    while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case O_EMB: emb = optarg; break;
        case O_USERS: users = optarg; break;
        case O_BASE:
            if (!parse_id(optarg, &base))
                return usage_error("cluster", "--user-base: bad id '%s'", optarg);
            break;
        case O_K:
            if (!parse_u64(optarg, &u) || u < 1 || u > 1000000)
                return usage_error("cluster", "--k: expected 1..1000000, got '%s'", optarg);
            ko.k = (uint32_t)u;
            break;
        case O_SEED:
            if (!parse_seed(optarg, &ko.seed))
                return usage_error("cluster", "--seed: bad seed '%s' (" SEED_HELP ")", optarg);
            break;
        case O_RESTARTS:
            if (!parse_u64(optarg, &u) || u < 1 || u > 10000)
                return usage_error("cluster", "--restarts: expected 1..10000, got '%s'", optarg);
            ko.restarts = (uint32_t)u;
            break;
        case O_MAXIT:
            if (!parse_u64(optarg, &u) || u < 1 || u > 1000000)
                return usage_error("cluster", "--max-iter: expected 1..1000000, got '%s'", optarg);
            ko.max_iter = (uint32_t)u;
            break;
        case O_TOL:
            if (!parse_f64(optarg, &ko.tol) || ko.tol < 0)
                return usage_error("cluster", "--tol: expected a number >= 0, got '%s'", optarg);
            break;
        case O_THREADS:
            if (!parse_u64(optarg, &u) || u < 1 || u > 256)
                return usage_error("cluster", "--threads: expected 1..256, got '%s'", optarg);
            ko.threads = (uint32_t)u;
            break;
        case 'o': out = optarg; break;
        case 'q': quiet = true; break;
        case 'h': fputs(cluster_help, stdout); return 0;
        default: return usage_error("cluster", "%s", "unknown option");
        }
    }
    if (optind < argc)
        return usage_error("cluster", "unexpected argument '%s'", argv[optind]);
    if (!emb)
        return usage_error("cluster", "%s", "--embeddings FILE is required");
    icpns_error_t err;
    icpns_error_clear(&err);
    icpns_embeddings_t e;
    int rc = icpns_embeddings_load(emb, &e, &err);
    if (rc)
        return fail(&err);
    if (users && e.ids) {
        icpns_embeddings_free(&e);
        return usage_error("cluster", "%s", "--users is for .npy files; text embeddings name their users");
    }
    if (users && (rc = read_ids(users, e.n, &e.ids, &err))) {
        icpns_embeddings_free(&e);
        return fail(&err);
    }
    if (!e.ids) {
        e.ids = malloc((size_t)e.n * sizeof(int64_t));
        if (!e.ids) {
            icpns_embeddings_free(&e);
            icpns_error_set(&err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
            return fail(&err);
        }
        for (uint32_t r = 0; r < e.n; r++)
            e.ids[r] = base + r;
    }
    if (!quiet) {
        fprintf(stderr, "%s cluster: %u users x %u dimensions, k=%u, %u restarts, %u threads\n",
                prog, e.n, e.dim, ko.k, ko.restarts, ko.threads);
        ko.progress = cluster_progress;
    }
    icpns_kmeans_result_t res;
    double t0 = icpns_now();
    if ((rc = icpns_kmeans(e.x, e.n, e.dim, &ko, &res, &err))) {
        if (err.line) /* a row of the file */
            snprintf(err.path, sizeof(err.path), "%s", emb);
        icpns_embeddings_free(&e);
        return fail(&err);
    }
    double secs = icpns_now() - t0;
    size_t cap = 32 + (size_t)e.n * 32, len = 0;
    char *text = malloc(cap);
    if (!text) {
        rc = icpns_error_set(&err, ICPNS_ENOMEM, NULL, 0, NULL, "out of memory");
    } else {
        len += (size_t)snprintf(text, cap, "# user\tcommunity\n");
        for (uint32_t r = 0; r < e.n; r++)
            len += (size_t)snprintf(text + len, cap - len, "%lld\t%u\n", (long long)e.ids[r],
                                    res.labels[r]);
        if (!strcmp(out, "-"))
            rc = fwrite(text, 1, len, stdout) == len && fflush(stdout) == 0
                     ? 0
                     : icpns_error_set(&err, ICPNS_EIO, "stdout", 0, NULL, "write failed");
        else
            rc = icpns_file_write_atomic(out, text, len, &err);
    }
    if (!rc && !quiet) {
        fprintf(stderr, "%s cluster: inertia %.6g (restart %u, %u iterations%s, %.2f s); sizes", prog,
                res.inertia, res.best_restart + 1, res.iterations,
                res.converged ? "" : ", max-iter reached", secs);
        for (uint32_t k = 0; k < res.k; k++)
            fprintf(stderr, " %u", res.sizes[k]);
        fprintf(stderr, "%s%s\n", strcmp(out, "-") ? "; wrote " : "", strcmp(out, "-") ? out : "");
    }
    free(text);
    icpns_kmeans_result_free(&res);
    icpns_embeddings_free(&e);
    return rc ? fail(&err) : 0;
}

/* ---- main ----------------------------------------------------------------- */

static const char main_help[] =
    "Usage: icpns COMMAND [OPTIONS]\n"
    "In-Community Popularity Negative Sampling (arXiv 2602.18759): offline tools.\n\n"
    "Commands:\n"
    "  gen       write a synthetic table directory (planted communities)\n"
    "  build     validate and build the tables as icpnsd would; export pop_c(i)\n"
    "  check     validate tables, say how each file was read, print statistics\n"
    "  shard     split tables into user shards (global catalogue and pop_c)\n"
    "  sample    draw negatives for users (uniform, popularity, icpns)\n"
    "  cluster   k-means over user embeddings -> communities.tsv\n"
    "\n"
    "Run 'icpns COMMAND --help' for a command's options.\n"
    "  -h, --help      this text\n"
    "  --version       print the version\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(main_help, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(main_help, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("icpns %s\n", ICPNS_VERSION_STRING);
        return 0;
    }
    argv++;
    argc--;
    if (!strcmp(cmd, "gen")) return cmd_gen(argc, argv);
    if (!strcmp(cmd, "build")) return cmd_build(argc, argv);
    if (!strcmp(cmd, "check")) return cmd_check(argc, argv);
    if (!strcmp(cmd, "shard")) return cmd_shard(argc, argv);
    if (!strcmp(cmd, "sample")) return cmd_sample(argc, argv);
    if (!strcmp(cmd, "cluster")) return cmd_cluster(argc, argv);
    fprintf(stderr, "%s: unknown command '%s'\nTry '%s --help'.\n", prog, cmd, prog);
    return EXIT_USAGE;
}
