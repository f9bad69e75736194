/* test_loader.c - table files: the formats people really have, detection,
 * what is refused (and with which line), filters, reports. */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"

/* Parses @text as interactions in format @f; returns the code, fills @err, @d. */
static int parse_fmt(icpns_dataset_t *d, const char *text, size_t len, icpns_format_t f,
                     bool has_min, double min, bool extra_ignore, icpns_error_t *err)
{
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    o.format = f;
    o.has_min_rating = has_min;
    o.min_rating = min;
    o.extra_columns_ignore = extra_ignore;
    icpns_error_clear(err);
    return icpns_parse_interactions(d, text, len, &o, "inter.tsv", err);
}

static int parse_inter(icpns_dataset_t *d, const char *text, icpns_format_t f, bool has_min,
                       double min, icpns_error_t *err)
{
    return parse_fmt(d, text, strlen(text), f, has_min, min, false, err);
}

/* The last report of @d. */
static const icpns_load_report_t *last_report(const icpns_dataset_t *d)
{
    assert_true(d->n_reports > 0);
    return &d->reports[d->n_reports - 1];
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("'%s' lacks '%s'", hay, needle);
}

/* Parses @len bytes of @text in @f and expects ICPNS_EPARSE at @line with
 * @field ("" for none) and @needle in the message; nothing loaded. */
static void expect_error_len(const char *text, size_t len, icpns_format_t f, uint64_t line,
                             const char *field, const char *needle)
{
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    int rc = parse_fmt(d, text, len, f, false, 0, false, &err);
    if (rc != ICPNS_EPARSE)
        fail_msg("expected a parse error for '%s', got %d", text, rc);
    assert_int_equal(err.line, line);
    assert_string_equal(err.field, field);
    assert_string_equal(err.path, "inter.tsv");
    assert_contains(err.message, needle);
    /* Nothing half-way, no report. */
    assert_int_equal(d->n_inter, 0);
    assert_int_equal(d->n_reports, 0);
    icpns_dataset_free(d);
}

static void expect_error(const char *text, icpns_format_t f, uint64_t line, const char *field,
                         const char *needle)
{
    expect_error_len(text, strlen(text), f, line, field, needle);
}

static void test_pairs_formats(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    /* MovieLens u.data: user item rating timestamp, tab-separated, users
     * in no particular order but repeating: pairs. */
    assert_int_equal(parse_inter(d, "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
                                    "196\t377\t1\t878887116\n",
                                 ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 3);
    assert_int_equal(d->inter[1].a, 186);
    assert_int_equal(d->inter[1].b, 302);
    const icpns_load_report_t *r = last_report(d);
    assert_int_equal(r->format, ICPNS_FORMAT_PAIRS);
    assert_true(r->detected);
    assert_contains(r->reason, "users repeat over lines");
    assert_string_equal(r->separator, "tab");
    assert_int_equal(r->by_count[4], 3);
    assert_int_equal(r->rows, 3);

    /* ratings.csv (MovieLens 20M/25M): a header, CRLF endings, comments and
     * blank lines; the rating filter reads the third column. */
    assert_int_equal(parse_inter(d, "userId,movieId,rating,timestamp\r\n# note\r\n\r\n"
                                    "1,2,4.5,1112486027\r\n3,4,1.0,1112484676\r\n",
                                 ICPNS_FORMAT_AUTO, true, 3.0, &err), 0);
    assert_int_equal(d->n_inter, 4);
    assert_int_equal(d->inter[3].a, 1);
    assert_int_equal(d->skipped_rating, 1);
    r = last_report(d);
    assert_int_equal(r->format, ICPNS_FORMAT_PAIRS);
    assert_contains(r->reason, "header line");
    assert_int_equal(r->header_line, 1);
    assert_string_equal(r->header, "userId,movieId,rating,timestamp");
    assert_int_equal(r->skipped_lines, 2);
    assert_int_equal(r->dropped_rating, 1);
    assert_true(r->crlf);
    assert_string_equal(r->separator, "comma");

    /* MovieLens-1M ratings.dat: '::' separators. */
    assert_int_equal(parse_inter(d, "1::1193::5::978300760\n1::661::3::978302109\n"
                                    "2::1357::5::978298709\n",
                                 ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 7);
    assert_int_equal(d->inter[5].b, 661);
    r = last_report(d);
    assert_contains(r->reason, "'::'");
    assert_string_equal(r->separator, "'::'");

    /* HetRec last.fm user_artists.dat: userID<TAB>artistID<TAB>weight. */
    assert_int_equal(parse_inter(d, "userID\tartistID\tweight\n2\t51\t13883\n2\t52\t11690\n",
                                 ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 9);
    r = last_report(d);
    assert_int_equal(r->header_line, 1);
    assert_string_equal(r->header, "userID\\tartistID\\tweight");

    /* R's write.csv quotes the header's names. */
    assert_int_equal(parse_inter(d, "\"userId\",\"movieId\",\"rating\"\n3,7,4\n",
                                 ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 10);
    assert_int_equal(last_report(d)->header_line, 1);
    /* pandas' to_csv with the index: an unnamed first column is refused,
     * not read as user = the index. */
    assert_int_equal(parse_inter(d, ",user_id,item_id,rating\n0,3,7,4\n", ICPNS_FORMAT_AUTO,
                                 false, 0, &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 1);
    assert_contains(err.message, "pandas index");
    assert_int_equal(d->n_inter, 10);

    /* Two columns: pairs either way. */
    assert_int_equal(parse_inter(d, "5 6\n7 8\n", ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    assert_contains(last_report(d)->reason, "2 fields on every line");
    /* A float third column is a rating, even with one line per user. */
    assert_int_equal(parse_inter(d, "10 1 4.5\n11 2 3.5\n", ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    assert_contains(last_report(d)->reason, "a rating column");
    /* A single ':' is no pairs separator any more (it meant 'lists'). */
    assert_int_equal(d->n_inter, 14);
    icpns_dataset_free(d);
}

static void test_lists(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    /* SASRec-style sequences: user:item item ..., also "user: item". */
    assert_int_equal(parse_inter(d, "1:10 11 12\n2: 11\n3 :12 13\n4:\n", ICPNS_FORMAT_AUTO,
                                 false, 0, &err), 0);
    assert_int_equal(d->n_inter, 6);
    assert_true(d->inter[0].a == 1 && d->inter[0].b == 10);
    assert_true(d->inter[3].a == 2 && d->inter[3].b == 11);
    assert_true(d->inter[5].a == 3 && d->inter[5].b == 13);
    const icpns_load_report_t *r = last_report(d);
    assert_int_equal(r->format, ICPNS_FORMAT_LISTS);
    assert_contains(r->reason, "'user:item item ...'");
    assert_true(r->counts_items);
    assert_int_equal(r->count_min, 0);
    assert_int_equal(r->count_max, 3);
    assert_int_equal(r->by_count[1], 1);
    icpns_dataset_free(d);
    /* The same as pairs would have been silently wrong before: refused. */
    expect_error("1:10 11\n2 11\n", ICPNS_FORMAT_AUTO, 2, "", "has no ':' but line 1 is");
    expect_error("1:10 11\n1:12\n", ICPNS_FORMAT_LISTS, 2, "user", "already has line 1");
    expect_error("1:10:11\n", ICPNS_FORMAT_LISTS, 1, "item", "a second ':'");
    expect_error("1 10\n", ICPNS_FORMAT_LISTS, 1, "user", "no ':' after the user");
    expect_error("1 2:10\n", ICPNS_FORMAT_LISTS, 1, "user", "bad number '1 2'");
    expect_error("1:10 x\n", ICPNS_FORMAT_LISTS, 1, "item", "bad number 'x'");
    /* Lists and '::' pairs do not mix. */
    expect_error("1::2\n3:4\n", ICPNS_FORMAT_AUTO, 2, "", "uses '::' separators");
}

static void test_adjacency(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    /* LightGCN/NGCF train.txt (gowalla, yelp2018, amazon-book). */
    const char *train = "0 0 1 2 3 4 5 6 7 8 9 10\n1 21 22\n2 30 31 32 33\n3 40\n";
    assert_int_equal(parse_inter(d, train, ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 18);
    assert_true(d->inter[11].a == 1 && d->inter[11].b == 21);
    const icpns_load_report_t *r = last_report(d);
    assert_int_equal(r->format, ICPNS_FORMAT_ADJACENCY);
    assert_string_equal(r->reason, "detected: variable number of fields per line, one line per user");
    assert_int_equal(r->count_min, 1);
    assert_int_equal(r->count_max, 11);
    assert_int_equal(r->by_count[ICPNS_REPORT_COUNTS - 1], 1);
    char line[1024];
    icpns_load_report_format(r, line, sizeof(line));
    assert_string_equal(line, "inter.tsv: adjacency (detected: variable number of fields per "
                              "line, one line per user): 4 lines -> 18 pairs; 1 to 11 items per line");
    icpns_dataset_free(d);

    /* Explicit adjacency: users without items, long lines. */
    d = icpns_dataset_new();
    assert_int_equal(parse_inter(d, "0 1 2 3\n1 3\n2\n", ICPNS_FORMAT_ADJACENCY, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 4);
    assert_int_equal(d->inter[3].a, 1);
    assert_int_equal(d->inter[3].b, 3);
    assert_contains(last_report(d)->reason, "given");
    icpns_dataset_free(d);
    char big[8192] = "7";
    for (int k = 0; k < 500; k++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), " %d", k);
    strcat(big, "\n");
    d = icpns_dataset_new();
    /* One line of 501 fields: pairs have at most 4 columns, so adjacency
     * is the only reading (unless extra columns are to be ignored). */
    assert_int_equal(parse_inter(d, big, ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 500);
    assert_contains(last_report(d)->reason, "pairs have at most 4");
    assert_int_equal(parse_fmt(d, big, strlen(big), ICPNS_FORMAT_AUTO, false, 0, true, &err),
                     ICPNS_EPARSE);
    assert_contains(err.message, "ambiguous");
    assert_int_equal(parse_inter(d, big, ICPNS_FORMAT_ADJACENCY, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 1000);
    icpns_dataset_free(d);

    expect_error("0 1 2\n1 2 x\n", ICPNS_FORMAT_ADJACENCY, 2, "item", "bad number 'x'");
    /* u.data read as adjacency lists would be silently wrong: a user on two
     * lines says it is not adjacency. */
    expect_error("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t377\t1\t878887116\n",
                 ICPNS_FORMAT_ADJACENCY, 3, "user", "user 196 already has line 1");
    /* min_rating needs a rated format. */
    d = icpns_dataset_new();
    assert_int_equal(parse_inter(d, "1 2 3\n", ICPNS_FORMAT_ADJACENCY, true, 3, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "min_rating");
    icpns_dataset_free(d);
}

/* Files that fit more than one format are refused, never guessed. */
static void test_ambiguous_refused(void **state)
{
    (void)state;
    /* Every line 3 (or 4) integers, one line per user: ratings or items? */
    expect_error("1 10 11\n2 11 12\n3 12 13\n", ICPNS_FORMAT_AUTO, 1, "format",
                 "ambiguous: every line has 3 integer fields, one line per user");
    expect_error("# c\n1\t10\t5\t881250949\n2\t11\t3\t891717742\n", ICPNS_FORMAT_AUTO, 2, "format",
                 "say which with \"format\"");
    /* Said explicitly, each is taken. */
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    assert_int_equal(parse_inter(d, "1 10 11\n2 11 12\n", ICPNS_FORMAT_PAIRS, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 2);
    assert_int_equal(parse_inter(d, "1 10 11\n2 11 12\n", ICPNS_FORMAT_ADJACENCY, false, 0, &err), 0);
    assert_int_equal(d->n_inter, 6);
    icpns_dataset_free(d);
    /* Variable lengths and a repeated user: neither. */
    expect_error("1 10 11\n2 11\n1 12\n", ICPNS_FORMAT_AUTO, 3, "format",
                 "user 1 is also on line 1");
    /* One field per line: no items. */
    expect_error("1\n2\n", ICPNS_FORMAT_AUTO, 1, "", "single field");
    /* Comma-separated lines of different lengths. */
    expect_error("1,2\n3,4,5\n", ICPNS_FORMAT_AUTO, 2, "", "comma-separated fields");
}

static void test_pairs_columns(void **state)
{
    (void)state;
    /* More than user item rating timestamp: refused unless ignored. */
    expect_error("1\t10\t5\t881250949\t1\n", ICPNS_FORMAT_PAIRS, 1, "",
                 "5 fields: pairs have 2 to 4");
    expect_error("1\t10\t5\t881250949\t1\n", ICPNS_FORMAT_PAIRS, 1, "", "\"extra_columns\": \"ignore\"");
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    const char *five = "1\t10\t5\t881250949\tx\n2\t11\t4\t881250950\ty\n";
    assert_int_equal(parse_fmt(d, five, strlen(five), ICPNS_FORMAT_PAIRS, true, 4.5, true, &err), 0);
    assert_int_equal(d->n_inter, 1);
    assert_int_equal(last_report(d)->by_count[5], 2);
    icpns_dataset_free(d);
    /* Pairs have the same columns on every line (LightGCN lines read as
     * pairs used to lose all items but the first). */
    expect_error("1 10\n2 11 12\n", ICPNS_FORMAT_PAIRS, 2, "", "line 1 has 2");
    expect_error("0 1 2 3 4 5\n", ICPNS_FORMAT_PAIRS, 1, "", "6 fields");
    /* Strict separators: an empty field is an error, not a shifted row. */
    expect_error("1,,10\n", ICPNS_FORMAT_PAIRS, 1, "item", "empty field");
    /* A tab file with a space-separated line. */
    expect_error("1\t10\n2 11\n", ICPNS_FORMAT_PAIRS, 2, "item", "missing column");
}

static void test_recbole(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    const char *text = "item_id:token\tuser_id:token\trating:float\ttimestamp:float\n"
                       "10\t1\t5\t881250949\n11\t1\t2\t881250949\n12\t2\t3.5\t1\n";
    assert_int_equal(parse_inter(d, text, ICPNS_FORMAT_AUTO, true, 3, &err), 0);
    assert_int_equal(d->n_inter, 2); /* rating 2 dropped */
    assert_int_equal(d->inter[0].a, 1);
    assert_int_equal(d->inter[0].b, 10);
    assert_int_equal(d->inter[1].a, 2);
    const icpns_load_report_t *r = last_report(d);
    assert_int_equal(r->format, ICPNS_FORMAT_RECBOLE);
    assert_contains(r->reason, "RecBole");
    assert_int_equal(r->header_line, 1);
    icpns_dataset_free(d);
    expect_error("user_id:token\trating:float\n1\t2\n", ICPNS_FORMAT_RECBOLE, 1, "item_id",
                 "item_id:token");
    expect_error("1\t2\n", ICPNS_FORMAT_RECBOLE, 1, "", "RecBole header");
    expect_error("user_id:token\titem_id:token\n1\t2\n3\n", ICPNS_FORMAT_RECBOLE, 3, "item",
                 "missing column");
    expect_error("user_id:token\titem_id:token\n1\t2\t7\n", ICPNS_FORMAT_RECBOLE, 2, "",
                 "extra column");
}

static void test_interaction_errors(void **state)
{
    (void)state;
    expect_error("1\t2\n3\tx7\n", ICPNS_FORMAT_PAIRS, 2, "item", "bad number 'x7'");
    expect_error("1\t2\n\n-3\t4\n", ICPNS_FORMAT_PAIRS, 3, "user", "negative id '-3'");
    expect_error("1\t2\n3\n", ICPNS_FORMAT_PAIRS, 2, "item", "missing column");
    expect_error("99999999999999999999\t1\n", ICPNS_FORMAT_PAIRS, 1, "user", "out of range");
    expect_error("1\t2.5\n", ICPNS_FORMAT_PAIRS, 1, "item", "bad number");
    /* A line of separators only. */
    expect_error("1;2\n;\n", ICPNS_FORMAT_PAIRS, 2, "user", "empty field");
    expect_error("1 2\n,\n", ICPNS_FORMAT_ADJACENCY, 2, "user", "bad number");
    /* The rating filter needs a rating. */
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    assert_int_equal(parse_inter(d, "1\t2\tgood\n", ICPNS_FORMAT_PAIRS, true, 3, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "rating");
    assert_int_equal(parse_inter(d, "1\t2\t0x10\n", ICPNS_FORMAT_PAIRS, true, 3, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "rating");
    assert_int_equal(parse_inter(d, "1\t2\n", ICPNS_FORMAT_PAIRS, true, 3, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "rating");
    assert_int_equal(d->n_inter, 0);
    icpns_dataset_free(d);
}

/* The bytes of every table file: BOM, NUL, control bytes, line ends. */
static void test_bytes(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    /* A UTF-8 byte order mark at the start (Excel's "CSV UTF-8") is
     * skipped and noted. */
    assert_int_equal(parse_inter(d, "\xef\xbb\xbf" "1\t10\n2\t11\n", ICPNS_FORMAT_AUTO, false, 0,
                                 &err), 0);
    assert_int_equal(d->n_inter, 2);
    assert_int_equal(d->inter[0].a, 1);
    assert_true(last_report(d)->bom);
    char line[1024];
    icpns_load_report_format(last_report(d), line, sizeof(line));
    assert_contains(line, "byte order mark skipped");
    icpns_dataset_free(d);
    /* Elsewhere it is an error, quoted visibly. */
    expect_error("1\t10\n\xef\xbb\xbf" "2\t11\n", ICPNS_FORMAT_PAIRS, 2, "",
                 "byte order mark '\\xef\\xbb\\xbf' at column 1");
    /* NUL and other control bytes. */
    expect_error_len("1\t10\n2\t1\0" "1\n", 11, ICPNS_FORMAT_PAIRS, 2, "", "a NUL byte at column 4");
    expect_error("1\t10\n2\x01\t11\n", ICPNS_FORMAT_PAIRS, 2, "", "control byte '\\x01' at column 2");
    expect_error("1\t10\r2\t11\n", ICPNS_FORMAT_PAIRS, 1, "", "carriage return");
    /* A cut last line. */
    expect_error("1\t10\n2\t11", ICPNS_FORMAT_PAIRS, 2, "", "the last line has no newline");
    expect_error("1\t10\n2\t11", ICPNS_FORMAT_AUTO, 2, "", "echo >> FILE");
    /* Non-ASCII bytes in a field are shown escaped. */
    expect_error("1\t10\n2\t1\xc3\xa9\n", ICPNS_FORMAT_PAIRS, 2, "item", "bad number '1\\xc3\\xa9'");
    /* The same rules for the other tables. */
    d = icpns_dataset_new();
    assert_int_equal(icpns_parse_communities(d, "1\t0\n2\t0", 8, "c.tsv", &err), ICPNS_EPARSE);
    assert_contains(err.message, "no newline");
    assert_int_equal(icpns_parse_popularity(d, "0\t1\t2\n0\t2\t\x02\n", 12, "p.tsv", &err),
                     ICPNS_EPARSE);
    assert_int_equal(err.line, 2);
    assert_contains(err.message, "control byte");
    assert_int_equal(icpns_parse_items(d, "\xef\xbb\xbf" "item\n7\n8", 11, "i.tsv", &err),
                     ICPNS_EPARSE);
    assert_int_equal(err.line, 3);
    assert_int_equal(icpns_parse_items(d, "\xef\xbb\xbf" "item\n7\n8\n", 12, "i.tsv", &err), 0);
    assert_int_equal(d->n_items, 2);
    assert_true(last_report(d)->bom);
    assert_int_equal(d->n_comm + d->n_pop, 0);
    icpns_dataset_free(d);
}

static void test_escape(void **state)
{
    (void)state;
    char b[ICPNS_QUOTE_BUF];
    assert_string_equal(icpns_escape("\xef\xbb\xbf" "1", 4, b, sizeof(b)), "\\xef\\xbb\\xbf1");
    assert_string_equal(icpns_escape("a\tb\\c\0", 6, b, sizeof(b)), "a\\tb\\\\c\\x00");
    char many[100];
    memset(many, 0x01, sizeof(many));
    icpns_escape(many, sizeof(many), b, sizeof(b));
    assert_int_equal(strlen(b), 4 * ICPNS_QUOTE_MAX + 3);
    assert_contains(b, "...");
    char small[6];
    assert_string_equal(icpns_escape("\x01" "abc", 4, small, sizeof(small)), "\\x01a");
}

static void test_communities_popularity_items(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    const char *c1 = "1\t0\n2\t0\n1\t0\n2\t1\n";
    icpns_error_clear(&err);
    assert_int_equal(icpns_parse_communities(d, c1, strlen(c1), "c.tsv", &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 4);
    assert_contains(err.message, "line 2");
    assert_int_equal(d->n_comm, 0);
    const char *c2 = "1\t0\n2\n";
    assert_int_equal(icpns_parse_communities(d, c2, strlen(c2), "c.tsv", &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.field, "community");
    /* A third column is no longer ignored. */
    const char *c3 = "# user community\n1\t0\n2\t0\t0.93\n";
    assert_int_equal(icpns_parse_communities(d, c3, strlen(c3), "c.tsv", &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 3);
    assert_contains(err.message, "exactly 2 columns");
    const char *c4 = "user,community\n1,0\n1,0\n2,5\n";
    assert_int_equal(icpns_parse_communities(d, c4, strlen(c4), "c.tsv", &err), 0);
    assert_int_equal(d->n_comm, 2); /* a repeated identical line counts once */
    assert_int_equal(last_report(d)->header_line, 1);
    assert_int_equal(last_report(d)->rows, 2);

    const char *p1 = "0\t1\t2\n0\t2\n";
    assert_int_equal(icpns_parse_popularity(d, p1, strlen(p1), "p.tsv", &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.field, "count");
    const char *p2 = "0\t1\t-2\n";
    assert_int_equal(icpns_parse_popularity(d, p2, strlen(p2), "p.tsv", &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "count");
    assert_contains(err.message, "negative count '-2'");
    const char *p3 = "0\t1\tmany\n";
    assert_int_equal(icpns_parse_popularity(d, p3, strlen(p3), "p.tsv", &err), ICPNS_EPARSE);
    assert_contains(err.message, "non-negative integer count");
    const char *p4 = "0\t1\t2\t3\n";
    assert_int_equal(icpns_parse_popularity(d, p4, strlen(p4), "p.tsv", &err), ICPNS_EPARSE);
    assert_contains(err.message, "exactly 3 columns");
    assert_false(d->has_pop);

    const char *i1 = "item\n7\n8\t9\n";
    assert_int_equal(icpns_parse_items(d, i1, strlen(i1), "i.tsv", &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 3);
    assert_contains(err.message, "exactly 1 column");
    assert_false(d->has_items);
    icpns_dataset_free(d);
}

/* With pop_c read from a file: its communities join the assignments', its
 * items must be in the catalogue (interactions and items file). */
static void test_popularity_file_indexing(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    const char *inter = "1\t10\n2\t11\n";
    assert_int_equal(parse_inter(d, inter, ICPNS_FORMAT_PAIRS, false, 0, &err), 0);
    assert_int_equal(icpns_parse_communities(d, "1\t0\n", 4, "c.tsv", &err), 0);
    const char *p4 = "0\t10\t1\n7\t11\t1\n0\t61\t1\n";
    assert_int_equal(icpns_parse_popularity(d, p4, strlen(p4), "p.tsv", &err), 0);
    icpns_params_t par;
    icpns_params_default(&par);
    icpns_snapshot_t *s = NULL;
    assert_int_equal(icpns_snapshot_build(d, &par, &s, &err), ICPNS_EPARSE);
    assert_null(s);
    assert_string_equal(err.path, "p.tsv");
    assert_int_equal(err.line, 3);
    assert_string_equal(err.field, "item");
    assert_contains(err.message, "unknown item 61: not in the catalogue");
    assert_contains(err.message, "items.tsv");
    /* With the catalogue file, item 61 exists; community 7 (no member
     * here, as in a user shard) counts for pop(i). */
    assert_int_equal(icpns_parse_items(d, "10\n11\n61\n", 9, "i.tsv", &err), 0);
    assert_int_equal(icpns_snapshot_build(d, &par, &s, &err), 0);
    assert_int_equal(s->items.n, 3);
    assert_int_equal(s->comms.n, 2);
    assert_true(s->pop_from_file);
    assert_int_equal(s->comm_size[icpns_idmap_find(&s->comms, 7)], 0);
    assert_int_equal(s->item_pop[icpns_idmap_find(&s->items, 11)], 1);
    assert_int_equal(s->item_pop[icpns_idmap_find(&s->items, 61)], 1);
    icpns_snapshot_unref(s);
    /* A (community, item) listed twice. */
    assert_int_equal(icpns_parse_popularity(d, "0\t10\t4\n", 7, "p2.tsv", &err), 0);
    assert_int_equal(icpns_snapshot_build(d, &par, &s, &err), ICPNS_EPARSE);
    assert_contains(err.message, "listed twice");
    icpns_dataset_free(d);
}

/* Popularity counts may be as large as 2^32-2 (found by fuzzing: the build
 * once sized a power table by the largest count, allocating gigabytes). */
static void test_huge_popularity_counts(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    const char *inter = "1\t10\n2\t11\n2\t12\n";
    assert_int_equal(parse_inter(d, inter, ICPNS_FORMAT_PAIRS, false, 0, &err), 0);
    assert_int_equal(icpns_parse_communities(d, "1\t0\n2\t0\n", 8, "c.tsv", &err), 0);
    const char *big = "0\t10\t4294967295\n";
    assert_int_equal(icpns_parse_popularity(d, big, strlen(big), "p.tsv", &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "count");
    const char *pop = "0\t10\t4294967294\n0\t11\t1\n0\t12\t3000000000\n";
    assert_int_equal(icpns_parse_popularity(d, pop, strlen(pop), "p.tsv", &err), 0);
    icpns_params_t par;
    icpns_params_default(&par);
    par.alpha = 0.5;
    icpns_snapshot_t *s = NULL;
    assert_int_equal(icpns_snapshot_build(d, &par, &s, &err), 0);
    assert_int_equal(s->max_count, 4294967294u);
    const icpns_wtable_t *t = &s->weights->comm[0];
    assert_int_equal(t->m, 3);
    /* Weights are count^alpha, exactly as for small counts. */
    for (uint32_t k = 0; k < t->m; k++)
        assert_true(fabs(t->w[k] - pow((double)s->sup_count[t->items - s->sup_item + k], 0.5)) <
                    1e-9 * t->w[k]);
    icpns_snapshot_unref(s);
    /* pop(i), the sum over communities, must fit too. */
    assert_int_equal(icpns_parse_communities(d, "3\t1\n", 4, "c2.tsv", &err), 0);
    assert_int_equal(icpns_parse_popularity(d, "1\t10\t5\n", 7, "p2.tsv", &err), 0);
    assert_int_equal(icpns_snapshot_build(d, &par, &s, &err), ICPNS_ELIMIT);
    assert_contains(err.message, "item 10");
    icpns_dataset_free(d);
}

static void test_directory_and_tables_json(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    assert_non_null(dir);
    write_text(dir, "interactions.tsv", "1\t10\t5\n1\t10\t4\n1\t11\t1\n2\t10\t5\n3\t12\t5\n");
    write_text(dir, "communities.tsv", "1\t0\n2\t0\n3\t1\n");
    write_text(dir, "tables.json", "{\"alpha\": 0.5, \"min_rating\": 3, \"format\": \"pairs\"}");
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    icpns_dataset_t *d = NULL;
    icpns_error_t err;
    icpns_error_clear(&err);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), 0);
    assert_true(o.params.alpha == 0.5);
    assert_true(o.has_min_rating);
    assert_int_equal(d->n_inter, 4); /* (1,11) rated 1 is dropped */
    assert_int_equal(d->n_reports, 2);
    assert_string_equal(d->reports[0].reason, "given in tables.json");
    assert_int_equal(d->reports[1].kind, ICPNS_TABLE_COMMUNITIES);
    icpns_snapshot_t *s;
    assert_int_equal(icpns_snapshot_build(d, &o.params, &s, &err), 0);
    assert_int_equal(s->n_interactions, 3); /* duplicate (1,10) counts once */
    assert_int_equal(s->users.n, 3);
    assert_int_equal(s->items.n, 2);
    /* pop_c: community 0 has item 10 from users 1 and 2 (distinct users). */
    assert_int_equal(s->sup_off[1] - s->sup_off[0], 1);
    assert_int_equal(s->sup_count[0], 2);
    assert_false(s->pop_from_file);
    icpns_snapshot_unref(s);
    icpns_dataset_free(d);

    /* A typo in tables.json is an error naming the key. */
    write_text(dir, "tables.json", "{\"alpah\": 0.5}");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "alpah");
    write_text(dir, "tables.json", "{\"alpha\": -1}");
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EINVAL);
    assert_string_equal(err.field, "alpha");
    write_text(dir, "tables.json", "{\"alpha\": 1,\n \"beta\": }");
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_int_equal(err.line, 2);
    write_text(dir, "tables.json", "{\"extra_columns\": \"drop\"}");
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "extra_columns");
    write_text(dir, "tables.json", "{\"popularity_source\": \"popularity.tsv\"}");
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_string_equal(err.field, "popularity_source");
    write_text(dir, "tables.json", "{\"format\": \"lists\", \"extra_columns\": \"ignore\"}");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_true(o.extra_columns_ignore);
    assert_int_equal(o.format, ICPNS_FORMAT_LISTS);
    assert_contains(err.message, "no ':' after the user");
    /* A missing file names itself. */
    write_text(dir, "tables.json", "{\"communities\": \"nope.tsv\"}");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EIO);
    assert_contains(err.path, "nope.tsv");
    write_text(dir, "tables.json", "{\"items\": \"catalogue.tsv\"}");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EIO);
    assert_contains(err.path, "catalogue.tsv");
    tmpdir_remove(dir);
    free(dir);
}

/* popularity_source: a popularity file nobody would read is refused; in
 * "file" mode it is required and served; the fingerprint names content. */
static void test_popularity_source(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    write_text(dir, "interactions.tsv", "1\t10\n1\t11\n2\t10\n3\t12\n");
    write_text(dir, "communities.tsv", "1\t0\n2\t0\n3\t1\n");
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    icpns_dataset_t *d = NULL;
    icpns_error_t err;
    icpns_params_t par;
    icpns_params_default(&par);
    par.epsilon = 0.25;
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), 0);
    icpns_snapshot_t *derived;
    assert_int_equal(icpns_snapshot_build(d, &par, &derived, &err), 0);
    icpns_dataset_free(d);

    /* The counts the daemon would compute, exported (icpns build
     * --popularity-out) into the directory: refused in the default mode. */
    char *pop;
    size_t pop_len;
    assert_int_equal(icpns_snapshot_popularity_tsv(derived, &pop, &pop_len), 0);
    char path[4200];
    snprintf(path, sizeof(path), "%s/popularity.tsv", dir);
    assert_int_equal(icpns_file_write_atomic(path, pop, pop_len, &err), 0);
    free(pop);
    icpns_table_opts_default(&o);
    d = NULL;
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EINVAL);
    assert_null(d);
    assert_string_equal(err.path, path);
    assert_string_equal(err.field, "popularity_source");
    assert_contains(err.message, "its counts would be ignored");
    assert_contains(err.message, "\"popularity_source\": \"file\"");

    /* Declared: served, and the same content gives the same fingerprint
     * (every user has a community, so the global counts agree too). */
    write_text(dir, "tables.json", "{\"popularity_source\": \"file\"}");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), 0);
    assert_true(d->has_pop);
    assert_int_equal(d->n_reports, 3);
    assert_int_equal(d->reports[2].kind, ICPNS_TABLE_POPULARITY);
    icpns_snapshot_t *fromfile;
    assert_int_equal(icpns_snapshot_build(d, &par, &fromfile, &err), 0);
    assert_true(fromfile->pop_from_file);
    assert_memory_equal(fromfile->item_pop, derived->item_pop, derived->items.n * sizeof(uint32_t));
    assert_true(fromfile->fingerprint == derived->fingerprint);
    icpns_dataset_free(d);

    /* A user without community counts for pop(i) when counted from the
     * interactions, not in the file's sums: other PNS negatives, another
     * fingerprint. */
    write_text(dir, "interactions.tsv", "1\t10\n1\t11\n2\t10\n3\t12\n4\t11\n");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), 0);
    icpns_snapshot_t *f2;
    assert_int_equal(icpns_snapshot_build(d, &par, &f2, &err), 0);
    icpns_dataset_free(d);
    unlink(path);
    write_text(dir, "tables.json", "{}");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), 0);
    icpns_snapshot_t *d2;
    assert_int_equal(icpns_snapshot_build(d, &par, &d2, &err), 0);
    icpns_dataset_free(d);
    uint32_t i11 = icpns_idmap_find(&d2->items, 11);
    assert_int_equal(d2->item_pop[i11], 2);
    assert_int_equal(f2->item_pop[i11], 1);
    assert_true(f2->fingerprint != d2->fingerprint);
    /* ICPNS probabilities agree all the same. */
    uint32_t u1 = icpns_idmap_find(&d2->users, 2);
    for (uint32_t i = 0; i < d2->items.n; i++) {
        int e1 = 0, e2 = 0;
        double a = icpns_probability(d2, d2->weights, u1, ICPNS_STRATEGY_ICPNS, i, &e1);
        double b = icpns_probability(f2, f2->weights, u1, ICPNS_STRATEGY_ICPNS, i, &e2);
        assert_int_equal(e1 | e2, 0);
        assert_true(fabs(a - b) <= 1e-12);
    }

    /* "file" without the file. */
    write_text(dir, "tables.json", "{\"popularity_source\": \"file\"}");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EIO);
    assert_string_equal(err.field, "popularity_source");
    assert_contains(err.message, "does not exist");

    /* items.tsv extends the catalogue (uniform and epsilon reach item 99). */
    write_text(dir, "tables.json", "{}");
    write_text(dir, "items.tsv", "# item\n10\n11\n12\n99\n");
    icpns_table_opts_default(&o);
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), 0);
    icpns_snapshot_t *c;
    assert_int_equal(icpns_snapshot_build(d, &par, &c, &err), 0);
    assert_int_equal(c->items.n, 4);
    uint32_t i99 = icpns_idmap_find(&c->items, 99);
    int e = 0;
    assert_true(icpns_probability(c, c->weights, u1, ICPNS_STRATEGY_UNIFORM, i99, &e) > 0);
    assert_true(icpns_probability(c, c->weights, u1, ICPNS_STRATEGY_ICPNS, i99, &e) > 0);
    assert_true(icpns_probability(c, c->weights, u1, ICPNS_STRATEGY_POPULARITY, i99, &e) == 0);
    assert_true(c->fingerprint != d2->fingerprint);
    icpns_snapshot_unref(c);
    icpns_dataset_free(d);

    icpns_snapshot_unref(derived);
    icpns_snapshot_unref(fromfile);
    icpns_snapshot_unref(f2);
    icpns_snapshot_unref(d2);
    tmpdir_remove(dir);
    free(dir);
}

/* The directory loader reads icpnsd's journal after the interactions (so
 * that the tools see what the daemon serves), skips an interrupted last
 * append, and names the journal's line on a bad row. */
static void test_directory_journal(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    assert_non_null(dir);
    write_text(dir, "interactions.tsv", "1\t10\n2\t11\n");
    write_text(dir, "communities.tsv", "1\t0\n2\t0\n");
    write_text(dir, "interactions.journal", "1\t11\n3\t12\n2\t1");
    icpns_table_opts_t o;
    icpns_table_opts_default(&o);
    icpns_dataset_t *d = NULL;
    icpns_error_t err;
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), 0);
    assert_int_equal(d->n_inter, 4); /* "2<TAB>1" without newline: skipped */
    assert_true(d->inter[2].a == 1 && d->inter[2].b == 11);
    assert_true(d->inter[3].a == 3 && d->inter[3].b == 12);
    assert_int_equal(d->reports[2].kind, ICPNS_TABLE_JOURNAL);
    assert_int_equal(d->reports[2].rows, 2);
    icpns_dataset_free(d);
    write_text(dir, "interactions.journal", "1\t11\nx\t12\n");
    icpns_table_opts_default(&o);
    d = NULL;
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_null(d);
    assert_int_equal(err.line, 2);
    assert_contains(err.path, "interactions.journal");
    /* The interactions file itself has no such allowance. */
    write_text(dir, "interactions.journal", "");
    write_text(dir, "interactions.tsv", "1\t10\n2\t11");
    assert_int_equal(icpns_dataset_load_dir(dir, &o, &d, &err), ICPNS_EPARSE);
    assert_contains(err.path, "interactions.tsv");
    assert_int_equal(err.line, 2);
    tmpdir_remove(dir);
    free(dir);
}

/* The entry point for bindings (Python ctypes). */
static void test_interactions_read(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    write_text(dir, "train.txt", "0 5 6 7\n1 6\n2 8 9\n");
    write_text(dir, "u.data", "1\t10\t5\t1\n1\t11\t2\t2\n2\t10\t4\t3\n");
    char path[4200];
    snprintf(path, sizeof(path), "%s/train.txt", dir);
    int64_t *u = NULL, *it = NULL;
    size_t n = 99;
    icpns_load_report_t r;
    icpns_error_t err;
    assert_int_equal(icpns_load_report_size(), sizeof(icpns_load_report_t));
    assert_int_equal(icpns_interactions_read(path, NULL, NAN, 0, &u, &it, &n, &r, &err), 0);
    assert_int_equal(n, 6);
    int64_t eu[] = {0, 0, 0, 1, 2, 2}, ei[] = {5, 6, 7, 6, 8, 9};
    assert_memory_equal(u, eu, sizeof(eu));
    assert_memory_equal(it, ei, sizeof(ei));
    assert_int_equal(r.format, ICPNS_FORMAT_ADJACENCY);
    assert_true(r.detected);
    assert_int_equal(r.rows, 6);
    icpns_interactions_free(u, it);
    /* Format and rating filter. */
    snprintf(path, sizeof(path), "%s/u.data", dir);
    assert_int_equal(icpns_interactions_read(path, "pairs", 3.0, 0, &u, &it, &n, NULL, NULL), 0);
    assert_int_equal(n, 2);
    assert_true(u[1] == 2 && it[1] == 10);
    icpns_interactions_free(u, it);
    /* Failures leave the outputs alone. */
    u = it = NULL;
    n = 99;
    assert_int_equal(icpns_interactions_read(path, "parquet", NAN, 0, &u, &it, &n, NULL, &err),
                     ICPNS_EINVAL);
    assert_string_equal(err.field, "format");
    assert_int_equal(icpns_interactions_read(path, "adjacency", NAN, 0, &u, &it, &n, NULL, &err),
                     ICPNS_EPARSE);
    assert_int_equal(err.line, 2);
    assert_contains(err.message, "already has line 1");
    snprintf(path, sizeof(path), "%s/missing.txt", dir);
    assert_int_equal(icpns_interactions_read(path, NULL, NAN, 0, &u, &it, &n, NULL, &err), ICPNS_EIO);
    assert_null(u);
    assert_null(it);
    assert_int_equal(n, 99);
    /* An empty file: zero pairs, arrays still allocated. */
    write_text(dir, "empty.txt", "# nothing yet\n");
    snprintf(path, sizeof(path), "%s/empty.txt", dir);
    assert_int_equal(icpns_interactions_read(path, NULL, NAN, 0, &u, &it, &n, NULL, &err), 0);
    assert_int_equal(n, 0);
    assert_non_null(u);
    icpns_interactions_free(u, it);
    icpns_interactions_free(NULL, NULL);
    tmpdir_remove(dir);
    free(dir);
}

static void test_report_format(void **state)
{
    (void)state;
    icpns_dataset_t *d = icpns_dataset_new();
    icpns_error_t err;
    char text[64 * 1024] = "";
    /* 1,200 lines: thousands separators. */
    for (int k = 0; k < 1200; k++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%d\t%d\n", k % 300, k);
    assert_int_equal(parse_inter(d, text, ICPNS_FORMAT_AUTO, false, 0, &err), 0);
    char line[1024];
    icpns_load_report_format(last_report(d), line, sizeof(line));
    assert_string_equal(line, "inter.tsv: pairs (detected: 2 fields on every line): 1,200 lines "
                              "-> 1,200 pairs; separator tab; fields per line: 2 (1,200 lines)");
    const char *c = "# c\nuser\tcommunity\n1\t0\n";
    assert_int_equal(icpns_parse_communities(d, c, strlen(c), "c.tsv", &err), 0);
    icpns_load_report_format(last_report(d), line, sizeof(line));
    assert_string_equal(line, "c.tsv: communities: 1 line -> 1 assignment; separator tab; fields "
                              "per line: 2 (1 line); header skipped (line 2: "
                              "'user\\tcommunity'); 1 comment/blank line");
    /* A small buffer is cut, never overrun. */
    char small[16];
    icpns_load_report_format(last_report(d), small, sizeof(small));
    assert_int_equal(strlen(small), 15);
    icpns_dataset_free(d);
}

/* Equal to clients/python/icpns_client/client.py shard_of (values computed
 * with it). */
static void test_shard_of(void **state)
{
    (void)state;
    assert_int_equal(icpns_shard_of(0, 2), 0);
    assert_int_equal(icpns_shard_of(1, 2), 1);
    assert_int_equal(icpns_shard_of(2, 2), 0);
    assert_int_equal(icpns_shard_of(3, 7), 4);
    assert_int_equal(icpns_shard_of(1000000007, 10), 8);
    assert_int_equal(icpns_shard_of(INT64_MAX, 1000), 533);
    for (int64_t u = 0; u < 100; u++)
        assert_int_equal(icpns_shard_of(u, 1), 0);
}

static void test_idmap(void **state)
{
    (void)state;
    int64_t *ids = malloc(6 * sizeof(*ids));
    int64_t v[6] = {INT64_MAX, 5, 0, 5, 1000000000000LL, 7};
    memcpy(ids, v, sizeof(v));
    icpns_idmap_t m;
    assert_int_equal(icpns_idmap_build(&m, ids, 6), 0);
    assert_int_equal(m.n, 5);
    assert_int_equal(icpns_idmap_find(&m, 0), 0);
    assert_int_equal(icpns_idmap_find(&m, 5), 1);
    assert_int_equal(icpns_idmap_find(&m, 7), 2);
    assert_int_equal(icpns_idmap_find(&m, 1000000000000LL), 3);
    assert_int_equal(icpns_idmap_find(&m, INT64_MAX), 4);
    assert_int_equal(icpns_idmap_find(&m, 6), ICPNS_NONE);
    icpns_idmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pairs_formats),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_adjacency),
        cmocka_unit_test(test_ambiguous_refused),
        cmocka_unit_test(test_pairs_columns),
        cmocka_unit_test(test_recbole),
        cmocka_unit_test(test_interaction_errors),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_communities_popularity_items),
        cmocka_unit_test(test_popularity_file_indexing),
        cmocka_unit_test(test_huge_popularity_counts),
        cmocka_unit_test(test_directory_and_tables_json),
        cmocka_unit_test(test_popularity_source),
        cmocka_unit_test(test_directory_journal),
        cmocka_unit_test(test_interactions_read),
        cmocka_unit_test(test_report_format),
        cmocka_unit_test(test_shard_of),
        cmocka_unit_test(test_idmap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
