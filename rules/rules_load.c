/* rules_load.c: reads a YAML rules file (docs/rules.md) into a `rules` object.
 *
 * The whole file is loaded as a libyaml document tree and then walked section by section.
 * Every value is checked (type, range, unknown or duplicate keys, ordering) and every error
 * names the file and line of the offending node. Missing optional keys keep the defaults of the
 * seed programme (RULES.md), so a file with only `version` is a complete programme.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include <yaml.h>

#include "rules_internal.h"

extern const char lt_rules_default_yaml[]; /* ops/rules.yaml, embedded by CMake */

typedef struct {
    yaml_document_t *doc;
    const char *name;
    char *err;
    size_t err_len;
    rules *r;
} loader;

/* ------------------------------------------------------------------ errors */

static int failv(loader *l, unsigned long line, const char *fmt, va_list ap)
{
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (l->err && l->err_len > 0)
        snprintf(l->err, l->err_len, "%s:%lu: %s", l->name, line, msg);
    return -1;
}

/* Writes "FILE:LINE: message" for node n (line 1 when n is NULL) and returns -1. */
__attribute__((format(printf, 3, 4))) static int fail(loader *l, const yaml_node_t *n,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    failv(l, n ? (unsigned long)n->start_mark.line + 1 : 1, fmt, ap);
    va_end(ap);
    return -1;
}

__attribute__((format(printf, 3, 4))) static int fail_at(loader *l, unsigned long line,
                                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    failv(l, line, fmt, ap);
    va_end(ap);
    return -1;
}

/* ------------------------------------------------------------------ node helpers */

static yaml_node_t *node(loader *l, int id)
{
    return yaml_document_get_node(l->doc, id);
}

static const char *text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = text(n);
    return s[0] == '\0' || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* Checks that n is a mapping whose keys are scalars from `allowed` (NULL-terminated), each at
 * most once. */
static int check_map(loader *l, const yaml_node_t *n, const char *what, const char *const *allowed)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail(l, n, "%s must be a mapping", what);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key);
        if (k->type != YAML_SCALAR_NODE)
            return fail(l, k, "keys of %s must be plain words", what);
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            known = known || !strcmp(*a, text(k));
        if (!known)
            return fail(l, k, "unknown key '%s' in %s", text(k), what);
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            if (!strcmp(text(node(l, q->key)), text(k)))
                return fail(l, k, "duplicate key '%s' in %s", text(k), what);
        }
    }
    return 0;
}

/* The value of `key` in mapping n (already checked), or NULL. */
static yaml_node_t *get(loader *l, const yaml_node_t *n, const char *key)
{
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        if (!strcmp(text(node(l, p->key)), key))
            return node(l, p->value);
    }
    return NULL;
}

/* Parses a whole number: optional '-', digits, '_' allowed between digits (R1: no fractions). */
static int parse_int(loader *l, const yaml_node_t *n, const char *what, int64_t min, int64_t max,
                     int64_t *out)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
        is_null(n))
        return fail(l, n, "%s must be a whole number", what);
    const char *s = text(n);
    bool neg = (*s == '-');
    int64_t v = 0;
    int digits = 0;
    for (s += neg; *s; s++) {
        if (*s == '_' && digits > 0 && s[1] >= '0' && s[1] <= '9')
            continue;
        if (*s < '0' || *s > '9') {
            if (*s == '.' || *s == 'e' || *s == 'E')
                return fail(l, n, "%s must be a whole number, not '%s' (R1: no fractions)", what,
                            text(n));
            return fail(l, n, "%s must be a whole number, not '%s'", what, text(n));
        }
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v))
            return fail(l, n, "%s is out of range", what);
        digits++;
    }
    if (digits == 0)
        return fail(l, n, "%s must be a whole number, not '%s'", what, text(n));
    if (neg)
        v = -v;
    if (v < min || v > max)
        return fail(l, n, "%s must be between %lld and %lld, not %lld", what, (long long)min,
                    (long long)max, (long long)v);
    *out = v;
    return 0;
}

static int parse_u32(loader *l, const yaml_node_t *n, const char *what, int64_t min, int64_t max,
                     uint32_t *out)
{
    int64_t v;
    LT_ASSERT(min >= 0 && max <= UINT32_MAX);
    if (parse_int(l, n, what, min, max, &v))
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* A non-empty string that fits out[cap] (NUL included). */
static int parse_str(loader *l, const yaml_node_t *n, const char *what, char *out, size_t cap)
{
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return fail(l, n, "%s must be a string", what);
    size_t len = n->data.scalar.length;
    if (len == 0)
        return fail(l, n, "%s must not be empty", what);
    if (len >= cap)
        return fail(l, n, "%s is longer than %zu bytes", what, cap - 1);
    if (strlen(text(n)) != len)
        return fail(l, n, "%s contains a NUL byte", what);
    memcpy(out, text(n), len + 1);
    return 0;
}

static int parse_bool(loader *l, const yaml_node_t *n, const char *what, bool *out)
{
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (!strcmp(text(n), "true")) {
            *out = true;
            return 0;
        }
        if (!strcmp(text(n), "false")) {
            *out = false;
            return 0;
        }
    }
    return fail(l, n, "%s must be true or false", what);
}

/* One of the NULL-terminated `names`; *out is its index. */
static int parse_enum(loader *l, const yaml_node_t *n, const char *what, const char *const *names,
                      int *out)
{
    if (n->type == YAML_SCALAR_NODE) {
        for (int i = 0; names[i]; i++) {
            if (!strcmp(names[i], text(n))) {
                *out = i;
                return 0;
            }
        }
    }
    char list[128] = "";
    for (int i = 0; names[i]; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
    }
    return fail(l, n, "%s must be one of: %s", what, list);
}

/* A sequence (a null value counts as an empty one). Sets *items and *count. */
static int parse_seq(loader *l, const yaml_node_t *n, const char *what, size_t max,
                     yaml_node_item_t **items, size_t *count)
{
    if (is_null(n)) {
        *items = NULL;
        *count = 0;
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(l, n, "%s must be a list", what);
    *items = n->data.sequence.items.start;
    *count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (*count > max)
        return fail(l, n, "%s has more than %zu entries", what, max);
    return 0;
}

/* A list of distinct names, each fitting LT_ID_MAX. */
static int parse_names(loader *l, const yaml_node_t *n, const char *what, size_t max,
                       char (*out)[LT_ID_MAX], uint32_t *count)
{
    yaml_node_item_t *items;
    size_t cnt;
    if (parse_seq(l, n, what, max, &items, &cnt))
        return -1;
    memset(out, 0, max * sizeof *out); /* the file's list replaces the default one */
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *v = node(l, items[i]);
        if (parse_str(l, v, what, out[i], LT_ID_MAX))
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(out[j], out[i]))
                return fail(l, v, "'%s' is listed twice in %s", out[i], what);
        }
    }
    *count = (uint32_t)cnt;
    return 0;
}

/* "YYYY-MM-DD HH:MM" store-local time -> local seconds since 1970-01-01 00:00. */
static int parse_local_time(loader *l, const yaml_node_t *n, const char *what, int64_t *out)
{
    int y, mo, d, h, mi, used = 0;
    if (n->type != YAML_SCALAR_NODE ||
        sscanf(text(n), "%4d-%2d-%2d %2d:%2d%n", &y, &mo, &d, &h, &mi, &used) != 5 ||
        (size_t)used != n->data.scalar.length || n->data.scalar.length != 16)
        return fail(l, n, "%s must be a local time \"YYYY-MM-DD HH:MM\"", what);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > rules__days_in_month(y, mo) || h > 23 ||
        mi > 59 || h < 0 || mi < 0)
        return fail(l, n, "%s is not a valid date and time: '%s'", what, text(n));
    *out = rules_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
    return 0;
}

/* ------------------------------------------------------------------ sections */

static const char *const ON_OFF_FLAGS[] = {"group_buy", "promotion", NULL};

static int load_flags(loader *l, const yaml_node_t *n)
{
    yaml_node_item_t *items;
    size_t cnt;
    if (parse_seq(l, n, "excluded_flags", 2, &items, &cnt))
        return -1;
    l->r->excluded_flags = 0;
    for (size_t i = 0; i < cnt; i++) {
        int f;
        if (parse_enum(l, node(l, items[i]), "an excluded flag", ON_OFF_FLAGS, &f))
            return -1;
        l->r->excluded_flags |= (f == 0) ? LT_LINE_GROUP_BUY : LT_LINE_PROMOTION;
    }
    return 0;
}

static int load_class(loader *l, const yaml_node_t *n, uint32_t idx)
{
    static const char *const keys[] = {"name", "unit_fen", "categories", NULL};
    rules *r = l->r;
    rules_class *c = &r->classes[idx];
    yaml_node_t *v;

    if (check_map(l, n, "an earn class", keys))
        return -1;
    if (!(v = get(l, n, "name")))
        return fail(l, n, "an earn class needs a name");
    if (parse_str(l, v, "earn class name", c->name, sizeof c->name))
        return -1;
    for (uint32_t i = 0; i < idx; i++) {
        if (!strcmp(r->classes[i].name, c->name))
            return fail(l, v, "earn class '%s' is defined twice", c->name);
    }
    if (!(v = get(l, n, "unit_fen")))
        return fail(l, n, "earn class '%s' needs unit_fen", c->name);
    if (parse_int(l, v, "unit_fen", 1, LT_LINE_FEN_MAX, &c->unit_fen))
        return -1;

    bool is_default = !strcmp(c->name, "default");
    if (is_default)
        r->class_default = idx;
    if (!(v = get(l, n, "categories")))
        return 0;
    if (is_default && !is_null(v))
        return fail(l, v, "the default class takes every other category; it has no categories");

    yaml_node_item_t *items;
    size_t cnt;
    if (parse_seq(l, v, "categories", RULES_CATEGORIES_MAX, &items, &cnt))
        return -1;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *cv = node(l, items[i]);
        if (r->class_categories_n >= RULES_CATEGORIES_MAX)
            return fail(l, cv, "earn classes list more than %d categories", RULES_CATEGORIES_MAX);
        rules_class_category *cc = &r->class_categories[r->class_categories_n];
        if (parse_str(l, cv, "a category", cc->category, sizeof cc->category))
            return -1;
        for (uint32_t j = 0; j < r->class_categories_n; j++) {
            if (!strcmp(r->class_categories[j].category, cc->category))
                return fail(l, cv, "category '%s' is in two earn classes", cc->category);
        }
        cc->class_index = idx;
        r->class_categories_n++;
    }
    return 0;
}

static int load_classes(loader *l, const yaml_node_t *n)
{
    yaml_node_item_t *items;
    size_t cnt;
    rules *r = l->r;

    if (parse_seq(l, n, "earn_classes", RULES_CLASSES_MAX, &items, &cnt))
        return -1;
    memset(r->classes, 0, sizeof r->classes);
    memset(r->class_categories, 0, sizeof r->class_categories);
    r->classes_n = 0;
    r->class_categories_n = 0;
    r->class_default = UINT32_MAX;
    for (size_t i = 0; i < cnt; i++) {
        if (load_class(l, node(l, items[i]), (uint32_t)i))
            return -1;
        r->classes_n++;
    }
    if (r->class_default == UINT32_MAX)
        return fail(l, n, "earn_classes needs a class named 'default'");
    return 0;
}

static int load_bands(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"min_paid_pct", "rate_bp", NULL};
    yaml_node_item_t *items;
    size_t cnt;
    rules *r = l->r;

    if (parse_seq(l, n, "rebate_bands", RULES_BANDS_MAX, &items, &cnt))
        return -1;
    if (cnt == 0)
        return fail(l, n, "rebate_bands needs at least one band");
    memset(r->bands, 0, sizeof r->bands);
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *b = node(l, items[i]), *v;
        rules_band *band = &r->bands[i];
        if (check_map(l, b, "a rebate band", keys))
            return -1;
        if (!(v = get(l, b, "min_paid_pct")))
            return fail(l, b, "a rebate band needs min_paid_pct");
        if (parse_int(l, v, "min_paid_pct", 0, 100, &band->min_paid_pct))
            return -1;
        if (i > 0 && band->min_paid_pct >= r->bands[i - 1].min_paid_pct)
            return fail(l, v, "rebate bands must be ordered by min_paid_pct, highest first");
        if (!(v = get(l, b, "rate_bp")))
            return fail(l, b, "a rebate band needs rate_bp");
        if (parse_int(l, v, "rate_bp", 0, 10000, &band->rate_bp))
            return -1;
    }
    r->bands_n = (uint32_t)cnt;
    return 0;
}

static int load_multipliers(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"stacking", "cap_pct", "birthday_pct", NULL};
    static const char *const stacking[] = {"max", "multiply", NULL};
    rules *r = l->r;
    yaml_node_t *v;
    int e;

    if (check_map(l, n, "multipliers", keys))
        return -1;
    if ((v = get(l, n, "stacking"))) {
        if (parse_enum(l, v, "stacking", stacking, &e))
            return -1;
        r->stacking = (rules_stacking)e;
    }
    if ((v = get(l, n, "cap_pct")) && parse_u32(l, v, "cap_pct", 100, RULES_PCT_MAX, &r->cap_pct))
        return -1;
    if ((v = get(l, n, "birthday_pct")) &&
        parse_u32(l, v, "birthday_pct", 100, RULES_PCT_MAX, &r->birthday_pct))
        return -1;
    return 0;
}

static int load_promotion(loader *l, const yaml_node_t *n, rules_promotion *p)
{
    static const char *const keys[] = {"name",   "multiplier_pct", "from", "to",
                                       "stores", "categories",     NULL};
    yaml_node_t *v;

    if (check_map(l, n, "a promotion", keys))
        return -1;
    if (!(v = get(l, n, "name")))
        return fail(l, n, "a promotion needs a name");
    if (parse_str(l, v, "promotion name", p->name, sizeof p->name))
        return -1;
    if (!(v = get(l, n, "multiplier_pct")))
        return fail(l, n, "promotion '%s' needs multiplier_pct", p->name);
    if (parse_u32(l, v, "multiplier_pct", 100, RULES_PCT_MAX, &p->multiplier_pct))
        return -1;
    if (!(v = get(l, n, "from")))
        return fail(l, n, "promotion '%s' needs from", p->name);
    if (parse_local_time(l, v, "from", &p->from_local))
        return -1;
    if (!(v = get(l, n, "to")))
        return fail(l, n, "promotion '%s' needs to", p->name);
    if (parse_local_time(l, v, "to", &p->to_local))
        return -1;
    if (p->to_local <= p->from_local)
        return fail(l, v, "promotion '%s' ends before it starts", p->name);
    if ((v = get(l, n, "stores")) &&
        parse_names(l, v, "stores", RULES_PROMO_LIST_MAX, p->stores, &p->stores_n))
        return -1;
    if ((v = get(l, n, "categories")) &&
        parse_names(l, v, "categories", RULES_PROMO_LIST_MAX, p->categories, &p->categories_n))
        return -1;
    return 0;
}

static int load_promotions(loader *l, const yaml_node_t *n)
{
    yaml_node_item_t *items;
    size_t cnt;
    rules *r = l->r;

    if (parse_seq(l, n, "promotions", RULES_PROMOTIONS_MAX, &items, &cnt))
        return -1;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *p = node(l, items[i]);
        if (load_promotion(l, p, &r->promotions[i]))
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(r->promotions[j].name, r->promotions[i].name))
                return fail(l, p, "promotion '%s' is defined twice", r->promotions[i].name);
        }
    }
    r->promotions_n = (uint32_t)cnt;
    return 0;
}

static int sku_cmp(const void *a, const void *b)
{
    return strcmp(((const rules_sku *)a)->sku, ((const rules_sku *)b)->sku);
}

static int load_skus(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"sku", "points", NULL};
    yaml_node_item_t *items;
    size_t cnt;
    rules *r = l->r;

    if (parse_seq(l, n, "sku_points", RULES_SKUS_MAX, &items, &cnt))
        return -1;
    if (cnt == 0)
        return 0;
    r->skus = calloc(cnt, sizeof *r->skus);
    if (!r->skus)
        return fail(l, n, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *s = node(l, items[i]), *v;
        rules_sku *e = &r->skus[i];
        if (check_map(l, s, "a sku_points entry", keys))
            return -1;
        if (!(v = get(l, s, "sku")))
            return fail(l, s, "a sku_points entry needs sku");
        if (parse_str(l, v, "sku", e->sku, sizeof e->sku))
            return -1;
        if (!(v = get(l, s, "points")))
            return fail(l, s, "sku '%s' needs points", e->sku);
        if (parse_int(l, v, "points", 1, RULES_SKU_POINTS_MAX, &e->points))
            return -1;
    }
    r->skus_n = (uint32_t)cnt;
    qsort(r->skus, cnt, sizeof *r->skus, sku_cmp);
    for (size_t i = 1; i < cnt; i++) {
        if (!strcmp(r->skus[i - 1].sku, r->skus[i].sku))
            return fail(l, n, "sku '%s' is listed twice in sku_points", r->skus[i].sku);
    }
    return 0;
}

static int load_tier(loader *l, const yaml_node_t *n, uint32_t idx)
{
    static const char *const keys[] = {"name", "threshold", "retain", "multiplier_pct", NULL};
    rules *r = l->r;
    rules_tier *t = &r->tiers[idx];
    yaml_node_t *v;

    if (check_map(l, n, "a tier", keys))
        return -1;
    if (!(v = get(l, n, "name")))
        return fail(l, n, "a tier needs a name");
    if (parse_str(l, v, "tier name", t->name, sizeof t->name))
        return -1;
    for (uint32_t i = 0; i < idx; i++) {
        if (!strcmp(r->tiers[i].name, t->name))
            return fail(l, v, "tier '%s' is defined twice", t->name);
    }
    if (!(v = get(l, n, "threshold")))
        return fail(l, n, "tier '%s' needs a threshold", t->name);
    if (parse_int(l, v, "threshold", 0, INT64_MAX, &t->threshold))
        return -1;
    if (idx == 0 && t->threshold != 0)
        return fail(l, v, "the lowest tier '%s' must have threshold 0", t->name);
    if (idx > 0 && t->threshold <= r->tiers[idx - 1].threshold)
        return fail(l, v, "tier thresholds must increase: '%s' is not above '%s'", t->name,
                    r->tiers[idx - 1].name);
    t->retain = t->threshold;
    if ((v = get(l, n, "retain")) && parse_int(l, v, "retain", 0, t->threshold, &t->retain))
        return -1;
    t->multiplier_pct = 100;
    if ((v = get(l, n, "multiplier_pct")) &&
        parse_u32(l, v, "multiplier_pct", 100, RULES_PCT_MAX, &t->multiplier_pct))
        return -1;
    return 0;
}

static int load_tiers(loader *l, const yaml_node_t *n)
{
    yaml_node_item_t *items;
    size_t cnt;

    if (parse_seq(l, n, "tiers", RULES_TIERS_MAX, &items, &cnt))
        return -1;
    if (cnt == 0)
        return fail(l, n, "tiers needs at least one tier");
    memset(l->r->tiers, 0, sizeof l->r->tiers);
    for (size_t i = 0; i < cnt; i++) {
        if (load_tier(l, node(l, items[i]), (uint32_t)i))
            return -1;
    }
    l->r->tiers_n = (uint32_t)cnt;
    return 0;
}

static int parse_period(loader *l, const yaml_node_t *n, const char *what, uint32_t *out)
{
    if (parse_u32(l, n, what, 1, 12, out))
        return -1;
    if (12 % *out != 0)
        return fail(l, n, "%s must divide the year: 1, 2, 3, 4, 6 or 12", what);
    return 0;
}

static int load_expiry(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"mode",     "cutoff",      "period_months",
                                       "ttl_days", "notice_days", NULL};
    static const char *const modes[] = {"calendar", "rolling", "none", NULL};
    rules *r = l->r;
    yaml_node_t *v;
    int e;

    if (check_map(l, n, "expiry", keys))
        return -1;
    if ((v = get(l, n, "mode"))) {
        if (parse_enum(l, v, "expiry mode", modes, &e))
            return -1;
        r->expiry_mode = (rules_expiry_mode)e;
    }
    if ((v = get(l, n, "cutoff"))) {
        int m, d, used = 0;
        if (v->type != YAML_SCALAR_NODE || sscanf(text(v), "%2d-%2d%n", &m, &d, &used) != 2 ||
            used != 5 || v->data.scalar.length != 5)
            return fail(l, v, "cutoff must be a month-day \"MM-DD\"");
        if (m < 1 || m > 12 || d < 1 || d > rules__days_in_month(2000, m))
            return fail(l, v, "cutoff '%s' is not a day of the year", text(v));
        r->cutoff_month = (uint32_t)m;
        r->cutoff_day = (uint32_t)d;
    }
    if ((v = get(l, n, "period_months")) &&
        parse_period(l, v, "expiry period_months", &r->expiry_period_months))
        return -1;
    if ((v = get(l, n, "ttl_days")) && parse_int(l, v, "ttl_days", 1, RULES_DAYS_MAX, &r->ttl_days))
        return -1;
    if ((v = get(l, n, "notice_days")) &&
        parse_int(l, v, "notice_days", 0, RULES_DAYS_MAX, &r->notice_days))
        return -1;
    return 0;
}

static int load_referral(loader *l, const yaml_node_t *n)
{
    static const char *const keys[] = {"bonus", "trigger", "levels_bp", NULL};
    static const char *const triggers[] = {"first_sale", "enrol", NULL};
    rules *r = l->r;
    yaml_node_t *v;
    int e;

    if (check_map(l, n, "referral", keys))
        return -1;
    if ((v = get(l, n, "bonus")) && parse_int(l, v, "bonus", 0, LT_POINTS_MAX, &r->referral_bonus))
        return -1;
    if ((v = get(l, n, "trigger"))) {
        if (parse_enum(l, v, "referral trigger", triggers, &e))
            return -1;
        r->referral_trigger = (rules_referral_trigger)e;
    }
    if ((v = get(l, n, "levels_bp"))) {
        yaml_node_item_t *items;
        size_t cnt;
        if (parse_seq(l, v, "levels_bp", RULES_LEVELS_MAX, &items, &cnt))
            return -1;
        for (size_t i = 0; i < cnt; i++) {
            if (parse_int(l, node(l, items[i]), "a referral level", 0, 10000,
                          &r->referral_levels_bp[i]))
                return -1;
        }
        r->referral_levels_n = (uint32_t)cnt;
    }
    return 0;
}

/* ------------------------------------------------------------------ top level */

static int load_enum_key(loader *l, const yaml_node_t *top, const char *key,
                         const char *const *names, int *out)
{
    yaml_node_t *v = get(l, top, key);
    return v ? parse_enum(l, v, key, names, out) : 0;
}

static int load_scalars(loader *l, const yaml_node_t *top)
{
    static const char *const earn[] = {"points", "rebate", NULL};
    static const char *const unknown[] = {"enrol", "reject", NULL};
    static const char *const basis[] = {"spend", "points", NULL};
    static const char *const down[] = {"to_qualified", "one_step", NULL};
    static const char *const neg[] = {"allow", "clamp", NULL};
    rules *r = l->r;
    yaml_node_t *v;
    int e;

    if (!(v = get(l, top, "version")))
        return fail(l, top, "the rules file needs a version (R31)");
    if (parse_str(l, v, "version", r->version, sizeof r->version))
        return -1;
    if ((v = get(l, top, "point_value_fen")) &&
        parse_int(l, v, "point_value_fen", 1, RULES_POINT_VALUE_FEN_MAX, &r->point_value_fen))
        return -1;
    e = (int)r->earn_mode;
    if (load_enum_key(l, top, "earn_mode", earn, &e))
        return -1;
    r->earn_mode = (rules_earn_mode)e;
    e = (int)r->unknown_member;
    if (load_enum_key(l, top, "unknown_member", unknown, &e))
        return -1;
    r->unknown_member = (rules_unknown_mode)e;
    e = (int)r->tier_basis;
    if (load_enum_key(l, top, "tier_basis", basis, &e))
        return -1;
    r->tier_basis = (rules_tier_basis)e;
    e = (int)r->downgrade;
    if (load_enum_key(l, top, "downgrade", down, &e))
        return -1;
    r->downgrade = (rules_downgrade)e;
    e = (int)r->negative_balance;
    if (load_enum_key(l, top, "negative_balance", neg, &e))
        return -1;
    r->negative_balance = (rules_negative)e;
    if ((v = get(l, top, "staff_earns")) && parse_bool(l, v, "staff_earns", &r->staff_earns))
        return -1;
    if ((v = get(l, top, "tier_period_months")) &&
        parse_period(l, v, "tier_period_months", &r->tier_period_months))
        return -1;
    if ((v = get(l, top, "dormant_days")) &&
        parse_int(l, v, "dormant_days", 0, RULES_DAYS_MAX, &r->dormant_days))
        return -1;
    if ((v = get(l, top, "birthday_notice")) &&
        parse_bool(l, v, "birthday_notice", &r->birthday_notice))
        return -1;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int load_sections(loader *l, const yaml_node_t *top)
{
    rules *r = l->r;
    yaml_node_t *v;

    if ((v = get(l, top, "stores")) &&
        parse_names(l, v, "stores", RULES_KNOWN_STORES_MAX, r->known_stores, &r->known_stores_n))
        return -1;
    if ((v = get(l, top, "categories")) &&
        parse_names(l, v, "categories", RULES_KNOWN_CATEGORIES_MAX, r->known_categories,
                    &r->known_categories_n))
        return -1;
    qsort(r->known_stores, r->known_stores_n, LT_ID_MAX, cmp_name);
    qsort(r->known_categories, r->known_categories_n, LT_ID_MAX, cmp_name);
    if ((v = get(l, top, "excluded_categories")) &&
        parse_names(l, v, "excluded_categories", RULES_CATEGORIES_MAX, r->excluded, &r->excluded_n))
        return -1;
    if ((v = get(l, top, "excluded_flags")) && load_flags(l, v))
        return -1;
    if ((v = get(l, top, "earn_classes")) && load_classes(l, v))
        return -1;
    if ((v = get(l, top, "rebate_bands")) && load_bands(l, v))
        return -1;
    if ((v = get(l, top, "multipliers")) && load_multipliers(l, v))
        return -1;
    if ((v = get(l, top, "promotions")) && load_promotions(l, v))
        return -1;
    if ((v = get(l, top, "sku_points")) && load_skus(l, v))
        return -1;
    if ((v = get(l, top, "tiers")) && load_tiers(l, v))
        return -1;
    if ((v = get(l, top, "expiry")) && load_expiry(l, v))
        return -1;
    if ((v = get(l, top, "referral")) && load_referral(l, v))
        return -1;
    return 0;
}

/* The seed programme of RULES.md: what every key means when the file leaves it out. */
static void set_defaults(rules *r)
{
    static const char *const excluded[] = {"tobacco", "alcohol", "special_price"};
    static const rules_band bands[] = {{80, 880}, {50, 500}, {0, 200}};
    static const rules_tier tiers[] = {{"basic", 0, 0, 100},
                                       {"silver", 100000, 100000, 100},
                                       {"gold", 300000, 300000, 200},
                                       {"platinum", 500000, 500000, 200},
                                       {"diamond", 1000000, 1000000, 200}};

    r->point_value_fen = 100;
    r->earn_mode = RULES_EARN_POINTS;
    r->unknown_member = RULES_UNKNOWN_ENROL;
    r->staff_earns = false;
    for (size_t i = 0; i < LT_ARRAY_LEN(excluded); i++)
        rules__copy(r->excluded[i], LT_ID_MAX, excluded[i]);
    r->excluded_n = LT_ARRAY_LEN(excluded);
    r->excluded_flags = LT_LINE_GROUP_BUY | LT_LINE_PROMOTION;

    r->classes_n = 2;
    r->class_default = 0;
    rules__copy(r->classes[0].name, LT_ID_MAX, "default");
    r->classes[0].unit_fen = 100;
    rules__copy(r->classes[1].name, LT_ID_MAX, "big_ticket");
    r->classes[1].unit_fen = 5000;
    rules__copy(r->class_categories[0].category, LT_ID_MAX, "appliances");
    r->class_categories[0].class_index = 1;
    rules__copy(r->class_categories[1].category, LT_ID_MAX, "clothing");
    r->class_categories[1].class_index = 1;
    r->class_categories_n = 2;

    memcpy(r->bands, bands, sizeof bands);
    r->bands_n = LT_ARRAY_LEN(bands);

    r->stacking = RULES_STACK_MAX;
    r->cap_pct = 400;
    r->birthday_pct = 200;

    memcpy(r->tiers, tiers, sizeof tiers);
    r->tiers_n = LT_ARRAY_LEN(tiers);
    r->tier_basis = RULES_BASIS_SPEND;
    r->tier_period_months = 12;
    r->downgrade = RULES_DOWNGRADE_TO_QUALIFIED;

    r->expiry_mode = RULES_EXPIRY_CALENDAR;
    r->cutoff_month = 12;
    r->cutoff_day = 31;
    r->expiry_period_months = 12;
    r->ttl_days = 365;
    r->notice_days = 30;

    r->negative_balance = RULES_NEGATIVE_ALLOW;
    r->referral_bonus = 100;
    r->referral_trigger = RULES_TRIGGER_FIRST_SALE;
    r->referral_levels_n = 0;
    r->dormant_days = 90;
    r->birthday_notice = true;
}

static const char *const TOP_KEYS[] = {"version",        "point_value_fen",     "earn_mode",
                                       "unknown_member", "staff_earns",         "stores",
                                       "categories",     "excluded_categories", "excluded_flags",
                                       "earn_classes",   "rebate_bands",        "multipliers",
                                       "promotions",     "sku_points",          "tiers",
                                       "tier_basis",     "tier_period_months",  "downgrade",
                                       "expiry",         "negative_balance",    "referral",
                                       "dormant_days",   "birthday_notice",     NULL};

static int load_document(loader *l, yaml_parser_t *parser)
{
    yaml_node_t *top = yaml_document_get_root_node(l->doc);
    if (!top)
        return fail(l, NULL, "the rules file is empty");
    if (top->type != YAML_MAPPING_NODE)
        return fail(l, top, "the rules file must be a mapping of keys to values");
    if (check_map(l, top, "the rules file", TOP_KEYS))
        return -1;
    set_defaults(l->r);
    if (load_scalars(l, top) || load_sections(l, top))
        return -1;
    rules__index_categories(l->r);

    /* a second document would be silently ignored: refuse it */
    yaml_document_t next;
    if (!yaml_parser_load(parser, &next))
        return fail(l, NULL, "YAML error after the first document");
    yaml_node_t *root2 = yaml_document_get_root_node(&next);
    unsigned long line2 = root2 ? (unsigned long)root2->start_mark.line + 1 : 0;
    yaml_document_delete(&next);
    if (root2)
        return fail_at(l, line2, "only one YAML document is allowed");
    return 0;
}

int rules_load_string(const char *text_in, size_t len, const char *name, rules **out, char *err,
                      size_t err_len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    loader l = {.doc = &doc, .name = name ? name : "rules", .err = err, .err_len = err_len};
    int rc;

    LT_ASSERT(text_in != NULL && out != NULL);
    *out = NULL;
    if (err && err_len)
        err[0] = '\0';
    if (len > RULES_FILE_BYTES_MAX)
        return fail(&l, NULL, "the rules file is larger than %d bytes", RULES_FILE_BYTES_MAX);
    l.r = calloc(1, sizeof *l.r);
    if (!l.r)
        return fail(&l, NULL, "out of memory");
    if (!yaml_parser_initialize(&parser)) {
        free(l.r);
        return fail(&l, NULL, "out of memory");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text_in, len);
    if (!yaml_parser_load(&parser, &doc)) {
        unsigned long line = (unsigned long)parser.problem_mark.line + 1;
        char msg[200];
        snprintf(msg, sizeof msg, "YAML syntax error: %s%s%s",
                 parser.problem ? parser.problem : "unknown", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        if (err && err_len)
            snprintf(err, err_len, "%s:%lu: %s", l.name, line, msg);
        yaml_parser_delete(&parser);
        free(l.r);
        return -1;
    }
    rc = load_document(&l, &parser);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc) {
        rules_destroy(&l.r);
        return -1;
    }
    *out = l.r;
    return 0;
}

int rules_load_file(const char *path, rules **out, char *err, size_t err_len)
{
    FILE *f;
    char *buf;
    size_t len;

    LT_ASSERT(path != NULL && out != NULL);
    *out = NULL;
    f = fopen(path, "rb");
    if (!f) {
        if (err && err_len)
            snprintf(err, err_len, "%s:0: cannot open: %s", path, strerror(errno));
        return -1;
    }
    buf = malloc(RULES_FILE_BYTES_MAX + 1);
    if (!buf) {
        fclose(f);
        if (err && err_len)
            snprintf(err, err_len, "%s:0: out of memory", path);
        return -1;
    }
    len = fread(buf, 1, RULES_FILE_BYTES_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || len > RULES_FILE_BYTES_MAX) {
        if (err && err_len)
            snprintf(err, err_len, "%s:0: %s", path,
                     bad ? "read error" : "the rules file is too large");
        free(buf);
        return -1;
    }
    int rc = rules_load_string(buf, len, path, out, err, err_len);
    free(buf);
    return rc;
}

const char *rules_default_text(void)
{
    return lt_rules_default_yaml;
}

void rules_destroy(rules **r)
{
    if (!r || !*r)
        return;
    free((*r)->skus);
    free(*r);
    *r = NULL;
}

/* ------------------------------------------------------------------ accessors */

const char *rules_version(const rules *r)
{
    return r->version;
}

int64_t rules_point_value_fen(const rules *r)
{
    LT_ASSERT(r->point_value_fen > 0);
    return r->point_value_fen;
}

size_t rules_tier_names(const rules *r, const char **names, size_t max)
{
    for (uint32_t i = 0; i < r->tiers_n && i < max; i++)
        names[i] = r->tiers[i].name;
    return r->tiers_n;
}

const char *rules_tier_base(const rules *r)
{
    LT_ASSERT(r->tiers_n > 0);
    return r->tiers[0].name;
}

rules_expiry_mode rules_expiry(const rules *r)
{
    return r->expiry_mode;
}

int64_t rules_expiry_notice_days(const rules *r)
{
    return r->notice_days;
}

int rules_negative_balance_clamp(const rules *r)
{
    return r->negative_balance == RULES_NEGATIVE_CLAMP;
}

int64_t rules_dormant_days(const rules *r)
{
    return r->dormant_days;
}

int rules_birthday_notice(const rules *r)
{
    return r->birthday_notice;
}

/* ------------------------------------------------------------------ the category index */

/* A hash of a category name, eight bytes a step (a byte-at-a-time hash is a chain of
 * multiplies as long as the name): names are short, and the index is at most 25% full. */
static uint32_t cat_hash(const char *name)
{
    size_t n = strlen(name), i = 0;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n, w;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, name + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 29;
    }
    w = 0;
    for (size_t k = 0; i + k < n; k++)
        w |= (uint64_t)(unsigned char)name[i + k] << (8 * k);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

/* Returns the slot holding name, or the empty slot where it would go. */
static uint16_t *cat_slot(const rules *r, const char *name)
{
    uint32_t mask = RULES_CAT_SLOTS - 1;
    for (uint32_t i = cat_hash(name) & mask;; i = (i + 1) & mask) {
        const uint16_t *sl = &r->cat_slots[i];
        if (*sl == 0 || !strcmp(r->cats[*sl - 1].name, name))
            return (uint16_t *)sl;
    }
}

static rules_cat *cat_add(rules *r, const char *name)
{
    uint16_t *sl = cat_slot(r, name);
    if (*sl != 0)
        return &r->cats[*sl - 1];
    LT_ASSERT(r->cats_n < RULES_CATS_MAX);
    rules_cat *c = &r->cats[r->cats_n++];
    memset(c, 0, sizeof *c);
    rules__copy(c->name, sizeof c->name, name);
    *sl = (uint16_t)r->cats_n;
    return c;
}

void rules__index_categories(rules *r)
{
    LT_ASSERT(r->excluded_n <= RULES_CATEGORIES_MAX);
    LT_ASSERT(r->class_categories_n <= RULES_CATEGORIES_MAX);
    r->cats_n = 0;
    memset(r->cat_slots, 0, sizeof r->cat_slots);
    for (uint32_t i = 0; i < r->excluded_n; i++)
        cat_add(r, r->excluded[i])->excluded = true;
    /* the first class listing a category takes it, as a scan of the list in order would */
    for (uint32_t i = 0; i < r->class_categories_n; i++) {
        rules_cat *c = cat_add(r, r->class_categories[i].category);
        if (!c->has_class) {
            c->has_class = true;
            c->class_index = r->class_categories[i].class_index;
        }
    }
}

const rules_cat *rules__category(const rules *r, const char *name)
{
    if (r->cats_n == 0)
        return NULL;
    uint16_t sl = *cat_slot(r, name);
    return sl != 0 ? &r->cats[sl - 1] : NULL;
}

void rules__copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    LT_ASSERT(cap > 0);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}
