/* test_common_lt.c: the reason table (every code's name and message, agreement with
 * loyalty.Reason in the protocol) and the logfmt logger. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "loyalty.pb-c.h"
#include "lt.h"

static void test_reason_names_and_messages(void **state)
{
    (void)state;
    assert_int_equal(LT_R__COUNT, 30); /* 29 UNKNOWN_CATEGORY is the newest */
    assert_string_equal(lt_reason_name(LT_R_STORAGE_UNAVAILABLE), "STORAGE_UNAVAILABLE");
    for (int r = 0; r < LT_R__COUNT; r++) {
        const char *name = lt_reason_name(r), *msg = lt_reason_msg(r);
        assert_non_null(name);
        assert_non_null(msg);
        assert_string_not_equal(name, "UNKNOWN");
        assert_string_not_equal(msg, "unknown reason");
        assert_true(strlen(msg) > 1);
        for (int q = 0; q < r; q++) {
            assert_string_not_equal(lt_reason_name(q), name);
            assert_string_not_equal(lt_reason_msg(q), msg);
        }
    }
    assert_string_equal(lt_reason_name(LT_R_NONE), "NONE");
    assert_string_equal(lt_reason_msg(LT_R_NONE), "ok");
    assert_string_equal(lt_reason_name(LT_R_INSUFFICIENT_POINTS), "INSUFFICIENT_POINTS");
    assert_string_equal(lt_reason_msg(LT_R_INSUFFICIENT_POINTS), "not enough points");
    assert_string_equal(lt_reason_name(LT_R_NODE_NOT_ALLOWED), "NODE_NOT_ALLOWED");
    assert_string_equal(lt_reason_name(LT_R_DECODE_ERROR), "DECODE_ERROR");
    int outside[] = {-1, LT_R__COUNT, 255, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < LT_ARRAY_LEN(outside); i++) {
        assert_string_equal(lt_reason_name(outside[i]), "UNKNOWN");
        assert_string_equal(lt_reason_msg(outside[i]), "unknown reason");
    }
}

/* The numbers are protocol: every loyalty.Reason value has the same name here (REASON_NONE is
 * the proto's spelling of NONE), and there are no extra codes on either side. */
static void test_reasons_match_proto(void **state)
{
    (void)state;
    const ProtobufCEnumDescriptor *d = &loyalty__reason__descriptor;
    assert_int_equal(d->n_values, LT_R__COUNT);
    for (unsigned i = 0; i < d->n_values; i++) {
        int v = d->values[i].value;
        const char *want = v == 0 ? "NONE" : d->values[i].name;
        assert_true(v >= 0 && v < LT_R__COUNT);
        assert_string_equal(lt_reason_name(v), want);
    }
}

/* Runs lt_log with stderr redirected to a file and returns what it printed (static buffer). */
static const char *captured(void (*fn)(void))
{
    static char buf[8192];
    fflush(stderr);
    int saved = dup(2);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    dup2(fileno(tmp), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    return buf;
}

static void log_info_fields(void)
{
    lt_log(LT_INFO, "ledger opened", "dir=%s entries=%d", "var/data", 12);
}

static void log_debug(void)
{
    lt_log(LT_DEBUG, "hidden", NULL);
}

static void log_long_fields(void)
{
    static char big[5000];
    memset(big, 'x', sizeof big - 1);
    lt_log(LT_WARN, "long", "v=%s", big);
}

static void test_log(void **state)
{
    (void)state;
    lt_log_level l;
    assert_int_equal(lt_log_parse_level("debug", &l), 0);
    assert_int_equal(l, LT_DEBUG);
    assert_int_equal(lt_log_parse_level("error", &l), 0);
    assert_int_equal(l, LT_ERROR);
    assert_int_equal(lt_log_parse_level("verbose", &l), -1);
    assert_int_equal(lt_log_parse_level("INFO", &l), -1);

    lt_log_set_level(LT_INFO);
    assert_false(lt_log_enabled(LT_DEBUG));
    assert_true(lt_log_enabled(LT_INFO));
    assert_true(lt_log_enabled(LT_ERROR));

    const char *out = captured(log_info_fields);
    assert_non_null(strstr(out, "ts="));
    assert_non_null(strstr(out, " level=info msg=\"ledger opened\" dir=var/data entries=12\n"));
    assert_string_equal(captured(log_debug), "");

    out = captured(log_long_fields);
    size_t n = strlen(out);
    assert_true(n > 1000 && n < 2048); /* truncated to the line buffer */
    assert_int_equal(out[n - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + n - 1); /* one line */

    lt_log_set_level(LT_DEBUG);
    assert_non_null(strstr(captured(log_debug), "level=debug msg=\"hidden\"\n"));
    lt_log_set_level(LT_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason_names_and_messages),
        cmocka_unit_test(test_reasons_match_proto),
        cmocka_unit_test(test_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
