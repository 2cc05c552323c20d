"""loyaltyd_client.py: a Python client of loyaltyd: the subscriber contract and query helpers.

Subscriber implements the join algorithm of docs/subscribers.md, the same as
`loyaltyctl subscribe --from`: the SUB socket takes every topic and buffers while a DEALER on
the query endpoint replays the ledger from the position (catch-up); each message is then
checked by (seq, part, parts): the next one is delivered, a repeat is skipped, and a gap (or a
heartbeat beyond the last complete entry) starts a catch-up from the first incomplete entry.
Topic filtering happens here, never on the socket, so a filtered message is never mistaken
for a lost one.

    with Subscriber("tcp://127.0.0.1:7701", "tcp://127.0.0.1:7702", 1,
                    state_file="notifier.pos", topics=["tier.changed"]) as sub:
        for topic, seq, part, parts, msg in sub:
            ...

A message counts as processed when the caller asks for the next one (or calls commit(), or
leaves the `with` block without an exception); only processed positions are ever saved, so a
consumer whose processing is idempotent per (seq, part) sees every update exactly once across
its own restarts, daemon restarts and slow-consumer drops.

Needs python3-zmq, python3-protobuf and loyalty_pb2.py, which the build generates from
proto/loyalty.proto into BUILD/python (found on sys.path, in $LOYALTYD_PB2_DIR, or in
build/python next to this source tree).
"""

import collections
import os
import sys
import time

import zmq

try:
    import loyalty_pb2 as pb
except ImportError:  # not on sys.path: look where the build puts it
    _here = os.path.dirname(os.path.abspath(__file__))
    for _d in (os.environ.get("LOYALTYD_PB2_DIR"),
               os.path.join(_here, "..", "..", "build", "python")):
        if _d and os.path.exists(os.path.join(_d, "loyalty_pb2.py")):
            sys.path.insert(0, _d)
            break
    import loyalty_pb2 as pb  # noqa: E402

DEFAULT_PUB = "tcp://127.0.0.1:7701"
DEFAULT_QUERY = "tcp://127.0.0.1:7702"

CATCHUP_ENTRIES = 1000        # entries asked for per catch-up request
BACKOFF_S_MIN = 0.1           # first retry delay after a failed catch-up
BACKOFF_S_MAX = 5.0
POLL_MS = 100                 # longest wait before looking at stop() and timers
SAVE_INTERVAL_S = 0.2         # the state file is written at most this often ...
SAVE_ENTRIES = 1000           # ... unless this many entries completed since
BUFFER_MSGS_MAX = 200000      # live messages held during a catch-up; more are dropped
                              # (a drop is a gap like any other: a catch-up repairs it)

# Payload type per topic; any other topic (R28 notices such as member.birthday or
# points.expiring) carries a MemberUpdate.
TOPIC_TYPES = {
    "member.updated": pb.MemberUpdate,
    "tier.changed": pb.TierChange,
    "sale.rated": pb.SaleRated,
    "heartbeat": pb.Heartbeat,
    "catchup.end": pb.CatchUpEnd,
}

Update = collections.namedtuple("Update", "topic seq part parts msg")

_NEXT, _REPEAT, _GAP = "next", "repeat", "gap"


def decode(topic, body):
    """Decodes a published payload by its topic. Raises google.protobuf's DecodeError."""
    msg = TOPIC_TYPES.get(topic, pb.MemberUpdate)()
    msg.ParseFromString(body)
    return msg


def _log(text):
    print("loyaltyd_client: %s" % text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- positions

def load_position(path):
    """Reads a state file ("SEQ PART": entries <= SEQ processed completely, and PART parts of
    SEQ + 1). Returns (seq, part), or None if the file does not exist. Raises ValueError if it
    holds no position."""
    try:
        with open(path, "r", encoding="ascii") as f:
            words = f.read().split()
    except FileNotFoundError:
        return None
    if not words or not words[0].isdigit():
        raise ValueError("%s does not hold a position (\"SEQ PART\")" % path)
    part = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    return int(words[0]), part


def save_position(path, seq, part=0):
    """Writes a state file atomically: a temp file, fsync, rename."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"%d %d\n" % (seq, part))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# ---------------------------------------------------------------- queries

def query(query_endpoint, q, timeout_ms=5000, context=None):
    """Sends one Query and returns its QueryReply, or None if no reply came within timeout_ms."""
    ctx = context or zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(query_endpoint)
        s.send(q.SerializeToString())
        if not s.poll(timeout_ms):
            return None
        reply = pb.QueryReply()
        reply.ParseFromString(s.recv())
        return reply
    finally:
        s.close()


def member(query_endpoint, member_id, timeout_ms=5000, context=None):
    """The state of one member: a QueryReply (ok, error, member: MemberView, seq), or None on
    timeout."""
    return query(query_endpoint, pb.Query(member_id=member_id), timeout_ms, context)


def status(query_endpoint, timeout_ms=5000, context=None):
    """Daemon status: a QueryReply (seq: committed sequence, members, rules_version), or None."""
    return query(query_endpoint, pb.Query(status=True), timeout_ms, context)


# ---------------------------------------------------------------- the subscriber

def _meta(topic, msg):
    """(kind, seq, part, parts) of a decoded message; kind 'data', 'heartbeat' or 'bad'."""
    if topic == "heartbeat":
        return "heartbeat", msg.seq, 0, 0
    if topic == "catchup.end":
        return "bad", 0, 0, 0
    seq, part, parts = msg.seq, msg.part, msg.parts
    if seq == 0 or part == 0 or part > parts:
        return "bad", seq, part, parts
    return "data", seq, part, parts


class Subscriber:
    """Every update from from_seq on, exactly once, in order (see the module comment).

    pub_endpoint, query_endpoint: the daemon's PUB and query endpoints.
    from_seq: the first ledger sequence wanted (1: everything); None: the next entry after
        joining (only when there is no saved position).
    state_file: where the position is kept. If it exists it wins over from_seq.
    topics: topic prefixes to deliver (None: every topic but heartbeat; a prefix matching
        "heartbeat" delivers heartbeats too, with part = parts = 0).
    skip_parts: parts of from_seq already processed (a position kept elsewhere, e.g. in the
        caller's own database with its results: see position).
    """

    def __init__(self, pub_endpoint, query_endpoint, from_seq, state_file=None, topics=None,
                 skip_parts=0, timeout_ms=10000, rcvhwm=None, context=None):
        self.pub_endpoint = pub_endpoint
        self.query_endpoint = query_endpoint
        self.state_file = state_file
        self.topics = list(topics) if topics else None
        self.timeout_ms = timeout_ms
        self._ctx = context or zmq.Context.instance()
        self._rcvhwm = rcvhwm
        self._sub = None
        self._dealer = None
        self._buffer = collections.deque()
        self._stop = False
        self._pending = None   # position before the message last yielded, until processed
        self._yielded_at = 0.0  # when messages() last yielded an Update or a tick (None)
        self._warned_bad = False
        self.gaps = 0          # catch-ups started because messages were lost
        self.buffer_dropped = 0
        saved = load_position(state_file) if state_file else None
        self._have_position = saved is not None or from_seq is not None
        if saved is not None:
            self._done, self._part = saved
        elif from_seq is not None:
            if from_seq < 1:
                raise ValueError("from_seq must be >= 1")
            self._done, self._part = from_seq - 1, skip_parts
        else:
            self._done, self._part = 0, 0
        self._saved = saved
        self._saved_at = 0.0

    # ---- position

    @property
    def position(self):
        """(seq, part): entries <= seq delivered completely, and part parts of seq + 1,
        counting the message last yielded as processed. Store it with your results to resume
        with Subscriber(..., from_seq=seq + 1, skip_parts=part)."""
        return self._done, self._part

    def commit(self):
        """Marks the message last yielded as processed and saves the position now."""
        self._pending = None
        if self.state_file:
            self._save()

    def _save(self):
        pos = (self._done, self._part) if self._pending is None else self._pending
        if pos == self._saved:
            return
        save_position(self.state_file, *pos)
        self._saved = pos
        self._saved_at = time.monotonic()

    def _maybe_save(self):
        if not self.state_file or self._pending is not None:
            return
        if (self._done, self._part) == self._saved:
            return
        if (time.monotonic() - self._saved_at >= SAVE_INTERVAL_S or self._saved is None
                or self._done - self._saved[0] >= SAVE_ENTRIES):
            self._save()

    # ---- life cycle

    def stop(self):
        """Makes the iteration end at its next wake-up (at most POLL_MS): safe in a signal
        handler."""
        self._stop = True

    def close(self, processed=True):
        """Saves the position (the message last yielded counts as processed unless processed
        is False) and closes the sockets."""
        if not processed and self._pending is not None:
            self._done, self._part = self._pending
        self._pending = None
        if self.state_file:
            self._save()
        self._close_dealer()
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(processed=exc_type is None)
        return False

    def __iter__(self):
        return self.messages()

    # ---- the algorithm

    def _wanted(self, topic, heartbeat):
        if self.topics is None:
            return not heartbeat
        for t in self.topics:
            if topic.startswith(t):
                return not heartbeat or t != ""
        return False

    def _judge(self, kind, seq, part):
        if kind == "heartbeat":
            return _GAP if seq > self._done else _REPEAT
        want = self._done + 1
        if seq < want or (seq == want and part <= self._part):
            return _REPEAT
        if seq == want and part == self._part + 1:
            return _NEXT
        return _GAP

    def _handle(self, topic, body):
        """Generator: yields the message if it is the next one and wanted; returns the
        verdict."""
        try:
            msg = decode(topic, body)
            kind, seq, part, parts = _meta(topic, msg)
        except Exception:  # noqa: BLE001 - a body that does not decode is skipped
            kind, seq, part, parts, msg = "bad", 0, 0, 0, None
        if kind == "bad":
            if not self._warned_bad:
                _log("skipping a %r message without seq/part/parts" % topic)
                self._warned_bad = True
            return _REPEAT
        verdict = self._judge(kind, seq, part)
        if kind == "heartbeat":
            if verdict != _GAP and self._wanted(topic, True):
                self._pending = (self._done, self._part)
                self._yielded_at = time.monotonic()
                yield Update(topic, seq, 0, 0, msg)
                self._pending = None
            return verdict
        if verdict != _NEXT:
            return verdict
        before = (self._done, self._part)
        if part == parts:
            self._done, self._part = seq, 0
        else:
            self._part = part
        if self._wanted(topic, False):
            self._pending = before
            self._yielded_at = time.monotonic()
            yield Update(topic, seq, part, parts, msg)
            self._pending = None
        self._maybe_save()
        return _NEXT

    def _recv(self, sock):
        """One two-frame message without waiting, or None."""
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        topic = frames[0].decode("utf-8", "replace")
        return topic, frames[1] if len(frames) > 1 else b""

    def _drain_sub(self):
        while True:
            m = self._recv(self._sub)
            if m is None:
                return
            if len(self._buffer) >= BUFFER_MSGS_MAX:
                self.buffer_dropped += 1
                continue
            self._buffer.append(m)

    def _close_dealer(self):
        if self._dealer is not None:
            self._dealer.close()
            self._dealer = None

    def _request(self):
        self._close_dealer()
        self._dealer = self._ctx.socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.LINGER, 0)
        self._dealer.setsockopt(zmq.RCVHWM, 0)
        self._dealer.connect(self.query_endpoint)
        q = pb.Query(catch_up=pb.CatchUp(from_seq=self._done + 1, max_entries=CATCHUP_ENTRIES))
        self._dealer.send(q.SerializeToString())

    def _pause(self, seconds, tick):
        """Generator: waits while buffering the live stream; yields None per tick."""
        end = time.monotonic() + seconds
        while not self._stop and time.monotonic() < end:
            if self._sub.poll(min(POLL_MS, max(1, int((end - time.monotonic()) * 1000)))):
                self._drain_sub()
            if self._tick_due(tick):
                yield None

    def _catch_up_round(self, tick):
        """Generator: one request and its reply. Returns the CatchUpEnd, or None on a timeout
        or a refusal."""
        self._request()
        deadline = time.monotonic() + self.timeout_ms / 1000.0
        poller = zmq.Poller()
        poller.register(self._dealer, zmq.POLLIN)
        poller.register(self._sub, zmq.POLLIN)
        while not self._stop:
            ready = dict(poller.poll(POLL_MS))
            if self._sub in ready:
                self._drain_sub()
            while not self._stop:
                m = self._recv(self._dealer)
                if m is None:
                    break
                deadline = time.monotonic() + self.timeout_ms / 1000.0
                if m[0] == "catchup.end":
                    end = pb.CatchUpEnd()
                    end.ParseFromString(m[1])
                    if end.error:
                        _log("catch-up refused: %s" % end.error)
                        return None
                    return end
                # a hole inside the reply leaves the position behind: asked again next round
                yield from self._handle(*m)
            if self._tick_due(tick):
                yield None
            if time.monotonic() >= deadline:
                _log("no catch-up reply from %s within %d ms" % (self.query_endpoint,
                                                                 self.timeout_ms))
                return None
        return None

    def _catch_up(self, tick):
        """Generator: catches up until the daemon has nothing more, retrying with backoff."""
        backoff = BACKOFF_S_MIN
        while not self._stop:
            before = self._done
            end = yield from self._catch_up_round(tick)
            if end is not None and not end.more and self._done + 1 >= end.next_seq:
                break
            if end is not None and self._done > before:
                backoff = BACKOFF_S_MIN
                continue
            self._close_dealer()
            yield from self._pause(backoff, tick)
            backoff = min(backoff * 2, BACKOFF_S_MAX)
        self._close_dealer()

    def _connect(self):
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        if self._rcvhwm:
            self._sub.setsockopt(zmq.RCVHWM, self._rcvhwm)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")  # filters on the socket would hide gaps
        self._sub.connect(self.pub_endpoint)

    def _tick_due(self, tick):
        """Whether messages() owes its caller a tick (None), counted as yielded if so: tick
        seconds since it last yielded anything. By the clock, not by a poll timing out:
        heartbeats and topics not delivered may arrive more often than POLL_MS, and a caller
        committing on ticks would then wait for ever."""
        if not tick or time.monotonic() - self._yielded_at < tick:
            return False
        self._yielded_at = time.monotonic()
        return True

    def _live_poll_ms(self, tick):
        """How long the live loop may wait: POLL_MS at most, and not past the next tick."""
        if not tick:
            return POLL_MS
        left_ms = int((self._yielded_at + tick - time.monotonic()) * 1000)
        return max(1, min(POLL_MS, left_ms))

    def messages(self, tick=None):
        """Generator of Update(topic, seq, part, parts, msg), exactly once each. With tick
        (seconds), also yields None about every tick while nothing is delivered (heartbeats
        and topics filtered out count as nothing), so the caller can commit its own work or
        check for shutdown. Ends after stop()."""
        self._connect()
        # 1. wait until the subscription reaches the publisher: the first message of any kind
        while not self._stop and not self._buffer:
            if self._sub.poll(int(tick * 1000) if tick else POLL_MS):
                self._drain_sub()
            elif tick:
                yield None
        if self._stop:
            return
        if not self._have_position:
            topic, body = self._buffer[0]
            try:
                kind, seq, _, _ = _meta(topic, decode(topic, body))
            except Exception:  # noqa: BLE001
                kind, seq = "bad", 0
            self._done = seq if kind == "heartbeat" else max(seq - 1, 0)
            self._part = 0
            self._have_position = True
        # 2. catch up; 3. the buffer, then the live stream, catching up again at each gap
        need_catchup = True
        while not self._stop:
            if self._tick_due(tick):
                yield None
                continue
            if need_catchup:
                yield from self._catch_up(tick)
                need_catchup = False
                continue
            if not self._buffer:
                self._maybe_save()
                if self._sub.poll(self._live_poll_ms(tick)):
                    self._drain_sub()
                continue
            topic, body = self._buffer.popleft()
            verdict = yield from self._handle(topic, body)
            if verdict == _GAP:
                self.gaps += 1
                self._buffer.appendleft((topic, body))  # judged again after the catch-up
                need_catchup = True
