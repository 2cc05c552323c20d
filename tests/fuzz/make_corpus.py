#!/usr/bin/env python3
"""make_corpus.py: writes the seed corpus of fuzz_ingest (tests/fuzz/corpus/), valid and invalid
EventBatch messages and one ledger entry, built with the schema's own Python module.

    PYTHONPATH=build/python python3 tests/fuzz/make_corpus.py [OUT_DIR]

The files are committed; rerun this only when the schema or the fuzz state changes. Times are
around FUZZ_NOW of fuzz_ingest.c, member ids and cards match its fixed state (m1, m2, m3, s1,
c1, c2; the sale node 1 event 1 of m1 for returns).
"""
import os
import sys

import loyalty_pb2 as pb

NOW = 1795399200  # FUZZ_NOW in fuzz_ingest.c


def event(eid, member="m1", node=2, at=NOW - 60, offset=480, zone=None, card=None):
    e = pb.Event()
    e.id.node_id = node
    e.id.event_id = eid
    if member is not None:
        e.member_id = member
    if card is not None:
        e.card = card
    e.store_id = "S1"
    e.occurred_at = at
    if zone is not None:
        e.time_zone = zone
    elif offset is not None:
        e.utc_offset_min = offset
    return e


def line(e, sku, cat, qty, unit_list, unit_paid, flags=0):
    l = e.sale.lines.add()
    l.sku, l.category, l.quantity = sku, cat, qty
    l.unit_list_fen, l.unit_paid_fen = unit_list, unit_paid
    if flags:
        l.flags = flags
    return l


def batch(*events, batch_id=1):
    b = pb.EventBatch()
    b.batch_id = batch_id
    for e in events:
        b.events.add().CopyFrom(e)
    return b.SerializeToString()


def seeds():
    s = {}
    e = event(1)
    line(e, "A", "groceries", 1, 12345, 12345)
    line(e, "B", "tobacco", 1, 5000, 5000)
    line(e, "C", "appliances", 1, 260000, 260000)
    s["sale_three_lines"] = batch(e)

    e = event(2, member="m2", zone="Asia/Shanghai")
    e.sale.redeem_points = 100
    line(e, "D", "groceries", 2, 30000, 25000)
    line(e, "E", "clothing", 1, 9900, 9900, flags=2)
    s["sale_redeem_zone"] = batch(e)

    e = event(3, member=None, card="c1")
    line(e, "A", "groceries", 3, 100, 99)
    s["sale_by_card"] = batch(e)

    e = event(4, member="new1")
    line(e, "A", "groceries", 1, 500, 500)
    s["sale_unknown_member"] = batch(e)

    e = event(5, member="m3")
    line(e, "A", "groceries", 1, 500, 500)
    s["sale_blocked_member"] = batch(e)

    e = event(6, member="s1")
    line(e, "A", "groceries", 1, 50000, 50000)
    s["sale_staff"] = batch(e)

    e = event(7, member="new2")
    e.enrol.birth_month, e.enrol.birth_day = 11, 23
    e.enrol.referrer, e.enrol.staff, e.enrol.card = "m1", False, "c9"
    s["enrol"] = batch(e)

    e = event(8)
    e.card_link.card, e.card_link.replaces_card = "c3", "c1"
    s["card_link_replace"] = batch(e)

    e = event(9)
    e.gift.points, e.gift.reward_code = 200, "MUG-01"
    s["gift"] = batch(e)

    e = event(10, member="m2")
    e.adjustment.points, e.adjustment.reason_code, e.adjustment.operator_id = -150, "FIX", "op7"
    s["adjustment_negative"] = batch(e)

    e = event(11)
    e.return_sale.original.node_id, e.return_sale.original.event_id = 1, 1
    for idx, qty in ((0, 1), (2, 4)):
        rl = e.return_sale.lines.add()
        rl.line_index, rl.quantity = idx, qty
    s["return_partial"] = batch(e)

    e = event(12)
    e.merge.source_member = "m2"
    s["merge"] = batch(e)

    mixed = []
    for i in range(10):
        e = event(100 + i, member=("m1", "m2", "new3")[i % 3])
        line(e, "A%d" % i, ("groceries", "alcohol", "appliances")[i % 3], i + 1, 1000 * i, 900 * i)
        mixed.append(e)
    s["batch_of_ten"] = batch(*mixed, batch_id=77)

    # invalid events: each is rejected with its own reason
    e = event(20)
    e.ClearField("id")
    line(e, "A", "groceries", 1, 100, 100)
    s["bad_no_id"] = batch(e)
    e = event(21)
    line(e, "A", "groceries", 0, 100, 100)
    s["bad_quantity_zero"] = batch(e)
    e = event(22)
    line(e, "A", "groceries", 1, 100, 200)
    s["bad_paid_above_list"] = batch(e)
    e = event(23)
    for i in range(201):
        line(e, "A", "groceries", 1, 100, 100)
    s["bad_201_lines"] = batch(e)
    e = event(24, zone="Mars/Olympus_Mons")
    line(e, "A", "groceries", 1, 100, 100)
    s["bad_zone"] = batch(e)
    e = event(25, at=NOW + 86400)
    line(e, "A", "groceries", 1, 100, 100)
    s["bad_future"] = batch(e)
    e = event(26)
    line(e, "A", "groceries", 1000000, 10000000000, 10000000000)
    s["bad_overflow"] = batch(e)
    e = event(27, member="x" * 40)
    line(e, "A", "groceries", 1, 100, 100)
    s["bad_long_member"] = batch(e)
    e = event(28)
    e.sale.redeem_points = 10 ** 6
    line(e, "A", "groceries", 1, 100, 100)
    s["bad_redeem_too_much"] = batch(e)
    s["bad_not_protobuf"] = b"\xff\xff\xff\xff this is not protobuf"
    s["empty"] = b""

    le = pb.LedgerEntry()
    le.seq, le.kind, le.occurred_at, le.utc_offset_min = 9, 1, NOW, 480
    le.id.node_id, le.id.event_id = 1, 1
    le.store_id, le.member_id, le.rules_version = "S1", "m1", "seed-2026.1"
    le.points_earned, le.paid_fen, le.eligible_fen, le.digest = 175, 277345, 272345, 0x1234
    p = le.postings.add()
    p.member_id, p.credit, p.balance_after, p.reason = "m1", 175, 675, "sale"
    lr = le.lines.add()
    lr.quantity, lr.paid_fen, lr.points = 1, 12345, 123
    s["ledger_entry"] = le.SerializeToString()
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(data)
    print("make_corpus: %d files in %s" % (len(seeds()), out))


if __name__ == "__main__":
    main()
