/* backup.c: `loyaltyctl backup` and `loyaltyctl restore`: a consistent hot copy of a data
 * directory while loyaltyd runs, and putting such a copy into a data directory while it does not.
 *
 * A backup is two files: DIR/state/data.mdb, the checkpoint of the member state (ckstore.h),
 * and DIR/data.mdb, the ledger. Each is written by ckstore_copy() / ledger_copy()
 * (mdb_env_copy2 with compaction): the snapshot of one read transaction, consistent whatever
 * the daemon commits meanwhile. state/ is copied first, the ledger second. The daemon commits a
 * checkpoint only once its sequence is durable in the ledger, so the ledger copied afterwards
 * holds the checkpoint's entry, and the backup's checkpoint belongs to the backup's ledger
 * (ckpt_load() checks that entry's digest): a daemon started on a restored copy loads it and
 * replays only the entries after it. A data directory without state/ (an older loyaltyd wrote
 * it) gives a backup without one; its ledger carries its own checkpoint tables, if any.
 *
 * Restore copies the files into place under DIR/daemon.lock, the lock every daemon takes at
 * start, so no daemon can run on a directory while it is being replaced. A state/ and a ledger
 * already there are moved aside first (state/ first), then the ledger goes in, then state/ last,
 * each through a temporary name. A crash in between leaves a ledger without state/ (a start
 * replays more), never a state/ beside a ledger it does not belong to.
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
#include "state.h"

#define BACKUP_POLL_MS 100            /* how often the copy's size is sampled for progress */
#define RESTORE_CHUNK_BYTES (1 << 20) /* read/write size of the restore copy */
#define BACKUP_PATH_MAX 4096

static const char backup_usage[] =
    "usage: loyaltyctl backup DIR [--data SRC] [--json]\n"
    "\n"
    "Writes a consistent copy of the data directory (--data) into DIR while loyaltyd keeps\n"
    "running: first the checkpoint store SRC/state/ as DIR/state/data.mdb, then the ledger as\n"
    "DIR/data.mdb, each the snapshot of one read transaction, compacted (free pages left out).\n"
    "In this order the backup's checkpoint is never past its ledger's last entry. A data\n"
    "directory without state/ (written by an older loyaltyd) gives a backup without one\n"
    "(a note says so). DIR must be new or empty; it is created if missing (its parent must\n"
    "exist). The copy is synced to disk, then opened to check that it reads, and the command\n"
    "prints its last sequence, the checkpoint a start would load (its sequence and where it\n"
    "is: state, ledger or none), entries, members and cards in that checkpoint, sizes and the\n"
    "time taken.\n"
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
    "The ledger goes in first, as DIR/data.mdb, then the backup's checkpoint store, if it has\n"
    "one, as DIR/state/. A backup without state/ (of a data directory an older loyaltyd wrote)\n"
    "restores too: the daemon then recovers from the ledger's own checkpoint or replays it all.\n"
    "\n"
    "DIR must not already hold a ledger, a checkpoint store (state/) or other files. With\n"
    "--force an existing state/ and ledger are moved aside, to DIR/state.replaced-TIME and\n"
    "DIR/data.mdb.replaced-TIME, TIME being YYYYMMDDTHHMMSSZ (delete them once the restored\n"
    "data is verified), before anything is copied in; other files are left alone.\n"
    "\n"
    "The copy is synced to disk, opened to check that it reads, and its last sequence and\n"
    "checkpoint are printed. Then start loyaltyd; 'loyaltyctl verify --offline --data DIR'\n"
    "replays it in full.\n"
    "\n"
    "  --force     replace a ledger and checkpoint store already in DIR\n"
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
    uint64_t last_seq;
    uint64_t checkpoint_seq;    /* of the checkpoint a start would load (ckpt_load()) */
    ckpt_source checkpoint_src; /* and where it is */
    uint64_t members, cards;    /* records in that checkpoint */
    bool has_state;             /* DIR/state/ is a checkpoint store */
    char state_why[256];        /* why a start would not use state/ ("" if it would, or none) */
    ledger_stats st;
    uint64_t file_bytes;  /* size of data.mdb */
    uint64_t state_bytes; /* size of state/data.mdb (0 without) */
} ledger_info;

static int count_card(void *ctx, const char *card, const char *member_id)
{
    (void)card;
    (void)member_id;
    ++*(uint64_t *)ctx;
    return 0;
}

/* Opens the ledger and checkpoint store in dir read-only and reads their sequence numbers and
 * counts: the members and cards are those of the checkpoint a daemon started on dir would load
 * (ckpt_load(), every record read: the copy of state/ is checked as well), not the ledger's
 * own checkpoint tables, which are left as older versions wrote them. A read-only open
 * creates lock.mdb (and state/lock.mdb) if missing; they are removed again so that a backup
 * stays data files only. Returns 0 or -1 (message printed). */
static int inspect(const char *cmd, const char *dir, ledger_info *out)
{
    char lock[BACKUP_PATH_MAX], data[BACKUP_PATH_MAX], slock[BACKUP_PATH_MAX],
        sdata[BACKUP_PATH_MAX];
    if (join_path(lock, sizeof lock, dir, "lock.mdb") < 0 ||
        join_path(data, sizeof data, dir, "data.mdb") < 0 ||
        join_path(slock, sizeof slock, dir, CKSTORE_SUBDIR "/lock.mdb") < 0 ||
        join_path(sdata, sizeof sdata, dir, CKSTORE_SUBDIR "/data.mdb") < 0)
        return -1;
    memset(out, 0, sizeof *out);
    struct stat st;
    bool had_lock = access(lock, F_OK) == 0, had_slock = access(slock, F_OK) == 0;
    if (stat(data, &st) != 0) {
        ctl_errorf("%s: %s: %s", cmd, data,
                   errno == ENOENT ? "no such file (not a ledger or backup)" : strerror(errno));
        return -1;
    }
    out->file_bytes = (uint64_t)st.st_size;
    if (stat(sdata, &st) == 0)
        out->state_bytes = (uint64_t)st.st_size;
    ledger *l = NULL;
    ckstore *c = NULL;
    int rc = ctl_ledger_open(dir, &l) < 0 || ctl_ckstore_open(cmd, dir, &c) < 0 ? -1 : 0;
    if (rc == 0) {
        out->has_state = c != NULL;
        int lrc = ledger_last_seq(l, &out->last_seq);
        if (lrc == 0)
            lrc = ledger_stat(l, &out->st);
        state *s = NULL;
        if (lrc == 0 && state_new(&s) != 0)
            lrc = LEDGER_ERR_OTHER;
        /* into a state to be counted: a log (ckstore.h) may hold several versions of one */
        ckpt_loader ld = ckpt_state_loader(s);
        if (lrc == 0)
            lrc = ckpt_load(l, c, &ld, &out->checkpoint_seq, &out->checkpoint_src, out->state_why,
                            sizeof out->state_why);
        if (lrc == 0) {
            out->members = state_members(s);
            state_foreach_card(s, count_card, &out->cards);
        }
        state_destroy(&s);
        if (lrc != 0) {
            ctl_errorf("%s: reading %s: %s", cmd, dir, ledger_strerror(lrc));
            rc = -1;
        }
    }
    ckstore_close(&c);
    ledger_close(&l);
    if (!had_lock)
        unlink(lock);
    if (!had_slock)
        unlink(slock);
    if (rc < 0)
        return -1;
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
        json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:f}", "result", what,
                              "source", from, "target", to, "seq", (json_int_t)in->last_seq,
                              "checkpoint_seq", (json_int_t)in->checkpoint_seq, "checkpoint_source",
                              ckpt_source_name(in->checkpoint_src), "entries",
                              (json_int_t)in->st.entries, "members", (json_int_t)in->members,
                              "cards", (json_int_t)in->cards, "bytes", (json_int_t)in->file_bytes,
                              "state_bytes", (json_int_t)in->state_bytes, "elapsed_s", elapsed_s);
        char *t = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (t != NULL)
            puts(t);
        free(t);
        json_decref(o);
        return;
    }
    printf("%-11s %s -> %s\n", what, from, to);
    printf("last seq    %" PRIu64 "\n", in->last_seq);
    printf("checkpoint  %" PRIu64 " (%s)\n", in->checkpoint_seq,
           ckpt_source_name(in->checkpoint_src));
    printf("entries     %" PRIu64 "\n", in->st.entries);
    printf("members     %" PRIu64 " (checkpointed)\n", in->members);
    printf("cards       %" PRIu64 " (checkpointed)\n", in->cards);
    printf("bytes       %" PRIu64 " (%.1f MiB)\n", in->file_bytes,
           (double)in->file_bytes / (1024.0 * 1024.0));
    if (in->has_state)
        printf("state bytes %" PRIu64 " (%.1f MiB)\n", in->state_bytes,
               (double)in->state_bytes / (1024.0 * 1024.0));
    printf("elapsed     %.3f s\n", elapsed_s);
}

/* ------------------------------------------------------------------ backup */

typedef int (*copy_fn)(void *src, const char *dir, char *err, size_t err_len);

static int copy_ledger(void *src, const char *dir, char *err, size_t err_len)
{
    return ledger_copy(src, dir, err, err_len);
}

static int copy_state(void *src, const char *dir, char *err, size_t err_len)
{
    return ckstore_copy(src, dir, err, err_len);
}

typedef struct {
    copy_fn fn;
    void *src;
    const char *dir;
    char err[CTL_ERR_MAX];
    int rc;
    atomic_bool done;
} copy_job;

static void *copy_thread(void *arg)
{
    copy_job *j = arg;
    j->rc = j->fn(j->src, j->dir, j->err, sizeof j->err);
    atomic_store(&j->done, true);
    return NULL;
}

/* Runs fn (ledger_copy() or ckstore_copy() of src into dir) on a thread and reports progress,
 * labelled label, from the growing size of dir/data.mdb against total_bytes (the source's
 * size: an upper bound, compaction leaves free pages out). Returns 0 or -1 (message printed). */
static int copy_with_progress(const char *label, copy_fn fn, void *src, const char *dir,
                              uint64_t total_bytes)
{
    char data[BACKUP_PATH_MAX];
    if (join_path(data, sizeof data, dir, "data.mdb") < 0)
        return -1;
    copy_job j = {.fn = fn, .src = src, .dir = dir};
    atomic_init(&j.done, false);
    pthread_t t;
    if (pthread_create(&t, NULL, copy_thread, &j) != 0) {
        ctl_errorf("backup: cannot start the copy thread");
        return -1;
    }
    ctl_progress p;
    ctl_progress_start(&p, label, "bytes", total_bytes, false);
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

/* Makes a copied data.mdb private (LMDB creates it 0666 & umask) and durable, with the
 * directory holding it. Returns 0 or -1 (message printed). */
static int finish_copy(const char *dir, const char *data)
{
    if (chmod(data, 0640) != 0) {
        ctl_errorf("backup: chmod %s: %s", data, strerror(errno));
        return -1;
    }
    return sync_path("backup", data) < 0 || sync_path("backup", dir) < 0 ? -1 : 0;
}

/* Copies the source's state/ into dir/state/. Returns 0 or -1 (message printed). */
static int backup_state(ckstore *c, const char *src_dir, const char *dir)
{
    char src_data[BACKUP_PATH_MAX], sdir[BACKUP_PATH_MAX], sdata[BACKUP_PATH_MAX];
    if (join_path(src_data, sizeof src_data, src_dir, CKSTORE_SUBDIR "/data.mdb") < 0 ||
        join_path(sdir, sizeof sdir, dir, CKSTORE_SUBDIR) < 0 ||
        join_path(sdata, sizeof sdata, sdir, "data.mdb") < 0)
        return -1;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) { /* ckstore_copy() makes only state/ */
        ctl_errorf("backup: mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    uint64_t total = stat(src_data, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (copy_with_progress("backup state/", copy_state, c, sdir, total) < 0 ||
        finish_copy(sdir, sdata) < 0)
        return -1;
    return sync_path("backup", dir);
}

/* Removes what a failed backup put into dir (which was new or empty). */
static void remove_partial_backup(const char *dir)
{
    static const char *const files[] = {"data.mdb", "lock.mdb", CKSTORE_SUBDIR "/data.mdb",
                                        CKSTORE_SUBDIR "/lock.mdb"};
    char path[BACKUP_PATH_MAX];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (join_path(path, sizeof path, dir, files[i]) == 0)
            unlink(path);
    if (join_path(path, sizeof path, dir, CKSTORE_SUBDIR) == 0)
        rmdir(path);
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
    ckstore *c;
    if (ctl_ckstore_open("backup", g->data, &c) < 0) {
        ledger_close(&l);
        return CTL_EXIT_FAIL;
    }
    ledger_stats st;
    rc = ledger_stat(l, &st);
    if (rc < 0) {
        ctl_errorf("backup: reading %s: %s", g->data, ledger_strerror(rc));
        ckstore_close(&c);
        ledger_close(&l);
        return CTL_EXIT_FAIL;
    }
    /* state/ first, then the ledger (top of the file): the checkpoint copied is one the
     * daemon committed after its sequence was durable, so the ledger copied next holds it. */
    if (c != NULL)
        rc = backup_state(c, g->data, dir);
    else
        ctl_errorf("backup: note: %s has no %s/ (checkpoint store; an older loyaltyd wrote it): "
                   "the backup has none, and a daemon started on it recovers from the ledger's own "
                   "checkpoint, if any, or replays the whole ledger",
                   g->data, CKSTORE_SUBDIR);
    ckstore_close(&c);
    if (rc == 0)
        rc = copy_with_progress("backup", copy_ledger, l, dir, st.used_bytes);
    ledger_close(&l);
    if (rc == 0)
        rc = finish_copy(dir, data);
    ledger_info in;
    if (rc == 0)
        rc = inspect("backup", dir, &in);
    if (rc < 0) {
        /* The directory was empty or new: what is in it now is our partial copy. */
        remove_partial_backup(dir);
        ctl_errorf("backup: failed; nothing usable was left in %s", dir);
        return CTL_EXIT_FAIL;
    }
    if (in.state_why[0] != '\0')
        ctl_errorf("backup: note: the backup's %s/ is not used by a start (%s)", CKSTORE_SUBDIR,
                   in.state_why);
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

/* The UTC time for the names of what --force moves aside. */
static void aside_stamp(char *stamp, size_t cap)
{
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL || strftime(stamp, cap, "%Y%m%dT%H%M%SZ", &tm) == 0)
        snprintf(stamp, cap, "%lld", (long long)now);
}

/* Moves dir/name (a file or a directory) aside to dir/name.replaced-<stamp>, or
 * name.replaced-<stamp>-N if that is taken (two restores in one second). Returns 0 with the
 * new path in aside, or -1 (message printed). */
static int move_aside(const char *dir, const char *name, const char *stamp, char *aside,
                      size_t aside_len)
{
    char from[BACKUP_PATH_MAX], to[NAME_MAX + 1];
    if (join_path(from, sizeof from, dir, name) < 0)
        return -1;
    struct stat st;
    for (int n = 1;; n++) {
        if (n == 1)
            snprintf(to, sizeof to, "%s.replaced-%s", name, stamp);
        else
            snprintf(to, sizeof to, "%s.replaced-%s-%d", name, stamp, n);
        if (join_path(aside, aside_len, dir, to) < 0)
            return -1;
        if (lstat(aside, &st) != 0 && errno == ENOENT)
            break;
        if (n == 100) {
            ctl_errorf("restore: cannot find a free name to move %s aside to", from);
            return -1;
        }
    }
    if (rename(from, aside) != 0) {
        ctl_errorf("restore: moving %s aside to %s: %s", from, aside, strerror(errno));
        aside[0] = '\0';
        return -1;
    }
    return 0;
}

/* Removes path and, if it is a directory, the files in it (what an interrupted restore left of
 * state.restoring: its data.mdb, perhaps a lock.mdb). Returns 0 (also if there was nothing) or
 * -1 (message printed). */
static int remove_leftover(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        ctl_errorf("restore: %s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d == NULL) {
            ctl_errorf("restore: %s: %s", path, strerror(errno));
            return -1;
        }
        struct dirent *e;
        char f[BACKUP_PATH_MAX];
        int rc = 0;
        while (rc == 0 && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (join_path(f, sizeof f, path, e->d_name) < 0)
                rc = -1;
            else if (unlink(f) != 0)
                rc = -1, ctl_errorf("restore: removing %s: %s", f, strerror(errno));
        }
        closedir(d);
        if (rc < 0)
            return -1;
    }
    if ((S_ISDIR(st.st_mode) ? rmdir(path) : unlink(path)) != 0) {
        ctl_errorf("restore: removing %s: %s", path, strerror(errno));
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

/* Refuses a target that holds anything but daemon.lock, unless force. With force (or an empty
 * target), moves an existing state/ aside, then an existing ledger (a crash in between leaves a
 * ledger without state/), syncs the directory so that no stale state/ can reappear beside the
 * restored ledger, and removes what an interrupted restore left. Returns 0, with the new names
 * in aside and state_aside ("" if nothing was moved), or -1 (message printed). */
static int prepare_target(const char *dir, bool force, char *aside, size_t aside_len,
                          char *state_aside, size_t state_aside_len)
{
    char first[NAME_MAX + 1], data[BACKUP_PATH_MAX], sdir[BACKUP_PATH_MAX], stmp[BACKUP_PATH_MAX];
    bool exists;
    aside[0] = state_aside[0] = '\0';
    if (dir_first_entry("restore", dir, "daemon.lock", &exists, first, sizeof first) < 0 ||
        join_path(data, sizeof data, dir, "data.mdb") < 0 ||
        join_path(sdir, sizeof sdir, dir, CKSTORE_SUBDIR) < 0 ||
        join_path(stmp, sizeof stmp, dir, CKSTORE_SUBDIR ".restoring") < 0)
        return -1;
    struct stat st;
    bool has_ledger = access(data, F_OK) == 0;
    bool has_state = lstat(sdir, &st) == 0;
    if (first[0] != '\0' && !force) {
        if (has_ledger)
            ctl_errorf("restore: %s already holds a ledger (data.mdb%s); use --force to replace "
                       "it (the old one is kept as data.mdb.replaced-<time>%s)",
                       dir, has_state ? " and state/" : "",
                       has_state ? ", state/ as state.replaced-<time>" : "");
        else if (has_state)
            ctl_errorf("restore: %s already holds a checkpoint store (state/); use --force to "
                       "replace it (the old one is kept as state.replaced-<time>)",
                       dir);
        else
            ctl_errorf("restore: %s is not empty (it holds '%s'); restore into a new or empty "
                       "directory, or use --force",
                       dir, first);
        return -1;
    }
    char stamp[32];
    aside_stamp(stamp, sizeof stamp);
    if (has_state && move_aside(dir, CKSTORE_SUBDIR, stamp, state_aside, state_aside_len) < 0)
        return -1;
    if (has_ledger && move_aside(dir, "data.mdb", stamp, aside, aside_len) < 0)
        return -1;
    if ((has_state || has_ledger) && sync_path("restore", dir) < 0)
        return -1;
    return remove_leftover(stmp); /* we hold the directory's lock */
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

/* Copies the backup's state/data.mdb into dir/state/ through a temporary directory,
 * dir/state.restoring, renamed into place once synced: the target never holds a partial
 * state/. Called after install_copy(): state/ goes in last. Returns 0 or -1 (message printed). */
static int install_state(const char *backup, const char *dir, uint64_t bytes)
{
    char src[BACKUP_PATH_MAX], tmp[BACKUP_PATH_MAX], tmp_data[BACKUP_PATH_MAX],
        dst[BACKUP_PATH_MAX];
    if (join_path(src, sizeof src, backup, CKSTORE_SUBDIR "/data.mdb") < 0 ||
        join_path(tmp, sizeof tmp, dir, CKSTORE_SUBDIR ".restoring") < 0 ||
        join_path(tmp_data, sizeof tmp_data, tmp, "data.mdb") < 0 ||
        join_path(dst, sizeof dst, dir, CKSTORE_SUBDIR) < 0)
        return -1;
    if (mkdir(tmp, 0750) != 0) {
        ctl_errorf("restore: mkdir %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (copy_file(src, tmp_data, bytes) < 0 || sync_path("restore", tmp) < 0) {
        remove_leftover(tmp);
        return -1;
    }
    if (rename(tmp, dst) != 0) {
        ctl_errorf("restore: renaming %s to %s: %s", tmp, dst, strerror(errno));
        remove_leftover(tmp);
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
    /* state/ is installed only if a start would use it: one that does not belong to the
     * backup's ledger would only be ignored and rewritten. */
    bool with_state = src.checkpoint_src == CKPT_SRC_STATE;
    if (src.has_state && !with_state)
        ctl_errorf("restore: note: the backup's %s/ is not restored: a start would not use it (%s)",
                   CKSTORE_SUBDIR, src.state_why[0] ? src.state_why : "it holds no checkpoint");
    else if (!src.has_state)
        ctl_errorf("restore: note: the backup has no %s/ (made from a data directory written "
                   "before state/ existed): loyaltyd will recover from %s",
                   CKSTORE_SUBDIR,
                   src.checkpoint_src == CKPT_SRC_LEDGER ? "the ledger's own checkpoint"
                                                         : "a replay of the whole ledger");
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        ctl_errorf("restore: mkdir %s: %s", dir, strerror(errno));
        return CTL_EXIT_FAIL;
    }
    int lock_fd = lock_data_dir(dir);
    if (lock_fd < 0)
        return CTL_EXIT_FAIL;
    char aside[BACKUP_PATH_MAX], state_aside[BACKUP_PATH_MAX];
    rc = prepare_target(dir, force, aside, sizeof aside, state_aside, sizeof state_aside);
    /* the ledger first, state/ last (top of the file) */
    if (rc == 0)
        rc = install_copy(backup, dir, src.file_bytes);
    if (rc == 0 && with_state)
        rc = install_state(backup, dir, src.state_bytes);
    if (rc == 0)
        rc = inspect("restore", dir, &dst);
    if (rc == 0 && dst.last_seq != src.last_seq) {
        ctl_errorf("restore: the restored ledger ends at %" PRIu64 ", the backup at %" PRIu64,
                   dst.last_seq, src.last_seq);
        rc = -1;
    }
    if (rc == 0 &&
        (dst.checkpoint_seq != src.checkpoint_seq || dst.checkpoint_src != src.checkpoint_src)) {
        ctl_errorf("restore: the restored checkpoint is at %" PRIu64 " (%s), the backup's at "
                   "%" PRIu64 " (%s)",
                   dst.checkpoint_seq, ckpt_source_name(dst.checkpoint_src), src.checkpoint_seq,
                   ckpt_source_name(src.checkpoint_src));
        rc = -1;
    }
    close(lock_fd); /* releases the flock: a daemon may start now */
    if (state_aside[0] != '\0')
        fprintf(stderr, "loyaltyctl: restore: the previous %s/ was kept as %s\n", CKSTORE_SUBDIR,
                state_aside);
    if (aside[0] != '\0')
        fprintf(stderr, "loyaltyctl: restore: the previous ledger was kept as %s\n", aside);
    if (rc < 0)
        return CTL_EXIT_FAIL;
    print_info(g, "restore", backup, dir, &dst, mono_s() - t0);
    if (!g->json)
        printf("next        start loyaltyd on %s; 'loyaltyctl verify --offline --data %s' "
               "replays it in full\n",
               dir, dir);
    return CTL_EXIT_OK;
}
