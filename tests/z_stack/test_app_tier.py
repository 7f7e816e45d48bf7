"""The app tier in the whole lab, as a user checks it from the client host."""
import json
import re
import time

import pytest

from conftest import MANAGED  # noqa: F401  (same stack fixture)
from helpers import ROOT, task_results


def fetch(stack, app, path, data=None):
    """An HTTP request from client1 to an app host (the lab opens 8000 to it); POST when data
    (a JSON document) is given. Returns (status, body)."""
    args = f"-H 'Content-Type: application/json' -d '{json.dumps(data)}'" if data else ""
    out = stack.host("client1").check_output(
        f"curl -sS -m 10 -o /tmp/body -w '%{{http_code}}' {args} -H 'Host: localhost' "
        f"http://{stack.addresses()[app]}:8000{path}; echo; cat /tmp/body")
    code, _, body = out.partition("\n")
    return int(code), body


def status(stack, app):
    code, body = fetch(stack, app, "/status")
    assert code == 200, body
    return json.loads(body)


@pytest.mark.parametrize("app,server", [("app1", "gunicorn"), ("app2", "uvicorn")])
def test_each_app_host_serves_the_built_release_healthy(stack, app, server):
    code, body = fetch(stack, app, "/healthz")
    assert code == 200, body
    st = status(stack, app)
    assert st["release"] == (ROOT / "build" / "app" / "LATEST").read_text().strip()
    assert st["app_server"] == server and st["host"] == app


def test_reads_are_served_by_the_replica_with_its_lag(stack):
    st = status(stack, "app1")
    assert st["read_db_host"] == stack.addresses()["db2"], st
    # null is also what a failed lag query gives: the replica must answer, with a number.
    assert "errors" not in st, st
    assert isinstance(st["replica_lag_seconds"], (int, float)) and 0 <= st["replica_lag_seconds"] < 60, st


def test_the_counter_is_shared_through_redis(stack):
    first = status(stack, "app1")["counter"]
    assert status(stack, "app2")["counter"] == first + 1
    assert status(stack, "app1")["cache_backend"] == "redis"


def test_a_write_through_one_host_is_read_from_the_replica_through_the_other(stack):
    text = f"stack-note-{int(time.time())}"
    code, body = fetch(stack, "app1", "/notes", data={"text": text})
    assert code == 201, body
    written = json.loads(body)
    assert written["write_db_host"] == stack.addresses()["db1"], written
    deadline = time.time() + 5
    while True:
        code, body = fetch(stack, "app2", f"/notes/{written['id']}")
        if code == 200 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert code == 200 and text in body, body
    assert json.loads(body)["read_db_host"] == stack.addresses()["db2"], body


def test_app_port_is_closed_to_other_tiers(stack):
    probe = stack.host("cache1").run(f"timeout 5 bash -c '</dev/tcp/{stack.addresses()['app1']}/8000'")
    assert probe.rc != 0, "the app port answers a host outside edge/client"


def test_migrations_ran_once_on_one_host(stack):
    """The fresh converge migrated an empty database exactly once, from one app host."""
    ran = task_results(stack.runs["converge"].stdout, "Apply the release's database migrations (one host, under the deploy lock)")
    assert list(ran.values()) == ["changed"], ran


@pytest.mark.parametrize("app,server", [("app1", "gunicorn"), ("app2", "uvicorn")])
def test_workers_follow_the_cores(stack, app, server):
    """gunicorn gthread: cores + 1 workers; uvicorn: one per core, at least 2 (roles/app/vars/main.yml)."""
    host = stack.host(app)
    cores = int(host.check_output("nproc"))
    main = host.check_output("systemctl show -p MainPID --value djdemo.service")
    children = host.check_output(f"ps -o args= --ppid {main}").splitlines()
    workers = [c for c in children if "resource_tracker" not in c]  # uvicorn's multiprocessing helper
    assert len(workers) == (cores + 1 if server == "gunicorn" else max(cores, 2)), children


@pytest.mark.parametrize("app,server", [("app1", "gunicorn"), ("app2", "uvicorn")])
def test_the_app_server_runs_as_the_app_user_in_a_hardened_unit(stack, app, server):
    host = stack.host(app)
    main = host.check_output("systemctl show -p MainPID --value djdemo.service")
    assert int(main) > 0
    assert f"/venv/bin/{server}" in host.check_output(f"tr '\\0' ' ' < /proc/{main}/cmdline")
    assert host.check_output(f"ps -o user= -p {main}").strip() == "djdemo"
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show djdemo.service -p User -p NoNewPrivileges -p PrivateTmp -p ProtectSystem "
        "-p ProtectHome -p CapabilityBoundingSet -p RestrictAddressFamilies").splitlines())
    assert props["User"] == "djdemo" and props["NoNewPrivileges"] == props["PrivateTmp"] == "yes", props
    assert props["ProtectSystem"] == "strict" and props["ProtectHome"] == "yes", props
    assert props["CapabilityBoundingSet"] == "", props
    assert sorted(props["RestrictAddressFamilies"].split()) == ["AF_INET", "AF_INET6", "AF_UNIX"], props


def test_the_settings_file_is_private_and_holds_the_secrets(stack):
    host = stack.host("app1")
    # /etc/djdemo itself is closed to the admin too (0750 root:djdemo): asked through sudo.
    assert host.check_output("sudo stat -c '%U %G %a' /etc/djdemo /etc/djdemo/env").splitlines() == \
        ["root djdemo 750", "root djdemo 640"]
    # The secret key is set (its value is the vault's business, not this test's output).
    assert host.run("""sudo grep -Eq '^DJDEMO_SECRET_KEY=".{20,}"$' /etc/djdemo/env""").rc == 0
    # The app user reads it, nobody else does.
    assert host.run("sudo runuser -u djdemo -- test -r /etc/djdemo/env").rc == 0
    assert host.run("sudo runuser -u nobody -- cat /etc/djdemo/env").rc != 0


def test_the_anonymous_page_is_cacheable_and_static_files_far_future(stack):
    client, app = stack.host("client1"), stack.addresses()["app2"]

    def get(path):
        out = client.check_output(f"curl -sS -m 10 -D - -H 'Host: localhost' http://{app}:8000{path}")
        head, _, body = out.partition("\r\n\r\n")
        return head.lower(), body

    head, body = get("/")
    assert head.startswith("http/1.1 200") and "public" in head and "set-cookie" not in head, head
    css = re.search(r'href="(/static/[^"]+\.css)"', body)
    assert css, body[:500]
    head, _ = get(css.group(1))
    assert head.startswith("http/1.1 200"), head
    assert int(re.search(r"max-age=(\d+)", head).group(1)) >= 365 * 24 * 3600, head
