#!/usr/bin/env python3
"""A bounded, mixed HTTPS load against the site, counting every failure. Standard library only:
it runs on the lab's client host (copied there by the tests and bench/).

    loadgen.py --address 10.231.9.10 --host www.djstack.test --ca /root/lab-ca.crt \
               --seconds 60 --rate 100 [--slow-every 2 --slow-min 10 --slow-max 20] > result.json

Every --rate requests per second (paced, not closed-loop) one of: GET / (a cached page),
GET /status (uncached, names the release), POST /notes (a write), in the proportions of
--mix; plus, every --slow-every seconds, one GET /slow?seconds=N (N between --slow-min and
--slow-max) held open meanwhile. A failure is any answer other than 2xx, a reset, a refused or
timed-out connection. Stops by itself after --seconds (and the requests still in flight).

Prints JSON: per kind the count, failures and their reasons; the releases seen over time
(first and last second each release answered /status or /slow, counted from started_at, a Unix
time); the achieved rate.
"""
import argparse
import collections
import http.client
import json
import os
import queue
import random
import socket
import ssl
import threading
import time

KINDS = ("page", "status", "write")


class SiteConnection(http.client.HTTPSConnection):
    """HTTPS to the edge's address, with the site's name for SNI, the certificate and Host."""

    def __init__(self, address, site, context):
        super().__init__(site, 443, context=context)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="the edge's address")
    parser.add_argument("--host", required=True, help="the site's name (SNI and Host header)")
    parser.add_argument("--ca", required=True, help="CA certificate that signed the site's certificate")
    parser.add_argument("--seconds", type=float, default=60, help="at most this long")
    parser.add_argument("--stop-file", help="stop earlier, as soon as this file exists")
    parser.add_argument("--rate", type=float, default=100, help="requests per second, slow ones apart")
    parser.add_argument("--mix", default="50,40,10", help="percent page,status,write")
    parser.add_argument("--slow-every", type=float, default=0, help="seconds between slow requests (0: none)")
    parser.add_argument("--slow-min", type=float, default=10)
    parser.add_argument("--slow-max", type=float, default=20)
    parser.add_argument("--workers", type=int, default=48)
    parser.add_argument("--timeout", type=float, default=30, help="per request, slow ones get theirs added")
    parser.add_argument("--record-writes", action="store_true",
                        help="list every write: [second, note id or null when it failed, the primary that took it, "
                             "the note's text (unique to this run)]")
    return parser.parse_args()


class Load:
    def __init__(self, args):
        self.args = args
        self.context = ssl.create_default_context(cafile=args.ca)
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.failures = collections.defaultdict(collections.Counter)
        self.releases = {}
        self.t0 = time.monotonic()
        self.started_at = time.time()
        self.work = queue.Queue()
        self.local = threading.local()
        self.sequence = 0
        self.writes = []
        self.run_id = f"{random.getrandbits(32):08x}"  # notes of this run, told from any earlier run's

    def request(self, kind, method, path, body=None, timeout=None, note=None):
        timeout = timeout or self.args.timeout
        headers = {"User-Agent": "djstack-loadgen"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn = getattr(self.local, "conn", None)
        if conn is None:  # one keep-alive connection per thread, like a browser's
            conn = self.local.conn = SiteConnection(self.args.address, self.args.host, self.context)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        started = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except Exception as exc:  # noqa: BLE001 - every way a request can fail is counted
            conn.close()
            self.record(kind, f"{type(exc).__name__}: {exc}"[:120], started, note=note)
            return
        if 200 <= response.status < 300:
            self.record(kind, None, started, data, note=note)
        else:
            self.record(kind, f"HTTP {response.status}", started, note=note)

    def record(self, kind, failure, started, data=None, note=None):
        second = round(started - self.t0, 1)
        release = None
        answer = {}
        if data and kind in ("status", "slow", "write"):
            try:
                answer = json.loads(data)
            except ValueError:
                failure = "not JSON"
            release = answer.get("release")
        with self.lock:
            if kind == "write" and self.args.record_writes:
                self.writes.append([second, None if failure else answer.get("id"), answer.get("write_db_host"), note])
            self.counts[kind] += 1
            if failure:
                self.failures[kind][failure] += 1
            if release:
                seen = self.releases.setdefault(release, [second, second, 0])
                seen[0], seen[1], seen[2] = min(seen[0], second), max(seen[1], second), seen[2] + 1

    def one(self, kind):
        if kind == "page":
            self.request(kind, "GET", "/")
        elif kind == "status":
            self.request(kind, "GET", "/status")
        elif kind == "write":
            with self.lock:
                self.sequence += 1
                n = self.sequence
            text = f"loadgen {self.run_id} write {n}"
            self.request(kind, "POST", "/notes", body=json.dumps({"text": text}), note=text)
        else:
            seconds = round(random.uniform(self.args.slow_min, self.args.slow_max), 1)
            with self.lock:
                self.sequence += 1
                n = self.sequence
            # A distinct URL each: Varnish would otherwise queue identical requests behind one.
            self.request("slow", "GET", f"/slow?seconds={seconds}&n={n}", timeout=self.args.timeout + seconds)

    def worker(self):
        while True:
            kind = self.work.get()
            if kind is None:
                return
            self.one(kind)

    def run(self):
        args = self.args
        weights = [float(w) for w in args.mix.split(",")]
        workers = [threading.Thread(target=self.worker, daemon=True) for _ in range(args.workers)]
        for thread in workers:
            thread.start()
        slow_threads = []
        end = self.t0 + args.seconds
        interval = 1.0 / args.rate
        next_at, next_slow = self.t0, self.t0
        while True:
            now = time.monotonic()
            if now >= end or (args.stop_file and os.path.exists(args.stop_file)):
                break
            if args.slow_every and now >= next_slow:
                thread = threading.Thread(target=self.one, args=("slow",), daemon=True)
                thread.start()
                slow_threads.append(thread)
                next_slow += args.slow_every
            if now >= next_at:
                self.work.put(random.choices(KINDS, weights)[0])
                next_at += interval
            time.sleep(max(0.0, min(next_at, next_slow if args.slow_every else next_at) - time.monotonic()))
        ended = time.monotonic()
        for _ in workers:
            self.work.put(None)
        for thread in workers + slow_threads:
            thread.join(args.timeout + args.slow_max + 5)
        elapsed = time.monotonic() - self.t0
        total = sum(self.counts.values())
        failed = sum(sum(c.values()) for c in self.failures.values())
        return {
            "seconds": round(elapsed, 1),
            "requests": total,
            "failed": failed,
            "started_at": self.started_at,
            "rate": round((total - self.counts["slow"]) / (ended - self.t0), 1),
            "counts": dict(self.counts),
            "failures": {kind: dict(c) for kind, c in self.failures.items()},
            "releases": {release: {"first": s[0], "last": s[1], "answers": s[2]} for release, s in self.releases.items()},
            "backlog": self.work.qsize(),
            **({"writes": sorted(self.writes, key=lambda w: w[0])} if args.record_writes else {}),
        }


if __name__ == "__main__":
    print(json.dumps(Load(parse_args()).run(), indent=1, sort_keys=True))
