/* pg.c: lt-bench's PostgreSQL baseline (pg.h): a server from Debian's package started on a
 * private Unix socket in a temp dir, a straightforward schema, and the workload of workload.h.
 *
 * Schema: a ledger with the event's identity (node_id, event_id) as its primary key and a members
 * table with the balance, lifetime spend and sales count. One transaction per batch of `batch`
 * events (loyaltyd's events per message), sent as ONE statement in autocommit mode, so a batch
 * costs one round trip and one commit:
 *   - the events arrive as arrays (one per column) and are unnested;
 *   - INSERT INTO ledger ... ON CONFLICT (node_id, event_id) DO NOTHING RETURNING event_id: a
 *     re-sent event is stored once, like loyaltyd's idempotency;
 *   - the members of the rows actually inserted are upserted, grouped by member and in member_id
 *     order (so two clients lock the same hot Zipf members in the same order and do not
 *     deadlock); an enrolment inserts its member; a return debits the member;
 *   - the new balances come back and feed the next redemptions, as loyaltyd's acks do for a till.
 * Deadlocks and serialization failures are retried with the same event ids (ON CONFLICT makes
 * the retry safe) and counted.
 *
 * What PostgreSQL is spared, so the comparison favours it: points are computed client-side in
 * the simplest way (every line not excluded earns its paid fen / 100, big-ticket lines the same,
 * a redemption subtracts, a return debits one unit's paid fen / 100) instead of by the rules
 * engine; the sale's lines are not stored; a redemption or a return is not checked against the
 * balance or the sale it refers to. PostgreSQL is the storage baseline here, not a rating engine.
 *
 * Durability is as loyaltyd's (it acknowledges only after fdatasync): fsync, synchronous_commit
 * and full_page_writes stay on. The settings that are changed are in server_configure().
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bench.h"
#include "pg.h"
#include "workload.h"

#ifndef PG_BIN_GLOB /* a scratch build may point it elsewhere to try the skip */
#define PG_BIN_GLOB "/usr/lib/postgresql/*/bin/postgres"
#endif
#define PG_OS_USER "postgres"  /* the server's system user, created by Debian's package */
#define PG_ROLE "ltbench"      /* the superuser initdb creates, trust auth on the socket only */
#define PG_PORT "5432"         /* names the socket file; nothing listens on TCP */
#define PG_SOCKET_PATH_MAX 107 /* sun_path less its NUL */
#define PG_INITDB_TIMEOUT_S 120
#define PG_CTL_TIMEOUT_S 60 /* pg_ctl start/stop -t, and our own wait for pg_ctl */
#define PG_CONNECT_TIMEOUT_S "10"
#define PG_RETRIES_MAX 10 /* per transaction: sorted upserts should not deadlock at all */
#define PG_COPY_CHUNK_BYTES (256 * 1024)
#define PG_COPY_LINE_MAX 96
#define PG_COPY_RESULTS_MAX 4 /* a COPY ends with one result; more is a protocol surprise */
#define PG_LOG_TAIL_BYTES 2048
#define PG_CMD_ARGS_MAX 24
#define PG_PARAMS 12
#define PG_ELEM_CHARS_MAX (LT_ID_MAX + 4) /* an array element and its comma: ids, int64 (20) */

/* ------------------------------------------------------------------ the server */

typedef struct {
    char bin[BENCH_PATH_MAX]; /* .../bin of the newest installed version */
    char dir[BENCH_PATH_MAX]; /* temp dir: the socket, the logs, data/ */
    char data[BENCH_PATH_MAX + 16];
    char log[BENCH_PATH_MAX + 16];      /* the server's log (pg_ctl -l) */
    char tool_log[BENCH_PATH_MAX + 16]; /* the last initdb or pg_ctl run: its own output */
    bool as_user;                       /* euid 0: run the server's programs as PG_OS_USER */
    uid_t uid;
    gid_t gid;
    bool started;
} pg_server;

/* The newest /usr/lib/postgresql/N/bin holding initdb, pg_ctl and postgres. Returns 0, or 1 with
 * the reason in skipped. */
static int find_bin(pg_server *s, char *skipped, size_t skipped_len)
{
    glob_t g;
    memset(&g, 0, sizeof g);
    int best = -1;
    long best_version = -1;
    if (glob(PG_BIN_GLOB, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            /* .../N/bin/postgres: N is the major version */
            char dir[BENCH_PATH_MAX];
            snprintf(dir, sizeof dir, "%s", g.gl_pathv[i]);
            for (int up = 0; up < 2 && strrchr(dir, '/'); up++)
                *strrchr(dir, '/') = '\0';
            const char *v = strrchr(dir, '/');
            long version = v ? strtol(v + 1, NULL, 10) : 0;
            if (version > best_version) {
                best_version = version;
                best = (int)i;
            }
        }
    }
    if (best >= 0) {
        snprintf(s->bin, sizeof s->bin, "%s", g.gl_pathv[best]);
        *strrchr(s->bin, '/') = '\0';
    }
    globfree(&g);
    if (best < 0) {
        snprintf(skipped, skipped_len,
                 "no PostgreSQL server found (%s): install the Debian package postgresql "
                 "(ops/install-deps.sh)",
                 PG_BIN_GLOB);
        return 1;
    }
    const char *tools[] = {"initdb", "pg_ctl"};
    for (size_t i = 0; i < LT_ARRAY_LEN(tools); i++) {
        char path[BENCH_PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/%s", s->bin, tools[i]);
        if (access(path, X_OK) != 0) {
            snprintf(skipped, skipped_len, "%.180s: %.60s", path, strerror(errno));
            return 1;
        }
    }
    return 0;
}

/* Prints the last PG_LOG_TAIL_BYTES of a log to stderr. */
static void print_tail(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char buf[PG_LOG_TAIL_BYTES + 1];
    if (fseek(f, -PG_LOG_TAIL_BYTES, SEEK_END) != 0)
        rewind(f);
    size_t n = fread(buf, 1, PG_LOG_TAIL_BYTES, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "lt-bench: pg: --- %s (tail) ---\n%s%s", path, buf,
            n && buf[n - 1] != '\n' ? "\n" : "");
}

/* The child side of run_tool: becomes PG_OS_USER if needed, sends its output to the tool log
 * and runs argv. Never returns. */
static void tool_exec(const pg_server *s, char *const argv[])
{
    if (s->as_user && (setgroups(0, NULL) != 0 || setgid(s->gid) != 0 || setuid(s->uid) != 0)) {
        fprintf(stderr, "lt-bench: pg: cannot become user %s: %s\n", PG_OS_USER, strerror(errno));
        _exit(126);
    }
    /* the caller's directory may not be readable by PG_OS_USER, and initdb complains */
    int fd =
        chdir(s->dir) == 0 ? open(s->tool_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    if (fd < 0) {
        fprintf(stderr,
                "lt-bench: pg: cannot use %s as user %s: %s (set TMPDIR to a dir it "
                "can reach)\n",
                s->dir, s->as_user ? PG_OS_USER : "this", strerror(errno));
        _exit(126);
    }
    if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
        _exit(126);
    execv(argv[0], argv);
    fprintf(stderr, "lt-bench: pg: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Runs one of the server's programs, waiting at most timeout_s. Returns 0 if it exited with
 * status 0, else -1 (message and the tool log's tail printed). */
static int run_tool(const pg_server *s, const char *what, char *const argv[], int timeout_s)
{
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "lt-bench: pg: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0)
        tool_exec(s, argv);
    double deadline = bench_now_s() + timeout_s;
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && bench_now_s() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (w == 0) {
        fprintf(stderr, "lt-bench: pg: %s did not finish within %d s; killing it\n", what,
                timeout_s);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        print_tail(s->tool_log);
        return -1;
    }
    if (w < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "lt-bench: pg: %s failed (status %d)\n", what,
                w < 0               ? -1
                : WIFEXITED(status) ? WEXITSTATUS(status)
                                    : 128 + WTERMSIG(status));
        print_tail(s->tool_log);
        return -1;
    }
    return 0;
}

/* The temp dir, owned by PG_OS_USER when we are root. Returns 0, 1 (skipped: root and no such
 * user) or -1. */
static int server_dir(pg_server *s, char *skipped, size_t skipped_len)
{
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(PG_OS_USER);
        if (pw == NULL) {
            snprintf(skipped, skipped_len,
                     "running as root and there is no '%s' user to run the server as "
                     "(PostgreSQL refuses root)",
                     PG_OS_USER);
            return 1;
        }
        s->as_user = true;
        s->uid = pw->pw_uid;
        s->gid = pw->pw_gid;
    }
    snprintf(s->dir, sizeof s->dir, "%s/lt-bench-pg.XXXXXX", bench_tmp_dir());
    /* the socket path must fit sun_path, and the dir is quoted in postgresql.conf */
    if (strlen(s->dir) + strlen("/.s.PGSQL." PG_PORT) > PG_SOCKET_PATH_MAX ||
        strchr(s->dir, '\'') || strchr(s->dir, '\\')) {
        fprintf(stderr, "lt-bench: pg: temp dir %s is too long or has a quote: set TMPDIR\n",
                s->dir);
        s->dir[0] = '\0';
        return -1;
    }
    if (mkdtemp(s->dir) == NULL) {
        fprintf(stderr, "lt-bench: pg: mkdtemp %s: %s\n", s->dir, strerror(errno));
        s->dir[0] = '\0';
        return -1;
    }
    snprintf(s->data, sizeof s->data, "%s/data", s->dir);
    snprintf(s->log, sizeof s->log, "%s/postgres.log", s->dir);
    snprintf(s->tool_log, sizeof s->tool_log, "%s/tools.log", s->dir);
    if (s->as_user && chown(s->dir, s->uid, s->gid) != 0) {
        fprintf(stderr, "lt-bench: pg: chown %s to %s: %s\n", s->dir, PG_OS_USER, strerror(errno));
        return -1;
    }
    return 0;
}

/* Appends the benchmark's settings to data/postgresql.conf. Returns 0 or -1. */
static int server_configure(const pg_server *s, const pg_opts *o)
{
    char path[BENCH_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/postgresql.conf", s->data);
    FILE *f = fopen(path, "a"); /* initdb's file: its owner stays PG_OS_USER */
    if (f == NULL) {
        fprintf(stderr, "lt-bench: pg: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f,
            "\n# ---- lt-bench (bench/pg.c)\n"
            "# only the private socket in the temp dir: no TCP port to find or to clash\n"
            "listen_addresses = ''\n"
            "unix_socket_directories = '%s'\n"
            "port = " PG_PORT "\n"
            "max_connections = %d\n"
            "# durable like loyaltyd, which acknowledges only after fdatasync: the defaults,\n"
            "# stated so that nobody 'tunes' them away\n"
            "fsync = on\n"
            "synchronous_commit = on\n"
            "full_page_writes = on\n"
            "# the members table, its index and the run's ledger fit in memory, as loyaltyd's\n"
            "# state does in its RAM (default 128MB would measure evictions)\n"
            "shared_buffers = 512MB\n"
            "# no checkpoint inside the short measuring window: with the defaults (1GB,\n"
            "# 5 min) one starts mid-run or not depending on the rate, and the number with\n"
            "# it. This favours PostgreSQL a little: a long-lived server checkpoints every\n"
            "# few minutes and pays the full-page writes that follow each checkpoint\n"
            "max_wal_size = 8GB\n"
            "checkpoint_timeout = 30min\n"
            "# nothing replicates from this server: WAL only for crash recovery; it also\n"
            "# lets the population COPY skip the WAL (set-up only, not measured)\n"
            "wal_level = minimal\n"
            "max_wal_senders = 0\n"
            "# the statements are tiny: compiling them would only add latency\n"
            "jit = off\n",
            s->dir, o->clients + 5);
    if (fclose(f) != 0) {
        fprintf(stderr, "lt-bench: pg: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void tool_path(const pg_server *s, const char *tool, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", s->bin, tool);
}

/* initdb and pg_ctl start. Returns 0 or -1 (message printed). */
static int server_start(pg_server *s, const pg_opts *o)
{
    char initdb[BENCH_PATH_MAX + 16], pg_ctl[BENCH_PATH_MAX + 16];
    tool_path(s, "initdb", initdb, sizeof initdb);
    tool_path(s, "pg_ctl", pg_ctl, sizeof pg_ctl);
    /* C locale: byte order for the text keys, as LMDB's; --no-sync: a throw-away cluster's
     * files need not reach the disk before the server starts (set-up time only) */
    char *init_argv[PG_CMD_ARGS_MAX] = {initdb,  "-D", s->data, "-U",         PG_ROLE,     "-A",
                                        "trust", "-E", "UTF8",  "--locale=C", "--no-sync", NULL};
    if (o->verbose)
        fprintf(stderr, "lt-bench: pg: initdb %s (as %s)\n", s->data,
                s->as_user ? PG_OS_USER : "this user");
    if (run_tool(s, "initdb", init_argv, PG_INITDB_TIMEOUT_S) < 0 || server_configure(s, o) < 0)
        return -1;
    char t[16];
    snprintf(t, sizeof t, "%d", PG_CTL_TIMEOUT_S);
    char *start_argv[PG_CMD_ARGS_MAX] = {pg_ctl, "start", "-D", s->data, "-l",
                                         s->log, "-w",    "-t", t,       NULL};
    s->started = true; /* from here a failure still tries to stop it */
    if (run_tool(s, "pg_ctl start", start_argv, PG_CTL_TIMEOUT_S + 5) < 0) {
        print_tail(s->log);
        return -1;
    }
    if (o->verbose)
        fprintf(stderr, "lt-bench: pg: server %s started, socket and log in %s\n", s->bin, s->dir);
    return 0;
}

/* pg_ctl stop -m fast, then -m immediate if that failed. Returns 0 or -1. */
static int server_stop(pg_server *s)
{
    char pid_file[BENCH_PATH_MAX + 32];
    snprintf(pid_file, sizeof pid_file, "%s/postmaster.pid", s->data);
    if (s->started && access(pid_file, F_OK) != 0 && errno == ENOENT)
        s->started = false; /* it never came up, or it is gone */
    if (!s->started)
        return 0;
    char pg_ctl[BENCH_PATH_MAX + 16], t[16];
    tool_path(s, "pg_ctl", pg_ctl, sizeof pg_ctl);
    snprintf(t, sizeof t, "%d", PG_CTL_TIMEOUT_S);
    char *argv[PG_CMD_ARGS_MAX] = {pg_ctl, "stop", "-D", s->data, "-m",
                                   "fast", "-w",   "-t", t,       NULL};
    int rc = run_tool(s, "pg_ctl stop -m fast", argv, PG_CTL_TIMEOUT_S + 5);
    if (rc < 0) {
        argv[5] = "immediate";
        rc = run_tool(s, "pg_ctl stop -m immediate", argv, PG_CTL_TIMEOUT_S + 5);
    }
    if (rc < 0)
        fprintf(stderr, "lt-bench: pg: the server in %s may still be running\n", s->data);
    else
        s->started = false;
    return rc;
}

/* ------------------------------------------------------------------ SQL helpers */

/* PQerrorMessage without its trailing newline, into buf. */
static const char *conn_error(PGconn *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s", c ? PQerrorMessage(c) : "out of memory");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

static PGconn *pg_connect(const pg_server *s)
{
    const char *keys[] = {"host", "port", "user", "dbname", "application_name", "connect_timeout",
                          NULL};
    const char *vals[] = {s->dir, PG_PORT, PG_ROLE, "postgres", "lt-bench", PG_CONNECT_TIMEOUT_S,
                          NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        char err[512];
        fprintf(stderr, "lt-bench: pg: connect to %s: %s\n", s->dir,
                conn_error(c, err, sizeof err));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* Runs a statement that returns no rows. Returns 0 or -1 (message printed). */
static int exec_sql(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc < 0) {
        char err[512];
        fprintf(stderr, "lt-bench: pg: %.60s...: %s\n", sql, conn_error(c, err, sizeof err));
    }
    PQclear(res);
    return rc;
}

/* Runs a query returning one row of int64 columns into out[0..n-1]. Returns 0 or -1. */
static int query_i64(PGconn *c, const char *sql, int64_t *out, int n)
{
    PGresult *res = PQexec(c, sql);
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == n) {
        for (int i = 0; i < n; i++)
            out[i] = PQgetisnull(res, 0, i) ? 0 : strtoll(PQgetvalue(res, 0, i), NULL, 10);
        rc = 0;
    } else {
        char err[512];
        fprintf(stderr, "lt-bench: pg: %.60s...: %s\n", sql, conn_error(c, err, sizeof err));
    }
    PQclear(res);
    return rc;
}

/* ------------------------------------------------------------------ schema and population */

static const char schema_members_sql[] =
    /* fillfactor 70: room on each page so a balance update stays on its page (a HOT update,
     * no index write); the usual setting for a table that is mostly updated */
    "CREATE TABLE members (member_id text NOT NULL, card text, balance bigint NOT NULL DEFAULT 0,"
    " lifetime_fen bigint NOT NULL DEFAULT 0, sales int NOT NULL DEFAULT 0,"
    " birth_month smallint, birth_day smallint) WITH (fillfactor = 70)";

static const char schema_ledger_sql[] =
    "CREATE TABLE ledger (node_id bigint NOT NULL, event_id bigint NOT NULL,"
    " kind smallint NOT NULL, member_id text NOT NULL, store_id text NOT NULL,"
    " occurred_at bigint NOT NULL, paid_fen bigint NOT NULL, points bigint NOT NULL,"
    " redeemed bigint NOT NULL, PRIMARY KEY (node_id, event_id))";

/* COPYs wl_population(0..members-1) into members. Returns 0 or -1 (message printed). */
static int copy_population(PGconn *c, uint32_t members)
{
    PGresult *res = PQexec(c, "COPY members (member_id, balance, lifetime_fen, sales, "
                              "birth_month, birth_day) FROM STDIN");
    bool copying = PQresultStatus(res) == PGRES_COPY_IN;
    PQclear(res);
    char *buf = copying ? malloc(PG_COPY_CHUNK_BYTES) : NULL;
    bool ok = buf != NULL;
    size_t len = 0;
    for (uint32_t i = 0; ok && i < members; i++) {
        wl_event e;
        wl_population(i, &e);
        len += (size_t)snprintf(buf + len, PG_COPY_LINE_MAX, "%s\t0\t0\t0\t%u\t%u\n", e.member_id,
                                e.birth_month, e.birth_day);
        if (len + PG_COPY_LINE_MAX > PG_COPY_CHUNK_BYTES || i + 1 == members) {
            ok = PQputCopyData(c, buf, (int)len) == 1;
            len = 0;
        }
    }
    free(buf);
    /* a COPY that was started is always ended (aborted on failure), or the connection stays
     * in it */
    if (copying && PQputCopyEnd(c, ok ? NULL : "lt-bench: population failed") != 1)
        ok = false;
    for (int i = 0; i < PG_COPY_RESULTS_MAX && (res = PQgetResult(c)) != NULL; i++) {
        ok = ok && PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
    }
    if (!ok) {
        char err[512];
        fprintf(stderr, "lt-bench: pg: COPY members: %s\n", conn_error(c, err, sizeof err));
        return -1;
    }
    return 0;
}

/* Creates both tables and loads the population. Returns 0 or -1 (message printed). */
static int load_schema(PGconn *c, const pg_opts *o)
{
    /* created, filled and indexed in one transaction: with wal_level=minimal the COPY and the
     * index build write no WAL, the files are synced at commit */
    if (exec_sql(c, "BEGIN") < 0 || exec_sql(c, schema_members_sql) < 0 ||
        copy_population(c, o->members) < 0 ||
        exec_sql(c, "ALTER TABLE members ADD PRIMARY KEY (member_id)") < 0 ||
        exec_sql(c, "COMMIT") < 0 || exec_sql(c, schema_ledger_sql) < 0)
        return -1;
    /* statistics for the planner, and a clean start: no dirty pages of the load left for a
     * checkpoint during the run */
    if (exec_sql(c, "ANALYZE members") < 0 || exec_sql(c, "CHECKPOINT") < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ the batch statement */

/* $1 node_id, $2 event ids, $3 kinds, $4 member ids, $5 store ids, $6 occurred_at, $7 paid fen,
 * $8 points earned, $9 points redeemed, $10 birth months, $11 birth days, $12 cards. Returns
 * (member_id, balance, rows inserted) per member touched. */
static const char batch_sql[] =
    "WITH src AS ("
    " SELECT * FROM unnest($2::bigint[], $3::smallint[], $4::text[], $5::text[], $7::bigint[],"
    "  $8::bigint[], $9::bigint[], $10::smallint[], $11::smallint[], $12::text[])"
    "  AS s(event_id, kind, member_id, store_id, paid_fen, points, redeemed, birth_month,"
    "  birth_day, card)"
    "), ins AS ("
    " INSERT INTO ledger (node_id, event_id, kind, member_id, store_id, occurred_at, paid_fen,"
    "  points, redeemed)"
    " SELECT $1::bigint, event_id, kind, member_id, store_id, $6::bigint, paid_fen, points,"
    "  redeemed FROM src"
    " ON CONFLICT (node_id, event_id) DO NOTHING"
    " RETURNING event_id"
    "), up AS ("
    " INSERT INTO members AS m (member_id, card, balance, lifetime_fen, sales, birth_month,"
    "  birth_day)"
    " SELECT s.member_id, max(s.card), sum(s.points - s.redeemed), sum(s.paid_fen),"
    "  count(*) FILTER (WHERE s.kind = 1), max(s.birth_month), max(s.birth_day)"
    " FROM src s JOIN ins USING (event_id)"
    " GROUP BY s.member_id ORDER BY s.member_id"
    " ON CONFLICT (member_id) DO UPDATE SET balance = m.balance + excluded.balance,"
    "  lifetime_fen = m.lifetime_fen + excluded.lifetime_fen, sales = m.sales + excluded.sales"
    " RETURNING m.member_id, m.balance"
    ")"
    " SELECT member_id, balance, (SELECT count(*) FROM ins) FROM up";

enum {
    P_NODE,
    P_EVENT,
    P_KIND,
    P_MEMBER,
    P_STORE,
    P_OCCURRED,
    P_PAID,
    P_POINTS,
    P_REDEEMED,
    P_BMONTH,
    P_BDAY,
    P_CARD
};

/* A PostgreSQL array literal being written: "{1,2,NULL}". */
typedef struct {
    char *p;
    size_t len, cap;
} pg_array;

static void arr_open(pg_array *a)
{
    a->p[0] = '{';
    a->p[1] = '\0';
    a->len = 1;
}

static void arr_close(pg_array *a)
{
    LT_ASSERT(a->len + 2 <= a->cap);
    if (a->len > 1)
        a->len--; /* the last comma */
    a->p[a->len++] = '}';
    a->p[a->len] = '\0';
}

static void arr_i64(pg_array *a, int64_t v)
{
    LT_ASSERT(a->len + PG_ELEM_CHARS_MAX <= a->cap);
    a->len += (size_t)snprintf(a->p + a->len, a->cap - a->len, "%" PRId64 ",", v);
}

/* A text element (NULL: SQL NULL). The workload's ids are letters and digits, which need no
 * quoting in an array literal; anything else is a programmer error. */
static void arr_text(pg_array *a, const char *v)
{
    LT_ASSERT(a->len + PG_ELEM_CHARS_MAX <= a->cap);
    if (v == NULL) {
        memcpy(a->p + a->len, "NULL,", 6);
        a->len += 5;
        return;
    }
    size_t n = strnlen(v, LT_ID_MAX);
    LT_ASSERT(n > 0 && n < LT_ID_MAX);
    for (size_t i = 0; i < n; i++)
        LT_ASSERT((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'A' && v[i] <= 'Z') ||
                  (v[i] >= 'a' && v[i] <= 'z'));
    memcpy(a->p + a->len, v, n);
    a->len += n;
    a->p[a->len++] = ',';
    a->p[a->len] = '\0';
}

/* ------------------------------------------------------------------ the clients */

typedef struct pg_shared pg_shared;

typedef struct {
    pg_shared *sh;
    int index;
    uint64_t node_id;
    uint64_t next_event_id;
    uint64_t rng;
    uint64_t enrolled;
    PGconn *conn;
    wl_event *gen; /* the batch being sent */
    wl_history history;
    pg_array params[PG_PARAMS];
    char scalar[2][24]; /* $1 node_id and $6 occurred_at */
    pg_result r;        /* this client's counts */
    uint64_t last_ns;
    int failed;
} pg_client;

struct pg_shared {
    const pg_opts *o;
    const pg_server *server;
    wl_model model;
    int64_t *balances; /* last committed balance per member, relaxed atomics (as load.c) */
    pthread_mutex_t lock;
    pthread_cond_t go_cond;
    int go; /* under lock: 0 wait, 1 run until deadline_ns, -1 abort */
    uint64_t deadline_ns;
};

/* The simple client-side points (see the file comment). */
static int64_t sale_points(const wl_event *e)
{
    int64_t points = 0;
    for (uint32_t i = 0; i < e->lines_n && i < WL_LINES_MAX; i++) {
        const wl_line *l = &e->lines[i];
        if (!l->excluded)
            points += l->quantity * l->unit_paid_fen / 100;
    }
    return points;
}

/* Generates the next batch and writes it into the statement's parameters. */
static void build_batch(pg_client *c)
{
    pg_shared *sh = c->sh;
    int n = sh->o->batch;
    for (int p = 0; p < PG_PARAMS; p++)
        arr_open(&c->params[p]);
    snprintf(c->scalar[0], sizeof c->scalar[0], "%" PRIu64, c->node_id);
    snprintf(c->scalar[1], sizeof c->scalar[1], "%" PRId64, (int64_t)time(NULL));
    for (int i = 0; i < n; i++) {
        wl_event *e = &c->gen[i];
        wl_next(&sh->model, &c->rng, c->node_id, &c->enrolled, sh->balances, &c->history, e);
        int64_t paid = 0, points = 0, redeemed = 0;
        if (e->kind == WL_SALE) {
            paid = e->paid_fen;
            points = sale_points(e);
            redeemed = e->redeem_points;
        } else if (e->kind == WL_RETURN) {
            paid = -e->return_unit_paid_fen;
            points = -(e->return_unit_paid_fen / 100);
        }
        arr_i64(&c->params[P_EVENT], (int64_t)(c->next_event_id + (uint64_t)i));
        arr_i64(&c->params[P_KIND], e->kind);
        arr_text(&c->params[P_MEMBER], e->member_id);
        arr_text(&c->params[P_STORE], e->store);
        arr_i64(&c->params[P_PAID], paid);
        arr_i64(&c->params[P_POINTS], points);
        arr_i64(&c->params[P_REDEEMED], redeemed);
        bool enrol = e->kind == WL_ENROL;
        if (enrol) {
            arr_i64(&c->params[P_BMONTH], e->birth_month);
            arr_i64(&c->params[P_BDAY], e->birth_day);
        } else {
            arr_text(&c->params[P_BMONTH], NULL);
            arr_text(&c->params[P_BDAY], NULL);
        }
        arr_text(&c->params[P_CARD], enrol ? e->card : NULL);
    }
    for (int p = 0; p < PG_PARAMS; p++)
        arr_close(&c->params[p]);
}

/* Takes the committed batch's result: the new balances, the history for returns, the counts. */
static void take_result(pg_client *c, PGresult *res)
{
    pg_shared *sh = c->sh;
    int n = sh->o->batch, rows = PQntuples(res);
    uint64_t inserted = rows > 0 ? strtoull(PQgetvalue(res, 0, 2), NULL, 10) : 0;
    for (int i = 0; i < rows; i++) {
        const char *id = PQgetvalue(res, i, 0);
        /* population members "139%08u" are the ones sales pick, and that redemptions size */
        if (strncmp(id, "139", 3) != 0 || strlen(id) != 11)
            continue;
        unsigned long m = strtoul(id + 3, NULL, 10);
        if (m < sh->o->members)
            __atomic_store_n(&sh->balances[m], strtoll(PQgetvalue(res, i, 1), NULL, 10),
                             __ATOMIC_RELAXED);
    }
    for (int i = 0; i < n; i++) {
        const wl_event *e = &c->gen[i];
        c->r.sales += e->kind == WL_SALE;
        c->r.redemptions += e->kind == WL_SALE && e->redeem_points > 0;
        c->r.returns += e->kind == WL_RETURN;
        c->r.enrolments += e->kind == WL_ENROL;
        /* every row inserted means every sale is stored: it may be returned later */
        if (e->kind == WL_SALE && inserted == (uint64_t)n) {
            wl_past p;
            wl_past_of(e, c->next_event_id + (uint64_t)i, &p);
            wl_history_add(&c->history, &p);
        }
    }
    c->r.events += (uint64_t)n;
    c->r.inserted += inserted;
    c->r.batches++;
    c->next_event_id += (uint64_t)n;
}

/* True for the errors a transaction is simply re-run after. */
static bool retryable(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state && (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0);
}

/* Sends one batch as one transaction, retrying deadlocks. Returns 0 or -1 (message printed). */
static int send_batch(pg_client *c)
{
    build_batch(c);
    const char *values[PG_PARAMS];
    for (int p = 0; p < PG_PARAMS; p++)
        values[p] = c->params[p].p;
    values[P_NODE] = c->scalar[0];
    values[P_OCCURRED] = c->scalar[1];
    uint64_t t0 = bench_now_ns();
    int attempt = 0;
    for (; attempt <= PG_RETRIES_MAX; attempt++) {
        PGresult *res = PQexecPrepared(c->conn, "batch", PG_PARAMS, values, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            uint64_t now = bench_now_ns();
            hist_add(&c->r.latency_us, (now - t0) / 1000);
            c->last_ns = now;
            take_result(c, res);
            PQclear(res);
            return 0;
        }
        bool again = retryable(res);
        PQclear(res);
        if (!again)
            break;
        c->r.retries++;
    }
    char err[512];
    fprintf(stderr, "lt-bench: pg: client %d: batch at event %" PRIu64 "%s: %s\n", c->index,
            c->next_event_id, attempt > PG_RETRIES_MAX ? ", retries exhausted" : "",
            conn_error(c->conn, err, sizeof err));
    return -1;
}

static void *client_main(void *arg)
{
    pg_client *c = arg;
    pg_shared *sh = c->sh;
    pthread_mutex_lock(&sh->lock);
    while (sh->go == 0)
        pthread_cond_wait(&sh->go_cond, &sh->lock);
    int go = sh->go;
    pthread_mutex_unlock(&sh->lock);
    while (go > 0 && !bench_stop && bench_now_ns() < sh->deadline_ns) {
        if (send_batch(c) < 0) {
            c->failed = 1;
            break;
        }
    }
    return NULL;
}

/* Connects and prepares. Returns 0 or -1 (message printed). */
static int client_init(pg_client *c, pg_shared *sh, int index)
{
    const pg_opts *o = sh->o;
    memset(c, 0, sizeof *c);
    c->sh = sh;
    c->index = index;
    c->node_id = (uint64_t)index + 1;
    c->next_event_id = 1;
    /* the seed of loyaltyd's till with this node id (load.c): the same events */
    c->rng = o->seed ^ (0x9e3779b97f4a7c15ull * (c->node_id + 1));
    c->gen = calloc((size_t)o->batch, sizeof *c->gen);
    bool oom = c->gen == NULL;
    for (int p = 0; p < PG_PARAMS; p++) {
        c->params[p].cap = (size_t)o->batch * PG_ELEM_CHARS_MAX + 4;
        c->params[p].p = malloc(c->params[p].cap);
        oom = oom || c->params[p].p == NULL;
    }
    if (oom) {
        fprintf(stderr, "lt-bench: pg: out of memory\n");
        return -1;
    }
    c->conn = pg_connect(sh->server);
    if (c->conn == NULL)
        return -1;
    PGresult *res = PQprepare(c->conn, "batch", batch_sql, PG_PARAMS, NULL);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    PQclear(res);
    if (rc < 0) {
        char err[512];
        fprintf(stderr, "lt-bench: pg: prepare: %s\n", conn_error(c->conn, err, sizeof err));
    }
    return rc;
}

static void client_free(pg_client *c)
{
    PQfinish(c->conn);
    free(c->gen);
    for (int p = 0; p < PG_PARAMS; p++)
        free(c->params[p].p);
}

static void merge_client(pg_result *r, const pg_client *c)
{
    r->events += c->r.events;
    r->batches += c->r.batches;
    r->inserted += c->r.inserted;
    r->retries += c->r.retries;
    r->sales += c->r.sales;
    r->redemptions += c->r.redemptions;
    r->returns += c->r.returns;
    r->enrolments += c->r.enrolments;
    hist_merge(&r->latency_us, &c->r.latency_us);
}

/* Runs the clients for o->seconds. Returns 0 or -1. */
static int run_clients(const pg_opts *o, const pg_server *s, pg_result *r)
{
    pg_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.o = o;
    sh.server = s;
    pg_client *cl = calloc((size_t)o->clients, sizeof *cl);
    sh.balances = calloc(o->members, sizeof *sh.balances);
    int rc = cl && sh.balances && wl_model_init(&sh.model, o->members) == 0 ? 0 : -1;
    if (rc < 0)
        fprintf(stderr, "lt-bench: pg: out of memory\n");
    int started = 0;
    for (int i = 0; rc == 0 && i < o->clients; i++)
        rc = client_init(&cl[i], &sh, i);
    pthread_t th[PG_CLIENTS_MAX];
    pthread_mutex_init(&sh.lock, NULL);
    pthread_cond_init(&sh.go_cond, NULL);
    for (; rc == 0 && started < o->clients; started++)
        if (pthread_create(&th[started], NULL, client_main, &cl[started]) != 0) {
            fprintf(stderr, "lt-bench: pg: cannot start client threads\n");
            rc = -1;
            break;
        }
    /* all connected and started, or none runs: the clients start together */
    uint64_t start_ns = bench_now_ns();
    pthread_mutex_lock(&sh.lock);
    sh.deadline_ns = start_ns + (uint64_t)(o->seconds * 1e9);
    sh.go = rc == 0 ? 1 : -1;
    pthread_cond_broadcast(&sh.go_cond);
    pthread_mutex_unlock(&sh.lock);
    uint64_t last = start_ns;
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        merge_client(r, &cl[i]);
        if (cl[i].last_ns > last)
            last = cl[i].last_ns;
        rc |= cl[i].failed ? -1 : 0;
    }
    r->elapsed_s = (double)(last - start_ns) / 1e9;
    pthread_cond_destroy(&sh.go_cond);
    pthread_mutex_destroy(&sh.lock);
    for (int i = 0; cl && i < o->clients; i++)
        client_free(&cl[i]);
    free(cl);
    free(sh.balances);
    wl_model_free(&sh.model);
    return rc;
}

/* ------------------------------------------------------------------ checks and the run */

/* Checks the tables against what the clients saw committed. Returns 0 (sets r->verified) or -1
 * (a mismatch, printed). */
static int verify(PGconn *c, const pg_opts *o, pg_result *r)
{
    int64_t l[4], m[3];
    if (query_i64(c,
                  "SELECT count(*), count(*) FILTER (WHERE kind = 1),"
                  " coalesce(sum(points - redeemed), 0), coalesce(sum(paid_fen), 0) FROM ledger",
                  l, 4) < 0 ||
        query_i64(c, "SELECT count(*), sum(sales), sum(balance) FROM members", m, 3) < 0)
        return -1;
    r->ledger_rows = (uint64_t)l[0];
    /* every member starts at 0: its balance is its ledger rows' points, its sales their count */
    int bad = 0;
    if ((uint64_t)l[0] != r->inserted) {
        fprintf(stderr,
                "lt-bench: pg: CHECK FAILED: ledger has %" PRId64 " rows, %" PRIu64
                " were committed\n",
                l[0], r->inserted);
        bad = 1;
    }
    if (m[1] != l[1] || m[2] != l[2]) {
        fprintf(stderr,
                "lt-bench: pg: CHECK FAILED: members hold %" PRId64 " sales and %" PRId64
                " points, the ledger %" PRId64 " and %" PRId64 "\n",
                m[1], m[2], l[1], l[2]);
        bad = 1;
    }
    if ((uint64_t)m[0] != o->members + r->enrolments && r->inserted == r->events) {
        fprintf(stderr, "lt-bench: pg: CHECK FAILED: %" PRId64 " members, expected %" PRIu64 "\n",
                m[0], o->members + r->enrolments);
        bad = 1;
    }
    r->verified = !bad;
    return bad ? -1 : 0;
}

static void opts_check(const pg_opts *o)
{
    LT_ASSERT(o->clients >= 1 && o->clients <= PG_CLIENTS_MAX);
    LT_ASSERT(o->batch >= 1 && o->batch <= LT_BATCH_EVENTS_MAX);
    LT_ASSERT(o->seconds > 0);
    LT_ASSERT(o->members >= 1);
}

/* Set-up, the run and the checks on a started server. Returns 0 or -1. */
static int measure(const pg_opts *o, pg_server *s, pg_result *r, double t0)
{
    PGconn *admin = pg_connect(s);
    if (admin == NULL)
        return -1;
    const char *v = PQparameterStatus(admin, "server_version");
    snprintf(r->version, sizeof r->version, "%s", v ? v : "?");
    if (o->verbose)
        fprintf(stderr, "lt-bench: pg: PostgreSQL %s: loading %" PRIu32 " members ...\n",
                r->version, o->members);
    int rc = load_schema(admin, o);
    r->setup_s = bench_now_s() - t0;
    if (rc == 0 && o->verbose)
        fprintf(stderr, "lt-bench: pg: set-up took %.1f s; running %d clients for %.0f s ...\n",
                r->setup_s, o->clients, o->seconds);
    if (rc == 0)
        rc = run_clients(o, s, r);
    double t1 = bench_now_s();
    if (rc == 0 && verify(admin, o, r) < 0)
        rc = -1;
    r->teardown_s = bench_now_s() - t1;
    PQfinish(admin);
    return rc;
}

int bench_pg_run(const pg_opts *o, pg_result *r)
{
    opts_check(o);
    memset(r, 0, sizeof *r);
    double t0 = bench_now_s();
    pg_server s;
    memset(&s, 0, sizeof s);
    int rc = find_bin(&s, r->skipped, sizeof r->skipped);
    if (rc == 0)
        rc = server_dir(&s, r->skipped, sizeof r->skipped);
    if (rc == 0 && !PQisthreadsafe()) {
        fprintf(stderr, "lt-bench: pg: this libpq is not thread-safe\n");
        rc = -1;
    }
    if (rc == 0)
        rc = server_start(&s, o);
    if (rc == 0)
        rc = measure(o, &s, r, t0);
    double t1 = bench_now_s();
    if (server_stop(&s) < 0)
        rc = -1;
    if (s.dir[0] && (o->keep || s.started))
        fprintf(stderr, "lt-bench: pg: kept %s (data, postgres.log)\n", s.dir);
    else if (s.dir[0] && bench_rm_tree(s.dir) != 0)
        fprintf(stderr, "lt-bench: pg: cannot remove %s: %s\n", s.dir, strerror(errno));
    r->teardown_s += bench_now_s() - t1;
    return rc;
}

double bench_pg_rate(const pg_result *r)
{
    return r->elapsed_s > 0 ? (double)r->events / r->elapsed_s : 0;
}
