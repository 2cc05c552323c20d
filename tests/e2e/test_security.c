/* test_security.c: only known tills and clients: CURVE with the ZAP allowlist, a till limited
 * to its own node ids, allowlist reload on SIGHUP, and no plain-text bind beyond loopback. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "harness.h"

typedef struct {
    char pub[41], sec[41];
} keypair;

static lt_daemon g_d;
static keypair g_server, g_till7, g_till9, g_client, g_stranger;
static char g_dir[64], g_allow[128];

static void keys(keypair *k)
{
    assert_int_equal(zmq_curve_keypair(k->pub, k->sec), 0);
}

static void write_allowlist(bool with_till9)
{
    FILE *f = fopen(g_allow, "w");
    assert_non_null(f);
    fprintf(f, "# tills and clients allowed to connect\ntill %s 7\nclient %s\n", g_till7.pub,
            g_client.pub);
    if (with_till9)
        fprintf(f, "till %s 9,10\n", g_till9.pub);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    keys(&g_server);
    keys(&g_till7);
    keys(&g_till9);
    do /* '#' is a Z85 character: the allowlist once took it for a comment */
        keys(&g_client);
    while (strchr(g_client.pub, '#') == NULL);
    keys(&g_stranger);
    snprintf(g_dir, sizeof g_dir, "/tmp/lt-sec-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    char secret_path[128], cfg[512];
    snprintf(secret_path, sizeof secret_path, "%s/server.key", g_dir);
    snprintf(g_allow, sizeof g_allow, "%s/allow.txt", g_dir);
    FILE *f = fopen(secret_path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", g_server.sec);
    fclose(f);
    write_allowlist(false);
    snprintf(cfg, sizeof cfg, "curve_secret_key_file: %s\ncurve_allowlist_file: %s\n", secret_path,
             g_allow);
    h_set_curve(g_server.pub, g_client.pub, g_client.sec); /* harness queries as a client */
    h_start(&g_d, cfg);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    h_set_curve(NULL, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* A DEALER with the given identity (NULL: no CURVE at all). */
static void *till(const keypair *k)
{
    void *s = zmq_socket(g_d.zctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (k != NULL) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, g_server.pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, k->pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, k->sec, 40);
    }
    assert_int_equal(zmq_connect(s, g_d.ingest), 0);
    return s;
}

/* Sends one sale for node from socket s; returns the reply or NULL after timeout_ms. */
static Loyalty__AckBatch *send_sale(void *s, uint64_t node, uint64_t eid, int timeout_ms)
{
    Loyalty__Event *e = h_sale(node, eid, "sec", h_now(), 0);
    h_line(e, "A", "groceries", 1, 10000, 10000, 0);
    Loyalty__EventBatch *b = h_batch(1, &e);
    uint8_t buf[1024];
    size_t n = loyalty__event_batch__pack(b, buf);
    zmq_send(s, buf, n, ZMQ_DONTWAIT);
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    int m = zmq_recv(s, buf, sizeof buf, 0);
    assert_true(m > 0);
    return loyalty__ack_batch__unpack(NULL, (size_t)m, buf);
}

static void test_known_till_for_its_own_node_is_accepted(void **state)
{
    (void)state;
    void *s = till(&g_till7);
    Loyalty__AckBatch *r = send_sale(s, 7, 1, 5000);
    assert_non_null(r);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    zmq_close(s);
}

static void test_known_till_for_another_node_is_rejected(void **state)
{
    (void)state;
    void *s = till(&g_till7);
    Loyalty__AckBatch *r = send_sale(s, 8, 1, 5000);
    assert_non_null(r);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__REJECTED);
    assert_int_equal(r->acks[0]->reason, LOYALTY__REASON__NODE_NOT_ALLOWED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    zmq_close(s);
}

static void test_unknown_key_and_plain_text_are_refused(void **state)
{
    (void)state;
    void *s = till(&g_stranger);
    assert_null(send_sale(s, 7, 2, 1500)); /* the handshake fails: nothing gets through */
    zmq_close(s);
    s = till(NULL);
    assert_null(send_sale(s, 7, 3, 1500));
    zmq_close(s);
    /* a client key may query but not submit events */
    s = till(&g_client);
    assert_null(send_sale(s, 7, 4, 1500));
    zmq_close(s);
    Loyalty__QueryReply *q = h_member(&g_d, "nobody"); /* harness queries as the client */
    assert_non_null(q);
    loyalty__query_reply__free_unpacked(q, NULL);
}

static void test_allowlist_reloads_on_sighup(void **state)
{
    (void)state;
    void *s = till(&g_till9);
    assert_null(send_sale(s, 9, 1, 1500));
    zmq_close(s);
    write_allowlist(true);
    kill(g_d.pid, SIGHUP);
    usleep(300 * 1000);
    s = till(&g_till9);
    Loyalty__AckBatch *r = send_sale(s, 10, 1, 5000);
    assert_non_null(r);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    zmq_close(s);
}

static void test_subscriber_needs_a_known_key(void **state)
{
    (void)state;
    const keypair *who[2] = {&g_stranger, &g_client};
    for (int i = 0; i < 2; i++) {
        void *sub = zmq_socket(g_d.zctx, ZMQ_SUB);
        int linger = 0;
        zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(sub, ZMQ_CURVE_SERVERKEY, g_server.pub, 40);
        zmq_setsockopt(sub, ZMQ_CURVE_PUBLICKEY, who[i]->pub, 40);
        zmq_setsockopt(sub, ZMQ_CURVE_SECRETKEY, who[i]->sec, 40);
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "heartbeat", 9);
        assert_int_equal(zmq_connect(sub, g_d.publish), 0);
        zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
        int got = zmq_poll(&it, 1, 2500); /* heartbeats come every second */
        if (i == 0)
            assert_int_equal(got, 0);
        else
            assert_true(got > 0);
        zmq_close(sub);
    }
}

static void test_plain_bind_beyond_loopback_is_refused(void **state)
{
    (void)state;
    /* a second daemon, no CURVE, ingest on every interface */
    char dir[] = "/tmp/lt-bind-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char yaml[256], cmd[1024], out[4096];
    snprintf(yaml, sizeof yaml,
             "data_dir: %s/data\ningest_endpoint: tcp://0.0.0.0:0\nmetrics_listen: \"\"\n", dir);
    assert_int_equal(h_daemon_once(yaml, 10, out, sizeof out), 1);
    assert_non_null(strstr(out, "refusing a non-loopback endpoint without CURVE"));
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_known_till_for_its_own_node_is_accepted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_known_till_for_another_node_is_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_and_plain_text_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_allowlist_reloads_on_sighup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscriber_needs_a_known_key, setup, teardown),
        cmocka_unit_test(test_plain_bind_beyond_loopback_is_refused),
    };
    return cmocka_run_group_tests_name("e2e_security", tests, NULL, NULL);
}
