/* daemon.c: lt-bench's daemon under test: a temp dir, a config on free loopback ports, the
 * loyaltyd process, its readiness (a status query) and its shutdown (SIGTERM). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "bench.h"
#include "loyalty.pb-c.h"
#include "port.h"

#define STATUS_POLL_MS 100
#define LOG_TAIL_BYTES 2048

int bench_status(const char *query_endpoint, int timeout_ms, uint64_t *seq, uint64_t *members)
{
    void *zctx = zmq_ctx_new();
    void *s = zctx ? zmq_socket(zctx, ZMQ_DEALER) : NULL;
    int rc = -1, zero = 0;
    if (s == NULL)
        goto done;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_STATUS;
    q.status = 1;
    uint8_t buf[16];
    size_t len = loyalty__query__pack(&q, buf);
    if (zmq_connect(s, query_endpoint) != 0 || zmq_send(s, buf, len, 0) < 0)
        goto done;
    zmq_pollitem_t pi = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&pi, 1, timeout_ms) != 1)
        goto done;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, 0) >= 0) {
        Loyalty__QueryReply *r =
            loyalty__query_reply__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        if (r && r->ok) {
            *seq = r->seq;
            *members = r->members;
            rc = 0;
        }
        if (r)
            loyalty__query_reply__free_unpacked(r, NULL);
    }
    zmq_msg_close(&m);
done:
    if (s)
        zmq_close(s);
    if (zctx)
        zmq_ctx_term(zctx);
    return rc;
}

static void print_log_tail(const bench_daemon *d)
{
    char buf[LOG_TAIL_BYTES + 1];
    int fd = open(d->log, O_RDONLY);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    lseek(fd, end > LOG_TAIL_BYTES ? end - LOG_TAIL_BYTES : 0, SEEK_SET);
    ssize_t n = read(fd, buf, LOG_TAIL_BYTES);
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        fprintf(stderr, "lt-bench: --- tail of %s ---\n%s", d->log, buf);
        if (buf[n - 1] != '\n')
            fputc('\n', stderr);
    }
}

static int write_config(bench_daemon *d, char *path, size_t cap)
{
    int p1 = lt_free_port(), p2 = lt_free_port(), p3 = lt_free_port();
    if (p1 < 0 || p2 < 0 || p3 < 0) { /* never the same twice (common/port.h) */
        fprintf(stderr, "lt-bench: cannot find free loopback ports below the ephemeral range\n");
        return -1;
    }
    snprintf(d->ingest, sizeof d->ingest, "tcp://127.0.0.1:%d", p1);
    snprintf(d->pub, sizeof d->pub, "tcp://127.0.0.1:%d", p2);
    snprintf(d->query, sizeof d->query, "tcp://127.0.0.1:%d", p3);
    snprintf(path, cap, "%s/loyaltyd.yaml", d->dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "lt-bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f,
            "# written by lt-bench\n"
            "data_dir: \"%s/data\"\n"
            "ingest_endpoint: \"%s\"\n"
            "publish_endpoint: \"%s\"\n"
            "query_endpoint: \"%s\"\n"
            "rules_file: \"\"\n"
            "metrics_listen: \"\"\n" /* no fixed port: a daemon beside it may hold 9464 */
            "log_level: \"%s\"\n%s\n",
            d->dir, d->ingest, d->pub, d->query,
            getenv("LT_BENCH_LOG_LEVEL") ? getenv("LT_BENCH_LOG_LEVEL") : "info",
            getenv("LT_BENCH_DAEMON_YAML") ? getenv("LT_BENCH_DAEMON_YAML") : "");
    return fclose(f) == 0 ? 0 : -1;
}

static pid_t spawn(const char *exe, const char *config, const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    execl(exe, "loyaltyd", "--config", config, (char *)NULL);
    fprintf(stderr, "lt-bench: cannot run %s: %s\n", exe, strerror(errno));
    _exit(127);
}

int bench_daemon_start(bench_daemon *d, const char *exe, int wait_ms)
{
    char config[BENCH_PATH_MAX + 32];
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s/lt-bench.XXXXXX", bench_tmp_dir());
    if (mkdtemp(d->dir) == NULL) {
        fprintf(stderr, "lt-bench: mkdtemp %s: %s\n", d->dir, strerror(errno));
        d->dir[0] = '\0';
        return -1;
    }
    snprintf(d->log, sizeof d->log, "%s/loyaltyd.log", d->dir);
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "lt-bench: %s: %s (build it, or pass --daemon PATH / LOYALTYD=PATH)\n", exe,
                strerror(errno));
        return -1;
    }
    if (write_config(d, config, sizeof config) < 0)
        return -1;
    d->pid = spawn(exe, config, d->log);
    if (d->pid < 0) {
        fprintf(stderr, "lt-bench: fork: %s\n", strerror(errno));
        return -1;
    }
    double deadline = bench_now_s() + wait_ms / 1000.0;
    while (bench_now_s() < deadline && !bench_stop) {
        uint64_t seq, members;
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            fprintf(stderr, "lt-bench: loyaltyd exited at start-up (status %d)\n",
                    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            d->pid = 0;
            print_log_tail(d);
            return -1;
        }
        if (bench_status(d->query, STATUS_POLL_MS * 2, &seq, &members) == 0)
            return 0;
        struct timespec ts = {0, STATUS_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "lt-bench: loyaltyd did not answer a status query on %s within %d ms\n",
            d->query, wait_ms);
    print_log_tail(d);
    bench_daemon_stop(d, 2000);
    return -1;
}

int bench_daemon_stop(bench_daemon *d, int wait_ms)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    double deadline = bench_now_s() + wait_ms / 1000.0;
    int status = 0;
    while (bench_now_s() < deadline) {
        pid_t r = waitpid(d->pid, &status, WNOHANG);
        if (r == d->pid) {
            d->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "lt-bench: loyaltyd did not stop within %d ms of SIGTERM; killing it\n",
            wait_ms);
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &status, 0);
    d->pid = 0;
    return -1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

const char *bench_tmp_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    return tmp && tmp[0] ? tmp : "/tmp";
}

int bench_rm_tree(const char *dir)
{
    return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void bench_daemon_cleanup(bench_daemon *d)
{
    if (d->dir[0])
        bench_rm_tree(d->dir);
    d->dir[0] = '\0';
}
