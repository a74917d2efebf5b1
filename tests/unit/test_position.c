/*
 * test_position.c: position and estimated-wait arithmetic (lib/position.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "position.h"

static wr_room_t room(int64_t total, int64_t per_minute, int64_t session_s)
{
    wr_room_t r = {.name = "r", .total_active_users = total, .new_users_per_minute = per_minute,
                   .session_duration_ms = session_s * 1000, .queueing_status_code = 202};
    return r;
}

static void test_position_is_number_minus_serving(void **state)
{
    assert_int_equal(wr_position(10, 0), 10);
    assert_int_equal(wr_position(10, 9), 1);
    assert_int_equal(wr_position(10, 10), 0);
    assert_int_equal(wr_position(10, 50), 0);
    assert_int_equal(wr_position(INT64_MAX, 0), INT64_MAX);
}

static void test_position_never_rises_as_serving_advances(void **state)
{
    int64_t prev = INT64_MAX;
    for (int64_t serving = 0; serving <= 1000; serving += 7) {
        int64_t p = wr_position(1000, serving);
        assert_true(p <= prev);
        prev = p;
    }
}

static void test_wait_limited_by_rate(void **state)
{
    /* 600 per minute = 10 per second; sessions turn over faster (1000 per 60 s). */
    wr_room_t r = room(1000, 600, 60);
    assert_int_equal(wr_estimated_wait(0, &r), 0);
    assert_int_equal(wr_estimated_wait(1, &r), 1);
    assert_int_equal(wr_estimated_wait(10, &r), 1);
    assert_int_equal(wr_estimated_wait(11, &r), 2);
    assert_int_equal(wr_estimated_wait(600, &r), 60);
}

static void test_wait_limited_by_turnover(void **state)
{
    /* 5 slots of 300 s: one user per 60 s at most, however high the rate. */
    wr_room_t r = room(5, 6000, 300);
    assert_int_equal(wr_estimated_wait(1, &r), 60);
    assert_int_equal(wr_estimated_wait(5, &r), 300);
    assert_int_equal(wr_estimated_wait(6, &r), 360);
}

static void test_wait_rounds_up_and_never_falls_for_a_later_place(void **state)
{
    wr_room_t r = room(7, 13, 97);
    int64_t prev = 0;
    for (int64_t p = 1; p < 5000; p++) {
        int64_t w = wr_estimated_wait(p, &r);
        assert_true(w >= prev);
        assert_true(w >= 1);
        prev = w;
    }
}

static void test_wait_extremes_do_not_overflow(void **state)
{
    wr_room_t r = room(10000000, 100000000, 86400);
    assert_true(wr_estimated_wait(INT64_MAX, &r) > 0);
    wr_room_t slow = room(1, 1, 86400);
    assert_true(wr_estimated_wait(INT64_MAX / 2, &slow) > 0);
    assert_int_equal(wr_estimated_wait(1, &slow), 86400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_position_is_number_minus_serving),
        cmocka_unit_test(test_position_never_rises_as_serving_advances),
        cmocka_unit_test(test_wait_limited_by_rate),
        cmocka_unit_test(test_wait_limited_by_turnover),
        cmocka_unit_test(test_wait_rounds_up_and_never_falls_for_a_later_place),
        cmocka_unit_test(test_wait_extremes_do_not_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
