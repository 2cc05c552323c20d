"""fake_daemon.py: a stand-in for loyaltyd's publishing side, for tests of subscribers.

It keeps entries (each a list of (topic, message) pairs) in memory, publishes them on a PUB
socket with seq/part/parts exactly as docs/subscribers.md describes, sends heartbeats, and
answers catch-up requests on a ROUTER. It can drop chosen messages from the live stream, which
the real daemon does only under load, so that the gap rules are exercised deterministically,
and it can publish notice topics the daemon does not have yet (member.birthday,
points.expiring).
"""

import threading
import time

import zmq

import loyalty_pb2 as pb


class FakeDaemon:
    def __init__(self, pub_endpoint, query_endpoint, heartbeat_s=0.1):
        self.pub_endpoint = pub_endpoint
        self.query_endpoint = query_endpoint
        self.heartbeat_s = heartbeat_s
        self.entries = []  # entries[seq - 1] = [(topic, payload bytes), ...]
        self._lock = threading.Lock()
        self._ctx = zmq.Context()
        self._pub = self._ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.bind(pub_endpoint)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve_queries, daemon=True),
                         threading.Thread(target=self._heartbeats, daemon=True)]
        for t in self._threads:
            t.start()

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join()
        self._pub.close()
        self._ctx.term()

    @property
    def last_seq(self):
        with self._lock:
            return len(self.entries)

    def add(self, messages, drop=()):
        """Appends one entry of messages [(topic, message)], setting seq/part/parts, and
        publishes it except the parts (1-based) in drop. Returns the entry's seq."""
        with self._lock:
            seq = len(self.entries) + 1
            parts = len(messages)
            encoded = []
            for i, (topic, msg) in enumerate(messages, 1):
                msg.seq, msg.part, msg.parts = seq, i, parts
                encoded.append((topic, msg.SerializeToString()))
            self.entries.append(encoded)
            for i, (topic, body) in enumerate(encoded, 1):
                if i not in drop:
                    self._pub.send_multipart([topic.encode(), body])
            return seq

    def _heartbeats(self):
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                hb = pb.Heartbeat(seq=len(self.entries), at=int(time.time()))
                self._pub.send_multipart([b"heartbeat", hb.SerializeToString()])

    def _serve_queries(self):
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.bind(self.query_endpoint)
        while not self._stop.is_set():
            if not router.poll(50):
                continue
            ident, body = router.recv_multipart()
            q = pb.Query()
            q.ParseFromString(body)
            if q.WhichOneof("q") == "status":
                r = pb.QueryReply(ok=True, seq=self.last_seq)
                router.send_multipart([ident, r.SerializeToString()])
                continue
            if q.WhichOneof("q") != "catch_up":
                r = pb.QueryReply(ok=False, error="not supported by the fake")
                router.send_multipart([ident, r.SerializeToString()])
                continue
            with self._lock:
                entries = list(self.entries)
            first = max(q.catch_up.from_seq, 1)
            n = min(q.catch_up.max_entries or 10000, 10000)
            sent = entries[first - 1:first - 1 + n]
            for entry in sent:
                for topic, payload in entry:
                    router.send_multipart([ident, topic.encode(), payload])
            nxt = first + len(sent)
            end = pb.CatchUpEnd(next_seq=nxt, last_seq=len(entries), more=nxt <= len(entries))
            router.send_multipart([ident, b"catchup.end", end.SerializeToString()])
        router.close()
