"""The app tier in the whole lab, as a user checks it from the client host."""
import json
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
