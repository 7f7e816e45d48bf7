"""What a user checks on the edge tier: from a client outside every tier, from the
app hosts (PURGE/BAN), and on the edge host itself.

The app hosts run a stand-in server with the app's HTTP contract
(files/edge-standin.py), not the Django app: the real app behind the edge is
tested by the whole-stack test. Tests that stop backends or push broken
configuration put everything back before they return; they come last.
"""
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import testinfra
import yaml

SCENARIO = Path(__file__).resolve().parent.parent
ROOT = SCENARIO.parent.parent
VARS = yaml.safe_load((SCENARIO / "vars.yml").read_text())
SITE = VARS["site_domain"]
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
CA = "/usr/local/share/edge-test-ca.crt"
STANDIN = "edge-standin"


def _hosts(group):
    """The group's hosts. Commands go straight through `docker exec` (molecule's docker
    driver names each container after its inventory host): much faster than one ad-hoc
    ansible run per command, and these tests run hundreds of commands."""
    hosts = testinfra.get_hosts([f"ansible://{group}"], ansible_inventory=INVENTORY, force_ansible=True)
    fast = []
    for host in hosts:
        name = host.backend.host
        docker = testinfra.get_host(f"docker://{name}")
        docker.inventory_name = name
        fast.append(docker)
    return fast


def _address(host):
    route = host.check_output("ip -4 -o route get 192.0.2.1")
    return re.search(r"\bsrc (\S+)", route).group(1)


@pytest.fixture(scope="module")
def edge():
    hosts = _hosts("edge")
    assert len(hosts) == 1
    return hosts[0]


@pytest.fixture(scope="module")
def client():
    hosts = _hosts("client")
    assert len(hosts) == 1
    return hosts[0]


@pytest.fixture(scope="module")
def apps():
    """{hostname: host} of the two stand-in app hosts."""
    hosts = _hosts("app")
    assert len(hosts) == 2
    return {h.check_output("hostname"): h for h in hosts}


@pytest.fixture(scope="module")
def address(edge):
    return _address(edge)


def fetch(client, address, path, *curl_args, scheme="https", method="GET"):
    """One request from the client through the edge: (status, headers, body, http_version)."""
    marker = "\n--edge-test-end--"
    cmd = (f"curl -sS -i --max-time 20 --cacert {CA} --resolve {SITE}:443:{address} --resolve {SITE}:80:{address} "
           f"-X {method} -w '{marker}%{{http_version}}' {' '.join(curl_args)} '{scheme}://{SITE}{path}'")
    out = client.check_output(cmd)
    out, version = out.rsplit(marker.strip(), 1)
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body.strip(), version.strip()


def one(headers, name):
    values = headers.get(name.lower(), [])
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def codes(client, address, path, count):
    """Status codes of `count` requests in a row (one curl, one connection)."""
    urls = " ".join([f"-o /dev/null 'https://{SITE}{path}'"] * count)
    out = client.check_output(f"curl -s --max-time 60 --cacert {CA} --resolve {SITE}:443:{address} "
                              f"-w '%{{http_code}} ' {urls}")
    return out.split()


def bodies(client, address, path, count):
    urls = " ".join([f"'https://{SITE}{path}'"] * count)
    out = client.check_output(f"curl -s --max-time 60 --cacert {CA} --resolve {SITE}:443:{address} {urls}")
    return out.split()


def unique(path="/"):
    return f"{path}?t={uuid.uuid4().hex}"


def playbook(*args):
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-playbook", "-i", INVENTORY, *args], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=900)
    proc.text = proc.stdout + proc.stderr
    return proc


def wait_backends(edge, want, timeout=30):
    """Wait until varnishadm reports every backend's probe health as `want` (healthy/sick)."""
    deadline = time.monotonic() + timeout
    while True:
        out = edge.check_output("varnishadm backend.list")
        states = [line.split()[3] for line in out.splitlines()[1:]
                  if line.strip() and "app_director" not in line]
        if states and all(s == want for s in states):
            return
        assert time.monotonic() < deadline, out
        time.sleep(0.5)


# --- TLS and HTTP -------------------------------------------------------------

def test_tls_1_2_and_1_3_accepted_1_1_refused(client, address):
    for flag, proto in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        out = client.run(f"openssl s_client {flag} -connect {address}:443 -servername {SITE} -CAfile {CA} "
                         "-verify_return_error </dev/null 2>&1")
        assert out.rc == 0, out.stdout
        assert re.search(rf"^New, {re.escape(proto)}, Cipher is ", out.stdout, re.M), out.stdout
        assert "Verify return code: 0 (ok)" in out.stdout
    # The client must be allowed to try TLS 1.1 (OpenSSL 3 refuses it at its default
    # security level): then it is the server that says no.
    out = client.run(f"openssl s_client -tls1_1 -cipher DEFAULT@SECLEVEL=0 -connect {address}:443 "
                     f"-servername {SITE} </dev/null 2>&1")
    assert out.rc != 0, out.stdout
    assert "alert protocol version" in out.stdout or "unsupported protocol" in out.stdout, out.stdout


def test_http2_is_negotiated(client, address):
    status, _, _, version = fetch(client, address, "/healthz", "--http2")
    assert (status, version) == (200, "2")


def test_http_redirects_to_https(client, address):
    status, headers, _, _ = fetch(client, address, "/some/page?x=1", scheme="http")
    assert status == 301
    assert one(headers, "location") == f"https://{SITE}/some/page?x=1"


def test_hsts_and_security_headers_on_every_response(client, address):
    for path, method, want in (("/", "GET", 200), ("/nowhere", "GET", 404), ("/", "PURGE", 405)):
        status, headers, _, _ = fetch(client, address, path, method=method)
        assert status == want, path
        assert one(headers, "strict-transport-security") == "max-age=63072000; includeSubDomains"
        assert one(headers, "x-content-type-options") == "nosniff"
        # The stand-in sends SAMEORIGIN itself (as Django does): the edge's value, once.
        assert one(headers, "x-frame-options") == "DENY"
        assert one(headers, "referrer-policy") == "same-origin"
        assert "server" not in headers or headers["server"] == ["nginx"]
        assert "x-varnish" not in headers and "via" not in headers


def test_forwarding_headers_reach_the_backend(client, address):
    status, _, body, _ = fetch(client, address, "/headers", "-H 'X-Forwarded-For: 6.6.6.6'")
    assert status == 200
    seen = dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)
    me = _address(client)
    assert seen["Host"] == SITE
    assert seen["X-Forwarded-Proto"] == "https"
    assert seen["X-Real-IP"] == me
    # The client's own address only: a forged chain is not passed on.
    assert seen["X-Forwarded-For"] == me


def test_request_body_limit(client, address):
    out = client.check_output(f"head -c 11000000 /dev/zero | curl -s -o /dev/null -w '%{{http_code}}' --cacert {CA} "
                              f"--resolve {SITE}:443:{address} --data-binary @- https://{SITE}/upload")
    assert out == "413"
    status, _, body, _ = fetch(client, address, "/upload", "--data-binary 'small body'", method="POST")
    assert status == 200 and body.startswith("posted 10 bytes"), body


# --- Caching --------------------------------------------------------------------

def test_second_anonymous_get_is_a_hit(client, address):
    path = unique()
    first = fetch(client, address, path)
    second = fetch(client, address, path)
    assert first[0] == second[0] == 200
    assert one(first[1], "x-cache") == "MISS"
    assert one(second[1], "x-cache") == "HIT"
    assert first[2] == second[2]  # the same counter: the backend was not asked again


def test_anonymous_cookies_are_stripped_and_the_page_is_shared(client, address):
    path = unique()
    status, headers, body, _ = fetch(client, address, path, "-H 'Cookie: csrftoken=abc; _ga=1'")
    assert status == 200 and "cookie=none" in body
    status, headers, again, _ = fetch(client, address, path, "-H 'Cookie: _ga=2'")
    assert one(headers, "x-cache") == "HIT" and again == body


def test_logged_in_requests_are_never_cached(client, address):
    path = unique("/account")
    anonymous = [fetch(client, address, path) for _ in range(2)]
    assert [one(h, "x-cache") for _, h, _, _ in anonymous] == ["MISS", "HIT"]
    assert anonymous[0][2].startswith("anonymous account page")
    seen = set()
    for _ in range(3):
        status, headers, body, _ = fetch(client, address, path, "-H 'Cookie: csrftoken=x; sessionid=u1'")
        assert status == 200
        assert one(headers, "x-cache") == "MISS"
        assert body.startswith("private page for session u1"), body
        seen.add(body)
    assert len(seen) == 3  # each one a fresh answer from a backend
    # And the private page did not land in the cache for anonymous users.
    status, headers, body, _ = fetch(client, address, path)
    assert body == anonymous[0][2] and one(headers, "x-cache") == "HIT"


def test_session_cookie_from_login_reaches_the_client(client, address):
    status, headers, _, _ = fetch(client, address, "/login")
    assert status == 200
    assert any(c.startswith("sessionid=") for c in headers.get("set-cookie", []))
    assert one(headers, "x-cache") == "MISS"


def test_static_files_cached_long_without_cookies(client, address, edge):
    path = unique("/static/x.css")
    first = fetch(client, address, path, "-H 'Cookie: sessionid=u1'")
    second = fetch(client, address, path)
    assert one(first[1], "x-cache") == "MISS" and one(second[1], "x-cache") == "HIT"
    assert "set-cookie" not in first[1] and "set-cookie" not in second[1]
    assert first[2] == second[2]
    # The backend said max-age=60; Varnish keeps it 7 days (varnish_static_ttl).
    log = edge.check_output(f"varnishlog -d -g request -q 'BereqURL eq \"{path}\"' -i TTL")
    assert re.search(r"TTL\s+VCL\s+604800\b", log), log


def test_access_log_has_timings_and_cache_status(client, address, edge):
    path = unique()
    fetch(client, address, path)
    fetch(client, address, path)
    lines = [line for line in edge.file("/var/log/nginx/access.log").content_string.splitlines() if path in line]
    assert len(lines) == 2, lines
    assert re.search(r" rt=[0-9.]+ urt=[0-9.]+ cache=MISS$", lines[0]), lines[0]
    assert re.search(r" rt=[0-9.]+ urt=[0-9.]+ cache=HIT$", lines[1]), lines[1]


# --- PURGE and BAN ----------------------------------------------------------------

def test_purge_refused_through_nginx_and_from_strangers(client, address):
    for method in ("PURGE", "BAN"):
        assert fetch(client, address, "/", method=method)[0] == 405
    # Straight to Varnish's private listener, from a host that is not an app host.
    out = client.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -X PURGE -H 'Host: {SITE}' http://{address}:6081/")
    assert out == "403"
    # Plain requests are not served on the private listener.
    out = client.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {SITE}' http://{address}:6081/")
    assert out == "405"


def test_purge_and_ban_from_an_app_host_evict(client, address, apps):
    app = next(iter(apps.values()))
    path = unique()
    fetch(client, address, path)
    assert one(fetch(client, address, path)[1], "x-cache") == "HIT"
    out = app.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -X PURGE -H 'Host: {SITE}' 'http://{address}:6081{path}'")
    assert out == "200"
    assert one(fetch(client, address, path)[1], "x-cache") == "MISS"
    # Addressed by IP only (Host: <address>:6081): the same page.
    assert one(fetch(client, address, path)[1], "x-cache") == "HIT"
    out = app.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -X PURGE 'http://{address}:6081{path}'")
    assert out == "200"
    assert one(fetch(client, address, path)[1], "x-cache") == "MISS"
    # BAN: every URL matching the regular expression.
    tag = uuid.uuid4().hex
    paths = [f"/?ban={tag}&n={n}" for n in range(3)]
    for p in paths:
        fetch(client, address, p)
        assert one(fetch(client, address, p)[1], "x-cache") == "HIT"
    out = app.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -X BAN -H 'Host: {SITE}' 'http://{address}:6081/.*ban={tag}'")
    assert out == "200"
    for p in paths:
        assert one(fetch(client, address, p)[1], "x-cache") == "MISS"


# --- The edge host ------------------------------------------------------------------

def test_varnish_secret_and_listeners(edge, address):
    secret = edge.file("/etc/varnish/secret")
    assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600)
    listening = edge.check_output("ss -H -tln").split("\n")
    local = {line.split()[3] for line in listening}
    assert {"127.0.0.1:6081", f"{address}:6081", "127.0.0.1:6082"} <= local
    assert "0.0.0.0:6081" not in local and "0.0.0.0:6082" not in local
    # Debian's sandbox of the unit is kept (the drop-in replaces only the command line);
    # it needs no container exception.
    assert edge.check_output("systemctl show -p ProtectSystem --value varnish") == "full"
    assert edge.check_output("systemctl show -p PrivateDevices --value varnish") == "yes"
    # Cache memory from the host's RAM: 1% (converge.yml) of MemTotal.
    mem_mb = int(edge.check_output("awk '/^MemTotal/ {print $2}' /proc/meminfo")) // 1024
    cmdline = edge.check_output("systemctl show -p ExecStart --value varnish")
    size = int(re.search(r"malloc,([0-9]+)M", cmdline).group(1))
    assert abs(size - mem_mb // 100) <= 1, (size, mem_mb)


def test_backends_from_the_app_group_with_probes(edge, apps):
    out = edge.check_output("varnishadm backend.list")
    names = sorted(line.split()[0].split(".", 1)[1] for line in out.splitlines()[1:] if line.strip())
    # Named after the inventory hosts, made VCL names.
    want = sorted(re.sub(r"[^A-Za-z0-9_]", "_", h.inventory_name) for h in apps.values())
    assert names == sorted(want + ["app_director"]), out
    vcl = edge.file("/etc/varnish/default.vcl").content_string
    assert '"GET /healthz HTTP/1.1"' in vcl and f'"Host: {SITE}"' in vcl


def test_reload_keeps_the_cache_and_drops_no_request(client, address, edge):
    path = unique()
    fetch(client, address, path)
    assert one(fetch(client, address, path)[1], "x-cache") == "HIT"
    before = edge.check_output("varnishadm vcl.list")
    # Requests in flight while the VCL is reloaded (the role's handler).
    client.check_output(f"(curl -s --cacert {CA} --resolve {SITE}:443:{address} -w '%{{http_code}} ' "
                        f"$(for i in $(seq 60); do printf -- '-o /dev/null https://{SITE}/whoami?r=%s ' $i; done) "
                        "> /tmp/during-reload; "
                        "echo >> /tmp/during-reload) >/dev/null 2>&1 &")
    edge.check_output("systemctl reload varnish")
    time.sleep(3)
    during = client.check_output("cat /tmp/during-reload").split()
    assert during and set(during) == {"200"}, during
    after = edge.check_output("varnishadm vcl.list")
    assert after != before  # a new VCL is active ...
    # ... and the old ones discarded (one still finishing its requests shows as "discarded" until it is gone).
    assert [line.split()[0] for line in after.splitlines() if line.strip() and not line.startswith("discarded")] == ["active"], after
    assert one(fetch(client, address, path)[1], "x-cache") == "HIT"  # the cache survived


# --- Broken configuration never goes live ----------------------------------------------

def test_broken_vcl_is_rejected_and_varnish_keeps_serving(client, address, edge):
    vcl_before = edge.file("/etc/varnish/default.vcl").sha256sum
    active_before = edge.check_output("varnishadm vcl.list")
    proc = playbook(str(SCENARIO / "converge.yml"), "-e", "varnish_vcl_recv_extra='this is not VCL;'")
    assert proc.returncode != 0, proc.text[-4000:]
    assert "VCL compilation failed" in proc.text, proc.text[-4000:]
    assert edge.file("/etc/varnish/default.vcl").sha256sum == vcl_before
    assert edge.check_output("varnishadm vcl.list") == active_before
    assert fetch(client, address, unique())[0] == 200


def test_broken_nginx_config_is_rejected_and_nginx_keeps_serving(client, address, edge):
    conf_before = edge.file("/etc/nginx/nginx.conf").sha256sum
    pid_before = edge.check_output("systemctl show -p MainPID --value nginx")
    proc = playbook(str(SCENARIO / "converge.yml"), "-e", "nginx_extra_server_config='no_such_directive on;'")
    assert proc.returncode != 0, proc.text[-4000:]
    assert "unknown directive" in proc.text, proc.text[-4000:]
    assert edge.file("/etc/nginx/nginx.conf").sha256sum == conf_before
    assert edge.check_output("systemctl show -p MainPID --value nginx") == pid_before
    assert fetch(client, address, unique())[0] == 200


# --- Backends going away ------------------------------------------------------------------

def test_admin_hook_takes_a_backend_out_and_puts_it_back(client, address, edge, apps):
    target_hostname, target_host = sorted(apps.items())[0]
    target = target_host.inventory_name
    other = next(name for name in apps if name != target_hostname)
    try:
        proc = playbook(str(SCENARIO / "edge_backend.yml"), "-e", f"edge_target={target}", "-e", "edge_backend_health=sick")
        assert proc.returncode == 0, proc.text[-4000:]
        assert re.search(r"changed=1\b", proc.stdout), proc.stdout[-3000:]
        assert re.search(r"\.\S*edgeapp\S*\s+sick\s", edge.check_output("varnishadm backend.list"))
        # Uncacheable: every request goes to a backend, and only to the other one.
        assert set(bodies(client, address, "/whoami", 20)) == {other}
        # Asking again changes nothing.
        proc = playbook(str(SCENARIO / "edge_backend.yml"), "-e", f"edge_target={target}", "-e", "edge_backend_health=sick")
        assert proc.returncode == 0 and re.search(r"changed=0\b", proc.stdout), proc.text[-3000:]
    finally:
        proc = playbook(str(SCENARIO / "edge_backend.yml"), "-e", f"edge_target={target}", "-e", "edge_backend_health=auto")
    assert proc.returncode == 0, proc.text[-4000:]
    assert set(bodies(client, address, "/whoami", 20)) == set(apps)


def test_one_backend_stopped_no_request_fails(client, address, edge, apps):
    victim, survivor = list(apps.values())[0], list(apps.keys())[1]
    try:
        victim.check_output(f"systemctl stop {STANDIN}")
        # At once, before the probes notice: failed fetches are retried on the other backend.
        results = codes(client, address, "/whoami", 50)
        assert results == ["200"] * 50, results
        assert set(bodies(client, address, "/whoami", 10)) == {survivor}
    finally:
        victim.check_output(f"systemctl start {STANDIN}")
    wait_backends(edge, "healthy")


def test_a_503_from_one_backend_is_retried_on_the_other(client, address, apps):
    """A backend answering 503 (going away) on a GET: Varnish fetches from the next one, so the
    visitor never sees it; the answers all come from the other host."""
    down = sorted(apps)[0]
    assert codes(client, address, f"/unavailable-on/{down}", 20) == ["200"] * 20
    assert set(bodies(client, address, f"/unavailable-on/{down}", 10)) == set(apps) - {down}


def test_both_backends_stopped_cached_pages_still_served(client, address, edge, apps):
    path = unique("/short")  # max-age=1: expired by the time both are down
    status, _, body, _ = fetch(client, address, path)
    assert status == 200
    home = fetch(client, address, "/")
    try:
        for host in apps.values():
            host.check_output(f"systemctl stop {STANDIN}")
        wait_backends(edge, "sick")
        time.sleep(3)  # past the TTL (1 s) and the healthy-grace (2 s)
        status, headers, stale, _ = fetch(client, address, path)
        assert status == 200 and stale == body, (status, stale)
        assert one(headers, "x-cache") == "HIT"
        assert int(one(headers, "age")) >= 3
        assert fetch(client, address, "/")[2] == home[2]
        # Nothing cached for it: an honest error, not a hang.
        assert fetch(client, address, unique("/whoami"))[0] == 503
    finally:
        for host in apps.values():
            host.check_output(f"systemctl start {STANDIN}")
    wait_backends(edge, "healthy")
    assert fetch(client, address, unique())[0] == 200


# --- Last: it exhausts this client's request budget ------------------------------------

def test_rate_limit_answers_429(client, address):
    time.sleep(6)  # let the bucket refill after the tests above
    urls = " ".join([f"-o /dev/null https://{SITE}/healthz"] * 400)
    out = client.check_output(f"curl -s --http2 --parallel --parallel-max 50 --cacert {CA} --resolve {SITE}:443:{address} "
                              f"-w '%{{http_code}} ' {urls}").split()
    assert len(out) == 400
    assert set(out) <= {"200", "429"}
    assert out.count("429") > 0 and out.count("200") >= 100, out
