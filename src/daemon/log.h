/* log.h - one line per event on stderr, in a form journald keeps well:
 * "<level-prefix>icpnsd: LEVEL message key=value ...".  Thread-safe. */
#ifndef ICPNSD_LOG_H
#define ICPNSD_LOG_H

enum { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

extern int icpnsd_log_level;

/* "error", "warn", "info", "debug" -> level, or -1. */
int icpnsd_log_parse_level(const char *s);

void icpnsd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) icpnsd_log(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) icpnsd_log(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) icpnsd_log(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) icpnsd_log(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
