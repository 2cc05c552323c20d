/* test_ingest.c: ingest validation (every rejection reason and limit at its boundary,
 * field-by-field conversion of every event kind), the event digest and the time-zone resolver. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>

#include "ingest.h"

#define NOW 1767225600LL /* 2026-01-01T00:00:00Z */
#define SKEW_S 300
#define PAST_S (90LL * 86400)
#define MSG_LEN 256

static const ingest_limits LIM = {NOW, SKEW_S, PAST_S};

/* One hand-built loyalty.Event with storage for every body kind and the largest line counts. */
typedef struct {
    Loyalty__Event pe;
    Loyalty__EventId id;
    Loyalty__Sale sale;
    Loyalty__SaleLine line_pb[LT_SALE_LINES_MAX + 1];
    Loyalty__SaleLine *lines[LT_SALE_LINES_MAX + 1];
    char sku[LT_SALE_LINES_MAX + 1][16];
    Loyalty__Enrol enrol;
    Loyalty__CardLink card_link;
    Loyalty__GiftRedemption gift;
    Loyalty__Adjustment adj;
    Loyalty__ReturnSale ret;
    Loyalty__EventId orig;
    Loyalty__ReturnLine rline_pb[LT_RETURN_LINES_MAX + 1];
    Loyalty__ReturnLine *rlines[LT_RETURN_LINES_MAX + 1];
    Loyalty__Merge merge;
    char long_id[LT_ID_MAX + 8]; /* LT_ID_MAX chars: one too many */
    char max_id[LT_ID_MAX];      /* LT_ID_MAX - 1 chars: the longest allowed */
    char long_text[LT_TEXT_MAX + 8];
    char max_text[LT_TEXT_MAX];
    lt_event out;
    char msg[MSG_LEN];
} fx;

static void fill(char *s, size_t n, char c)
{
    memset(s, c, n);
    s[n] = '\0';
}

/* A gift event with every common field set: the smallest valid event. Tests switch the body. */
static fx *fx_new(void)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    loyalty__event__init(&f->pe);
    loyalty__event_id__init(&f->id);
    f->id.has_node_id = f->id.has_event_id = 1;
    f->id.node_id = 7;
    f->id.event_id = 1001;
    f->pe.id = &f->id;
    f->pe.member_id = "M0001";
    f->pe.store_id = "S001";
    f->pe.has_occurred_at = 1;
    f->pe.occurred_at = NOW - 60;
    f->pe.has_utc_offset_min = 1;
    f->pe.utc_offset_min = 480;
    loyalty__gift_redemption__init(&f->gift);
    f->gift.has_points = 1;
    f->gift.points = 500;
    f->gift.reward_code = "MUG";
    f->pe.body_case = LOYALTY__EVENT__BODY_GIFT;
    f->pe.gift = &f->gift;
    fill(f->long_id, LT_ID_MAX, 'L');
    fill(f->max_id, LT_ID_MAX - 1, 'X');
    fill(f->long_text, LT_TEXT_MAX, 'T');
    fill(f->max_text, LT_TEXT_MAX - 1, 't');
    return f;
}

/* Turns f into a sale of n lines: line i is sku "SKU<i>", category "groceries", quantity i+1,
 * list 1000+i, paid 900+i. */
static void fx_sale(fx *f, size_t n)
{
    loyalty__sale__init(&f->sale);
    for (size_t i = 0; i < n; i++) {
        Loyalty__SaleLine *l = &f->line_pb[i];
        loyalty__sale_line__init(l);
        snprintf(f->sku[i], sizeof f->sku[i], "SKU%u", (unsigned)(i % 1000));
        l->sku = f->sku[i];
        l->category = "groceries";
        l->has_quantity = l->has_unit_list_fen = l->has_unit_paid_fen = 1;
        l->quantity = (int64_t)i + 1;
        l->unit_list_fen = 1000 + (int64_t)i;
        l->unit_paid_fen = 900 + (int64_t)i;
        f->lines[i] = l;
    }
    f->sale.n_lines = n;
    f->sale.lines = f->lines;
    f->pe.body_case = LOYALTY__EVENT__BODY_SALE;
    f->pe.sale = &f->sale;
}

static void fx_return(fx *f, size_t n)
{
    loyalty__return_sale__init(&f->ret);
    loyalty__event_id__init(&f->orig);
    f->orig.has_node_id = f->orig.has_event_id = 1;
    f->orig.node_id = 7;
    f->orig.event_id = 900;
    f->ret.original = &f->orig;
    for (size_t i = 0; i < n; i++) {
        Loyalty__ReturnLine *l = &f->rline_pb[i];
        loyalty__return_line__init(l);
        l->has_line_index = l->has_quantity = 1;
        l->line_index = (uint32_t)i;
        l->quantity = (int64_t)i + 1;
        f->rlines[i] = l;
    }
    f->ret.n_lines = n;
    f->ret.lines = f->rlines;
    f->pe.body_case = LOYALTY__EVENT__BODY_RETURN_SALE;
    f->pe.return_sale = &f->ret;
}

static void fx_enrol(fx *f)
{
    loyalty__enrol__init(&f->enrol);
    f->pe.body_case = LOYALTY__EVENT__BODY_ENROL;
    f->pe.enrol = &f->enrol;
}

static void fx_card_link(fx *f, char *card, char *replaces)
{
    loyalty__card_link__init(&f->card_link);
    f->card_link.card = card;
    f->card_link.replaces_card = replaces;
    f->pe.body_case = LOYALTY__EVENT__BODY_CARD_LINK;
    f->pe.card_link = &f->card_link;
}

static void fx_adjust(fx *f, int64_t points)
{
    loyalty__adjustment__init(&f->adj);
    f->adj.has_points = 1;
    f->adj.points = points;
    f->adj.reason_code = "goodwill";
    f->adj.operator_id = "op7";
    f->pe.body_case = LOYALTY__EVENT__BODY_ADJUSTMENT;
    f->pe.adjustment = &f->adj;
}

static void fx_merge(fx *f, char *source)
{
    loyalty__merge__init(&f->merge);
    f->merge.source_member = source;
    f->pe.body_case = LOYALTY__EVENT__BODY_MERGE;
    f->pe.merge = &f->merge;
}

static int conv(fx *f)
{
    return ingest_event_from_pb(&f->pe, &LIM, &f->out, f->msg, sizeof f->msg);
}

/* Asserts a rejection with `reason` whose message contains `needle`. */
#define assert_reject(f, reason, needle)                                                           \
    do {                                                                                           \
        int rc_ = conv(f);                                                                         \
        if (rc_ != (reason) || strstr((f)->msg, (needle)) == NULL)                                 \
            fail_msg("want %s containing \"%s\", got %s: \"%s\"", lt_reason_name(reason),          \
                     (needle), lt_reason_name(rc_), (f)->msg);                                     \
    } while (0)

#define assert_ok(f)                                                                               \
    do {                                                                                           \
        int rc_ = conv(f);                                                                         \
        if (rc_ != LT_R_NONE)                                                                      \
            fail_msg("want ok, got %s: \"%s\"", lt_reason_name(rc_), (f)->msg);                    \
    } while (0)

/* ------------------------------------------------------------------ common fields */

static void test_id_required(void **state)
{
    (void)state;
    fx *f = fx_new();
    assert_ok(f);
    f->pe.id = NULL;
    assert_reject(f, LT_R_MISSING_FIELD, "id (node_id, event_id)");
    f->pe.id = &f->id;
    f->id.has_node_id = 0;
    assert_reject(f, LT_R_MISSING_FIELD, "id (node_id, event_id)");
    f->id.has_node_id = 1;
    f->id.has_event_id = 0;
    assert_reject(f, LT_R_MISSING_FIELD, "id (node_id, event_id)");
    /* R29: ids start at 1; (0, 0) is the daemon's own and is not indexed for duplicates */
    f->id.has_event_id = 1;
    f->id.event_id = 0;
    assert_reject(f, LT_R_INVALID_FIELD, "at least 1");
    f->id.event_id = 5;
    f->id.node_id = 0;
    assert_reject(f, LT_R_INVALID_FIELD, "at least 1");
    f->id.node_id = 1;
    assert_ok(f);
    free(f);
}

static void test_member_or_card_required(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->pe.member_id = NULL;
    assert_reject(f, LT_R_MISSING_FIELD, "member_id or card");
    f->pe.member_id = ""; /* empty is absent */
    assert_reject(f, LT_R_MISSING_FIELD, "member_id or card");
    f->pe.card = "C1";
    assert_ok(f);
    assert_string_equal(f->out.card, "C1");
    assert_string_equal(f->out.member_id, "");
    free(f);
}

/* LT_ID_MAX-1 bytes fit, LT_ID_MAX do not: for member_id, card and store_id. */
static void test_common_id_lengths(void **state)
{
    (void)state;
    fx *f = fx_new();
    char **fields[] = {&f->pe.member_id, &f->pe.card, &f->pe.store_id};
    const char *names[] = {"member_id", "card", "store_id"};
    for (size_t i = 0; i < LT_ARRAY_LEN(fields); i++) {
        char *saved = *fields[i];
        *fields[i] = f->max_id;
        assert_ok(f);
        *fields[i] = f->long_id;
        assert_reject(f, LT_R_INVALID_FIELD, names[i]);
        assert_non_null(strstr(f->msg, "too long"));
        *fields[i] = saved;
    }
    f->pe.member_id = f->max_id;
    f->pe.card = f->max_id;
    f->pe.store_id = f->max_id;
    assert_ok(f);
    assert_string_equal(f->out.member_id, f->max_id);
    assert_string_equal(f->out.card, f->max_id);
    assert_string_equal(f->out.store_id, f->max_id);
    free(f);
}

static void test_control_characters(void **state)
{
    (void)state;
    fx *f = fx_new();
    char *bad[] = {"M\x01", "M\x1f", "\tM", "M\n", "M\x7f", "M\r1"};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        f->pe.member_id = bad[i];
        assert_reject(f, LT_R_INVALID_FIELD, "member_id");
        f->pe.member_id = "M0001";
        f->pe.store_id = bad[i];
        assert_reject(f, LT_R_INVALID_FIELD, "store_id");
        f->pe.store_id = "S001";
        f->gift.reward_code = bad[i];
        assert_reject(f, LT_R_INVALID_FIELD, "gift.reward_code");
        f->gift.reward_code = "MUG";
    }
    /* printable ASCII edges and UTF-8 are fine */
    f->pe.member_id = " ~\xe4\xbc\x9a\xe5\x91\x98";
    assert_ok(f);
    assert_string_equal(f->out.member_id, " ~\xe4\xbc\x9a\xe5\x91\x98");
    free(f);
}

static void test_occurred_at(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->pe.has_occurred_at = 0;
    assert_reject(f, LT_R_MISSING_FIELD, "occurred_at");
    f->pe.has_occurred_at = 1;
    f->pe.occurred_at = NOW + SKEW_S;
    assert_ok(f);
    assert_int_equal(f->out.occurred_at, NOW + SKEW_S);
    f->pe.occurred_at = NOW + SKEW_S + 1;
    assert_reject(f, LT_R_TIMESTAMP_OUT_OF_RANGE, "occurred_at");
    f->pe.occurred_at = NOW - PAST_S;
    assert_ok(f);
    assert_int_equal(f->out.occurred_at, NOW - PAST_S);
    f->pe.occurred_at = NOW - PAST_S - 1;
    assert_reject(f, LT_R_TIMESTAMP_OUT_OF_RANGE, "occurred_at");
    f->pe.occurred_at = INT64_MIN;
    assert_reject(f, LT_R_TIMESTAMP_OUT_OF_RANGE, "occurred_at");
    f->pe.occurred_at = INT64_MAX;
    assert_reject(f, LT_R_TIMESTAMP_OUT_OF_RANGE, "occurred_at");
    free(f);
}

static void test_utc_offset(void **state)
{
    (void)state;
    fx *f = fx_new();
    int32_t ok[] = {840, -840, 0, 345, -570};
    for (size_t i = 0; i < LT_ARRAY_LEN(ok); i++) {
        f->pe.utc_offset_min = ok[i];
        assert_ok(f);
        assert_int_equal(f->out.utc_offset_min, ok[i]);
    }
    int32_t bad[] = {841, -841, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        f->pe.utc_offset_min = bad[i];
        assert_reject(f, LT_R_INVALID_FIELD, "utc_offset_min");
    }
    f->pe.has_utc_offset_min = 0;
    assert_reject(f, LT_R_MISSING_FIELD, "utc_offset_min or time_zone");
    f->pe.time_zone = ""; /* empty zone is absent */
    assert_reject(f, LT_R_MISSING_FIELD, "utc_offset_min or time_zone");
    free(f);
}

static void test_time_zone(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->pe.has_utc_offset_min = 0;
    f->pe.time_zone = "Asia/Shanghai";
    assert_ok(f);
    assert_int_equal(f->out.utc_offset_min, 480);
    /* a zone wins over an offset sent alongside it */
    f->pe.has_utc_offset_min = 1;
    f->pe.utc_offset_min = 60;
    f->pe.time_zone = "America/New_York";
    assert_ok(f);
    assert_int_equal(f->out.utc_offset_min, -300);
    char *bad[] = {"Mars/Olympus_Mons",     "../etc/passwd", "/etc/passwd",
                   "Asia/../../etc/passwd", "Asia",          "Asia/Shanghai\n",
                   "Asia/Shang hai"};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        f->pe.time_zone = bad[i];
        assert_reject(f, LT_R_UNKNOWN_TIME_ZONE, "time_zone");
    }
    free(f);
}

static void test_no_body(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->pe.body_case = LOYALTY__EVENT__BODY__NOT_SET;
    f->pe.gift = NULL;
    assert_reject(f, LT_R_MISSING_FIELD, "no body");
    free(f);
}

/* A small message buffer truncates the message but never overflows it (ASan watches). */
static void test_short_message_buffer(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->pe.id = NULL;
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(ingest_event_from_pb(&f->pe, &LIM, &f->out, small, sizeof small),
                     LT_R_MISSING_FIELD);
    assert_int_equal(strlen(small), sizeof small - 1);
    free(f);
}

/* ------------------------------------------------------------------ sale */

static void test_sale_ok_field_by_field(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_sale(f, 3);
    f->pe.card = "C42";
    f->sale.has_redeem_points = 1;
    f->sale.redeem_points = 25;
    f->line_pb[1].has_flags = 1;
    f->line_pb[1].flags = LT_LINE_GROUP_BUY | LT_LINE_PROMOTION;
    f->line_pb[2].category = "tobacco";
    assert_ok(f);
    lt_event *e = &f->out;
    assert_int_equal(e->kind, LT_EV_SALE);
    assert_int_equal(e->id.node_id, 7);
    assert_int_equal(e->id.event_id, 1001);
    assert_string_equal(e->member_id, "M0001");
    assert_string_equal(e->card, "C42");
    assert_string_equal(e->store_id, "S001");
    assert_int_equal(e->occurred_at, NOW - 60);
    assert_int_equal(e->utc_offset_min, 480);
    assert_int_equal(e->redeem_points, 25);
    assert_int_equal(e->lines_n, 3);
    for (uint32_t i = 0; i < 3; i++) {
        char sku[16];
        snprintf(sku, sizeof sku, "SKU%u", i);
        assert_string_equal(e->lines[i].sku, sku);
        assert_string_equal(e->lines[i].category, i == 2 ? "tobacco" : "groceries");
        assert_int_equal(e->lines[i].quantity, i + 1);
        assert_int_equal(e->lines[i].unit_list_fen, 1000 + i);
        assert_int_equal(e->lines[i].unit_paid_fen, 900 + i);
        assert_int_equal(e->lines[i].flags, i == 1 ? 3 : 0);
    }
    /* fields of other kinds stay zero */
    assert_int_equal(e->points, 0);
    assert_int_equal(e->return_lines_n, 0);
    assert_string_equal(e->referrer, "");
    assert_string_equal(e->reward_code, "");
    /* redeem_points absent is 0 */
    f->sale.has_redeem_points = 0;
    assert_ok(f);
    assert_int_equal(f->out.redeem_points, 0);
    free(f);
}

static void test_sale_store_and_lines_required(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_sale(f, 1);
    f->pe.store_id = NULL;
    assert_reject(f, LT_R_MISSING_FIELD, "store_id");
    f->pe.store_id = "S001";
    f->sale.n_lines = 0;
    assert_reject(f, LT_R_MISSING_FIELD, "no lines");
    free(f);
}

static void test_sale_line_count_boundary(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_sale(f, LT_SALE_LINES_MAX);
    assert_ok(f);
    assert_int_equal(f->out.lines_n, LT_SALE_LINES_MAX);
    assert_string_equal(f->out.lines[LT_SALE_LINES_MAX - 1].sku, "SKU199");
    assert_int_equal(f->out.lines[LT_SALE_LINES_MAX - 1].quantity, LT_SALE_LINES_MAX);
    fx_sale(f, LT_SALE_LINES_MAX + 1);
    assert_reject(f, LT_R_TOO_MANY_LINES, "201 lines");
    free(f);
}

static void test_sale_redeem_points(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_sale(f, 1);
    f->sale.has_redeem_points = 1;
    int64_t ok[] = {0, 1, LT_POINTS_MAX};
    for (size_t i = 0; i < LT_ARRAY_LEN(ok); i++) {
        f->sale.redeem_points = ok[i];
        assert_ok(f);
        assert_int_equal(f->out.redeem_points, ok[i]);
    }
    int64_t bad[] = {-1, LT_POINTS_MAX + 1, INT64_MIN, INT64_MAX};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        f->sale.redeem_points = bad[i];
        assert_reject(f, LT_R_INVALID_FIELD, "redeem_points");
    }
    free(f);
}

/* Errors in line 2 (the third) name "line 2" and the field. */
static void test_sale_line_text_fields(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_sale(f, 4);
    Loyalty__SaleLine *l = &f->line_pb[2];
    l->sku = NULL;
    assert_reject(f, LT_R_MISSING_FIELD, "line 2: sku");
    l->sku = "";
    assert_reject(f, LT_R_MISSING_FIELD, "line 2: sku");
    l->sku = f->long_id;
    assert_reject(f, LT_R_INVALID_FIELD, "line 2: sku");
    l->sku = "A\x02";
    assert_reject(f, LT_R_INVALID_FIELD, "line 2: sku");
    l->sku = f->max_id;
    assert_ok(f);
    assert_string_equal(f->out.lines[2].sku, f->max_id);
    l->category = NULL;
    assert_reject(f, LT_R_MISSING_FIELD, "line 2: category");
    l->category = f->long_id;
    assert_reject(f, LT_R_INVALID_FIELD, "line 2: category");
    l->category = f->max_id;
    assert_ok(f);
    assert_string_equal(f->out.lines[2].category, f->max_id);
    free(f);
}

static void test_sale_line_quantity(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_sale(f, 3);
    Loyalty__SaleLine *l = &f->line_pb[1];
    int64_t ok[] = {1, LT_QUANTITY_MAX};
    for (size_t i = 0; i < LT_ARRAY_LEN(ok); i++) {
        l->quantity = ok[i];
        assert_ok(f);
        assert_int_equal(f->out.lines[1].quantity, ok[i]);
    }
    int64_t bad[] = {0, -1, LT_QUANTITY_MAX + 1, INT64_MIN, INT64_MAX};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        l->quantity = bad[i];
        assert_reject(f, LT_R_INVALID_QUANTITY, "line 1: quantity");
    }
    l->quantity = 5;
    l->has_quantity = 0;
    assert_reject(f, LT_R_INVALID_QUANTITY, "line 1: quantity");
    free(f);
}

static void test_sale_line_prices(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_sale(f, 2);
    Loyalty__SaleLine *l = &f->line_pb[1];
    l->has_unit_list_fen = 0;
    assert_reject(f, LT_R_MISSING_FIELD, "line 1: unit_list_fen");
    l->has_unit_list_fen = 1;
    l->has_unit_paid_fen = 0;
    assert_reject(f, LT_R_MISSING_FIELD, "line 1: unit_list_fen and unit_paid_fen");
    l->has_unit_paid_fen = 1;

    l->quantity = 1;
    l->unit_list_fen = -1;
    assert_reject(f, LT_R_INVALID_PRICE, "line 1: unit_list_fen");
    l->unit_list_fen = LT_UNIT_FEN_MAX + 1;
    assert_reject(f, LT_R_INVALID_PRICE, "line 1: unit_list_fen");
    l->unit_list_fen = LT_UNIT_FEN_MAX;
    l->unit_paid_fen = LT_UNIT_FEN_MAX;
    assert_ok(f);
    assert_int_equal(f->out.lines[1].unit_list_fen, LT_UNIT_FEN_MAX);

    /* paid == list is fine, paid > list and paid < 0 are not */
    l->unit_list_fen = 5000;
    l->unit_paid_fen = 5000;
    assert_ok(f);
    assert_int_equal(f->out.lines[1].unit_paid_fen, 5000);
    l->unit_paid_fen = 5001;
    assert_reject(f, LT_R_INVALID_PRICE, "line 1: unit_paid_fen");
    l->unit_paid_fen = -1;
    assert_reject(f, LT_R_INVALID_PRICE, "line 1: unit_paid_fen");
    /* free goods */
    l->unit_list_fen = 0;
    l->unit_paid_fen = 0;
    assert_ok(f);
    assert_int_equal(f->out.lines[1].unit_list_fen, 0);
    free(f);
}

static void test_sale_line_total(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_sale(f, 2);
    Loyalty__SaleLine *l = &f->line_pb[0];
    /* 100 x LT_UNIT_FEN_MAX == LT_LINE_FEN_MAX exactly */
    l->quantity = LT_LINE_FEN_MAX / LT_UNIT_FEN_MAX;
    l->unit_list_fen = LT_UNIT_FEN_MAX;
    l->unit_paid_fen = 1;
    assert_ok(f);
    assert_int_equal(f->out.lines[0].quantity * f->out.lines[0].unit_list_fen, LT_LINE_FEN_MAX);
    l->quantity++;
    assert_reject(f, LT_R_AMOUNT_OVERFLOW, "line 0: quantity x unit_list_fen");
    l->quantity = 1000;
    l->unit_list_fen = LT_LINE_FEN_MAX / 1000 + 1; /* one fen per unit over */
    assert_reject(f, LT_R_AMOUNT_OVERFLOW, "line 0");
    l->unit_list_fen = LT_LINE_FEN_MAX / 1000;
    assert_ok(f);
    l->quantity = LT_QUANTITY_MAX;
    l->unit_list_fen = LT_UNIT_FEN_MAX;
    assert_reject(f, LT_R_AMOUNT_OVERFLOW, "line 0");
    free(f);
}

static void test_sale_line_flags(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_sale(f, 1);
    f->line_pb[0].has_flags = 1;
    f->line_pb[0].flags = LT_LINE_PROMOTION;
    assert_ok(f);
    assert_int_equal(f->out.lines[0].flags, LT_LINE_PROMOTION);
    f->line_pb[0].flags = 4;
    assert_reject(f, LT_R_INVALID_FIELD, "line 0: unknown flag bits 0x4");
    f->line_pb[0].flags = 0x80000000u | LT_LINE_GROUP_BUY;
    assert_reject(f, LT_R_INVALID_FIELD, "line 0: unknown flag bits");
    free(f);
}

/* ------------------------------------------------------------------ enrol */

static void test_enrol_ok_field_by_field(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_enrol(f);
    f->enrol.has_birth_month = f->enrol.has_birth_day = 1;
    f->enrol.birth_month = 2;
    f->enrol.birth_day = 29;
    f->enrol.has_staff = 1;
    f->enrol.staff = 1;
    f->enrol.referrer = "M0000";
    f->enrol.card = "C77";
    assert_ok(f);
    lt_event *e = &f->out;
    assert_int_equal(e->kind, LT_EV_ENROL);
    assert_string_equal(e->member_id, "M0001");
    assert_int_equal(e->birth_month, 2);
    assert_int_equal(e->birth_day, 29);
    assert_true(e->staff);
    assert_string_equal(e->referrer, "M0000");
    assert_string_equal(e->card, "C77");
    assert_int_equal(e->lines_n, 0);
    /* the same card on the event and in the body is fine */
    f->pe.card = "C77";
    assert_ok(f);
    assert_string_equal(f->out.card, "C77");
    /* minimal enrolment: everything optional absent */
    fx_enrol(f);
    f->pe.card = NULL;
    assert_ok(f);
    assert_int_equal(f->out.birth_month, 0);
    assert_int_equal(f->out.birth_day, 0);
    assert_false(f->out.staff);
    assert_string_equal(f->out.referrer, "");
    assert_string_equal(f->out.card, "");
    free(f);
}

static void test_enrol_rejections(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_enrol(f);
    f->pe.member_id = NULL;
    f->pe.card = "C1";
    assert_reject(f, LT_R_MISSING_FIELD, "member_id is required for an enrolment");
    f->pe.member_id = "M0001";
    f->pe.card = NULL;

    f->enrol.has_birth_month = f->enrol.has_birth_day = 1;
    uint32_t bad[][2] = {{2, 30}, {4, 31}, {13, 1}, {0, 5}, {5, 0}, {12, 32}, {99, 99}};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        f->enrol.birth_month = bad[i][0];
        f->enrol.birth_day = bad[i][1];
        assert_reject(f, LT_R_INVALID_FIELD, "birthday");
    }
    uint32_t good[][2] = {{0, 0}, {1, 31}, {12, 31}, {2, 29}, {6, 30}};
    for (size_t i = 0; i < LT_ARRAY_LEN(good); i++) {
        f->enrol.birth_month = good[i][0];
        f->enrol.birth_day = good[i][1];
        assert_ok(f);
        assert_int_equal(f->out.birth_month, good[i][0]);
        assert_int_equal(f->out.birth_day, good[i][1]);
    }

    f->enrol.referrer = "M0001";
    assert_reject(f, LT_R_INVALID_FIELD, "refer themselves");
    f->enrol.referrer = f->long_id;
    assert_reject(f, LT_R_INVALID_FIELD, "enrol.referrer");
    f->enrol.referrer = f->max_id;
    assert_ok(f);
    assert_string_equal(f->out.referrer, f->max_id);
    f->enrol.referrer = NULL;

    f->pe.card = "C1";
    f->enrol.card = "C2";
    assert_reject(f, LT_R_INVALID_FIELD, "event card and enrol.card differ");
    f->pe.card = NULL;
    f->enrol.card = f->long_id;
    assert_reject(f, LT_R_INVALID_FIELD, "enrol.card");
    f->enrol.card = "C\x03";
    assert_reject(f, LT_R_INVALID_FIELD, "enrol.card");
    free(f);
}

/* ------------------------------------------------------------------ card link */

static void test_card_link(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_card_link(f, "C9", "C8");
    assert_ok(f);
    assert_int_equal(f->out.kind, LT_EV_CARD_LINK);
    assert_string_equal(f->out.member_id, "M0001");
    assert_string_equal(f->out.card, "C9");
    assert_string_equal(f->out.replaces_card, "C8");
    fx_card_link(f, "C9", NULL);
    assert_ok(f);
    assert_string_equal(f->out.replaces_card, "");

    fx_card_link(f, NULL, NULL);
    assert_reject(f, LT_R_MISSING_FIELD, "card_link.card");
    fx_card_link(f, "", "C8");
    assert_reject(f, LT_R_MISSING_FIELD, "card_link.card");
    fx_card_link(f, f->long_id, NULL);
    assert_reject(f, LT_R_INVALID_FIELD, "card_link.card");
    fx_card_link(f, "C9", f->long_id);
    assert_reject(f, LT_R_INVALID_FIELD, "card_link.replaces_card");
    fx_card_link(f, "C9", "C9");
    assert_reject(f, LT_R_INVALID_FIELD, "cannot replace itself");
    fx_card_link(f, f->max_id, "C8");
    assert_ok(f);
    assert_string_equal(f->out.card, f->max_id);

    fx_card_link(f, "C9", NULL);
    f->pe.member_id = NULL;
    f->pe.card = "C9";
    assert_reject(f, LT_R_MISSING_FIELD, "member_id is required for a card link");
    free(f);
}

/* ------------------------------------------------------------------ gift */

static void test_gift(void **state)
{
    (void)state;
    fx *f = fx_new();
    assert_ok(f);
    assert_int_equal(f->out.kind, LT_EV_GIFT);
    assert_int_equal(f->out.points, 500);
    assert_string_equal(f->out.reward_code, "MUG");
    assert_int_equal(f->out.lines_n, 0);
    f->gift.points = 1;
    assert_ok(f);
    assert_int_equal(f->out.points, 1);
    f->gift.points = LT_POINTS_MAX;
    assert_ok(f);
    assert_int_equal(f->out.points, LT_POINTS_MAX);
    int64_t bad[] = {0, -1, LT_POINTS_MAX + 1, INT64_MIN};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        f->gift.points = bad[i];
        assert_reject(f, LT_R_INVALID_FIELD, "gift.points");
    }
    f->gift.points = 10;
    f->gift.has_points = 0;
    assert_reject(f, LT_R_INVALID_FIELD, "gift.points");
    f->gift.has_points = 1;
    f->gift.reward_code = NULL;
    assert_reject(f, LT_R_MISSING_FIELD, "gift.reward_code is required");
    f->gift.reward_code = f->max_text;
    assert_ok(f);
    assert_string_equal(f->out.reward_code, f->max_text);
    f->gift.reward_code = f->long_text;
    assert_reject(f, LT_R_INVALID_FIELD, "gift.reward_code is too long (max 63 bytes)");
    /* a gift may name a card instead of a member and needs no store */
    f->gift.reward_code = "MUG";
    f->pe.member_id = NULL;
    f->pe.card = "C1";
    f->pe.store_id = NULL;
    assert_ok(f);
    free(f);
}

/* ------------------------------------------------------------------ adjustment */

static void test_adjustment(void **state)
{
    (void)state;
    fx *f = fx_new();
    int64_t ok[] = {1, -1, LT_POINTS_MAX, -LT_POINTS_MAX};
    for (size_t i = 0; i < LT_ARRAY_LEN(ok); i++) {
        fx_adjust(f, ok[i]);
        assert_ok(f);
        assert_int_equal(f->out.kind, LT_EV_ADJUST);
        assert_int_equal(f->out.points, ok[i]);
        assert_string_equal(f->out.reason_code, "goodwill");
        assert_string_equal(f->out.operator_id, "op7");
    }
    int64_t bad[] = {0, LT_POINTS_MAX + 1, -LT_POINTS_MAX - 1, INT64_MIN, INT64_MAX};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        fx_adjust(f, bad[i]);
        assert_reject(f, LT_R_INVALID_FIELD, "adjustment.points");
    }
    fx_adjust(f, 5);
    f->adj.has_points = 0;
    assert_reject(f, LT_R_INVALID_FIELD, "adjustment.points");
    fx_adjust(f, 5);
    f->adj.reason_code = NULL;
    assert_reject(f, LT_R_MISSING_FIELD, "adjustment.reason_code");
    fx_adjust(f, 5);
    f->adj.operator_id = "";
    assert_reject(f, LT_R_MISSING_FIELD, "adjustment.operator_id");
    fx_adjust(f, 5);
    f->adj.reason_code = f->long_text;
    assert_reject(f, LT_R_INVALID_FIELD, "adjustment.reason_code");
    fx_adjust(f, 5);
    f->adj.operator_id = f->long_text;
    assert_reject(f, LT_R_INVALID_FIELD, "adjustment.operator_id");
    fx_adjust(f, 5);
    f->adj.operator_id = f->max_text;
    f->adj.reason_code = f->max_text;
    assert_ok(f);
    assert_string_equal(f->out.operator_id, f->max_text);
    assert_string_equal(f->out.reason_code, f->max_text);
    free(f);
}

/* ------------------------------------------------------------------ return */

static void test_return_ok_field_by_field(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_return(f, 3);
    f->rline_pb[1].line_index = LT_SALE_LINES_MAX - 1;
    f->rline_pb[2].quantity = LT_QUANTITY_MAX;
    assert_ok(f);
    lt_event *e = &f->out;
    assert_int_equal(e->kind, LT_EV_RETURN);
    assert_int_equal(e->original.node_id, 7);
    assert_int_equal(e->original.event_id, 900);
    assert_int_equal(e->return_lines_n, 3);
    assert_int_equal(e->return_lines[0].line_index, 0);
    assert_int_equal(e->return_lines[0].quantity, 1);
    assert_int_equal(e->return_lines[1].line_index, LT_SALE_LINES_MAX - 1);
    assert_int_equal(e->return_lines[1].quantity, 2);
    assert_int_equal(e->return_lines[2].line_index, 2);
    assert_int_equal(e->return_lines[2].quantity, LT_QUANTITY_MAX);
    assert_int_equal(e->lines_n, 0);

    fx_return(f, LT_RETURN_LINES_MAX);
    assert_ok(f);
    assert_int_equal(f->out.return_lines_n, LT_RETURN_LINES_MAX);
    assert_int_equal(f->out.return_lines[LT_RETURN_LINES_MAX - 1].line_index, 199);
    free(f);
}

static void test_return_rejections(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_return(f, 2);
    f->ret.original = NULL;
    assert_reject(f, LT_R_MISSING_FIELD, "return_sale.original");
    fx_return(f, 2);
    f->orig.has_node_id = 0;
    assert_reject(f, LT_R_MISSING_FIELD, "return_sale.original");
    fx_return(f, 2);
    f->orig.has_event_id = 0;
    assert_reject(f, LT_R_MISSING_FIELD, "return_sale.original");
    fx_return(f, 0);
    assert_reject(f, LT_R_MISSING_FIELD, "return_sale has no lines");
    fx_return(f, LT_RETURN_LINES_MAX + 1);
    assert_reject(f, LT_R_TOO_MANY_LINES, "201 lines");

    fx_return(f, 3);
    f->rline_pb[1].has_line_index = 0;
    assert_reject(f, LT_R_INVALID_FIELD, "return line 1: line_index");
    fx_return(f, 3);
    f->rline_pb[1].line_index = LT_SALE_LINES_MAX;
    assert_reject(f, LT_R_INVALID_FIELD, "return line 1: line_index");
    fx_return(f, 3);
    f->rline_pb[1].line_index = UINT32_MAX;
    assert_reject(f, LT_R_INVALID_FIELD, "return line 1: line_index");

    int64_t bad[] = {0, -1, LT_QUANTITY_MAX + 1};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        fx_return(f, 3);
        f->rline_pb[2].quantity = bad[i];
        assert_reject(f, LT_R_INVALID_QUANTITY, "return line 2: quantity");
    }
    fx_return(f, 3);
    f->rline_pb[2].has_quantity = 0;
    assert_reject(f, LT_R_INVALID_QUANTITY, "return line 2: quantity");

    fx_return(f, 3);
    f->rline_pb[2].line_index = 0;
    assert_reject(f, LT_R_INVALID_FIELD, "return line 2: line_index 0 is listed twice");
    free(f);
}

/* ------------------------------------------------------------------ merge */

static void test_merge(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_merge(f, "M0002");
    assert_ok(f);
    assert_int_equal(f->out.kind, LT_EV_MERGE);
    assert_string_equal(f->out.member_id, "M0001");
    assert_string_equal(f->out.source_member, "M0002");
    fx_merge(f, f->max_id);
    assert_ok(f);
    assert_string_equal(f->out.source_member, f->max_id);
    fx_merge(f, NULL);
    assert_reject(f, LT_R_MISSING_FIELD, "merge.source_member");
    fx_merge(f, f->long_id);
    assert_reject(f, LT_R_INVALID_FIELD, "merge.source_member");
    fx_merge(f, "M0001");
    assert_reject(f, LT_R_INVALID_FIELD, "merged into itself");
    fx_merge(f, "M0002");
    f->pe.member_id = NULL;
    f->pe.card = "C1";
    assert_reject(f, LT_R_MISSING_FIELD, "member_id is required for a merge");
    free(f);
}

/* ------------------------------------------------------------------ reuse of the output */

/* A conversion leaves nothing of the previous event behind (outside the big arrays' counts). */
static void test_output_reset(void **state)
{
    (void)state;
    fx *f = fx_new();
    memset(&f->out, 0xAB, sizeof f->out);
    fx_sale(f, 2);
    f->pe.card = "C1";
    assert_ok(f);
    assert_int_equal(f->out.birth_month, 0);
    assert_false(f->out.staff);
    assert_string_equal(f->out.referrer, "");
    assert_string_equal(f->out.replaces_card, "");
    assert_int_equal(f->out.points, 0);
    assert_string_equal(f->out.reward_code, "");
    assert_string_equal(f->out.reason_code, "");
    assert_string_equal(f->out.operator_id, "");
    assert_int_equal(f->out.original.node_id, 0);
    assert_int_equal(f->out.return_lines_n, 0);
    assert_string_equal(f->out.source_member, "");

    /* now a merge into the same struct: the sale's fields are gone */
    fx_merge(f, "M0002");
    f->pe.card = NULL;
    f->pe.store_id = NULL;
    assert_ok(f);
    assert_int_equal(f->out.lines_n, 0);
    assert_int_equal(f->out.redeem_points, 0);
    assert_string_equal(f->out.card, "");
    assert_string_equal(f->out.store_id, "");

    /* and a rejection leaves no half-converted lines counted */
    fx_sale(f, 3);
    f->pe.store_id = "S001";
    f->line_pb[2].quantity = 0;
    assert_int_equal(conv(f), LT_R_INVALID_QUANTITY);
    assert_int_equal(f->out.lines_n, 0);
    free(f);
}

/* ------------------------------------------------------------------ digest */

static void test_digest(void **state)
{
    (void)state;
    fx *a = fx_new(), *b = fx_new();
    fx_sale(a, 3);
    fx_sale(b, 3);
    uint64_t h = ingest_event_digest(&a->pe);
    assert_int_equal(h, ingest_event_digest(&b->pe));
    assert_int_equal(h, ingest_event_digest(&a->pe)); /* stable */

    b->line_pb[2].quantity++;
    assert_int_not_equal(h, ingest_event_digest(&b->pe));
    b->line_pb[2].quantity--;
    assert_int_equal(h, ingest_event_digest(&b->pe));
    b->pe.member_id = "M0002";
    assert_int_not_equal(h, ingest_event_digest(&b->pe));
    b->pe.member_id = "M0001";
    b->id.event_id++;
    assert_int_not_equal(h, ingest_event_digest(&b->pe));
    b->id.event_id--;
    b->pe.occurred_at++;
    assert_int_not_equal(h, ingest_event_digest(&b->pe));
    b->pe.occurred_at--;
    b->sale.n_lines = 2;
    assert_int_not_equal(h, ingest_event_digest(&b->pe));
    b->sale.n_lines = 3;
    assert_int_equal(h, ingest_event_digest(&b->pe));

    /* bodies of different kinds differ */
    uint64_t g = ingest_event_digest(&b->pe);
    fx_merge(b, "M0002");
    assert_int_not_equal(g, ingest_event_digest(&b->pe));

    /* a large event (over the 4 KiB stack buffer) digests the same way from the heap path */
    fx_sale(a, LT_SALE_LINES_MAX);
    fx_sale(b, LT_SALE_LINES_MAX);
    assert_true(loyalty__event__get_packed_size(&a->pe) > 4096);
    uint64_t big = ingest_event_digest(&a->pe);
    assert_int_not_equal(big, 0);
    assert_int_equal(big, ingest_event_digest(&b->pe));
    b->line_pb[LT_SALE_LINES_MAX - 1].unit_paid_fen--;
    assert_int_not_equal(big, ingest_event_digest(&b->pe));
    free(a);
    free(b);
}

/* The daemon's digest from the validated event: equal content gives equal digests whatever bytes
 * the till used, any change of content changes it, and it is never 0 (0 means "unknown"). */
static uint64_t dig(fx *f)
{
    assert_ok(f);
    uint64_t h = ingest_event_digest_ev(&f->out);
    assert_int_not_equal(h, 0);
    return h;
}

/* Applies a change to f, checks that the digest moved, then undoes it and checks it is back. */
#define assert_digest_moves(f, h, change, undo)                                                    \
    do {                                                                                           \
        change;                                                                                    \
        if (dig(f) == (h))                                                                         \
            fail_msg("digest unchanged by: %s", #change);                                          \
        undo;                                                                                      \
        assert_int_equal(dig(f), (h));                                                             \
    } while (0)

static void test_digest_ev_sale(void **state)
{
    (void)state;
    fx *f = fx_new(), *g = fx_new();
    fx_sale(f, 3);
    fx_sale(g, 3);
    f->pe.card = "C1";
    g->pe.card = "C1";
    uint64_t h = dig(f);
    assert_int_equal(h, dig(g));
    /* an explicit zero and an absent redeem_points are the same content */
    g->sale.has_redeem_points = 1;
    assert_int_equal(h, dig(g));
    /* so are a zone name and the offset it resolves to */
    g->pe.has_utc_offset_min = 0;
    g->pe.time_zone = "Asia/Shanghai";
    assert_int_equal(h, dig(g));

    Loyalty__SaleLine *l = &f->line_pb[2];
    assert_digest_moves(f, h, f->pe.member_id = "M0002", f->pe.member_id = "M0001");
    assert_digest_moves(f, h, f->pe.card = "C2", f->pe.card = "C1");
    assert_digest_moves(f, h, f->pe.card = NULL, f->pe.card = "C1");
    assert_digest_moves(f, h, f->pe.store_id = "S002", f->pe.store_id = "S001");
    assert_digest_moves(f, h, f->pe.occurred_at++, f->pe.occurred_at--);
    assert_digest_moves(f, h, f->pe.utc_offset_min = 540, f->pe.utc_offset_min = 480);
    assert_digest_moves(f, h, (f->sale.has_redeem_points = 1, f->sale.redeem_points = 1),
                        f->sale.has_redeem_points = 0);
    assert_digest_moves(f, h, f->sale.n_lines = 2, f->sale.n_lines = 3);
    assert_digest_moves(f, h, l->sku = "SKU9", l->sku = f->sku[2]);
    assert_digest_moves(f, h, l->category = "tobacco", l->category = "groceries");
    assert_digest_moves(f, h, l->quantity++, l->quantity--);
    assert_digest_moves(f, h, l->unit_list_fen++, l->unit_list_fen--);
    assert_digest_moves(f, h, l->unit_paid_fen--, l->unit_paid_fen++);
    assert_digest_moves(f, h, (l->has_flags = 1, l->flags = 1), l->flags = 0);
    /* strings are delimited: "SKU2"+"groceries" is not "SKU2g"+"roceries" */
    assert_digest_moves(f, h, (l->sku = "SKU2g", l->category = "roceries"),
                        (l->sku = f->sku[2], l->category = "groceries"));
    /* the largest sale fits the digest buffer */
    fx_sale(f, LT_SALE_LINES_MAX);
    for (size_t i = 0; i < LT_SALE_LINES_MAX; i++) {
        f->line_pb[i].sku = f->max_id;
        f->line_pb[i].category = f->max_id;
    }
    f->pe.member_id = f->pe.card = f->pe.store_id = f->max_id;
    uint64_t big = dig(f);
    f->line_pb[LT_SALE_LINES_MAX - 1].quantity++;
    assert_int_not_equal(big, dig(f));
    free(f);
    free(g);
}

typedef struct {
    const lt_event *ev;
    uint64_t want;
    int rounds;
    int wrong;
} digest_job;

static void *digest_many(void *arg)
{
    digest_job *j = arg;
    for (int i = 0; i < j->rounds; i++)
        j->wrong += ingest_event_digest_ev(j->ev) != j->want;
    return NULL;
}

/* The daemon digests on two threads at once (its loop and its decode thread): each must get
 * its own event's digest. A buffer shared by the two once mixed their bytes, silently (a wrong
 * digest in the ledger turns every later honest resend into a CONFLICT, R29). */
static void test_digest_ev_two_threads(void **state)
{
    (void)state;
    fx *f = fx_new(), *g = fx_new();
    fx_sale(f, 60);
    fx_sale(g, 60);
    g->pe.member_id = "M0002";
    digest_job a = {&f->out, dig(f), 20000, 0}, b = {&g->out, dig(g), 20000, 0};
    assert_int_not_equal(a.want, b.want);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, digest_many, &b), 0);
    digest_many(&a);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a.wrong, 0);
    assert_int_equal(b.wrong, 0);
    free(f);
    free(g);
}

static void test_digest_ev_other_kinds(void **state)
{
    (void)state;
    fx *f = fx_new();
    /* gift (fx_new's body) */
    uint64_t h = dig(f);
    assert_digest_moves(f, h, f->gift.points++, f->gift.points--);
    assert_digest_moves(f, h, f->gift.reward_code = "CUP", f->gift.reward_code = "MUG");
    /* an adjustment of the same points is another event */
    fx_adjust(f, 500);
    uint64_t ha = dig(f);
    assert_int_not_equal(ha, h);
    assert_digest_moves(f, ha, f->adj.points = -500, f->adj.points = 500);
    assert_digest_moves(f, ha, f->adj.reason_code = "x", f->adj.reason_code = "goodwill");
    assert_digest_moves(f, ha, f->adj.operator_id = "op8", f->adj.operator_id = "op7");

    fx_enrol(f);
    f->enrol.referrer = "M0000";
    f->enrol.card = "C5";
    uint64_t he = dig(f);
    assert_digest_moves(f, he,
                        (f->enrol.has_birth_month = f->enrol.has_birth_day = 1,
                         f->enrol.birth_month = 1, f->enrol.birth_day = 2),
                        f->enrol.has_birth_month = f->enrol.has_birth_day = 0);
    assert_digest_moves(f, he, (f->enrol.has_staff = 1, f->enrol.staff = 1), f->enrol.staff = 0);
    assert_digest_moves(f, he, f->enrol.referrer = "M0003", f->enrol.referrer = "M0000");
    assert_digest_moves(f, he, f->enrol.card = "C6", f->enrol.card = "C5");
    assert_digest_moves(f, he, f->enrol.card = NULL, f->enrol.card = "C5");
    /* the card on the event or in the body is the same enrolment */
    f->pe.card = "C5";
    f->enrol.card = NULL;
    assert_int_equal(dig(f), he);
    f->pe.card = NULL;

    fx_card_link(f, "C9", "C8");
    uint64_t hc = dig(f);
    assert_digest_moves(f, hc, f->card_link.card = "C7", f->card_link.card = "C9");
    assert_digest_moves(f, hc, f->card_link.replaces_card = NULL,
                        f->card_link.replaces_card = "C8");

    fx_return(f, 3);
    uint64_t hr = dig(f);
    assert_digest_moves(f, hr, f->orig.node_id++, f->orig.node_id--);
    assert_digest_moves(f, hr, f->orig.event_id++, f->orig.event_id--);
    assert_digest_moves(f, hr, f->ret.n_lines = 2, f->ret.n_lines = 3);
    assert_digest_moves(f, hr, f->rline_pb[1].line_index = 9, f->rline_pb[1].line_index = 1);
    assert_digest_moves(f, hr, f->rline_pb[1].quantity++, f->rline_pb[1].quantity--);

    fx_merge(f, "M0002");
    uint64_t hm = dig(f);
    assert_digest_moves(f, hm, f->merge.source_member = "M0003", f->merge.source_member = "M0002");
    assert_digest_moves(f, hm, f->pe.member_id = "M0004", f->pe.member_id = "M0001");
    free(f);
}

/* The daemon reuses one lt_event: a short sale after a long one digests as if converted fresh. */
static void test_digest_ev_reused_output(void **state)
{
    (void)state;
    fx *f = fx_new(), *g = fx_new();
    fx_sale(f, 5);
    fx_return(f, 7);
    dig(f);
    fx_sale(f, 2);
    fx_sale(g, 2);
    assert_int_equal(dig(f), dig(g));
    free(f);
    free(g);
}

/* ------------------------------------------------------------------ time zones */

#define T_JAN_2026 1768478400LL    /* 2026-01-15T12:00:00Z */
#define T_JUL_2026 1784116800LL    /* 2026-07-15T12:00:00Z */
#define T_NY_DST_2026 1772953200LL /* 2026-03-08T07:00:00Z: New York springs forward */

static int32_t zone(const char *name, int64_t t)
{
    int32_t off = 12345;
    if (ingest_zone_offset(name, t, &off) != 0)
        fail_msg("zone %s unknown", name);
    return off;
}

static void test_zone_offsets(void **state)
{
    (void)state;
    assert_int_equal(zone("Asia/Shanghai", T_JAN_2026), 480);
    assert_int_equal(zone("Asia/Shanghai", T_JUL_2026), 480);
    assert_int_equal(zone("UTC", T_JUL_2026), 0);
    assert_int_equal(zone("Etc/UTC", T_JAN_2026), 0);
    assert_int_equal(zone("America/New_York", T_JAN_2026), -300);
    assert_int_equal(zone("America/New_York", T_JUL_2026), -240);
    assert_int_equal(zone("America/New_York", T_NY_DST_2026 - 1), -300);
    assert_int_equal(zone("America/New_York", T_NY_DST_2026), -240);
    assert_int_equal(zone("Asia/Kolkata", T_JUL_2026), 330);
    assert_int_equal(zone("Asia/Kathmandu", T_JUL_2026), 345);
    /* cached answers stay right */
    assert_int_equal(zone("America/New_York", T_JAN_2026), -300);
    assert_int_equal(zone("Asia/Shanghai", T_JAN_2026), 480);
    /* China observed daylight saving 1986-1991: 1988-07-01 was UTC+9 */
    assert_int_equal(zone("Asia/Shanghai", 583718400LL), 540);
}

static void test_zone_rejections(void **state)
{
    (void)state;
    const char *bad[] = {"Mars/Olympus_Mons",
                         "../etc/passwd",
                         "/etc/passwd",
                         "Asia/../../../etc/passwd",
                         "..",
                         "",
                         "Asia",
                         "Asia/Shanghai ",
                         "Asia/Shanghai\n",
                         "Asia\\Shanghai",
                         "zone.tab",
                         "Asia/Shanghai/",
                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        int32_t off = 12345;
        if (ingest_zone_offset(bad[i], T_JAN_2026, &off) != -1)
            fail_msg("zone \"%s\" accepted", bad[i]);
        assert_int_equal(off, 12345); /* untouched on failure */
    }
    /* a failed lookup does not spoil later good ones */
    assert_int_equal(zone("Asia/Shanghai", T_JAN_2026), 480);
}

/* The zone cache is bounded, but a full cache must not turn valid zones into unknown ones: a
 * till (or a bug) naming many zones would otherwise break every store in a zone not yet seen. */
static void test_zone_cache_full(void **state)
{
    (void)state;
    static const char *const names[] = {
        "Africa/Abidjan",      "Africa/Accra",        "Africa/Algiers",   "Africa/Cairo",
        "Africa/Casablanca",   "Africa/Johannesburg", "Africa/Lagos",     "Africa/Nairobi",
        "America/Anchorage",   "America/Bogota",      "America/Caracas",  "America/Chicago",
        "America/Denver",      "America/Halifax",     "America/Havana",   "America/Lima",
        "America/Los_Angeles", "America/Mexico_City", "America/Phoenix",  "America/Santiago",
        "America/Sao_Paulo",   "America/St_Johns",    "America/Toronto",  "America/Vancouver",
        "Asia/Almaty",         "Asia/Baghdad",        "Asia/Bangkok",     "Asia/Dhaka",
        "Asia/Dubai",          "Asia/Hong_Kong",      "Asia/Jakarta",     "Asia/Jerusalem",
        "Asia/Karachi",        "Asia/Macau",          "Asia/Manila",      "Asia/Riyadh",
        "Asia/Seoul",          "Asia/Singapore",      "Asia/Taipei",      "Asia/Tehran",
        "Asia/Tokyo",          "Asia/Urumqi",         "Atlantic/Azores",  "Atlantic/Reykjavik",
        "Australia/Adelaide",  "Australia/Brisbane",  "Australia/Darwin", "Australia/Perth",
        "Australia/Sydney",    "Europe/Amsterdam",    "Europe/Athens",    "Europe/Berlin",
        "Europe/Dublin",       "Europe/Istanbul",     "Europe/Lisbon",    "Europe/London",
        "Europe/Madrid",       "Europe/Moscow",       "Europe/Paris",     "Europe/Rome",
        "Europe/Stockholm",    "Europe/Warsaw",       "Europe/Zurich",    "Pacific/Auckland",
        "Pacific/Chatham",     "Pacific/Fiji",        "Pacific/Honolulu", "Pacific/Kiritimati",
        "Pacific/Tongatapu",   "Indian/Maldives",     "Indian/Mauritius", "Asia/Yangon",
    };
    assert_true(LT_ARRAY_LEN(names) > 64);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < LT_ARRAY_LEN(names); i++) {
            int32_t off = 12345;
            if (ingest_zone_offset(names[i], T_JAN_2026, &off) != 0)
                fail_msg("round %d: valid zone %s (#%zu) refused", round, names[i], i);
            assert_true(off >= -720 && off <= 840);
        }
    }
    /* answers stay right after entries were recycled */
    assert_int_equal(zone("Pacific/Kiritimati", T_JAN_2026), 840);
    assert_int_equal(zone("Asia/Yangon", T_JAN_2026), 390);
    assert_int_equal(zone("America/St_Johns", T_JAN_2026), -210);
    assert_int_equal(zone("Asia/Shanghai", T_JAN_2026), 480);
    assert_int_equal(zone("America/New_York", T_JUL_2026), -240);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_required),
        cmocka_unit_test(test_member_or_card_required),
        cmocka_unit_test(test_common_id_lengths),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_occurred_at),
        cmocka_unit_test(test_utc_offset),
        cmocka_unit_test(test_time_zone),
        cmocka_unit_test(test_no_body),
        cmocka_unit_test(test_short_message_buffer),
        cmocka_unit_test(test_sale_ok_field_by_field),
        cmocka_unit_test(test_sale_store_and_lines_required),
        cmocka_unit_test(test_sale_line_count_boundary),
        cmocka_unit_test(test_sale_redeem_points),
        cmocka_unit_test(test_sale_line_text_fields),
        cmocka_unit_test(test_sale_line_quantity),
        cmocka_unit_test(test_sale_line_prices),
        cmocka_unit_test(test_sale_line_total),
        cmocka_unit_test(test_sale_line_flags),
        cmocka_unit_test(test_enrol_ok_field_by_field),
        cmocka_unit_test(test_enrol_rejections),
        cmocka_unit_test(test_card_link),
        cmocka_unit_test(test_gift),
        cmocka_unit_test(test_adjustment),
        cmocka_unit_test(test_return_ok_field_by_field),
        cmocka_unit_test(test_return_rejections),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_output_reset),
        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_digest_ev_sale),
        cmocka_unit_test(test_digest_ev_other_kinds),
        cmocka_unit_test(test_digest_ev_two_threads),
        cmocka_unit_test(test_digest_ev_reused_output),
        cmocka_unit_test(test_zone_offsets),
        cmocka_unit_test(test_zone_rejections),
        cmocka_unit_test(test_zone_cache_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
