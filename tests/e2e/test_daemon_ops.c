/* test_daemon_ops.c: the daemon as operators see it: Prometheus metrics, rules reload on
 * SIGHUP (a bad file is refused and the old rules stay, R31), systemd notifications. */
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static lt_daemon g_d;

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    unsetenv("NOTIFY_SOCKET");
    return 0;
}

/* A sale at the test's start time: a resend must be the same event to be a DUPLICATE (R29),
 * and with the clock read per sale, a second that ended between a sale and its resend made it
 * a CONFLICT (a flaky test_metrics_scrape in CI). */
static Loyalty__AckBatch *sale(uint64_t eid, const char *member, int64_t qty)
{
    static int64_t t0;
    if (t0 == 0)
        t0 = h_now();
    Loyalty__Event *e = h_sale(1, eid, member, t0, 0);
    h_line(e, "A", "groceries", qty, 10000, 10000, 0);
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    return r;
}

static void test_metrics_scrape(void **state)
{
    (void)state;
    h_start(&g_d, NULL);
    static char body[1 << 20];
    for (uint64_t i = 1; i <= 5; i++)
        loyalty__ack_batch__free_unpacked(sale(i, "m1", 1), NULL);
    loyalty__ack_batch__free_unpacked(sale(3, "m1", 1), NULL); /* duplicate */
    loyalty__ack_batch__free_unpacked(sale(9, "m1", 0), NULL); /* INVALID_QUANTITY */
    assert_int_equal(h_http_get(&g_d, "/metrics", body, sizeof body), 200);
    assert_true(h_metric(body, "loyaltyd_events_total{type=\"sale\",outcome=\"accepted\"}") == 5);
    assert_true(h_metric(body, "loyaltyd_events_total{type=\"sale\",outcome=\"duplicate\"}") == 1);
    assert_true(h_metric(body, "loyaltyd_events_total{type=\"sale\",outcome=\"rejected\"}") == 1);
    assert_true(h_metric(body, "loyaltyd_rejects_total{reason=\"INVALID_QUANTITY\"}") == 1);
    assert_true(h_metric(body, "loyaltyd_messages_total") == 7);
    assert_true(h_metric(body, "loyaltyd_ledger_last_seq") == 5);
    assert_true(h_metric(body, "loyaltyd_ledger_entries") == 5);
    assert_true(h_metric(body, "loyaltyd_members") == 1);
    assert_true(h_metric(body, "loyaltyd_commits_total") >= 1);
    assert_true(h_metric(body, "loyaltyd_commit_entries_count") >= 1);
    assert_true(h_metric(body, "loyaltyd_ack_seconds_count") == 7);
    assert_true(h_metric(body, "loyaltyd_lmdb_used_bytes") > 0);
    assert_non_null(strstr(body, "loyaltyd_build_info{version=\"" LT_VERSION
                                 "\",rules_version=\"seed-2026.1\"} 1"));
    assert_int_equal(h_http_get(&g_d, "/nope", body, sizeof body), 404);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_R31_sighup_reloads_rules_and_refuses_bad_file(void **state)
{
    (void)state;
    char rules_path[400], cfg[512];
    char dir[] = "/tmp/lt-rules-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(rules_path, sizeof rules_path, "%s/rules.yaml", dir);
    write_file(rules_path, "version: v1\n");
    snprintf(cfg, sizeof cfg, "rules_file: %s\n", rules_path);
    h_start(&g_d, cfg);

    Loyalty__AckBatch *r = sale(1, "r", 1);
    assert_int_equal(r->acks[0]->points_earned, 100); /* defaults: 1 point per yuan */
    loyalty__ack_batch__free_unpacked(r, NULL);

    /* a good new file: 1 point per 50 yuan for every category */
    write_file(rules_path, "version: v2\nearn_classes:\n  - name: default\n    unit_fen: 5000\n");
    kill(g_d.pid, SIGHUP);
    static char body[1 << 20];
    for (int i = 0; i < 100; i++) {
        h_http_get(&g_d, "/metrics", body, sizeof body);
        if (h_metric(body, "loyaltyd_rules_reloads_total") == 1)
            break;
        usleep(20000);
    }
    assert_true(h_metric(body, "loyaltyd_rules_reloads_total") == 1);
    r = sale(2, "r", 1);
    assert_int_equal(r->acks[0]->points_earned, 2);
    loyalty__ack_batch__free_unpacked(r, NULL);

    /* a broken file is refused: v2 stays in force */
    write_file(rules_path, "version: v3\nearn_mode: banana\n");
    kill(g_d.pid, SIGHUP);
    for (int i = 0; i < 100; i++) {
        h_http_get(&g_d, "/metrics", body, sizeof body);
        if (h_metric(body, "loyaltyd_rules_reload_failures_total") == 1)
            break;
        usleep(20000);
    }
    assert_true(h_metric(body, "loyaltyd_rules_reload_failures_total") == 1);
    assert_non_null(strstr(body, "rules_version=\"v2\""));
    r = sale(3, "r", 1);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    assert_int_equal(r->acks[0]->points_earned, 2);
    loyalty__ack_batch__free_unpacked(r, NULL);

    /* each entry records the rules version it was rated with (R31) */
    char out[16384];
    assert_int_equal(h_ctl(&g_d, "ledger dump", out, sizeof out), 0);
    const char *v1 = strstr(out, "\"rules_version\":\"v1\"");
    const char *v2 = strstr(out, "\"rules_version\":\"v2\"");
    assert_non_null(v1);
    assert_non_null(v2);
    assert_true(v1 < v2);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_sd_notify_ready_and_stopping(void **state)
{
    (void)state;
    char path[] = "/tmp/lt-notify-XXXXXX";
    assert_non_null(mkdtemp(path));
    char sock_path[64];
    snprintf(sock_path, sizeof sock_path, "%s/notify", path);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1); /* 64 < sizeof sun_path */
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    setenv("NOTIFY_SOCKET", sock_path, 1);
    h_start(&g_d, NULL);
    char msg[256];
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(fd, msg, sizeof msg - 1, 0);
    assert_true(n > 0);
    msg[n] = '\0';
    assert_string_equal(msg, "READY=1");
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    n = recv(fd, msg, sizeof msg - 1, 0);
    assert_true(n > 0);
    msg[n] = '\0';
    assert_string_equal(msg, "STOPPING=1");
    close(fd);
    unlink(sock_path);
    rmdir(path);
}

/* The scheduling policy (sched(7) number, field 41 of /proc/PID/task/TID/stat) of the daemon's
 * thread named `comm`, or -1 when it has none. */
static int thread_policy(pid_t pid, const char *comm)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    int policy = -1;
    struct dirent *de;
    while (policy < 0 && (de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[400], name[64] = "", stat[1024] = "";
        snprintf(path, sizeof path, "%s/%s/comm", dir, de->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(name, sizeof name, f) == NULL)
            name[0] = '\0';
        fclose(f);
        name[strcspn(name, "\n")] = '\0';
        if (strcmp(name, comm) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s/stat", dir, de->d_name);
        f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(stat, sizeof stat, f));
        fclose(f);
        const char *p = strrchr(stat, ')'); /* fields from 3 on follow the name */
        assert_non_null(p);
        p += 3; /* ") S " */
        for (int field = 4; field <= 41; field++) {
            char *end;
            long v = strtol(p, &end, 10);
            assert_true(end != p);
            p = end;
            if (field == 41)
                policy = (int)v;
        }
    }
    closedir(dp);
    return policy;
}

/* Waking ZeroMQ's I/O thread to send made it preempt the loop thread (docs/performance.md): it
 * runs under SCHED_BATCH unless io_thread_batch is 0; the loop thread keeps the policy it was
 * started with (this test's own, inherited), and so does the I/O thread when that policy is not
 * one that may move to SCHED_BATCH (real-time, SCHED_IDLE: libzmq would abort). */
static void test_io_thread_runs_batch_scheduled(void **state)
{
    (void)state;
    int own = sched_getscheduler(0);
    assert_true(own >= 0);
    bool movable = own == SCHED_OTHER || own == SCHED_BATCH;
    h_start(&g_d, NULL);
    loyalty__ack_batch__free_unpacked(sale(1, "m1", 1), NULL);
    assert_int_equal(thread_policy(g_d.pid, "ZMQbg/IO/0"), movable ? SCHED_BATCH : own);
    assert_int_equal(thread_policy(g_d.pid, "loyaltyd"), own);
    h_cleanup(&g_d);
    h_start(&g_d, "io_thread_batch: 0\n");
    loyalty__ack_batch__free_unpacked(sale(2, "m1", 1), NULL);
    assert_int_equal(thread_policy(g_d.pid, "ZMQbg/IO/0"), own);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_metrics_scrape, teardown),
        cmocka_unit_test_teardown(test_R31_sighup_reloads_rules_and_refuses_bad_file, teardown),
        cmocka_unit_test_teardown(test_sd_notify_ready_and_stopping, teardown),
        cmocka_unit_test_teardown(test_io_thread_runs_batch_scheduled, teardown),
    };
    return cmocka_run_group_tests_name("e2e_daemon_ops", tests, NULL, NULL);
}
