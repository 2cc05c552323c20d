#!/usr/bin/env python3
"""sms_notifier.py: renders member notices as SMS texts into an outbox directory, exactly once.

An example service on loyaltyd_client.Subscriber. For each message whose topic has a template
(a JSON object {"topic": "template", ...}, e.g. examples/sms_templates.json: tier.changed,
member.birthday, points.expiring) it writes one file OUTBOX/SEQ-PART.sms:

    to: 13800000000
    topic: tier.changed
    seq: 3

    Dear member 13800000000, your tier is now silver (was basic). ...

Templates use {field} for the message's fields (member, balance, delta, tier, reason,
from_tier, to_tier, upgrade, occurred_at, seq, part; points = |delta|); an unknown {field}
is left as it is. Topics the daemon does not publish yet (member.birthday, points.expiring)
carry a MemberUpdate and are rendered when they come.

Exactly once: a file is named after its message's (seq, part) and appears atomically (written
to a temp file, fsynced, then hard-linked into place, which never replaces a file already
there); the position is kept in --state-file and saved right after each notice. A restart,
even after kill -9, neither repeats a notice nor skips one.

usage: sms_notifier.py --outbox DIR --state-file F [--templates FILE] [--from SEQ]
                       [--pub EP] [--query EP]
"""

import argparse
import json
import os
import signal
import string
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients",
                                "python"))
import loyaltyd_client as lc  # noqa: E402

DEFAULT_TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                 "sms_templates.json")


class _Fields(dict):
    def __missing__(self, key):
        return "{" + key + "}"


def message_fields(topic, seq, part, msg):
    """The fields a template may use: the message's own, plus a few friendly aliases."""
    f = {"topic": topic, "seq": seq, "part": part}
    for desc, value in msg.ListFields():
        if desc.type != desc.TYPE_MESSAGE:
            f[desc.name] = value
    f["member"] = f.get("member_id", "")
    if "delta" in f:
        f["points"] = abs(f["delta"])
    return f


def render(template, fields):
    return string.Formatter().vformat(template, (), _Fields(fields))


def notice_name(seq, part):
    return "%012d-%03d.sms" % (seq, part)


def write_notice(outbox, name, text):
    """Makes outbox/name hold text, atomically, unless it is there already. Returns True if
    written now."""
    final = os.path.join(outbox, name)
    tmp = os.path.join(outbox, "." + name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, final)  # unlike rename, never replaces a notice already delivered
        written = True
    except FileExistsError:
        written = False
    os.unlink(tmp)
    dfd = os.open(outbox, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pub", default=lc.DEFAULT_PUB)
    ap.add_argument("--query", default=lc.DEFAULT_QUERY)
    ap.add_argument("--templates", default=DEFAULT_TEMPLATES)
    ap.add_argument("--outbox", required=True)
    ap.add_argument("--state-file", required=True)
    ap.add_argument("--from", dest="from_seq", type=int, default=1,
                    help="first ledger sequence when there is no state file yet (default 1)")
    args = ap.parse_args(argv)
    with open(args.templates, encoding="utf-8") as f:
        templates = json.load(f)
    if not isinstance(templates, dict) or not all(isinstance(v, str) for v in templates.values()):
        ap.error("%s: expected a JSON object of topic: template strings" % args.templates)
    os.makedirs(args.outbox, exist_ok=True)

    sub = lc.Subscriber(args.pub, args.query, args.from_seq, state_file=args.state_file,
                        topics=sorted(templates))
    signal.signal(signal.SIGTERM, lambda *_: sub.stop())
    signal.signal(signal.SIGINT, lambda *_: sub.stop())
    with sub:
        for u in sub.messages(tick=0.5):
            if u is None or u.topic not in templates:
                continue  # a tick, or a topic longer than a template's prefix
            fields = message_fields(u.topic, u.seq, u.part, u.msg)
            text = "to: %s\ntopic: %s\nseq: %d\n\n%s\n" % (
                fields["member"], u.topic, u.seq, render(templates[u.topic], fields))
            name = notice_name(u.seq, u.part)
            if write_notice(args.outbox, name, text):
                print("notice %s %s" % (name, u.topic), flush=True)
            sub.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
