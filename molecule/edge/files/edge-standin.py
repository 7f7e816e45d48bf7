#!/usr/bin/python3
"""A stand-in for the app's HTTP contract, for the edge tier's molecule scenario.

It is NOT the app: the real Django app behind the edge is tested by the
whole-stack test. It answers what the edge cares about:
  /healthz        200, no-store (Varnish's probe)
  /               anonymous page, Cache-Control: public, max-age=60, with the host
                  name and a request counter (a cached copy repeats the counter),
                  and the app's own X-Frame-Options / X-Content-Type-Options
  /short          the same with max-age=1 (to watch grace)
  /account        public, max-age=60 whoever asks (an app mistake the edge must
                  survive): a private page for a `sessionid` cookie, else anonymous
  /login          sets a `sessionid` cookie
  /whoami         the host name, no-store (never cached: shows which backend answered)
  /headers        the forwarding headers the backend received, no-store
  /unavailable-on/<host>  503 on that host (a backend going away), the host name elsewhere; no-store
  /static/<file>  CSS, public, max-age=60, with a tracking Set-Cookie
  POST <any>      the number of bytes received
Usage: edge-standin ADDRESS PORT
"""
import http.server
import itertools
import socket
import sys

HOST = socket.gethostname()
COUNTER = itertools.count(1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edge-standin"

    def reply(self, status, body, headers=(), content_type="text/plain; charset=utf-8"):
        data = body.encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (the stdlib's naming)
        n = next(COUNTER)
        path = self.path.split("?", 1)[0]
        cookie = self.headers.get("Cookie", "")
        public = [("Cache-Control", "public, max-age=60")]
        if path == "/healthz":
            self.reply(200, "ok\n", [("Cache-Control", "no-store")])
        elif path == "/":
            self.reply(200, f"anonymous page from {HOST} #{n} cookie={cookie or 'none'}\n",
                       public + [("X-Frame-Options", "SAMEORIGIN"), ("X-Content-Type-Options", "nosniff")])
        elif path == "/short":
            self.reply(200, f"short-lived page from {HOST} #{n}\n", [("Cache-Control", "public, max-age=1")])
        elif path == "/account":
            session = [c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("sessionid=")]
            if session:
                self.reply(200, f"private page for session {session[0]} from {HOST} #{n}\n", public)
            else:
                self.reply(200, f"anonymous account page from {HOST} #{n}\n", public)
        elif path == "/login":
            self.reply(200, "logged in\n", [("Set-Cookie", f"sessionid=s{n}{HOST}; HttpOnly; Secure; Path=/"),
                                            ("Cache-Control", "private, no-store")])
        elif path == "/whoami":
            self.reply(200, f"{HOST}\n", [("Cache-Control", "no-store")])
        elif path == "/headers":
            seen = "".join(f"{h}: {self.headers.get(h, '')}\n"
                           for h in ("Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP", "Cookie"))
            self.reply(200, seen, [("Cache-Control", "no-store")])
        elif path.startswith("/unavailable-on/"):
            down = path.rsplit("/", 1)[1] == HOST
            self.reply(503 if down else 200, f"{HOST}\n", [("Cache-Control", "no-store")])
        elif path.startswith("/static/"):
            self.reply(200, f"/* {HOST} #{n} */ body {{ color: black; }}\n",
                       public + [("Set-Cookie", "tracker=1; Path=/")], content_type="text/css")
        else:
            self.reply(404, "not found\n", [("Cache-Control", "no-store")])

    do_HEAD = do_GET

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        received = 0
        while received < length:
            chunk = self.rfile.read(min(65536, length - received))
            if not chunk:
                break
            received += len(chunk)
        self.reply(200, f"posted {received} bytes to {HOST}\n", [("Cache-Control", "no-store")])


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
    server.daemon_threads = True
    server.serve_forever()
