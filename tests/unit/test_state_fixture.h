/* test_state_fixture.h: the one-posting entries the state tests apply (test_state*.c). */
#ifndef LT_TEST_STATE_FIXTURE_H
#define LT_TEST_STATE_FIXTURE_H

#include <string.h>

#include "state.h"

static lt_entry g_entry;
static char g_err[256];
static uint64_t g_seq;

/* Starts a fresh entry of `kind` (sequence numbers counting up) occurring at `at` and returns
 * its one posting, for `member`. */
static inline lt_posting *st_posting(lt_entry_kind kind, int64_t at, const char *member)
{
    memset(&g_entry, 0, sizeof(g_entry));
    g_entry.seq = ++g_seq;
    g_entry.kind = kind;
    g_entry.occurred_at = at;
    g_entry.postings_n = 1;
    lt_posting *p = &g_entry.postings[0];
    strcpy(p->member_id, member);
    return p;
}

/* Applies g_entry; returns state_apply's result (g_err says why on failure). */
static inline int st_apply(state *s)
{
    g_err[0] = '\0';
    return state_apply(s, &g_entry, g_err, sizeof(g_err));
}

#endif
