/* harness.c: see harness.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h> /* cmocka.h needs setjmp.h, stdarg.h and stddef.h first */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "harness.h"
#include "port.h"

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "harness: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* Ports below the ephemeral range (common/port.h): a till's connect attempts to a daemon still
 * starting cannot take one of its ports first. */
static int free_port(void)
{
    int port = lt_free_port();
    if (port < 0)
        die("cannot find a free loopback port below the ephemeral range");
    return port;
}

int64_t h_now(void)
{
    return (int64_t)time(NULL);
}

#define WRAPPER_ARGS_MAX 32

/* LOYALTYD_WRAPPER (e.g. "valgrind --error-exitcode=9 --leak-check=full"): words put before
 * the daemon's command line, split at spaces (no quoting). Unset or empty: the daemon alone. */
static const char *wrapper(void)
{
    const char *w = getenv("LOYALTYD_WRAPPER");
    return w != NULL && w[0] != '\0' ? w : NULL;
}

/* In the child: runs the daemon, under the wrapper if one is set. Does not return. */
static void exec_daemon(const char *bin, const char *config)
{
    const char *w = wrapper();
    if (w == NULL) {
        execl(bin, bin, "--config", config, (char *)NULL);
        _exit(127);
    }
    static char words[1024];
    char *argv[WRAPPER_ARGS_MAX + 4];
    size_t n = 0;
    snprintf(words, sizeof words, "%s", w);
    for (char *save = NULL, *t = strtok_r(words, " \t", &save); t != NULL && n < WRAPPER_ARGS_MAX;
         t = strtok_r(NULL, " \t", &save))
        argv[n++] = t;
    argv[n++] = (char *)bin;
    argv[n++] = "--config";
    argv[n++] = (char *)config;
    argv[n] = NULL;
    execvp(argv[0], argv);
    _exit(127);
}

static void spawn(lt_daemon *d)
{
    const char *bin = getenv("LOYALTYD");
    if (bin == NULL)
        die("LOYALTYD is not set");
    char log[320];
    snprintf(log, sizeof log, "%s/daemon.log", d->dir);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        exec_daemon(bin, d->config);
    }
    d->pid = pid;
    /* wait until it answers a status query (a wrapper such as valgrind starts it slowly) */
    int tries = wrapper() != NULL ? 1200 : 200;
    for (int i = 0; i < tries; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            d->pid = 0;
            char cmd[400];
            snprintf(cmd, sizeof cmd, "cat %s >&2", log);
            if (system(cmd) != 0)
                fprintf(stderr, "(no log)\n");
            die("loyaltyd exited during start-up");
        }
        Loyalty__Query q = LOYALTY__QUERY__INIT;
        q.q_case = LOYALTY__QUERY__Q_STATUS;
        q.status = 1;
        Loyalty__QueryReply *r = h_query(d, &q, 100);
        if (r != NULL) {
            loyalty__query_reply__free_unpacked(r, NULL);
            return;
        }
    }
    die("loyaltyd did not answer within %d s", tries / 10);
}

static char g_curve_server[41], g_curve_pub[41], g_curve_sec[41];

void h_set_curve(const char *server_public, const char *client_public, const char *client_secret)
{
    g_curve_server[0] = g_curve_pub[0] = g_curve_sec[0] = '\0';
    if (server_public == NULL)
        return;
    memcpy(g_curve_server, server_public, 41);
    memcpy(g_curve_pub, client_public, 41);
    memcpy(g_curve_sec, client_secret, 41);
}

void h_curve_client(void *sock)
{
    if (g_curve_server[0] == '\0')
        return;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, g_curve_server, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, g_curve_pub, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, g_curve_sec, 40);
}

static void connect_till(lt_daemon *d)
{
    if (d->dealer != NULL)
        zmq_close(d->dealer);
    d->dealer = zmq_socket(d->zctx, ZMQ_DEALER);
    h_curve_client(d->dealer);
    int linger = 0;
    zmq_setsockopt(d->dealer, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(d->dealer, d->ingest) != 0)
        die("connect %s: %s", d->ingest, zmq_strerror(zmq_errno()));
}

/* h_start with the data directory given (NULL: DIR/data). */
static void start_in(lt_daemon *d, const char *data_dir, const char *extra_yaml)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "/tmp/lt-e2e-XXXXXX");
    if (mkdtemp(d->dir) == NULL)
        die("mkdtemp: %s", strerror(errno));
    snprintf(d->config, sizeof d->config, "%s/loyaltyd.yaml", d->dir);
    if (data_dir != NULL) {
        if (strlen(data_dir) >= sizeof d->data)
            die("data directory path too long: %s", data_dir);
        snprintf(d->data, sizeof d->data, "%s", data_dir);
    } else {
        snprintf(d->data, sizeof d->data, "%s/data", d->dir);
    }
    snprintf(d->ingest, sizeof d->ingest, "tcp://127.0.0.1:%d", free_port());
    snprintf(d->publish, sizeof d->publish, "tcp://127.0.0.1:%d", free_port());
    snprintf(d->query, sizeof d->query, "tcp://127.0.0.1:%d", free_port());
    snprintf(d->metrics, sizeof d->metrics, "127.0.0.1:%d", free_port());
    FILE *f = fopen(d->config, "w");
    if (f == NULL)
        die("cannot write %s", d->config);
    fprintf(f,
            "data_dir: %s\ningest_endpoint: %s\npublish_endpoint: %s\nquery_endpoint: %s\n"
            "metrics_listen: %s\ncheckpoint_interval_ms: 500\n%s%s",
            d->data, d->ingest, d->publish, d->query, d->metrics,
            /* valgrind cannot map the default 64 GiB; a test's own value comes later and wins */
            wrapper() != NULL ? "map_size_mb: 2048\n" : "", extra_yaml != NULL ? extra_yaml : "");
    fclose(f);
    d->zctx = zmq_ctx_new();
    d->next_batch_id = 1;
    spawn(d);
    connect_till(d);
}

void h_start(lt_daemon *d, const char *extra_yaml)
{
    start_in(d, NULL, extra_yaml);
}

void h_start_data(lt_daemon *d, const char *data_dir, const char *extra_yaml)
{
    start_in(d, data_dir, extra_yaml);
}

void h_restart(lt_daemon *d)
{
    spawn(d);
    connect_till(d);
}

int h_stop(lt_daemon *d, int sig)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    int status = 0;
    for (int i = 0; i < 3000; i++) {
        pid_t r = waitpid(d->pid, &status, WNOHANG);
        if (r == d->pid)
            break;
        if (i == 2999) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &status, 0);
        }
        usleep(10000);
    }
    d->pid = 0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

void h_cleanup(lt_daemon *d)
{
    if (d->pid > 0) {
        int rc = h_stop(d, SIGTERM);
        /* under a wrapper (valgrind) a clean stop is how its findings reach the test */
        if (wrapper() != NULL && rc != 0) {
            char cmd[400];
            snprintf(cmd, sizeof cmd, "tail -n 60 %s/daemon.log >&2", d->dir);
            if (system(cmd) != 0)
                fprintf(stderr, "(no log)\n");
            die("loyaltyd under LOYALTYD_WRAPPER exited with status %d (log kept in %s)", rc,
                d->dir);
        }
    }
    if (d->dealer != NULL)
        zmq_close(d->dealer);
    /* no zmq_ctx_term(): a test that failed an assertion may have left a socket open, and
     * terminating would then block for ever; the process ends soon anyway */
    d->dealer = d->zctx = NULL;
    if (getenv("LT_KEEP") == NULL) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", d->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "harness: could not remove %s\n", d->dir);
    }
}

/* Receives one frame into a malloc'd buffer with a timeout. Returns its length or -1. */
static int recv_timeout(void *sock, uint8_t **out, int timeout_ms)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return -1;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, 0) < 0) {
        zmq_msg_close(&m);
        return -1;
    }
    size_t n = zmq_msg_size(&m);
    *out = malloc(n ? n : 1);
    memcpy(*out, zmq_msg_data(&m), n);
    zmq_msg_close(&m);
    return (int)n;
}

Loyalty__AckBatch *h_send_raw(lt_daemon *d, const void *bytes, size_t len, int timeout_ms)
{
    if (zmq_send(d->dealer, bytes, len, 0) < 0)
        return NULL;
    uint8_t *buf;
    int n = recv_timeout(d->dealer, &buf, timeout_ms);
    if (n < 0)
        return NULL;
    Loyalty__AckBatch *r = loyalty__ack_batch__unpack(NULL, (size_t)n, buf);
    free(buf);
    return r;
}

Loyalty__AckBatch *h_send(lt_daemon *d, Loyalty__EventBatch *b, int timeout_ms)
{
    b->has_batch_id = 1;
    b->batch_id = d->next_batch_id++;
    size_t n = loyalty__event_batch__get_packed_size(b);
    uint8_t *buf = malloc(n ? n : 1);
    loyalty__event_batch__pack(b, buf);
    Loyalty__AckBatch *r = h_send_raw(d, buf, n, timeout_ms);
    free(buf);
    if (r != NULL && (!r->has_batch_id || r->batch_id != b->batch_id))
        die("reply for batch %llu carries batch id %llu", (unsigned long long)b->batch_id,
            (unsigned long long)r->batch_id);
    return r;
}

Loyalty__QueryReply *h_query(lt_daemon *d, Loyalty__Query *q, int timeout_ms)
{
    void *s = zmq_socket(d->zctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    h_curve_client(s);
    zmq_connect(s, d->query);
    size_t n = loyalty__query__get_packed_size(q);
    uint8_t qb[1024];
    loyalty__query__pack(q, qb);
    Loyalty__QueryReply *r = NULL;
    if (zmq_send(s, qb, n, 0) >= 0) {
        uint8_t *buf;
        int m = recv_timeout(s, &buf, timeout_ms);
        if (m >= 0) {
            r = loyalty__query_reply__unpack(NULL, (size_t)m, buf);
            free(buf);
        }
    }
    zmq_close(s);
    return r;
}

Loyalty__QueryReply *h_member(lt_daemon *d, const char *member_id)
{
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_MEMBER_ID;
    q.member_id = (char *)member_id;
    return h_query(d, &q, 5000);
}

int h_ctl(lt_daemon *d, const char *args, char *out, size_t out_len)
{
    const char *bin = getenv("LOYALTYCTL");
    if (bin == NULL)
        die("LOYALTYCTL is not set");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s --endpoint %s --pub %s --query %s --data %s %s", bin, d->ingest,
             d->publish, d->query, d->data, args);
    return h_run(cmd, out, out_len);
}

int h_log_count(lt_daemon *d, const char *what)
{
    regex_t re;
    if (regcomp(&re, what, REG_NOSUB) != 0)
        die("h_log_count: bad pattern %s", what);
    char path[300];
    snprintf(path, sizeof path, "%s/daemon.log", d->dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (f != NULL && getline(&line, &cap, f) >= 0)
        n += regexec(&re, line, 0, NULL, 0) == 0;
    free(line);
    if (f != NULL)
        fclose(f);
    regfree(&re);
    return n;
}

int h_run(const char *cmd, char *out, size_t out_len)
{
    char full[4096];
    if ((size_t)snprintf(full, sizeof full, "%s 2>&1", cmd) >= sizeof full)
        die("command too long: %s", cmd);
    FILE *p = popen(full, "r");
    if (p == NULL)
        die("popen: %s", strerror(errno));
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = '\0';
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0)
        ; /* drain the rest so the child does not die of SIGPIPE */
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int h_daemon_once(const char *yaml, int timeout_s, char *out, size_t out_len)
{
    const char *bin = getenv("LOYALTYD");
    if (bin == NULL)
        die("LOYALTYD is not set");
    char cfg[] = "/tmp/lt-once-XXXXXX";
    int fd = mkstemp(cfg);
    if (fd < 0)
        die("mkstemp: %s", strerror(errno));
    size_t n = strlen(yaml);
    if (write(fd, yaml, n) != (ssize_t)n)
        die("cannot write %s: %s", cfg, strerror(errno));
    close(fd);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout %d %s --config %s", timeout_s, bin, cfg);
    int rc = h_run(cmd, out, out_len);
    unlink(cfg);
    return rc;
}

/* ---- event building: everything goes on one list freed by h_free_events() */

typedef struct alloc_node {
    struct alloc_node *next;
    max_align_t data[];
} alloc_node;
static alloc_node *g_allocs;

static void *h_alloc(size_t n)
{
    alloc_node *a = calloc(1, sizeof *a + n);
    if (a == NULL)
        die("out of memory");
    a->next = g_allocs;
    g_allocs = a;
    return a->data;
}

static char *h_strdup(const char *s)
{
    if (s == NULL)
        return NULL;
    char *p = h_alloc(strlen(s) + 1);
    strcpy(p, s);
    return p;
}

void h_free_events(void)
{
    while (g_allocs != NULL) {
        alloc_node *n = g_allocs->next;
        free(g_allocs);
        g_allocs = n;
    }
}

Loyalty__Event *h_event(uint64_t node, uint64_t eid, const char *member, int64_t at)
{
    Loyalty__Event *e = h_alloc(sizeof *e);
    loyalty__event__init(e);
    Loyalty__EventId *id = h_alloc(sizeof *id);
    loyalty__event_id__init(id);
    id->has_node_id = id->has_event_id = 1;
    id->node_id = node;
    id->event_id = eid;
    e->id = id;
    e->member_id = h_strdup(member);
    e->store_id = h_strdup("S1");
    e->has_occurred_at = 1;
    e->occurred_at = at;
    e->has_utc_offset_min = 1;
    e->utc_offset_min = 480;
    return e;
}

Loyalty__Event *h_enrol(uint64_t node, uint64_t eid, const char *member, const char *card,
                        const char *referrer, int64_t at)
{
    Loyalty__Event *e = h_event(node, eid, member, at);
    Loyalty__Enrol *en = h_alloc(sizeof *en);
    loyalty__enrol__init(en);
    en->card = card ? h_strdup(card) : NULL;
    en->referrer = referrer ? h_strdup(referrer) : NULL;
    e->body_case = LOYALTY__EVENT__BODY_ENROL;
    e->enrol = en;
    return e;
}

Loyalty__Event *h_card_link(uint64_t node, uint64_t eid, const char *member, const char *card,
                            const char *replaces, int64_t at)
{
    Loyalty__Event *e = h_event(node, eid, member, at);
    Loyalty__CardLink *l = h_alloc(sizeof *l);
    loyalty__card_link__init(l);
    l->card = h_strdup(card);
    l->replaces_card = replaces ? h_strdup(replaces) : NULL;
    e->body_case = LOYALTY__EVENT__BODY_CARD_LINK;
    e->card_link = l;
    return e;
}

Loyalty__Event *h_sale(uint64_t node, uint64_t eid, const char *member, int64_t at,
                       int64_t redeem_points)
{
    Loyalty__Event *e = h_event(node, eid, member, at);
    Loyalty__Sale *s = h_alloc(sizeof *s);
    loyalty__sale__init(s);
    s->lines = h_alloc(sizeof(Loyalty__SaleLine *) * 256);
    if (redeem_points > 0) {
        s->has_redeem_points = 1;
        s->redeem_points = redeem_points;
    }
    e->body_case = LOYALTY__EVENT__BODY_SALE;
    e->sale = s;
    return e;
}

void h_line(Loyalty__Event *e, const char *sku, const char *category, int64_t qty,
            int64_t unit_list, int64_t unit_paid, uint32_t flags)
{
    Loyalty__SaleLine *l = h_alloc(sizeof *l);
    loyalty__sale_line__init(l);
    l->sku = h_strdup(sku);
    l->category = h_strdup(category);
    l->has_quantity = l->has_unit_list_fen = l->has_unit_paid_fen = 1;
    l->quantity = qty;
    l->unit_list_fen = unit_list;
    l->unit_paid_fen = unit_paid;
    if (flags) {
        l->has_flags = 1;
        l->flags = flags;
    }
    if (e->sale->n_lines >= 256)
        die("too many lines for the harness");
    e->sale->lines[e->sale->n_lines++] = l;
}

Loyalty__EventBatch *h_batch(size_t n, Loyalty__Event **events)
{
    Loyalty__EventBatch *b = h_alloc(sizeof *b);
    loyalty__event_batch__init(b);
    b->events = h_alloc(sizeof(Loyalty__Event *) * (n ? n : 1));
    memcpy(b->events, events, sizeof(Loyalty__Event *) * n);
    b->n_events = n;
    return b;
}

double h_metric(const char *body, const char *name)
{
    char pat[256];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(body, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

int h_http_get(lt_daemon *d, const char *path, char *out, size_t out_len)
{
    int port = atoi(strchr(d->metrics, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    static char buf[1 << 20];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    buf[len] = '\0';
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *body = strstr(buf, "\r\n\r\n");
    snprintf(out, out_len, "%s", body != NULL ? body + 4 : "");
    return status;
}

int64_t h_balance(lt_daemon *d, const char *member_id)
{
    Loyalty__QueryReply *q = h_member(d, member_id);
    if (q == NULL || !q->ok || q->member == NULL)
        die("member %s: no answer or unknown", member_id);
    int64_t b = q->member->balance;
    loyalty__query_reply__free_unpacked(q, NULL);
    return b;
}

void h_verify(lt_daemon *d, const char *when)
{
    char out[8192];
    int rc = h_ctl(d, "verify", out, sizeof out);
    if (rc != 0)
        fail_msg("verify %s failed (%d): %s", when, rc, out);
}
