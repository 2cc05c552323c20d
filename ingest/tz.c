/* tz.c: IANA zone name -> UTC offset, read from the system's TZif files (R3).
 *
 * Tills may name their zone instead of sending an offset. We read /usr/share/zoneinfo/NAME once
 * (version 2+ 64-bit section), keep its transitions, and answer offsets by binary search. Times
 * after the last transition use the last transition's offset (Debian's zone files carry
 * transitions to 2037). The cache is shared: the daemon decodes on its loop thread and on its
 * decode thread, so a lookup holds g_mu (uncontended almost always; only events that name a
 * zone come here).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

#define TZ_ZONES_MAX 64
#define TZ_NAME_MAX 64
#define TZ_FILE_BYTES_MAX (512 * 1024)

typedef struct {
    char name[TZ_NAME_MAX];
    uint32_t n; /* transitions */
    int64_t *at;
    int32_t *off_s;  /* offset in force from at[i] */
    int32_t first_s; /* offset before the first transition */
} tz_zone;

static tz_zone g_zones[TZ_ZONES_MAX];
static size_t g_zones_n;
static size_t g_zones_next; /* once full, the entry the next new zone replaces */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= TZ_NAME_MAX || s[0] == '/' || strstr(s, "..") != NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '_' || c == '-' || c == '+'))
            return false;
    }
    return true;
}

/* Parses a TZif buffer into z. Returns 0 or -1. */
static int parse_tzif(const uint8_t *b, size_t len, tz_zone *z)
{
    if (len < 44 || memcmp(b, "TZif", 4) != 0)
        return -1;
    uint32_t c[6];
    for (int i = 0; i < 6; i++)
        c[i] = be32(b + 20 + 4 * i);
    /* isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt */
    size_t v1 = (size_t)c[3] * 5 + (size_t)c[4] * 6 + c[5] + (size_t)c[2] * 8 + c[1] + c[0];
    const uint8_t *p = b + 44;
    int time_bytes = 4;
    if (b[4] >= '2') {
        if (44 + v1 + 44 > len)
            return -1;
        p = b + 44 + v1;
        if (memcmp(p, "TZif", 4) != 0)
            return -1;
        for (int i = 0; i < 6; i++)
            c[i] = be32(p + 20 + 4 * i);
        p += 44;
        time_bytes = 8;
    }
    uint32_t timecnt = c[3], typecnt = c[4];
    size_t need = (size_t)timecnt * ((size_t)time_bytes + 1) + (size_t)typecnt * 6;
    if (typecnt == 0 || (size_t)(p - b) + need > len)
        return -1;
    const uint8_t *times = p, *idx = p + (size_t)timecnt * time_bytes, *types = idx + timecnt;
    z->at = calloc(timecnt ? timecnt : 1, sizeof *z->at);
    z->off_s = calloc(timecnt ? timecnt : 1, sizeof *z->off_s);
    if (z->at == NULL || z->off_s == NULL) {
        free(z->at);
        free(z->off_s);
        return -1;
    }
    for (uint32_t i = 0; i < timecnt; i++) {
        z->at[i] = time_bytes == 8 ? be64(times + 8 * i) : (int32_t)be32(times + 4 * i);
        if (idx[i] >= typecnt) {
            free(z->at);
            free(z->off_s);
            return -1;
        }
        z->off_s[i] = (int32_t)be32(types + 6 * idx[i]);
    }
    z->n = timecnt;
    z->first_s = (int32_t)be32(types); /* type 0 by convention */
    return 0;
}

/* Loads a zone into the cache. A full cache recycles its entries in turn, so that a till naming
 * many zones costs re-reads but never turns a valid zone into an unknown one. */
static tz_zone *load_zone(const char *name)
{
    char path[256];
    const char *dir = getenv("TZDIR");
    snprintf(path, sizeof path, "%s/%s", dir != NULL ? dir : "/usr/share/zoneinfo", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *buf = malloc(TZ_FILE_BYTES_MAX);
    size_t len = buf != NULL ? fread(buf, 1, TZ_FILE_BYTES_MAX, f) : 0;
    fclose(f);
    tz_zone loaded = {0};
    int rc = len > 0 ? parse_tzif(buf, len, &loaded) : -1;
    free(buf);
    if (rc != 0)
        return NULL;
    snprintf(loaded.name, sizeof loaded.name, "%s", name);
    tz_zone *z;
    if (g_zones_n < TZ_ZONES_MAX) {
        z = &g_zones[g_zones_n++];
    } else {
        z = &g_zones[g_zones_next];
        g_zones_next = (g_zones_next + 1) % TZ_ZONES_MAX;
        free(z->at);
        free(z->off_s);
    }
    *z = loaded;
    return z;
}

static int zone_offset(const char *zone, int64_t t, int32_t *off_min)
{
    tz_zone *z = NULL;
    for (size_t i = 0; i < g_zones_n; i++) {
        if (strcmp(g_zones[i].name, zone) == 0) {
            z = &g_zones[i];
            break;
        }
    }
    if (z == NULL && (z = load_zone(zone)) == NULL)
        return -1;
    int32_t off = z->first_s;
    if (z->n > 0 && t >= z->at[0]) {
        uint32_t lo = 0, hi = z->n; /* find the last transition <= t */
        while (hi - lo > 1) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (z->at[mid] <= t)
                lo = mid;
            else
                hi = mid;
        }
        off = z->off_s[lo];
    }
    *off_min = off / 60;
    return 0;
}

int ingest_zone_offset(const char *zone, int64_t t, int32_t *off_min)
{
    if (!valid_name(zone))
        return -1;
    pthread_mutex_lock(&g_mu);
    int rc = zone_offset(zone, t, off_min);
    pthread_mutex_unlock(&g_mu);
    return rc;
}
