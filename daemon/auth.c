/* auth.c: see auth.h. */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>
#include <zmq.h>

#include "auth.h"
#include "log.h"
#include "lt.h"

#define AUTH_KEYS_MAX 100000

typedef struct {
    uint8_t key[32];
    bool till;
    char user_id[16 + AUTH_NODES_MAX * 21]; /* "nodes:1,2,..." or "client" */
} auth_entry;

typedef struct {
    auth_entry *v;
    size_t n;
} auth_list;

struct auth {
    char path[512];
    void *rep;
    uv_thread_t thread;
    bool started;
    atomic_bool stop;
    uv_mutex_t mu; /* guards list */
    auth_list list;
    _Atomic uint64_t allowed, denied;
};

static int cmp_entry(const void *a, const void *b)
{
    return memcmp(((const auth_entry *)a)->key, ((const auth_entry *)b)->key, 32);
}

/* Parses the allowlist file into l (sorted by key). Returns 0 or -1 with err. */
static int load_list(const char *path, auth_list *l, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    l->v = NULL;
    l->n = 0;
    size_t cap = 0, line_no = 0;
    char line[4096];
    int rc = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        line_no++;
        /* '#' is a Z85 character, so only whole lines can be comments */
        const char *first = line + strspn(line, " \t");
        if (*first == '#')
            continue;
        char role[16], key[64], nodes[2048] = "";
        int k = sscanf(line, "%15s %63s %2047s", role, key, nodes);
        if (k <= 0)
            continue;
        bool till = strcmp(role, "till") == 0;
        if ((!till && strcmp(role, "client") != 0) || k < 2 || (till && k < 3) ||
            (!till && k > 2)) {
            snprintf(err, err_len, "%s:%zu: expected \"till KEY NODE[,NODE...]\" or \"client KEY\"",
                     path, line_no);
            rc = -1;
            break;
        }
        if (l->n == cap) {
            cap = cap ? cap * 2 : 64;
            auth_entry *nv = cap <= AUTH_KEYS_MAX ? realloc(l->v, cap * sizeof *nv) : NULL;
            if (nv == NULL) {
                snprintf(err, err_len, "%s:%zu: too many keys (at most %d)", path, line_no,
                         AUTH_KEYS_MAX);
                rc = -1;
                break;
            }
            l->v = nv;
        }
        auth_entry *e = &l->v[l->n];
        memset(e, 0, sizeof *e);
        if (strlen(key) != 40 || zmq_z85_decode(e->key, key) == NULL) {
            snprintf(err, err_len, "%s:%zu: \"%s\" is not a Z85 public key (40 characters)", path,
                     line_no, key);
            rc = -1;
            break;
        }
        e->till = till;
        if (!till) {
            snprintf(e->user_id, sizeof e->user_id, "client");
        } else {
            size_t off = (size_t)snprintf(e->user_id, sizeof e->user_id, "nodes:");
            int count = 0;
            for (char *save = NULL, *tok = strtok_r(nodes, ",", &save); tok != NULL;
                 tok = strtok_r(NULL, ",", &save)) {
                char *end;
                errno = 0;
                unsigned long long node = strtoull(tok, &end, 10);
                if (errno != 0 || *end != '\0' || node == 0 || !isdigit((unsigned char)tok[0]) ||
                    ++count > AUTH_NODES_MAX) {
                    snprintf(err, err_len, "%s:%zu: \"%s\" is not a node id (1.., at most %d)",
                             path, line_no, tok, AUTH_NODES_MAX);
                    rc = -1;
                    break;
                }
                off += (size_t)snprintf(e->user_id + off, sizeof e->user_id - off, "%s%llu",
                                        count > 1 ? "," : "", node);
            }
            if (rc != 0)
                break;
        }
        l->n++;
    }
    fclose(f);
    if (rc != 0) {
        free(l->v);
        l->v = NULL;
        l->n = 0;
        return -1;
    }
    qsort(l->v, l->n, sizeof *l->v, cmp_entry);
    return 0;
}

/* Answers one ZAP request (RFC 27): 7 frames in, 6 frames out. */
static void zap_one(auth *a)
{
    zmq_msg_t f[8];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, a->rep, 0) < 0) {
            zmq_msg_close(&m);
            return;
        }
        more = zmq_msg_more(&m);
        if (n < 8)
            f[n++] = m;
        else
            zmq_msg_close(&m);
    }
    const char *status = "400", *text = "not allowed";
    char user[sizeof((auth_entry *)0)->user_id] = "";
    if (n == 7 && zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&f[6]) == 32) {
        char domain[16] = "";
        size_t dl = zmq_msg_size(&f[2]) < sizeof domain - 1 ? zmq_msg_size(&f[2]) : 0;
        memcpy(domain, zmq_msg_data(&f[2]), dl);
        auth_entry probe;
        memcpy(probe.key, zmq_msg_data(&f[6]), 32);
        uv_mutex_lock(&a->mu);
        auth_entry *e = bsearch(&probe, a->list.v, a->list.n, sizeof probe, cmp_entry);
        bool ok = e != NULL && (e->till || strcmp(domain, AUTH_DOMAIN_INGEST) != 0);
        if (ok)
            snprintf(user, sizeof user, "%s", e->user_id);
        uv_mutex_unlock(&a->mu);
        if (ok) {
            status = "200";
            text = "OK";
        }
    }
    atomic_fetch_add(status[0] == '2' ? &a->allowed : &a->denied, 1);
    if (status[0] != '2')
        lt_log(LT_WARN, "connection refused: key not on the allowlist for this endpoint", NULL);
    /* version, request id (echoed), status, text, user id, metadata */
    zmq_send(a->rep, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(a->rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(a->rep, "", 0, ZMQ_SNDMORE);
    zmq_send(a->rep, status, 3, ZMQ_SNDMORE);
    zmq_send(a->rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(a->rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(a->rep, "", 0, 0);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void zap_main(void *arg)
{
    auth *a = arg;
    while (!atomic_load(&a->stop)) {
        zmq_pollitem_t it = {a->rep, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) > 0)
            zap_one(a);
    }
}

int auth_start(void *zctx, const char *allowlist_path, auth **out, char *err, size_t err_len)
{
    auth *a = calloc(1, sizeof *a);
    if (a == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    snprintf(a->path, sizeof a->path, "%s", allowlist_path);
    uv_mutex_init(&a->mu);
    if (load_list(a->path, &a->list, err, err_len) != 0) {
        auth_stop(&a);
        return -1;
    }
    a->rep = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    if (a->rep == NULL || zmq_setsockopt(a->rep, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(a->rep, "inproc://zeromq.zap.01") != 0) {
        snprintf(err, err_len, "cannot start the ZAP handler: %s", zmq_strerror(zmq_errno()));
        auth_stop(&a);
        return -1;
    }
    if (uv_thread_create(&a->thread, zap_main, a) != 0) {
        snprintf(err, err_len, "cannot start the ZAP thread");
        auth_stop(&a);
        return -1;
    }
    a->started = true;
    *out = a;
    return 0;
}

int auth_reload(auth *a, char *err, size_t err_len)
{
    auth_list nl;
    if (load_list(a->path, &nl, err, err_len) != 0)
        return -1;
    uv_mutex_lock(&a->mu);
    auth_list old = a->list;
    a->list = nl;
    uv_mutex_unlock(&a->mu);
    free(old.v);
    return 0;
}

size_t auth_keys(auth *a)
{
    uv_mutex_lock(&a->mu);
    size_t n = a->list.n;
    uv_mutex_unlock(&a->mu);
    return n;
}

void auth_stop(auth **ap)
{
    auth *a = *ap;
    if (a == NULL)
        return;
    if (a->started) {
        atomic_store(&a->stop, true);
        uv_thread_join(&a->thread);
    }
    if (a->rep != NULL)
        zmq_close(a->rep);
    free(a->list.v);
    uv_mutex_destroy(&a->mu);
    free(a);
    *ap = NULL;
}

int auth_read_secret(const char *path, char out[41], char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[128] = "";
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    uint8_t bin[32];
    line[strcspn(line, "\r\n \t")] = '\0';
    if (!ok || strlen(line) != 40 || zmq_z85_decode(bin, line) == NULL) {
        snprintf(err, err_len, "%s: not a Z85 secret key (40 characters on the first line)", path);
        return -1;
    }
    memcpy(out, line, 41);
    return 0;
}

bool auth_node_allowed(const char *user_id, uint64_t node_id)
{
    if (user_id == NULL || strncmp(user_id, "nodes:", 6) != 0)
        return false;
    for (const char *p = user_id + 6; *p != '\0';) {
        char *end;
        unsigned long long n = strtoull(p, &end, 10);
        if (end == p)
            return false;
        if (n == node_id)
            return true;
        p = *end == ',' ? end + 1 : end;
    }
    return false;
}

bool auth_endpoint_is_local(const char *ep)
{
    if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0)
        return true;
    if (strncmp(ep, "tcp://", 6) != 0)
        return false;
    const char *h = ep + 6;
    return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
           strncmp(h, "[::1]:", 6) == 0;
}
