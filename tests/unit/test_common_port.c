/* test_common_port.c: lt_free_port() gives ports below the ephemeral range, never the same twice,
 * each free when given: an outgoing connection cannot take one before the daemon binds it (the
 * e2e flake "Address already in use" under valgrind). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "port.h"

static int ephemeral_low(void)
{
    int lo = 32768, hi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        assert_int_equal(fscanf(f, "%d %d", &lo, &hi), 2);
        fclose(f);
    }
    return lo;
}

static void test_free_ports_below_the_ephemeral_range_never_twice(void **st)
{
    (void)st;
    static unsigned char seen[65536];
    int low = ephemeral_low();
    for (int i = 0; i < 2000; i++) {
        int port = lt_free_port();
        assert_true(port >= 10000);
        assert_true(port < low);
        assert_int_equal(seen[port], 0);
        seen[port] = 1;
        /* free when given: this process can bind it */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        close(fd);
    }
}

/* A port somebody holds is skipped. */
static void test_free_port_skips_a_bound_one(void **st)
{
    (void)st;
    int first = lt_free_port();
    assert_true(first > 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)(first + 1)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int held = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    int second = lt_free_port();
    if (held)
        assert_int_not_equal(second, first + 1);
    assert_true(second > 0);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_ports_below_the_ephemeral_range_never_twice),
        cmocka_unit_test(test_free_port_skips_a_bound_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
