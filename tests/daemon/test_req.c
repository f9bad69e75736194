/* test_req.c - handing work between threads and a request (src/daemon/req.c):
 * whoever ends up with the work frees it exactly once, whatever comes first,
 * the worker's hand-back or the end of the connection. */
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "req.h"

static int freed;

static void count_free(void *work)
{
    freed++;
    free(work);
}

static enum MHD_Result resume_never(icpnsd_req_t *r)
{
    (void)r;
    fail_msg("the handler must not run here");
    return MHD_NO;
}

/* A request waiting for @work, as a handler leaves it before sleeping
 * (without the connection: no libmicrohttpd call happens while the state
 * is ARMED, which is where icpnsd_req_sleep would suspend it). */
static icpnsd_req_t *waiting(void *work)
{
    icpnsd_req_t *r = icpnsd_req_new(NULL, NULL);
    assert_non_null(r);
    r->work = work;
    r->resume = resume_never;
    r->work_free = count_free;
    icpnsd_req_arm(r);
    return r;
}

/* The worker hands the work back, then the connection ends before the
 * handler ran (a socket error while resuming): the request frees it.  This
 * used to leak the work, and with a negatives answer its share of
 * answers_in_flight_bytes for good. */
static void test_woken_then_gone(void **state)
{
    (void)state;
    freed = 0;
    void *work = malloc(64);
    icpnsd_req_t *r = waiting(work);
    assert_true(icpnsd_req_done(r)); /* the request takes the work */
    assert_int_equal(atomic_load(&r->wake), ICPNSD_WAKE_WOKEN);
    icpnsd_req_gone(r);
    assert_int_equal(freed, 1);
    assert_null(r->work);
    icpnsd_req_gone(r); /* never twice */
    assert_int_equal(freed, 1);
    icpnsd_req_unref(r);
}

/* The connection ends first: the worker learns it and keeps its work. */
static void test_gone_then_done(void **state)
{
    (void)state;
    freed = 0;
    void *work = malloc(64);
    icpnsd_req_t *r = waiting(work);
    icpnsd_req_gone(r);
    assert_int_equal(freed, 0); /* still the worker's */
    assert_false(icpnsd_req_wanted(r));
    assert_false(icpnsd_req_done(r)); /* the worker disposes of it */
    assert_int_equal(freed, 0);
    free(work);
    icpnsd_req_unref(r);
}

/* The handler took the work: the end of the connection frees nothing. */
static void test_taken_then_gone(void **state)
{
    (void)state;
    freed = 0;
    void *work = malloc(64);
    icpnsd_req_t *r = waiting(work);
    assert_true(icpnsd_req_done(r));
    /* What server.c does before the handler, and the handler itself. */
    r->resume = NULL;
    atomic_store(&r->wake, ICPNSD_WAKE_IDLE);
    void *taken = r->work;
    r->work = NULL;
    icpnsd_req_gone(r);
    assert_int_equal(freed, 0);
    free(taken);
    icpnsd_req_unref(r);
}

/* A wait without work (a weight setting being built): nothing to free. */
static void test_no_work(void **state)
{
    (void)state;
    freed = 0;
    icpnsd_req_t *r = waiting(NULL);
    r->work_free = NULL;
    assert_true(icpnsd_req_done(r));
    icpnsd_req_gone(r);
    assert_int_equal(freed, 0);
    icpnsd_req_unref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_woken_then_gone),
        cmocka_unit_test(test_gone_then_done),
        cmocka_unit_test(test_taken_then_gone),
        cmocka_unit_test(test_no_work),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
