#!/usr/bin/env python3
"""test_examples.py: the Python client (clients/python/loyaltyd_client.py) and the example
services (examples/sms_notifier.py, examples/report_consumer.py), run by ctest.

Against a fake publisher (tests/python/fake_daemon.py), which drops chosen live messages and
publishes the notice topics loyaltyd does not have yet: the subscriber's gap rules, resuming
from a state file, topic filtering, ticks while only undelivered messages arrive, and the
notifier's member.birthday / points.expiring templates. Against the real loyaltyd (on free
ports in a temp dir, like tests/e2e/harness.c): both examples run while events arrive, are
restarted mid-stream (kill -9, SIGTERM) and live through a daemon restart; then the outbox must
hold exactly one file per tier.changed notice and the SQLite totals must equal
`loyaltyctl report stores --json`.

Prints one line per test and "N passed, N failed" at the end; exits 1 if any failed.
"""

import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("LT_SOURCE_DIR", os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("LT_BUILD_DIR", os.path.join(SRC, "build"))
LOYALTYD = os.environ.get("LOYALTYD", os.path.join(BUILD, "loyaltyd"))
LOYALTYCTL = os.environ.get("LOYALTYCTL", os.path.join(BUILD, "loyaltyctl"))
sys.path[:0] = [os.path.join(BUILD, "python"), os.path.join(SRC, "clients", "python"), HERE]

import loyalty_pb2 as pb  # noqa: E402
import loyaltyd_client as lc  # noqa: E402
from fake_daemon import FakeDaemon  # noqa: E402

NOTIFIER = os.path.join(SRC, "examples", "sms_notifier.py")
REPORTER = os.path.join(SRC, "examples", "report_consumer.py")
TEMPLATES = os.path.join(SRC, "examples", "sms_templates.json")
WAIT_S = 90


def _ports():
    """Loopback ports below the kernel's ephemeral range, as common/port.c picks them: an
    outgoing connection (a client's connect attempts while a daemon starts) never takes one."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        high = 32768
    low = 10000
    start = (os.getpid() * 7919 + time.monotonic_ns()) % (high - low)
    for i in range(high - low):
        port = low + (start + i) % (high - low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        yield port
    raise RuntimeError("no free loopback port below the ephemeral range")


_PORTS = _ports()


def free_port():
    return next(_PORTS)


def endpoint():
    return "tcp://127.0.0.1:%d" % free_port()


def wait_for(cond, what, timeout=WAIT_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def expected_stream(entries, first=1):
    """[(seq, part, parts)] of every message of entries first.. of a FakeDaemon."""
    return [(s, k + 1, len(entries[s - 1])) for s in range(first, len(entries) + 1)
            for k in range(len(entries[s - 1]))]


class Daemon:
    """The real loyaltyd on free ports with a temp data directory."""

    def __init__(self, tmp):
        self.dir = tmp
        self.data = os.path.join(tmp, "data")
        self.ingest, self.pub, self.query = endpoint(), endpoint(), endpoint()
        self.config = os.path.join(tmp, "loyaltyd.yaml")
        with open(self.config, "w") as f:
            f.write("data_dir: %s\ningest_endpoint: %s\npublish_endpoint: %s\n"
                    "query_endpoint: %s\nmetrics_listen: 127.0.0.1:%d\nheartbeat_ms: 100\n"
                    "checkpoint_interval_ms: 500\n"
                    % (self.data, self.ingest, self.pub, self.query, free_port()))
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "daemon.log"), "a")
        self.proc = subprocess.Popen([LOYALTYD, "--config", self.config], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: self.proc.poll() is None and lc.status(self.query, 100) is not None,
                 "loyaltyd to answer", 20)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.proc = None

    def seq(self):
        return lc.status(self.query).seq

    def ctl(self, *args):
        r = subprocess.run([LOYALTYCTL, "--endpoint", self.ingest, "--pub", self.pub,
                            "--query", self.query, "--data", self.data] + list(args),
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("loyaltyctl %s: exit %d: %s%s" % (
                " ".join(args), r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
        return r.stdout


class Proc:
    """An example service as a subprocess, stdout and stderr appended to files."""

    def __init__(self, tmp, name, argv):
        self.argv, self.out, self.err = argv, os.path.join(tmp, name + ".out"), \
            os.path.join(tmp, name + ".err")
        self.p = None
        self.start()

    def start(self):
        with open(self.out, "a") as o, open(self.err, "a") as e:
            self.p = subprocess.Popen([sys.executable] + self.argv, stdout=o, stderr=e)

    def stop(self, sig=signal.SIGTERM):
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)
            rc = self.p.wait(30)
            if sig == signal.SIGTERM and rc != 0:
                raise AssertionError("%s exited %d: %s" % (self.argv[0], rc,
                                                           open(self.err).read()[-2000:]))
        self.p = None

    def alive(self):
        if self.p.poll() is not None:
            raise AssertionError("%s died: %s" % (self.argv[0], open(self.err).read()[-2000:]))
        return True


# ---------------------------------------------------------------- against the fake publisher

def fake_entry(i, tier=False, notice=None):
    m = [("member.updated", pb.MemberUpdate(member_id="m%d" % i, balance=10 * i, delta=i))]
    if tier:
        m.append(("tier.changed", pb.TierChange(member_id="m%d" % i, from_tier="basic",
                                                to_tier="silver", upgrade=True)))
    if notice:
        m.append((notice, pb.MemberUpdate(member_id="m%d" % i, balance=10 * i, delta=-i,
                                          reason=notice)))
    m.append(("sale.rated", pb.SaleRated(entry=pb.LedgerEntry(store_id="S1", paid_fen=100 * i))))
    return m


def consume_until(sub, last, out, stop_at=None):
    """Appends (topic, seq, part, parts) to out until the position reaches last (or out has
    stop_at items)."""
    for u in sub.messages(tick=0.1):
        if u is not None:
            out.append((u.topic, u.seq, u.part, u.parts))
            if stop_at is not None and len(out) >= stop_at:
                return
        elif sub.position[0] >= last:
            return


def test_subscriber_repairs_drops_and_resumes(tmp):
    fake = FakeDaemon(endpoint(), endpoint())
    try:
        for i in range(1, 41):
            fake.add(fake_entry(i, tier=i % 4 == 0))
        state = os.path.join(tmp, "sub.pos")
        got = []
        sub = lc.Subscriber(fake.pub_endpoint, fake.query_endpoint, 1, state_file=state)
        with sub:
            consume_until(sub, 40, got, stop_at=25)  # leaves mid-entry: positions are parts
        assert lc.load_position(state) == sub.position, (lc.load_position(state), sub.position)
        # live, with drops: a part, a whole entry (found by the next seq), the last entries
        # (found only by the heartbeat)
        sub = lc.Subscriber(fake.pub_endpoint, fake.query_endpoint, 1, state_file=state)
        with sub:
            gen = sub.messages(tick=0.1)
            for u in gen:  # joined and caught up once the first tick comes
                if u is None and sub.position[0] >= 40:
                    break
                if u is not None:
                    got.append((u.topic, u.seq, u.part, u.parts))
            for i in range(41, 78):
                drop = {2} if i % 10 == 0 else {1, 2, 3} if i == 55 else ()
                fake.add(fake_entry(i, tier=i % 5 == 0), drop=drop)
            for u in gen:
                if u is not None:
                    got.append((u.topic, u.seq, u.part, u.parts))
                elif sub.position[0] >= 77:
                    break
            for i in range(78, 81):  # the last entries lost whole: only a heartbeat tells
                fake.add(fake_entry(i, tier=i % 5 == 0), drop={1, 2, 3})
            for u in gen:
                if u is not None:
                    got.append((u.topic, u.seq, u.part, u.parts))
                elif sub.position[0] >= 80:
                    break
            gaps = sub.gaps
        want = expected_stream(fake.entries)
        assert [g[1:] for g in got] == want, "stream differs from 1..80"
        assert gaps >= 2, "expected the drops to be seen as gaps, got %d" % gaps
        # a topic filter delivers only its topic, still exactly once
        tiers = []
        with lc.Subscriber(fake.pub_endpoint, fake.query_endpoint, 1,
                           topics=["tier."]) as sub:
            consume_until(sub, 80, tiers)
        want_tiers = [w for w, g in zip(want, got) if g[0] == "tier.changed"]
        assert [t[1:] for t in tiers] == want_tiers
    finally:
        fake.close()


def test_subscriber_ticks_while_unwanted_messages_arrive(tmp):
    """messages(tick=...) yields None about every tick even when messages it does not deliver
    (heartbeats, other topics) arrive more often than its internal poll: the report consumer
    commits its position on those ticks. Before the fix a tick came only when a poll timed out,
    so heartbeats every <= 100 ms (the tests' heartbeat_ms) could hold it off for minutes."""
    fake = FakeDaemon(endpoint(), endpoint(), heartbeat_s=0.02)
    sub = t = None
    try:
        for i in range(1, 6):
            fake.add(fake_entry(i))
        ticks, errors = [], []
        sub = lc.Subscriber(fake.pub_endpoint, fake.query_endpoint, 1, topics=["tier."])

        def consume():
            try:
                for u in sub.messages(tick=0.1):
                    if u is None and sub.position[0] >= 5:
                        ticks.append(time.monotonic())
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        wait_for(lambda: ticks or errors, "the first tick after the catch-up", 10)
        # other topics too, every 20 ms, none of them wanted
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            fake.add(fake_entry(0))
            time.sleep(0.02)
        sub.stop()
        t.join(5)
        assert not t.is_alive(), "messages() did not end after stop()"
        assert not errors, errors
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        # about 15 ticks in 1.5 s; a loaded machine may stretch some, not drop them all
        assert len(ticks) >= 8 and max(gaps) < 0.6, "ticks %d, longest gap %.2f s" % (
            len(ticks), max(gaps, default=0))
    finally:
        if sub is not None:
            sub.stop()
        if t is not None:  # the sockets are closed only after their thread is done
            t.join(5)
        if sub is not None:
            sub.close()
        fake.close()


def test_notifier_renders_every_notice_topic_once(tmp):
    fake = FakeDaemon(endpoint(), endpoint())
    outbox, state = os.path.join(tmp, "outbox"), os.path.join(tmp, "notifier.pos")
    notifier = None
    try:
        notices = {}
        kinds = [None, "member.birthday", "points.expiring"]
        for i in range(1, 31):
            kind = kinds[i % 3]
            seq = fake.add(fake_entry(i, tier=i % 4 == 0, notice=kind))
            for part, (topic, _) in enumerate(fake.entries[seq - 1], 1):
                if topic in ("tier.changed", "member.birthday", "points.expiring"):
                    notices["%012d-%03d.sms" % (seq, part)] = (topic, "m%d" % i, i)
        notifier = Proc(tmp, "fake-notifier", [NOTIFIER, "--pub", fake.pub_endpoint, "--query",
                                               fake.query_endpoint, "--outbox", outbox,
                                               "--state-file", state])
        wait_for(lambda: notifier.alive() and (lc.load_position(state) or (0,))[0] >= 30,
                 "the notifier to reach 30")
        notifier.stop(signal.SIGKILL)
        for i in range(31, 61):  # while it is down; some also dropped from the live stream
            kind = kinds[i % 3]
            seq = fake.add(fake_entry(i, tier=i % 4 == 0, notice=kind),
                           drop={3} if i % 7 == 0 else ())
            for part, (topic, _) in enumerate(fake.entries[seq - 1], 1):
                if topic in ("tier.changed", "member.birthday", "points.expiring"):
                    notices["%012d-%03d.sms" % (seq, part)] = (topic, "m%d" % i, i)
        notifier.start()
        wait_for(lambda: notifier.alive() and (lc.load_position(state) or (0,))[0] >= 60,
                 "the notifier to reach 60")
        notifier.stop()
        files = sorted(f for f in os.listdir(outbox) if not f.startswith("."))
        assert files == sorted(notices), "outbox %s != notices %s" % (files, sorted(notices))
        for name, (topic, member, i) in notices.items():
            text = open(os.path.join(outbox, name)).read()
            assert text.startswith("to: %s\ntopic: %s\n" % (member, topic)), text
            if topic == "member.birthday":
                assert "Happy birthday, %s! Your balance is %d points" % (member, 10 * i) in text
            elif topic == "points.expiring":
                assert "%s: %d of your points expire soon" % (member, i) in text, text
            else:
                assert "your tier is now silver (was basic)" in text, text
        printed = [l for l in open(notifier.out) if l.startswith("notice ")]
        assert len(printed) == len(files), "%d notices written for %d files" % (len(printed),
                                                                                 len(files))
    finally:
        if notifier:
            notifier.stop(signal.SIGKILL)
        fake.close()


# ---------------------------------------------------------------- against loyaltyd

def make_events(first_id, n, rng, now):
    """n events as JSON lines: enrolments with referrers first, then sales over 30 members, 4
    stores, several days and UTC offsets (days cross store-local midnight), some paying with
    points."""
    lines = []
    offsets = {"S1": 480, "S2": -300, "S3": 0, "S4": 345}
    for k in range(n):
        eid = first_id + k
        member = "1390000%04d" % (eid % 30)
        store = "S%d" % (1 + eid % 4)
        at = now - 4 * 86400 + eid * 151
        ev = {"node": 5, "id": eid, "member": member, "store": store, "at": at,
              "utc_offset_min": offsets[store]}
        if eid <= 30:
            ev["enrol"] = {"referrer": "13900000001"} if eid % 5 == 0 and eid != 1 else {}
        else:
            ev["sale"] = {"lines": [
                {"sku": "A%d" % rng.randrange(50), "category": "groceries",
                 "qty": rng.randrange(1, 4), "list": 12000, "paid": rng.randrange(3000, 12000)},
                {"sku": "T", "category": "tobacco", "qty": 1, "paid": 2500}]}
            if eid > 120 and eid % 6 == 0:
                ev["sale"]["redeem_points"] = 5
            if eid > 200 and eid % 50 == 7:  # a gift redemption in a store (R16)
                del ev["sale"]
                ev["gift"] = {"points": 3, "reward": "MUG"}
        lines.append(json.dumps(ev))
    return "\n".join(lines) + "\n"


def send(d, tmp, text, name):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    d.ctl("send", "--batch", "200", path)


def report_position(db_path):
    try:
        db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=1)
        try:
            row = db.execute("SELECT seq, part FROM position WHERE id = 1").fetchone()
        finally:
            db.close()
        return row or (0, 0)
    except sqlite3.Error:
        return (0, 0)


def test_examples_against_the_daemon(tmp):
    d = Daemon(tmp)
    outbox, state = os.path.join(tmp, "outbox"), os.path.join(tmp, "notifier.pos")
    db_path = os.path.join(tmp, "report.sqlite")
    procs = []
    try:
        rng, now = random.Random(7), int(time.time())
        notifier = Proc(tmp, "notifier", [NOTIFIER, "--pub", d.pub, "--query", d.query,
                                          "--outbox", outbox, "--state-file", state])
        reporter = Proc(tmp, "reporter", [REPORTER, "--pub", d.pub, "--query", d.query,
                                          "--db", db_path])
        procs = [notifier, reporter]
        send(d, tmp, make_events(1, 400, rng, now), "events-1.jsonl")
        # both restarted mid-stream: the notifier killed outright, the reporter stopped cleanly
        wait_for(lambda: (lc.load_position(state) or (0,))[0] >= 100, "the notifier to start")
        notifier.stop(signal.SIGKILL)
        wait_for(lambda: report_position(db_path)[0] >= 100, "the reporter to start")
        reporter.stop()
        send(d, tmp, make_events(401, 400, rng, now), "events-2.jsonl")
        notifier.start()
        reporter.start()
        send(d, tmp, make_events(801, 300, rng, now), "events-3.jsonl")
        # a daemon restart under both, then more events
        d.stop()
        d.start()
        send(d, tmp, make_events(1101, 300, rng, now), "events-4.jsonl")
        last = d.seq()
        assert last == 1400, last
        wait_for(lambda: notifier.alive() and (lc.load_position(state) or (0,))[0] >= last,
                 "the notifier to reach %d" % last)
        wait_for(lambda: reporter.alive() and report_position(db_path)[0] >= last,
                 "the reporter to reach %d" % last)
        notifier.stop()
        reporter.stop()

        # exactly one outbox file per tier.changed notice in the ledger
        notices = []
        with lc.Subscriber(d.pub, d.query, 1, topics=["tier.changed"]) as sub:
            for u in sub.messages(tick=0.1):
                if u is not None:
                    notices.append(("%012d-%03d.sms" % (u.seq, u.part), u.msg.member_id,
                                    u.msg.to_tier))
                elif sub.position[0] >= last:
                    break
        assert len(notices) >= 20, "only %d tier changes: the test data is too tame" % len(
            notices)
        files = sorted(f for f in os.listdir(outbox) if not f.startswith("."))
        assert files == sorted(n[0] for n in notices), "outbox != tier.changed notices"
        for name, member, tier in notices:
            text = open(os.path.join(outbox, name)).read()
            assert text.startswith("to: %s\n" % member) and "tier is now %s " % tier in text, text

        # the SQLite totals equal the report computed from the ledger
        r = subprocess.run([sys.executable, REPORTER, "--db", db_path, "--dump"],
                           capture_output=True, text=True, check=True)
        mine = [json.loads(l) for l in r.stdout.splitlines()]
        theirs = [json.loads(l) for l in d.ctl("report", "stores", "--json").splitlines()]
        assert mine == theirs, "report_consumer:\n%s\nreport stores:\n%s" % (
            "\n".join(map(str, mine)), "\n".join(map(str, theirs)))
        assert len(mine) >= 8 and sum(x["points_redeemed"] for x in mine) > 0 and \
            sum(x["referral_points"] for x in mine) >= 0, mine
        assert sum(x["gifts"] for x in mine) > 0, "no gift redemption was counted: %s" % mine
    finally:
        for p in procs:
            p.stop(signal.SIGKILL)
        d.stop()


def print_logs(tmp, lines=20):
    """The tail of each log a failed test left (CI keeps only this output, not the files)."""
    for name in sorted(os.listdir(tmp)):
        if name.endswith((".log", ".err")):
            with open(os.path.join(tmp, name), errors="replace") as f:
                tail = f.readlines()[-lines:]
            print("--- %s (last %d lines)\n%s" % (name, len(tail), "".join(tail)), flush=True)


def main():
    tests = [test_subscriber_repairs_drops_and_resumes,
             test_subscriber_ticks_while_unwanted_messages_arrive,
             test_notifier_renders_every_notice_topic_once,
             test_examples_against_the_daemon]
    passed = failed = 0
    for t in tests:
        tmp = tempfile.mkdtemp(prefix="lt-py-")
        t0 = time.monotonic()
        try:
            t(tmp)
            passed += 1
            print("PASS %s (%.1f s)" % (t.__name__, time.monotonic() - t0), flush=True)
            if not os.environ.get("LT_KEEP"):
                shutil.rmtree(tmp, ignore_errors=True)
        except Exception:  # noqa: BLE001 - report and go on with the next test
            failed += 1
            print("FAIL %s (%.1f s), files in %s" % (t.__name__, time.monotonic() - t0, tmp),
                  flush=True)
            traceback.print_exc()
            print_logs(tmp)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
