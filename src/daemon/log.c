/* log.c - leveled logging to stderr; journald reads the <N> prefix as the
 * syslog priority when stderr is the journal (JOURNAL_STREAM is set). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int icpnsd_log_level = LOG_LVL_INFO;

int icpnsd_log_parse_level(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int k = 0; k < 4; k++)
        if (!strcmp(s, names[k]))
            return k;
    if (!strcmp(s, "warning"))
        return LOG_LVL_WARN;
    return -1;
}

void icpnsd_log(int level, const char *fmt, ...)
{
    if (level > icpnsd_log_level)
        return;
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    static const int prio[] = {3, 4, 6, 7};
    static int journal = -1;
    if (journal < 0)
        journal = getenv("JOURNAL_STREAM") != NULL;
    char line[2048];
    int off = journal ? snprintf(line, sizeof(line), "<%d>", prio[level]) : 0;
    off += snprintf(line + off, sizeof(line) - (size_t)off, "icpnsd: %s ", names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (off < (int)sizeof(line))
        vsnprintf(line + off, sizeof(line) - (size_t)off, fmt, ap);
    va_end(ap);
    /* One write per line, newlines inside a message flattened. */
    for (char *p = line; *p; p++)
        if (*p == '\n')
            *p = ' ';
    fprintf(stderr, "%s\n", line);
}
