/*
 * test_common.c: user ids (lib/common.c).
 *
 * Ids are drawn from a per-process pool of random bytes; these tests check
 * that ids are well-formed and distinct, and that a forked process never
 * hands out the ids its parent would (the pool is refilled after a fork).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"

#define MANY 20000

static int cmp_uid(const void *a, const void *b)
{
    return memcmp(a, b, WR_UID_LEN);
}

static void test_uids_valid_and_distinct(void **state)
{
    (void)state;
    char(*ids)[WR_UID_LEN + 1] = calloc(MANY, sizeof(*ids));
    assert_non_null(ids);
    for (size_t i = 0; i < MANY; i++) {
        assert_int_equal(wr_new_uid(ids[i]), WR_OK);
        assert_int_equal(strlen(ids[i]), WR_UID_LEN);
        assert_true(wr_uid_valid(ids[i], WR_UID_LEN));
    }
    qsort(ids, MANY, sizeof(*ids), cmp_uid);
    for (size_t i = 1; i < MANY; i++)
        assert_int_not_equal(memcmp(ids[i - 1], ids[i], WR_UID_LEN), 0);
    free(ids);
}

/* Parent and child, right after a fork, each draw 300 ids: none in common. */
static void test_fork_never_repeats(void **state)
{
    (void)state;
    char parent[300][WR_UID_LEN + 1], child[300][WR_UID_LEN + 1];
    int fd[2];
    pid_t pid;
    int status;
    size_t got = 0;

    assert_int_equal(wr_new_uid(parent[0]), WR_OK); /* the pool is filled before the fork */
    assert_int_equal(pipe(fd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (size_t i = 0; i < 300; i++)
            if (wr_new_uid(child[i]) != WR_OK || write(fd[1], child[i], WR_UID_LEN + 1) != WR_UID_LEN + 1)
                _exit(1);
        _exit(0);
    }
    close(fd[1]);
    for (size_t i = 0; i < 300; i++)
        assert_int_equal(wr_new_uid(parent[i]), WR_OK);
    while (got < sizeof(child)) {
        ssize_t n = read(fd[0], (char *)child + got, sizeof(child) - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(fd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (size_t i = 0; i < 300; i++)
        for (size_t j = 0; j < 300; j++)
            assert_int_not_equal(memcmp(parent[i], child[j], WR_UID_LEN), 0);
}

static void test_fmt_i64(void **state)
{
    (void)state;
    static const int64_t v[] = {0, 1, -1, 9, 10, 99, 100, 1234567890, -1234567890, INT64_MAX, INT64_MIN};
    char got[32], want[32];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = wr_fmt_i64(got, v[i]);
        snprintf(want, sizeof(want), "%lld", (long long)v[i]);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_i64),
        cmocka_unit_test(test_uids_valid_and_distinct),
        cmocka_unit_test(test_fork_never_repeats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
