#!/usr/bin/env python3
"""report_consumer.py: per-store daily sales totals in SQLite, kept live from sale.rated.

An example service on loyaltyd_client.Subscriber. Each sale.rated message (the sale's whole
ledger entry) adds to the row of its store and store-local day (occurred_at +
utc_offset_min * 60, R3) in table store_day, with the columns of `loyaltyctl report stores`
and the same definitions:

    sales            sale entries
    paid_fen         sum of the sales' paid totals (after discounts, including the part paid
                     with points)
    points_issued    points the sales credited to the buying member
    referral_points  points the sales credited to other members (referral bonus, R25)
    gifts            gift redemptions (R16) made in a store, from member.updated with
                     reason gift (it carries the store and its offset)
    points_redeemed  the sales' redeemed points (R15) plus the gifts' points

Exactly once: the position (seq, part) is written in the same SQLite transaction as the totals
it accounts for, and a restart resumes from it. Transactions are committed at least every
200 ms and every 1000 messages, and at exit (SIGINT, SIGTERM).

usage: report_consumer.py --db FILE [--from SEQ] [--pub EP] [--query EP]
       report_consumer.py --db FILE --dump     (rows as JSON lines, like report stores --json)
"""

import argparse
import datetime
import json
import os
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients",
                                "python"))
import loyaltyd_client as lc  # noqa: E402

COMMIT_S = 0.2
COMMIT_MESSAGES = 1000
COLUMNS = ("sales", "paid_fen", "points_issued", "referral_points", "gifts", "points_redeemed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_day (
    store TEXT NOT NULL, day TEXT NOT NULL,
    sales INTEGER NOT NULL DEFAULT 0, paid_fen INTEGER NOT NULL DEFAULT 0,
    points_issued INTEGER NOT NULL DEFAULT 0, referral_points INTEGER NOT NULL DEFAULT 0,
    gifts INTEGER NOT NULL DEFAULT 0, points_redeemed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, day));
CREATE TABLE IF NOT EXISTS position (
    id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, part INTEGER NOT NULL);
"""

EPOCH = datetime.date(1970, 1, 1)


def local_day(occurred_at, utc_offset_min):
    """Store-local date "YYYY-MM-DD" (R3), as the report computes it."""
    days = (occurred_at + utc_offset_min * 60) // 86400
    return (EPOCH + datetime.timedelta(days=days)).isoformat()


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def load_position(db):
    row = db.execute("SELECT seq, part FROM position WHERE id = 1").fetchone()
    return (row[0], row[1]) if row else None


def add_sale(db, entry):
    """Adds one sale entry (a LedgerEntry) to its store-day row."""
    if entry.kind != lc.pb.ENTRY_SALE:
        return
    issued = sum(p.credit for p in entry.postings if p.member_id == entry.member_id)
    referral = sum(p.credit for p in entry.postings if p.member_id != entry.member_id)
    db.execute(
        "INSERT INTO store_day (store, day, sales, paid_fen, points_issued, referral_points,"
        " gifts, points_redeemed) VALUES (?, ?, 1, ?, ?, ?, 0, ?)"
        " ON CONFLICT (store, day) DO UPDATE SET sales = sales + 1,"
        " paid_fen = paid_fen + excluded.paid_fen,"
        " points_issued = points_issued + excluded.points_issued,"
        " referral_points = referral_points + excluded.referral_points,"
        " points_redeemed = points_redeemed + excluded.points_redeemed",
        (entry.store_id, local_day(entry.occurred_at, entry.utc_offset_min), entry.paid_fen,
         issued, referral, entry.points_redeemed))


def add_gift(db, u):
    """Adds a gift redemption (a MemberUpdate with reason gift and a store) to its row."""
    if u.reason != "gift" or not u.store_id:
        return
    db.execute(
        "INSERT INTO store_day (store, day, sales, paid_fen, points_issued, referral_points,"
        " gifts, points_redeemed) VALUES (?, ?, 0, 0, 0, 0, 1, ?)"
        " ON CONFLICT (store, day) DO UPDATE SET gifts = gifts + 1,"
        " points_redeemed = points_redeemed + excluded.points_redeemed",
        (u.store_id, local_day(u.occurred_at, u.utc_offset_min), -u.delta))


def fmt_yuan(fen):
    a = abs(fen)
    return "%s%d.%02d" % ("-" if fen < 0 else "", a // 100, a % 100)


def dump(db):
    """Prints the rows as `loyaltyctl report stores --json` does: one object per row."""
    for row in db.execute("SELECT store, day, " + ", ".join(COLUMNS) +
                          " FROM store_day ORDER BY store, day"):
        store, day, sales, paid, issued, referral, gifts, redeemed = row
        print(json.dumps({"store": store, "day": day, "sales": sales, "paid_fen": paid,
                          "paid_yuan": fmt_yuan(paid), "points_issued": issued,
                          "referral_points": referral, "gifts": gifts,
                          "points_redeemed": redeemed}, separators=(",", ":")))


def run(args):
    db = open_db(args.db)
    pos = load_position(db)
    from_seq, skip = (pos[0] + 1, pos[1]) if pos else (args.from_seq, 0)
    sub = lc.Subscriber(args.pub, args.query, from_seq, topics=["sale.rated", "member.updated"],
                        skip_parts=skip)
    signal.signal(signal.SIGTERM, lambda *_: sub.stop())
    signal.signal(signal.SIGINT, lambda *_: sub.stop())
    stored = pos or (from_seq - 1, skip)
    pending, last_commit = 0, time.monotonic()
    db.execute("BEGIN IMMEDIATE")
    try:
        for u in sub.messages(tick=COMMIT_S):
            if u is not None and u.topic == "sale.rated":
                add_sale(db, u.msg.entry)
                pending += 1
            elif u is not None and u.topic == "member.updated":
                add_gift(db, u.msg)
                pending += 1
            due = pending >= COMMIT_MESSAGES or time.monotonic() - last_commit >= COMMIT_S
            if due and sub.position != stored:
                # the totals and the position they account for, in one transaction
                db.execute("INSERT OR REPLACE INTO position (id, seq, part) VALUES (1, ?, ?)",
                           sub.position)
                db.execute("COMMIT")
                db.execute("BEGIN IMMEDIATE")
                stored, pending, last_commit = sub.position, 0, time.monotonic()
        db.execute("INSERT OR REPLACE INTO position (id, seq, part) VALUES (1, ?, ?)",
                   sub.position)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        sub.close(processed=False)
        db.close()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pub", default=lc.DEFAULT_PUB)
    ap.add_argument("--query", default=lc.DEFAULT_QUERY)
    ap.add_argument("--db", required=True)
    ap.add_argument("--from", dest="from_seq", type=int, default=1,
                    help="first ledger sequence when the database is new (default 1)")
    ap.add_argument("--dump", action="store_true", help="print the rows and exit")
    args = ap.parse_args(argv)
    if args.dump:
        db = open_db(args.db)
        dump(db)
        db.close()
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
