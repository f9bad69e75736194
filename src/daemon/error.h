/*
 * error.h - the daemon's one error type.
 *
 * Everything that can refuse or fail in icpnsd (request parsers, handlers,
 * rebuilds, set management) reports an icpnsd_err_t: a machine code, a
 * sentence, and where (the request field, the row).  The HTTP status of a
 * code is decided in one place, reply.c; proto/errors.md documents both.
 * A few wire names appear twice with different statuses (a GET of a user
 * that does not exist is 404, a sampling request naming one is 422): they
 * are distinct codes here so that the status follows from the code alone.
 */
#ifndef ICPNSD_ERROR_H
#define ICPNSD_ERROR_H

#include <stdbool.h>

/* X(NAME, "wire_name") */
#define ICPNSD_CODES(X)                                          \
    X(OK, "ok")                                                  \
    X(BAD_JSON, "bad_json")                                      \
    X(BAD_REQUEST, "bad_request")                                \
    X(UNKNOWN_FIELD, "unknown_field")                            \
    X(UNKNOWN_PARAMETER, "unknown_parameter")                    \
    X(CONFLICTING_ASSIGNMENT, "conflicting_assignment")          \
    X(BAD_USER_ID, "bad_user_id")                                \
    X(BAD_STRATEGY, "bad_strategy")                              \
    X(BAD_FRAME, "bad_frame")                                    \
    X(BAD_PAIR, "bad_pair")                                      \
    X(BAD_PARAMETER, "bad_parameter")                            \
    X(BAD_EMBEDDINGS, "bad_embeddings")                          \
    X(BAD_NPY, "bad_npy")                                        \
    X(CONFLICTING_PARAMETER, "conflicting_parameter")            \
    X(TABLES_REQUIRED, "tables_required")                        \
    X(CUSTOM_WEIGHTS_DISABLED, "custom_weights_disabled")        \
    X(BAD_PATH, "bad_path")                                      \
    X(BAD_QUERY, "bad_query")                                    \
    X(UNAUTHORIZED, "unauthorized")                              \
    X(FORBIDDEN, "forbidden")                                    \
    X(ADMIN_DISABLED, "admin_disabled")                          \
    X(TOO_MANY_AUTH_FAILURES, "too_many_auth_failures")          \
    X(NOT_FOUND, "not_found")                                    \
    X(NO_SUCH_USER, "unknown_user")                              \
    X(NO_SUCH_COMMUNITY, "unknown_community")                    \
    X(NO_SUCH_JOB, "unknown_job")                                \
    X(UNKNOWN_TABLES, "unknown_tables")                          \
    X(METHOD_NOT_ALLOWED, "method_not_allowed")                  \
    X(NOT_ACCEPTABLE, "not_acceptable")                          \
    X(READ_ONLY_TABLES, "read_only_tables")                      \
    X(TABLES_EXIST, "tables_exist")                              \
    X(LAST_TABLES, "last_tables")                                \
    X(TOO_MANY_TABLES, "too_many_tables")                        \
    X(TABLES_DIR_IN_USE, "tables_dir_in_use")                    \
    X(POPULARITY_FROM_FILE, "popularity_from_file")              \
    X(INCOMPLETE_ASSIGNMENT, "incomplete_assignment")            \
    X(UPLOADS_DISABLED, "uploads_disabled")                      \
    X(CANCELED, "canceled")                                      \
    X(BODY_TOO_LARGE, "body_too_large")                          \
    X(URI_TOO_LONG, "uri_too_long")                              \
    X(LIMIT_EXCEEDED, "limit_exceeded")                          \
    X(UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")          \
    X(UNKNOWN_USER, "unknown_user")                              \
    X(NO_COMMUNITY, "no_community")                              \
    X(INFEASIBLE, "infeasible")                                  \
    X(SAMPLING_FAILED, "sampling_failed")                        \
    X(DUPLICATE_USER, "duplicate_user")                          \
    X(ROW_COUNT_MISMATCH, "row_count_mismatch")                  \
    X(BUILD_INVALID, "tables_invalid")                             \
    X(UPDATE_TOO_LARGE, "tables_too_large")                      \
    X(UPDATE_FAILED, "rebuild_failed")                           \
    X(TABLES_INVALID, "tables_invalid")                          \
    X(TABLES_UNREADABLE, "tables_unreadable")                    \
    X(TABLES_TOO_LARGE, "tables_too_large")                      \
    X(REBUILD_FAILED, "rebuild_failed")                          \
    X(WEIGHTS_BUILDING, "weights_building")                      \
    X(WEIGHTS_FAILED, "weights_failed")                          \
    X(OUT_OF_MEMORY, "out_of_memory")                            \
    X(NOT_READY, "not_ready")                                    \
    X(SHUTTING_DOWN, "shutting_down")                            \
    X(REGISTRY_BUSY, "registry_busy")                            \
    X(TOO_MANY_JOBS, "too_many_jobs")                            \
    X(ANSWERS_IN_FLIGHT, "answers_in_flight")                    \
    X(TOO_MANY_CONNECTIONS, "too_many_connections")              \
    X(MEMORY_BUDGET_EXCEEDED, "memory_budget_exceeded")          \
    X(STORAGE_FAILED, "storage_failed")

typedef enum icpnsd_code {
#define ICPNSD_CODE_ENUM(name, wire) ICPNSD_E_##name,
    ICPNSD_CODES(ICPNSD_CODE_ENUM)
#undef ICPNSD_CODE_ENUM
    ICPNSD_E_COUNT
} icpnsd_code_t;

typedef struct icpnsd_err {
    icpnsd_code_t code; /* ICPNSD_E_OK: no error */
    char field[48];     /* the request field, "" when none */
    long long row;      /* the row of users/pairs/embeddings, -1 when none */
    char message[512];
} icpnsd_err_t;

/* The wire name of @code ("bad_json"). */
const char *icpnsd_code_name(icpnsd_code_t code);

/* Resets @e to "no error". */
void icpnsd_err_clear(icpnsd_err_t *e);

/* Whether @e holds an error. */
static inline bool icpnsd_err_failed(const icpnsd_err_t *e)
{
    return e->code != ICPNSD_E_OK;
}

/*
 * Records an error in @e and returns -1, so callers can write
 * `return icpnsd_err_set(e, ICPNSD_E_BAD_REQUEST, "n", -1, "...")`.
 * @field may be NULL; @row -1 when there is none.
 */
int icpnsd_err_set(icpnsd_err_t *e, icpnsd_code_t code, const char *field, long long row,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Copies @src into @dst (the two may be the same). */
void icpnsd_err_copy(icpnsd_err_t *dst, const icpnsd_err_t *src);

#endif
