/* lmdb_util.h: what ledger.c and ckstore.c, the ledger module's two LMDB environments, share:
 * big-endian integers (keys and values are stored so, so that LMDB's byte order is numeric
 * order), messages, and LMDB or errno codes as LEDGER_ERR_*. Internal to the module. */
#ifndef LT_LMDB_UTIL_H
#define LT_LMDB_UTIL_H

#include <stddef.h>
#include <stdint.h>

static inline void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* snprintf into err (nothing if err is NULL or err_len 0). */
void ldb_fmt_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An LMDB or errno code as a LEDGER_ERR_* (0 stays 0). */
int ldb_map_err(int rc);
/* A compacting hot copy of env into dir (created if missing): the snapshot of one read
 * transaction, free pages left out; LMDB creates dir/data.mdb exclusively, so an existing file
 * there is never overwritten. Returns 0 or a LEDGER_ERR_* with err set. */
typedef struct MDB_env MDB_env;
int ldb_env_copy(MDB_env *env, const char *dir, char *err, size_t err_len);
/* Creates *env and opens it at path with maxdbs named databases, the map size map_bytes (not
 * set for MDB_RDONLY opens: they take the writer's) and flags; frees the slots of readers that
 * died. A read-only open where nothing is yet is LEDGER_ERR_NOT_FOUND, "PATH: no WHAT here".
 * Returns 0 or a LEDGER_ERR_* with err set (*env may then need mdb_env_close()). */
int ldb_env_open(MDB_env **env, const char *path, unsigned maxdbs, size_t map_bytes, unsigned flags,
                 const char *what, char *err, size_t err_len);

#endif
