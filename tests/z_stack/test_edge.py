"""The edge in the whole lab, as a visitor and an operator see it from the client host:
nginx (TLS) in front of Varnish in front of the real app on app1 (gunicorn) and app2 (uvicorn)."""
import shlex
import time

from conftest import CA_ON_CLIENT, PASSWORD, SITE, csrf_token
from helpers import ROOT

def purge(host, stack, path="/"):
    """PURGE sent straight to Varnish on edge1's private address, as the app does (Python's
    standard library: the hosts have no curl). The status code, or the connection error."""
    script = ("import http.client as h; c = h.HTTPConnection('%s', 6081, timeout=8); "
              "c.request('PURGE', '%s', headers={'Host': '%s'}); print(c.getresponse().status)"
              % (stack.addresses()["edge1"], path, SITE))
    result = host.run(f"python3 -c {shlex.quote(script)}")
    return result.stdout.strip() if result.rc == 0 else f"error: {result.stderr.strip()[-200:]}"


def test_https_serves_the_app_and_the_second_anonymous_request_is_a_hit(visitor):
    path = f"/?edge-test={time.time_ns()}"
    code, first, body = visitor(path)
    assert code == 200 and (ROOT / "build" / "app" / "LATEST").read_text().strip() in body
    assert first["x-cache"] == "MISS"
    code, second, _ = visitor(path)
    assert code == 200 and second["x-cache"] == "HIT", second


def test_tls_protocols_http2_and_security_headers(stack, visitor):
    code, headers, _ = visitor("/", "--http2")
    assert code == 200
    assert "max-age=" in headers["strict-transport-security"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "x-frame-options" in headers or "frame-ancestors" in headers.get("content-security-policy", "")
    client, edge = stack.host("client1"), stack.addresses()["edge1"]
    version = client.check_output(f"curl -sS -o /dev/null -w '%{{http_version}}' --http2 --cacert {CA_ON_CLIENT} "
                                  f"--resolve {SITE}:443:{edge} https://{SITE}/")
    assert version == "2"
    # The client must be willing (SECLEVEL=0), so a refusal is the server's.
    old = client.run(f"openssl s_client -connect {edge}:443 -servername {SITE} -tls1_1 "
                     f"-cipher DEFAULT@SECLEVEL=0 </dev/null")
    assert old.rc != 0 and "protocol version" in old.stdout + old.stderr, old.stdout + old.stderr


def test_plain_http_redirects_to_https(visitor):
    code, headers, _ = visitor(f"http://{SITE}/notes")
    assert code in (301, 308) and headers["location"] == f"https://{SITE}/notes"


def test_tracking_cookies_do_not_defeat_the_cache(visitor):
    path = f"/?cookie-test={time.time_ns()}"
    visitor(path, "-H", shlex.quote("Cookie: _ga=GA1.2.3; csrftoken=abc"))
    _, headers, _ = visitor(path, "-H", shlex.quote("Cookie: _ga=GA1.2.4; csrftoken=def"))
    assert headers["x-cache"] == "HIT", headers


def test_a_logged_in_request_is_never_served_from_cache(stack, visitor, app_user):
    jar = "/tmp/edge-jar"
    stack.host("client1").run(f"rm -f {jar}")
    code, _, form = visitor("/accounts/login/", jar=jar)
    assert code == 200, form[:500]
    token = csrf_token(form)
    code, headers, _ = visitor("/accounts/login/", "-H", shlex.quote(f"Referer: https://{SITE}/accounts/login/"),
                               "--data-urlencode", shlex.quote(f"csrfmiddlewaretoken={token}"),
                               "--data-urlencode", f"username={app_user}",
                               "--data-urlencode", f"password={PASSWORD}", jar=jar)
    assert code == 302, headers
    assert "sessionid" in stack.host("client1").check_output(f"cat {jar}")
    path = f"/?logged-in={time.time_ns()}"
    for _ in range(3):
        code, headers, _ = visitor(path, jar=jar)
        assert code == 200 and headers["x-cache"] != "HIT", headers
    code, headers, _ = visitor("/admin/", jar=jar)
    assert code in (200, 302) and headers.get("x-cache") != "HIT"


def _app_service(stack, host, action):
    stack.host(host).check_output(f"sudo systemctl {action} djdemo.socket djdemo.service")


def _burst(stack, n, path="/"):
    """n sequential requests from client1 to the edge; returns the status codes seen."""
    edge = stack.addresses()["edge1"]
    out = stack.host("client1").check_output(
        f"for i in $(seq {n}); do curl -s -m 15 -o /dev/null -w '%{{http_code}}\\n' --cacert {CA_ON_CLIENT} "
        f"--resolve {SITE}:443:{edge} 'https://{SITE}{path}'; done")
    return out.split()


def test_one_app_host_down_no_request_fails_both_down_cached_pages_still_served(stack, visitor):
    cached = f"/?grace-test={time.time_ns()}"
    assert visitor(cached)[0] == 200
    cached_at = time.monotonic()
    try:
        _app_service(stack, "app1", "stop")
        codes = _burst(stack, 40, "/status")  # uncacheable: every request goes to a backend
        assert codes == ["200"] * 40, codes
        _app_service(stack, "app2", "stop")
        # Past the page's max-age (60 s): only grace can serve it now.
        time.sleep(max(5.0, 63 - (time.monotonic() - cached_at)))
        code, headers, _ = visitor(cached)
        assert code == 200 and headers["x-cache"] == "HIT" and int(headers["age"]) > 60, headers
        assert visitor("/status")[0] == 503, "no backend is up, yet an uncacheable page was served"
    finally:
        _app_service(stack, "app1", "start")
        _app_service(stack, "app2", "start")
    deadline = time.time() + 30
    while visitor("/status")[0] != 200 and time.time() < deadline:
        time.sleep(1)
    assert visitor("/status")[0] == 200


def test_purge_is_refused_from_outside_and_evicts_from_an_app_host(stack, visitor):
    path = f"/?purge-test={time.time_ns()}"
    visitor(path)
    assert visitor(path)[1]["x-cache"] == "HIT"
    code, _, _ = visitor(path, "-X", "PURGE")
    assert code in (403, 405), "PURGE through nginx was not refused"
    outside = purge(stack.host("client1"), stack, path)
    assert outside.startswith("error"), f"Varnish's port answers the client host: {outside}"
    assert visitor(path)[1]["x-cache"] == "HIT", "a refused PURGE evicted the page"
    assert purge(stack.host("app1"), stack, path) == "200"
    assert visitor(path)[1]["x-cache"] == "MISS"
