/* entry.h: the ledger entry codec: lt_entry <-> loyalty.LedgerEntry bytes. */
#ifndef LT_ENTRY_H
#define LT_ENTRY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"

/* Largest encoded entry (200 lines and 8 postings fit well inside). */
#define ENTRY_BYTES_MAX (64 * 1024)

/* Encodes e into buf. Returns the length, or 0 if cap is too small. */
size_t entry_encode(const lt_entry *e, uint8_t *buf, size_t cap);

/* Decodes bytes into *out (fully overwritten, except postings[postings_n..] and
 * lines[lines_n..], which are left as they were to save clearing 30 KiB per entry). Returns 0, or
 * -1 if the bytes are not a valid entry or a field does not fit its C array (*out is then
 * unspecified). Reads the wire format directly (entry_wire.c), no allocation. event_kind is
 * derived from kind (LedgerEntry does not store it). */
int entry_decode(const uint8_t *buf, size_t len, lt_entry *out);

/* entry_decode() for replay and recovery: everything state_apply() reads. Skipped, their
 * framing checked but not their contents: the lines of an entry other than a return (kind
 * before the lines, as entry_encode() writes it; lines_n is 0), and the strings state_apply()
 * does not read (store_id, member_id, rules_version, reward_code, reason_code, operator_id,
 * and each posting's tier_before), which stay empty. */
int entry_decode_state(const uint8_t *buf, size_t len, lt_entry *out);

/* Only the entry's event id ((0, 0) for a system entry, which has none), every field's framing
 * checked: the ledger reads the ids of the entries its dedup index does not hold yet with it.
 * Returns 0, or -1 if the bytes are not a valid entry's framing. */
int entry_decode_id(const uint8_t *buf, size_t len, lt_event_id *id);

/* The same through protobuf-c's unpack (into a per-thread arena): the reference entry_decode()
 * is tested against. Same contract, slower, and one more result: -2 when the bytes need more
 * than the arena's 128 KiB of unpacked structs (thousands of fields, far beyond any entry
 * entry_encode() writes), where it gives no verdict. */
int entry_decode_pb(const uint8_t *buf, size_t len, lt_entry *out);

/* Writes the entry as one JSON object on one line (ledger tail/dump). Returns 0 or -1. */
int entry_print_json(const lt_entry *e, FILE *f);

#endif
