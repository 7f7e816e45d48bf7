"""One dependency down under load, and no request fails (issue: no single failure takes the
site down). The load runs from client1 through the edge: uncached /status (it reads from the
replica and counts in the cache), POST /notes writes (the primary) and cached pages. Any answer
but 2xx, a reset or a timeout counts as a failed request.
"""
import json
import time

from conftest import PASSWORD, Load, log_in
from test_app_tier import fetch

OUTAGE = 30  # seconds each dependency stays down
LOAD = ["--rate", "30", "--mix", "20,70,10"]
PG, REDIS = "postgresql@15-main", "redis-server"


def assert_nothing_failed(result):
    assert result["failed"] == 0, f"{result['failed']} failed requests: {result['failures']}"
    assert result["counts"].get("status", 0) > OUTAGE * 15 and result["counts"].get("write", 0) > 0, result


def read_host(stack, app):
    code, body = fetch(stack, app, "/status")
    assert code == 200, body
    return json.loads(body)["read_db_host"]


def both_backends_healthy(stack):
    listed = stack.host("edge1").check_output("sudo varnishadm backend.list")
    return listed.count("healthy") >= 2 and "sick" not in listed, listed


def outage(stack, host, service, during):
    """Stop `service` on `host` for OUTAGE seconds under load; `during()` runs half-way.
    Returns (the load's result, what during() returned, the edge's backends half-way)."""
    load = Load(stack, LOAD)
    load.start()
    stack.host(host).check_output(f"sudo systemctl stop {service}")
    try:
        time.sleep(OUTAGE / 2)
        seen, healthy = during(), both_backends_healthy(stack)
        time.sleep(OUTAGE / 2)
    finally:
        stack.host(host).check_output(f"sudo systemctl start {service}")
    return load.stop(), seen, healthy


def test_replica_down_no_request_fails_reads_go_to_the_primary_then_back(stack, visitor):
    db1, db2 = stack.addresses()["db1"], stack.addresses()["db2"]
    assert {read_host(stack, app) for app in ("app1", "app2")} == {db2}
    result, during, healthy = outage(stack, "db2", PG, lambda: {read_host(stack, app) for app in ("app1", "app2")})
    assert_nothing_failed(result)
    assert during == {db1}, f"reads during the outage came from {during}, not the primary {db1}"
    assert healthy[0], f"the edge took an app host out for a dead replica: {healthy[1]}"
    # Back on the replica once it returns: at once for new connections, within the persistent
    # connections' lifetime (CONN_MAX_AGE, 60 s) under gunicorn.
    # Each gunicorn thread holds its own connection: 12 reads in a row from the replica.
    deadline, seen = time.time() + 100, set()
    while time.time() < deadline:
        seen = {read_host(stack, app) for app in ("app1", "app2") for _ in range(12)}
        if seen == {db2}:
            break
        time.sleep(2)
    assert seen == {db2}, f"reads still go to {seen} 100 s after the replica came back"


def test_redis_down_no_request_fails_and_sessions_stay(stack, visitor, app_user):
    jar = "/tmp/redis-down-jar"
    log_in(stack, visitor, jar, app_user, PASSWORD)

    def during():
        # A page only a logged-in user gets (anonymous visitors are sent to the login page).
        return visitor("/accounts/password_change/", jar=jar), json.loads(fetch(stack, "app1", "/status")[1])

    result, (session, status), healthy = outage(stack, "cache1", REDIS, during)
    assert_nothing_failed(result)
    assert session[0] == 200, f"logged out while Redis was down: {session[0]} {session[1]}"
    assert status["counter"] is None and "cache" in status.get("errors", {}), status  # really down
    assert healthy[0], f"the edge took an app host out for a dead cache: {healthy[1]}"
