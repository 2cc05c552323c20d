/* backup.c: `loyaltyctl backup` and `loyaltyctl restore`: a consistent hot copy of the ledger
 * while loyaltyd runs, and putting such a copy into a data directory while it does not.
 *
 * A backup is one file, DIR/data.mdb: ledger_copy() (mdb_env_copy2 with compaction) writes the
 * snapshot of one read transaction, so it is consistent whatever the daemon commits meanwhile,
 * and it holds the checkpoint (members, cards) of that snapshot, so a daemon started on a
 * restored copy recovers like after a clean stop. Restore copies that file into place under
 * DIR/daemon.lock, the lock every daemon takes at start, so no daemon can run on a directory
 * while it is being replaced.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl.h"
#include "progress.h"

#define BACKUP_POLL_MS 100            /* how often the copy's size is sampled for progress */
#define RESTORE_CHUNK_BYTES (1 << 20) /* read/write size of the restore copy */
#define BACKUP_PATH_MAX 4096

static const char backup_usage[] =
    "usage: loyaltyctl backup DIR [--data SRC] [--json]\n"
    "\n"
    "Writes a consistent copy of the ledger in the data directory (--data) into DIR while\n"
    "loyaltyd keeps running: the snapshot of one read transaction, compacted (free pages left\n"
    "out), as DIR/data.mdb. DIR must be new or empty; it is created if missing (its parent must\n"
    "exist). The copy is synced to disk, then opened to check that it reads, and the command\n"
    "prints its last sequence, entries, members, size and the time taken.\n"
    "\n"
    "Progress is shown on stderr for copies that take more than a second.\n"
    "\n"
    "exit status: 0 ok, 1 DIR not empty, the ledger cannot be read or the copy failed, 2 usage.\n"
    "\n";

static const char restore_usage[] =
    "usage: loyaltyctl restore BACKUP_DIR --data DIR [--force] [--json]\n"
    "\n"
    "Puts a backup made by 'loyaltyctl backup' into the data directory DIR, which is created if\n"
    "missing. The backup is checked first. No daemon may be running on DIR: restore takes\n"
    "DIR/daemon.lock as loyaltyd does, refuses if a daemon holds it, and holds it until it is\n"
    "done, so a daemon cannot start on a half-restored directory.\n"
    "\n"
    "DIR must not already hold a ledger or other files. With --force an existing ledger is\n"
    "moved aside, to DIR/data.mdb.replaced-YYYYMMDDTHHMMSS (delete it once the restored data is\n"
    "verified), and other files are left alone.\n"
    "\n"
    "The copy is synced to disk, opened to check that it reads, and its last sequence is\n"
    "printed. Then start loyaltyd; 'loyaltyctl verify --offline --data DIR' replays it in full.\n"
    "\n"
    "  --force     replace a ledger already in DIR\n"
    "  --data DIR  the target data directory (required)\n"
    "\n"
    "exit status: 0 ok, 1 refused or failed, 2 usage.\n"
    "\n";

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Joins dir and name into buf. Returns 0, or -1 (message printed) if it does not fit. */
static int join_path(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        ctl_errorf("path too long: %s/%s", dir, name);
        return -1;
    }
    return 0;
}

/* Parses globals, --force (if force is not NULL) and exactly one positional argument.
 * Returns 0, 1 after --help, or -1 (usage error, printed). */
static int parse_args(ctl_globals *g, int argc, char **argv, const char *usage, bool *force,
                      const char **arg)
{
    enum { O_FORCE = 1 };
    static const struct option longopts[] = {{"force", no_argument, NULL, O_FORCE},
                                             CTL_GLOBAL_LONGOPTS};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = 0;
        if (c == O_FORCE && force != NULL)
            *force = true;
        else if (c == O_FORCE)
            rc = -1, ctl_errorf("%s: --force is not an option of this command", argv[0]);
        else
            rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
        if (rc != 0)
            return ctl_usage(rc, usage, argv[0]) == CTL_EXIT_OK ? 1 : -1;
    }
    if (optind + 1 != argc || argv[optind][0] == '\0') {
        ctl_errorf("%s: expected one directory argument", argv[0]);
        ctl_usage(-1, usage, argv[0]);
        return -1;
    }
    *arg = argv[optind];
    return 0;
}

/* ------------------------------------------------------------------ directory checks */

/* Looks into dir. Returns 0 with *exists and, in first, the first entry other than "." and
 * "..", and skip (may be NULL), or "" when there is none; -1 if dir cannot be read or is not a
 * directory (message printed). */
static int dir_first_entry(const char *cmd, const char *dir, const char *skip, bool *exists,
                           char *first, size_t first_len)
{
    first[0] = '\0';
    *exists = false;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        ctl_errorf("%s: %s: %s", cmd, dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        ctl_errorf("%s: %s is not a directory", cmd, dir);
        return -1;
    }
    *exists = true;
    DIR *d = opendir(dir);
    if (d == NULL) {
        ctl_errorf("%s: %s: %s", cmd, dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            (skip != NULL && strcmp(e->d_name, skip) == 0))
            continue;
        snprintf(first, first_len, "%s", e->d_name);
        break;
    }
    closedir(d);
    return 0;
}

/* fsyncs a file or directory, so a copy survives a crash right after the command. */
static int sync_path(const char *cmd, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        ctl_errorf("%s: fsync %s: %s", cmd, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* ------------------------------------------------------------------ inspecting a copy */

typedef struct {
    uint64_t last_seq, checkpoint_seq;
    ledger_stats st;
    uint64_t file_bytes; /* size of data.mdb */
} ledger_info;

/* Opens the ledger in dir read-only and reads its sequence numbers and counts. A read-only
 * open creates dir/lock.mdb if it is missing; that file is removed again so that a backup stays
 * one file. Returns 0 or -1 (message printed). */
static int inspect(const char *cmd, const char *dir, ledger_info *out)
{
    char lock[BACKUP_PATH_MAX], data[BACKUP_PATH_MAX];
    if (join_path(lock, sizeof lock, dir, "lock.mdb") < 0 ||
        join_path(data, sizeof data, dir, "data.mdb") < 0)
        return -1;
    memset(out, 0, sizeof *out);
    struct stat st;
    bool had_lock = access(lock, F_OK) == 0;
    if (stat(data, &st) != 0) {
        ctl_errorf("%s: %s: %s", cmd, data,
                   errno == ENOENT ? "no such file (not a ledger or backup)" : strerror(errno));
        return -1;
    }
    out->file_bytes = (uint64_t)st.st_size;
    ledger *l;
    if (ctl_ledger_open(dir, &l) < 0)
        return -1;
    int rc = ledger_last_seq(l, &out->last_seq);
    if (rc == 0)
        rc = ledger_checkpoint_seq(l, &out->checkpoint_seq);
    if (rc == 0)
        rc = ledger_stat(l, &out->st);
    ledger_close(&l);
    if (!had_lock)
        unlink(lock);
    if (rc < 0) {
        ctl_errorf("%s: reading %s: %s", cmd, dir, ledger_strerror(rc));
        return -1;
    }
    if (out->st.entries != out->last_seq) {
        ctl_errorf("%s: %s: %" PRIu64 " entries but the last sequence is %" PRIu64
                   " (entries must be gap-free from 1)",
                   cmd, dir, out->st.entries, out->last_seq);
        return -1;
    }
    return 0;
}

static void print_info(const ctl_globals *g, const char *what, const char *from, const char *to,
                       const ledger_info *in, double elapsed_s)
{
    if (g->json) {
        json_t *o = json_pack(
            "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "result", what, "source", from, "target",
            to, "seq", (json_int_t)in->last_seq, "checkpoint_seq", (json_int_t)in->checkpoint_seq,
            "entries", (json_int_t)in->st.entries, "members", (json_int_t)in->st.members, "cards",
            (json_int_t)in->st.cards, "bytes", (json_int_t)in->file_bytes, "elapsed_s", elapsed_s);
        char *t = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (t != NULL)
            puts(t);
        free(t);
        json_decref(o);
        return;
    }
    printf("%-11s %s -> %s\n", what, from, to);
    printf("last seq    %" PRIu64 "\n", in->last_seq);
    printf("checkpoint  %" PRIu64 "\n", in->checkpoint_seq);
    printf("entries     %" PRIu64 "\n", in->st.entries);
    printf("members     %" PRIu64 " (checkpointed)\n", in->st.members);
    printf("cards       %" PRIu64 " (checkpointed)\n", in->st.cards);
    printf("bytes       %" PRIu64 " (%.1f MiB)\n", in->file_bytes,
           (double)in->file_bytes / (1024.0 * 1024.0));
    printf("elapsed     %.3f s\n", elapsed_s);
}

/* ------------------------------------------------------------------ backup */

typedef struct {
    ledger *l;
    const char *dir;
    char err[CTL_ERR_MAX];
    int rc;
    atomic_bool done;
} copy_job;

static void *copy_thread(void *arg)
{
    copy_job *j = arg;
    j->rc = ledger_copy(j->l, j->dir, j->err, sizeof j->err);
    atomic_store(&j->done, true);
    return NULL;
}

/* Runs ledger_copy() on a thread and reports progress from the growing size of the copy
 * against the source's pages in use (an upper bound: compaction leaves free pages out).
 * Returns 0 or -1 (message printed). */
static int copy_with_progress(ledger *l, const char *dir, uint64_t used_bytes)
{
    char data[BACKUP_PATH_MAX];
    if (join_path(data, sizeof data, dir, "data.mdb") < 0)
        return -1;
    copy_job j = {.l = l, .dir = dir};
    atomic_init(&j.done, false);
    pthread_t t;
    if (pthread_create(&t, NULL, copy_thread, &j) != 0) {
        ctl_errorf("backup: cannot start the copy thread");
        return -1;
    }
    ctl_progress p;
    ctl_progress_start(&p, "backup", "bytes", used_bytes, false);
    struct stat st;
    while (!atomic_load(&j.done)) {
        struct timespec ts = {0, BACKUP_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
        if (stat(data, &st) == 0)
            ctl_progress_update(&p, (uint64_t)st.st_size);
    }
    pthread_join(t, NULL);
    ctl_progress_done(&p, stat(data, &st) == 0 ? (uint64_t)st.st_size : 0);
    if (j.rc < 0) {
        ctl_errorf("backup: %s", j.err[0] ? j.err : ledger_strerror(j.rc));
        return -1;
    }
    return 0;
}

int ctl_cmd_backup(ctl_globals *g, int argc, char **argv)
{
    const char *dir;
    int rc = parse_args(g, argc, argv, backup_usage, NULL, &dir);
    if (rc != 0)
        return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    char first[NAME_MAX + 1], data[BACKUP_PATH_MAX];
    bool exists;
    if (dir_first_entry("backup", dir, NULL, &exists, first, sizeof first) < 0 ||
        join_path(data, sizeof data, dir, "data.mdb") < 0)
        return CTL_EXIT_FAIL;
    if (first[0] != '\0') {
        ctl_errorf("backup: %s is not empty (it holds '%s'): back up into a new or empty "
                   "directory",
                   dir, first);
        return CTL_EXIT_FAIL;
    }
    double t0 = mono_s();
    ledger *l;
    if (ctl_ledger_open(g->data, &l) < 0)
        return CTL_EXIT_FAIL;
    ledger_stats st;
    rc = ledger_stat(l, &st);
    if (rc < 0) {
        ctl_errorf("backup: reading %s: %s", g->data, ledger_strerror(rc));
        ledger_close(&l);
        return CTL_EXIT_FAIL;
    }
    rc = copy_with_progress(l, dir, st.used_bytes);
    ledger_close(&l);
    if (rc == 0 && chmod(data, 0640) != 0) { /* LMDB creates it 0666 & umask: keep it private */
        ctl_errorf("backup: chmod %s: %s", data, strerror(errno));
        rc = -1;
    }
    if (rc == 0)
        rc = sync_path("backup", data);
    if (rc == 0)
        rc = sync_path("backup", dir);
    ledger_info in;
    if (rc == 0)
        rc = inspect("backup", dir, &in);
    if (rc < 0) {
        /* The directory was empty or new: what is in it now is our partial copy. */
        unlink(data);
        ctl_errorf("backup: failed; nothing usable was left in %s", dir);
        return CTL_EXIT_FAIL;
    }
    print_info(g, "backup", g->data, dir, &in, mono_s() - t0);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ restore */

/* Takes dir/daemon.lock exactly as ledger_open(exclusive) does. Returns the locked fd, or -1
 * (message printed) if a daemon holds it or it cannot be opened. */
static int lock_data_dir(const char *dir)
{
    char path[BACKUP_PATH_MAX];
    if (join_path(path, sizeof path, dir, "daemon.lock") < 0)
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        ctl_errorf("restore: %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return fd;
    int e = errno;
    char pid[32] = "";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    close(fd);
    if (e == EWOULDBLOCK)
        ctl_errorf("restore: %s is in use by a running loyaltyd (pid %s holds %s): stop it first",
                   dir, pid[0] ? pid : "unknown", path);
    else
        ctl_errorf("restore: %s: flock: %s", path, strerror(e));
    return -1;
}

/* Moves an existing dir/data.mdb aside to data.mdb.replaced-<UTC time>. Returns 0 or -1. */
static int move_aside(const char *dir, const char *data, char *aside, size_t aside_len)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL || strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm) == 0)
        snprintf(stamp, sizeof stamp, "%lld", (long long)now);
    char name[64];
    snprintf(name, sizeof name, "data.mdb.replaced-%s", stamp);
    if (join_path(aside, aside_len, dir, name) < 0)
        return -1;
    if (rename(data, aside) != 0) {
        ctl_errorf("restore: moving %s aside to %s: %s", data, aside, strerror(errno));
        return -1;
    }
    return 0;
}

/* Copies src to dst (created exclusively, 0640) with a progress report, then fsyncs it.
 * Returns 0 or -1 (message printed). */
static int copy_file(const char *src, const char *dst, uint64_t bytes)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        ctl_errorf("restore: %s: %s", src, strerror(errno));
        return -1;
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0) {
        ctl_errorf("restore: %s: %s", dst, strerror(errno));
        close(in);
        return -1;
    }
    char *buf = malloc(RESTORE_CHUNK_BYTES);
    LT_ASSERT(buf != NULL);
    ctl_progress p;
    ctl_progress_start(&p, "restore", "bytes", bytes, false);
    uint64_t done = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, RESTORE_CHUNK_BYTES);
        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ctl_errorf("restore: reading %s: %s", src, strerror(errno));
            rc = -1;
            break;
        }
        for (ssize_t off = 0; off < n && rc == 0;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                ctl_errorf("restore: writing %s: %s", dst, strerror(errno));
                rc = -1;
            } else {
                off += w;
            }
        }
        if (rc < 0)
            break;
        done += (uint64_t)n;
        ctl_progress_update(&p, done);
    }
    ctl_progress_done(&p, done);
    free(buf);
    close(in);
    if (rc == 0 && fsync(out) != 0) {
        ctl_errorf("restore: fsync %s: %s", dst, strerror(errno));
        rc = -1;
    }
    if (close(out) != 0 && rc == 0) {
        ctl_errorf("restore: closing %s: %s", dst, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* Refuses a target that holds anything but daemon.lock, unless force; with force, moves an
 * existing ledger aside. Returns 0 or -1 (message printed). */
static int prepare_target(const char *dir, bool force, char *aside, size_t aside_len)
{
    char first[NAME_MAX + 1], data[BACKUP_PATH_MAX];
    bool exists;
    aside[0] = '\0';
    if (dir_first_entry("restore", dir, "daemon.lock", &exists, first, sizeof first) < 0 ||
        join_path(data, sizeof data, dir, "data.mdb") < 0)
        return -1;
    bool has_ledger = access(data, F_OK) == 0;
    if (first[0] == '\0' || force)
        return has_ledger ? move_aside(dir, data, aside, aside_len) : 0;
    if (has_ledger)
        ctl_errorf("restore: %s already holds a ledger (data.mdb); use --force to replace it "
                   "(the old one is kept as data.mdb.replaced-<time>)",
                   dir);
    else
        ctl_errorf("restore: %s is not empty (it holds '%s'); restore into a new or empty "
                   "directory, or use --force",
                   dir, first);
    return -1;
}

/* Copies the backup's data.mdb into dir through a temporary name: the target never holds a
 * partial data.mdb. LMDB's lock.mdb of a replaced ledger is removed (it describes readers of
 * the old file). Returns 0 or -1 (message printed). */
static int install_copy(const char *backup, const char *dir, uint64_t bytes)
{
    char src[BACKUP_PATH_MAX], tmp[BACKUP_PATH_MAX], dst[BACKUP_PATH_MAX], lock[BACKUP_PATH_MAX];
    if (join_path(src, sizeof src, backup, "data.mdb") < 0 ||
        join_path(tmp, sizeof tmp, dir, "data.mdb.restoring") < 0 ||
        join_path(dst, sizeof dst, dir, "data.mdb") < 0 ||
        join_path(lock, sizeof lock, dir, "lock.mdb") < 0)
        return -1;
    unlink(tmp); /* left by an interrupted restore; we hold the directory's lock */
    if (copy_file(src, tmp, bytes) < 0) {
        unlink(tmp);
        return -1;
    }
    if (unlink(lock) != 0 && errno != ENOENT) {
        ctl_errorf("restore: removing %s: %s", lock, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, dst) != 0) {
        ctl_errorf("restore: renaming %s to %s: %s", tmp, dst, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return sync_path("restore", dir);
}

/* Refuses to restore a directory onto itself, or from a data directory a daemon is writing
 * (copying its data.mdb file would not be consistent: that is what backup is for). Returns 0
 * or -1 (message printed). */
static int check_source(const char *backup, const char *dir)
{
    char lock[BACKUP_PATH_MAX];
    if (join_path(lock, sizeof lock, backup, "daemon.lock") < 0)
        return -1;
    int fd = open(lock, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        bool busy = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
        close(fd);
        if (busy) {
            ctl_errorf("restore: %s is the data directory of a running loyaltyd, not a backup; "
                       "make one with 'loyaltyctl backup DIR'",
                       backup);
            return -1;
        }
    }
    struct stat a, b;
    if (stat(backup, &a) != 0) {
        ctl_errorf("restore: %s: %s", backup, strerror(errno));
        return -1;
    }
    if (stat(dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        ctl_errorf("restore: the backup and the target are the same directory");
        return -1;
    }
    return 0;
}

int ctl_cmd_restore(ctl_globals *g, int argc, char **argv)
{
    const char *backup;
    bool force = false;
    int rc = parse_args(g, argc, argv, restore_usage, &force, &backup);
    if (rc != 0)
        return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    if (!g->data_given) {
        ctl_errorf("restore: name the target data directory with --data DIR");
        ctl_usage(-1, restore_usage, argv[0]);
        return CTL_EXIT_USAGE;
    }
    const char *dir = g->data;
    double t0 = mono_s();
    ledger_info src, dst;
    if (check_source(backup, dir) < 0 || inspect("restore", backup, &src) < 0)
        return CTL_EXIT_FAIL;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        ctl_errorf("restore: mkdir %s: %s", dir, strerror(errno));
        return CTL_EXIT_FAIL;
    }
    int lock_fd = lock_data_dir(dir);
    if (lock_fd < 0)
        return CTL_EXIT_FAIL;
    char aside[BACKUP_PATH_MAX];
    rc = prepare_target(dir, force, aside, sizeof aside);
    if (rc == 0)
        rc = install_copy(backup, dir, src.file_bytes);
    if (rc == 0)
        rc = inspect("restore", dir, &dst);
    if (rc == 0 && dst.last_seq != src.last_seq) {
        ctl_errorf("restore: the restored ledger ends at %" PRIu64 ", the backup at %" PRIu64,
                   dst.last_seq, src.last_seq);
        rc = -1;
    }
    close(lock_fd); /* releases the flock: a daemon may start now */
    if (rc < 0)
        return CTL_EXIT_FAIL;
    if (aside[0] != '\0')
        fprintf(stderr, "loyaltyctl: restore: the previous ledger was kept as %s\n", aside);
    print_info(g, "restore", backup, dir, &dst, mono_s() - t0);
    if (!g->json)
        printf("next        start loyaltyd on %s; 'loyaltyctl verify --offline --data %s' "
               "replays it in full\n",
               dir, dir);
    return CTL_EXIT_OK;
}
