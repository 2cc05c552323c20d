/* test_entry_wire.c: entry_decode() (the direct wire reader) against entry_decode_pb() (the
 * protobuf-c reference): the same result on random valid entries of every kind, and the same
 * verdict (and result) on hundreds of thousands of mutated ones: flipped bytes, cut and grown
 * buffers, unknown and duplicated fields, wrong wire types; and entries whose fields are
 * shuffled, so that the fast path for entry_encode()'s order hands over to the generic loop at
 * varying fields (mostly early ones: late hand-overs come from the mutations). Each input is
 * decoded from a buffer of exactly its size, so that AddressSanitizer sees a read past it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "entry.h"

#define ROUNDS 2000
#define MUTATIONS 200

static uint64_t rng_state = 0x5eed;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
    return rnd() % n;
}

/* Zero often, small often, sometimes huge or negative: every varint width. */
static int64_t num(void)
{
    switch (below(5)) {
    case 0:
        return 0;
    case 1:
        return (int64_t)below(200);
    case 2:
        return -(int64_t)below(100000);
    case 3:
        return (int64_t)rnd();
    default:
        return (int64_t)below(1u << 30);
    }
}

static void str(char *dst, size_t cap)
{
    size_t n = below(3) == 0 ? 0 : below(cap); /* up to cap - 1 characters */
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)('a' + below(26));
    dst[n] = '\0';
}

#define STR(dst) str((dst), sizeof(dst))

static void random_entry(lt_entry *e)
{
    memset(e, 0, sizeof *e);
    e->kind = (lt_entry_kind)below(LT_ENTRY_NOTICE + 1);
    e->event_kind = e->kind <= LT_ENTRY_MERGE ? (lt_event_kind)e->kind : LT_EV_NONE;
    e->seq = (uint64_t)num();
    e->id = (lt_event_id){(uint64_t)num(), (uint64_t)num()};
    e->occurred_at = num();
    e->utc_offset_min = (int32_t)((int64_t)below(1681) - 840);
    STR(e->store_id);
    STR(e->member_id);
    STR(e->rules_version);
    e->digest = rnd();
    e->paid_fen = num();
    e->eligible_fen = num();
    e->base_points = num();
    e->multiplier_pct = (uint32_t)below(1000);
    e->sku_points = num();
    e->points_earned = num();
    e->points_redeemed = num();
    STR(e->reward_code);
    STR(e->reason_code);
    STR(e->operator_id);
    e->original = (lt_event_id){(uint64_t)num(), (uint64_t)num()};
    e->original_seq = (uint64_t)num();
    e->postings_n = (uint32_t)below(LT_POSTINGS_MAX + 1);
    for (uint32_t i = 0; i < e->postings_n; i++) {
        lt_posting *p = &e->postings[i];
        STR(p->member_id);
        p->create = below(2);
        p->birth_month = (uint8_t)below(13);
        p->birth_day = (uint8_t)below(32);
        p->staff = below(2);
        STR(p->referrer);
        p->debit = num();
        p->credit = num();
        p->credit_expires_at = num();
        p->lifetime_delta_fen = num();
        p->qualifying_delta = num();
        STR(p->tier_after);
        STR(p->tier_before);
        STR(p->reason);
        p->balance_after = num();
        p->count_sale = below(2);
        STR(p->card);
        STR(p->unlink_card);
        p->clamp = num();
        STR(p->merge_from);
        p->set_period_start_day = (int32_t)num();
        p->set_birthday_year = (int32_t)num();
        p->set_expiring_notified = num();
        p->set_dormant_notified = num();
    }
    e->lines_n = (uint32_t)(below(4) == 0 ? below(LT_SALE_LINES_MAX + 1) : below(6));
    for (uint32_t i = 0; i < e->lines_n; i++) {
        lt_line_result *l = &e->lines[i];
        l->quantity = num();
        l->paid_fen = num();
        l->eligible_fen = num();
        l->redeemed_fen = num();
        l->redeemed_points = num();
        l->points = num();
        l->qualifying_fen = num();
        l->unit_list_fen = num();
        l->flags = (uint32_t)below(16);
        STR(l->sku);
        STR(l->category);
    }
}

/* Both decoders on the same bytes (copied to a buffer of exactly their size) into zeroed
 * outputs: the same verdict, and on success the same entry, byte for byte. Returns the
 * verdict. */
static int same(const uint8_t *bytes, size_t len, lt_entry *a, lt_entry *b)
{
    uint8_t *buf = malloc(len > 0 ? len : 1);
    assert_non_null(buf);
    memcpy(buf, bytes, len);
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    int ra = entry_decode(buf, len, a), rb = entry_decode_pb(buf, len, b);
    if (ra != rb) {
        fprintf(stderr, "verdicts differ: direct %d, protobuf-c %d on %zu bytes:", ra, rb, len);
        for (size_t i = 0; i < len && i < 64; i++)
            fprintf(stderr, " %02x", buf[i]);
        fputc('\n', stderr);
        FILE *f = fopen("entry_wire_mismatch.bin", "wb");
        if (f) {
            fwrite(buf, 1, len, f);
            fclose(f);
            fprintf(stderr, "(all %zu bytes written to entry_wire_mismatch.bin)\n", len);
        }
    }
    /* entry_decode_id() (the ledger's unindexed entries): the same id from every entry the
     * decoders accept; it checks only the framing, so it may accept more */
    lt_event_id id = {1, 1};
    int ri = entry_decode_id(buf, len, &id);
    free(buf);
    assert_int_equal(ra, rb);
    if (ra == 0)
        assert_memory_equal(a, b, sizeof *a);
    if (ra == 0) {
        assert_int_equal(ri, 0);
        assert_int_equal(id.node_id, a->id.node_id);
        assert_int_equal(id.event_id, a->id.event_id);
    }
    return ra;
}

/* A decoded entry is the entry that was encoded (the lines past lines_n aside). */
static void is_entry(const lt_entry *got, const lt_entry *want)
{
    assert_memory_equal(got, want, offsetof(lt_entry, lines));
    assert_memory_equal(&got->lines[0], &want->lines[0], want->lines_n * sizeof want->lines[0]);
    assert_memory_equal(got->reward_code, want->reward_code,
                        sizeof *want - offsetof(lt_entry, reward_code));
}

static void valid_entries_decode_the_same(void **st)
{
    (void)st;
    lt_entry *e = malloc(sizeof *e), *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    uint8_t *buf = malloc(ENTRY_BYTES_MAX);
    assert_true(e && a && b && buf);
    for (int round = 0; round < ROUNDS; round++) {
        random_entry(e);
        size_t len = entry_encode(e, buf, ENTRY_BYTES_MAX);
        assert_true(len > 0);
        assert_int_equal(same(buf, len, a, b), 0);
        /* and it is the entry that was encoded */
        is_entry(a, e);
    }
    free(buf);
    free(e);
    free(a);
    free(b);
}

/* entry_decode_state(): the same entry without the lines, except in a return (R18), and
 * without the strings state_apply() does not read. */
static void state_decode_skips_only_sale_lines(void **st)
{
    (void)st;
    lt_entry *e = malloc(sizeof *e), *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    uint8_t *buf = malloc(ENTRY_BYTES_MAX);
    assert_true(e && a && b && buf);
    unsigned returns = 0, others = 0;
    for (int round = 0; round < ROUNDS; round++) {
        random_entry(e);
        size_t len = entry_encode(e, buf, ENTRY_BYTES_MAX);
        memset(a, 0, sizeof *a);
        memset(b, 0, sizeof *b);
        assert_int_equal(entry_decode(buf, len, a), 0);
        assert_int_equal(entry_decode_state(buf, len, b), 0);
        if (e->kind == LT_ENTRY_RETURN || e->kind == LT_ENTRY_NONE) {
            returns += e->kind == LT_ENTRY_RETURN; /* kind 0 is not written: lines are kept */
        } else {
            others++;
            assert_int_equal(b->lines_n, 0);
            a->lines_n = 0;
            memset(a->lines, 0, sizeof a->lines);
        }
        memset(a->store_id, 0, sizeof a->store_id);
        memset(a->member_id, 0, sizeof a->member_id);
        memset(a->rules_version, 0, sizeof a->rules_version);
        memset(a->reward_code, 0, sizeof a->reward_code);
        memset(a->reason_code, 0, sizeof a->reason_code);
        memset(a->operator_id, 0, sizeof a->operator_id);
        for (uint32_t i = 0; i < a->postings_n; i++)
            memset(a->postings[i].tier_before, 0, sizeof a->postings[i].tier_before);
        assert_memory_equal(a, b, sizeof *a);
        /* cut inside the lines: still malformed, skipped or not */
        if (e->lines_n > 0) {
            assert_int_equal(entry_decode_state(buf, len - 1, b), entry_decode(buf, len - 1, a));
        }
    }
    assert_true(returns > 50 && others > 50);
    free(buf);
    free(e);
    free(a);
    free(b);
}

static void mutated_entries_get_the_same_verdict(void **st)
{
    (void)st;
    lt_entry *e = malloc(sizeof *e), *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    uint8_t *orig = malloc(ENTRY_BYTES_MAX), *buf = malloc(ENTRY_BYTES_MAX + 64);
    assert_true(e && a && b && orig && buf);
    unsigned ok = 0, bad = 0;
    for (int round = 0; round < ROUNDS; round++) {
        random_entry(e);
        if (e->lines_n > 20)
            e->lines_n = 20; /* keep the mutation rounds quick */
        size_t olen = entry_encode(e, orig, ENTRY_BYTES_MAX);
        for (int m = 0; m < MUTATIONS; m++) {
            size_t len = olen;
            memcpy(buf, orig, olen);
            unsigned k = (unsigned)below(1 + below(4));
            for (unsigned j = 0; j <= k; j++) {
                switch (below(6)) {
                case 0: /* flip a byte */
                    buf[below(len)] ^= (uint8_t)(1 + below(255));
                    break;
                case 1: /* set a byte to something interesting */
                {
                    static const uint8_t v[] = {0x00, 0x80, 0xff, 0x7f, 0x08, 0x0a, 0x12,
                                                0x1a, 0x22, 0x4a, 0x52, 0xa1, 0x0b, 0x0c};
                    buf[below(len)] = v[below(sizeof v)];
                    break;
                }
                case 2: /* cut */
                    len = below(len + 1);
                    break;
                case 3: /* append a random field */
                    if (len + 12 < ENTRY_BYTES_MAX + 64)
                        for (int i = 0; i < 12; i++)
                            buf[len++] = (uint8_t)rnd();
                    break;
                case 4: /* duplicate a prefix of itself at the end (repeated fields) */
                {
                    size_t n = below(len + 1);
                    if (len + n <= ENTRY_BYTES_MAX + 64) {
                        memmove(buf + len, buf, n);
                        len += n;
                    }
                    break;
                }
                default: /* insert a random byte */
                    if (len + 1 <= ENTRY_BYTES_MAX + 64 && len > 0) {
                        size_t at = below(len);
                        memmove(buf + at + 1, buf + at, len - at);
                        buf[at] = (uint8_t)rnd();
                        len++;
                    }
                }
                if (len == 0)
                    break;
            }
            if (same(buf, len, a, b) == 0)
                ok++;
            else
                bad++;
        }
    }
    /* both verdicts occur often, or the mutations test nothing */
    assert_true(ok > ROUNDS * MUTATIONS / 50);
    assert_true(bad > ROUNDS * MUTATIONS / 50);
    free(orig);
    free(buf);
    free(e);
    free(a);
    free(b);
}

/* ------------------------------------------------------------------ fields out of order
 *
 * entry_decode() has a fast path for entry_encode()'s field order that hands over to the generic
 * loop at the first field it does not expect (entry_wire.c). Protobuf readers accept fields in
 * any order, so an entry whose fields are shuffled (the postings and lines kept in their order,
 * since those repeat) must decode to the same entry, whichever field the fast path stops at
 * (mostly one of the first few, in a random order). */

typedef struct {
    size_t at, len;  /* the field's bytes, tag included */
    size_t value_at; /* a length-delimited field's contents */
    uint32_t field;
    unsigned wt;
} span;

#define SPANS_MAX 600

static uint64_t get_varint(const uint8_t *b, size_t *at)
{
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        uint8_t c = b[(*at)++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if (c < 0x80)
            return v;
    }
}

/* The fields of a valid message in b[0..len). Returns their number. */
static size_t split(const uint8_t *b, size_t len, span *sp)
{
    size_t n = 0, at = 0;
    while (at < len) {
        assert_true(n < SPANS_MAX);
        span *x = &sp[n++];
        x->at = at;
        uint64_t tag = get_varint(b, &at);
        x->field = (uint32_t)(tag >> 3);
        x->wt = (unsigned)(tag & 7);
        if (x->wt == 0) {
            (void)get_varint(b, &at);
        } else if (x->wt == 1) {
            at += 8;
        } else {
            assert_int_equal(x->wt, 2);
            size_t l = get_varint(b, &at);
            x->value_at = at;
            at += l;
        }
        x->len = at - x->at;
    }
    assert_int_equal(at, len);
    return n;
}

static void shuffle_message(uint8_t *b, size_t len, int depth);

/* Writes the fields of b in a random order into out, repeated fields (postings, lines) kept in
 * their order relative to each other; a submessage's own fields are shuffled too. Top-level tags
 * are sometimes written in a longer (non-minimal) varint, which readers accept. Returns the new
 * length. */
static size_t shuffled(const uint8_t *b, size_t len, uint8_t *out, int depth)
{
    static span sp[2][SPANS_MAX];
    span *x = sp[depth];
    size_t n = split(b, len, x);
    size_t perm[SPANS_MAX];
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = below(i), t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    /* the k-th posting (line) in the new order is the k-th of the original */
    size_t next[32] = {0};
    for (size_t i = 0; i < n; i++) {
        uint32_t f = x[perm[i]].field;
        if (depth == 0 && (f == 9 || f == 10)) {
            size_t k = next[f]++, seen = 0;
            for (size_t j = 0; j < n; j++)
                if (x[j].field == f && seen++ == k) {
                    perm[i] = j;
                    break;
                }
        }
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const span *y = &x[perm[i]];
        uint8_t tmp[ENTRY_BYTES_MAX];
        memcpy(tmp, b + y->at, y->len);
        if (y->wt == 2 && depth == 0 &&
            (y->field == 2 || y->field == 9 || y->field == 10 ||
             y->field == 19)) /* the submessages */
            shuffle_message(tmp + (y->value_at - y->at), y->len - (y->value_at - y->at), depth + 1);
        size_t tag_bytes = 0;
        while (b[y->at + tag_bytes] & 0x80)
            tag_bytes++;
        tag_bytes++;
        if (depth == 0 && tag_bytes < 5 && below(8) == 0) { /* the tag one byte longer */
            memcpy(out + o, tmp, tag_bytes);
            out[o + tag_bytes - 1] |= 0x80;
            out[o + tag_bytes] = 0x00;
            o += tag_bytes + 1;
            memcpy(out + o, tmp + tag_bytes, y->len - tag_bytes);
            o += y->len - tag_bytes;
        } else {
            memcpy(out + o, tmp, y->len);
            o += y->len;
        }
    }
    return o;
}

/* Shuffles a submessage's fields in place (its length does not change: no longer tags here). */
static void shuffle_message(uint8_t *b, size_t len, int depth)
{
    uint8_t *out = malloc(len + 1);
    assert_non_null(out);
    size_t n = shuffled(b, len, out, depth);
    assert_int_equal(n, len);
    memcpy(b, out, len);
    free(out);
}

static void fields_in_any_order_decode_the_same(void **st)
{
    (void)st;
    lt_entry *e = malloc(sizeof *e), *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    lt_entry *sa = malloc(sizeof *sa), *sb = malloc(sizeof *sb);
    uint8_t *buf = malloc(ENTRY_BYTES_MAX), *mixed = malloc(2 * ENTRY_BYTES_MAX);
    assert_true(e && a && b && sa && sb && buf && mixed);
    for (int round = 0; round < ROUNDS; round++) {
        random_entry(e);
        size_t len = entry_encode(e, buf, ENTRY_BYTES_MAX);
        assert_true(len > 0);
        size_t mlen = shuffled(buf, len, mixed, 0);
        assert_int_equal(same(mixed, mlen, a, b), 0);
        is_entry(a, e);
        /* and for state: the same as the entry in order (lines are skipped once the kind is
         * known, so a shuffle that puts the kind after some lines keeps those) */
        memset(sa, 0, sizeof *sa);
        memset(sb, 0, sizeof *sb);
        assert_int_equal(entry_decode_state(buf, len, sa), 0);
        assert_int_equal(entry_decode_state(mixed, mlen, sb), 0);
        assert_memory_equal(sa, sb, offsetof(lt_entry, lines_n));
        assert_memory_equal(sa->reward_code, sb->reward_code,
                            sizeof *sa - offsetof(lt_entry, reward_code));
    }
    free(buf);
    free(mixed);
    free(e);
    free(a);
    free(b);
    free(sa);
    free(sb);
}

static void empty_and_tiny_inputs(void **st)
{
    (void)st;
    lt_entry *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    static const uint8_t field0[] = {0x00, 0x01};
    static const uint8_t group[] = {0x0b, 0x0c};
    static const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t wrong_type[] = {0x0a, 0x00}; /* seq as a string */
    assert_int_equal(same((const uint8_t *)"", 0, a, b), 0);
    assert_int_equal(same(field0, sizeof field0, a, b), -1);
    assert_int_equal(same(group, sizeof group, a, b), -1);
    assert_int_equal(same(long_varint, sizeof long_varint, a, b), -1);
    assert_int_equal(same(wrong_type, sizeof wrong_type, a, b), -1);
    /* fuzz findings: a 5-byte length prefix of 2^32 (protobuf-c reads it into 64 bits: too
     * long, not 0), and a 5-byte tag whose field number needs more than 29 bits (1 + 2^29: an
     * unknown field to protobuf-c, not seq) */
    static const uint8_t len_2_32[] = {0x4a, 0x80, 0x80, 0x80, 0x80, 0x10, 0x08, 0x01};
    static const uint8_t tag_wide[] = {0x88, 0x80, 0x80, 0x80, 0x10, 0x05, 0x18, 0x01};
    assert_int_equal(same(len_2_32, sizeof len_2_32, a, b), -1);
    assert_int_equal(same(tag_wide, sizeof tag_wide, a, b), 0);
    assert_int_equal(a->seq, 0);
    /* a string too long for its array, then repeated with one that fits: protobuf-c keeps the
     * last, so the entry is valid (a fuzz finding: the direct reader refused the first one) */
    uint8_t twice[2 * (2 + 40) + 2 + 2 * (2 + 2 + 40)], *p = twice;
    *p++ = 0x18, *p++ = 0x01;                 /* kind: sale */
    for (int round = 0; round < 2; round++) { /* store_id: 40 bytes, then 10 */
        size_t n = round == 0 ? 40 : 10;
        *p++ = 0x32, *p++ = (uint8_t)n;
        memset(p, 's', n), p += n;
    }
    assert_int_equal(same(twice, (size_t)(p - twice), a, b), 0);
    assert_string_equal(a->store_id, "ssssssssss");
    /* ... in a posting too (member_id), and the other way round: the last too long */
    p = twice;
    *p++ = 0x4a, *p++ = 2 + 40 + 2 + 10;
    *p++ = 0x0a, *p++ = 40, memset(p, 'm', 40), p += 40;
    *p++ = 0x0a, *p++ = 10, memset(p, 'm', 10), p += 10;
    assert_int_equal(same(twice, (size_t)(p - twice), a, b), 0);
    assert_string_equal(a->postings[0].member_id, "mmmmmmmmmm");
    twice[3] = 10, twice[14] = 0x0a, twice[15] = 40;
    memset(twice + 4, 'm', 10), memset(twice + 16, 'm', 40);
    assert_int_equal(same(twice, (size_t)(p - twice), a, b), -1);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_and_tiny_inputs),
        cmocka_unit_test(valid_entries_decode_the_same),
        cmocka_unit_test(state_decode_skips_only_sale_lines),
        cmocka_unit_test(mutated_entries_get_the_same_verdict),
        cmocka_unit_test(fields_in_any_order_decode_the_same),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
