"""Rolling deploys under load (playbooks/deploy.yml: make deploy, make rollback).

Each test runs a mixed load from client1 through the edge while it deploys: 100 requests/s of
cached pages, uncached /status and POST /notes writes, plus a 5-10 s /slow request every 2 s,
so that requests are in flight on every host that is drained. Any answer but 2xx (a 429 or a
5xx), a reset or a timeout is a failed request; none may fail.

The lab ends as it started: on the release built from app/ (the module's teardown deploys it
back if a test stopped half-way).
"""
import hashlib
import re
import shutil
import time

import pytest

from conftest import STACK_ENV, Load
from helpers import ROOT, recap, run, task_results

APP_HOSTS = ["app1", "app2"]
LOAD = ["--rate", "100", "--mix", "50,40,10", "--slow-every", "2", "--slow-min", "5", "--slow-max", "10"]
CSS = re.compile(r"/static/core/site\.[0-9a-f]{12}\.css")
# The releases these tests build skip the build's wheelhouse trial (a throw-away venv, the
# Django checks, collectstatic: half of a build here), which tests/test_app.py proves.
NO_TRIAL = ["-e", "app_build_check_install=false"]
STALE = ["0.0.1-000000000001", "0.0.1-000000000002"]


def release_of(app_dir):
    return run(["python3", str(ROOT / "bin" / "app-release-id"), "--app-dir", str(app_dir)], check=True).stdout.strip()


def current(stack, host, link="current"):
    return stack.host(host).check_output(f"readlink /srv/djdemo/{link}").rsplit("/", 1)[-1]


def assert_nothing_failed(result):
    assert result["failed"] == 0, f"failed requests during the deploy: {result['failures']}"
    assert result["rate"] >= 95 and result["counts"].get("slow", 0) >= 10, result
    assert result["counts"].get("write", 0) > 0 and result["counts"].get("page", 0) > 0, result


@pytest.fixture(scope="module")
def releases(stack, visitor, tmp_path_factory):
    """The release the lab runs (app/), a changed one and a broken one (its /readyz answers 503),
    as app source trees; the lab goes back to the first one afterwards."""
    base = release_of(ROOT / "app")
    assert all(current(stack, host) == base for host in APP_HOSTS)
    changed = tmp_path_factory.mktemp("deploy") / "changed"
    shutil.copytree(ROOT / "app", changed, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with open(changed / "src" / "djdemo" / "core" / "static" / "core" / "site.css", "a") as css:
        css.write("\n/* a changed release */\n")
    broken = changed.parent / "broken"
    shutil.copytree(changed, broken)
    views = broken / "src" / "djdemo" / "core" / "views.py"
    views.write_text(views.read_text().replace(
        'return _health_answer(checks, all(value == "ok" for value in checks.values()))',
        "return _health_answer(checks, False)  # a broken release"))
    assert "a broken release" in views.read_text()
    trees = {"base": base, "changed": changed, "broken": broken,
             "changed_id": release_of(changed), "broken_id": release_of(broken)}
    yield trees
    if any(current(stack, host) != base for host in APP_HOSTS):
        run(["ansible-playbook", "playbooks/deploy.yml", "-e", f"app_release_id={base}"], env=STACK_ENV, check=True)
    run(["ansible-playbook", "playbooks/build.yml"], env=STACK_ENV, check=True)  # build/app/LATEST: app/ again


def test_deploy_under_load_drops_nothing(stack, visitor, releases):
    """A changed release rolled out host by host under load: no failed request, every answer
    after the deploy from the new release, and both releases' hashed static files served."""
    code, _, page = visitor("/?before-deploy")
    old_css = CSS.search(page).group(0)
    # Two older releases left on the hosts: the newest app_releases_keep (3) stay, the one in
    # use and the one before always among them, so the oldest goes.
    for host in APP_HOSTS:
        for age, name in zip(("3 days ago", "2 days ago"), STALE):
            stack.host(host).check_output(f"sudo mkdir -p /srv/djdemo/releases/{name} && "
                                          f"sudo touch -d '{age}' /srv/djdemo/releases/{name}")
    load = Load(stack, LOAD)
    load.start()
    try:
        proc = stack.playbook("deploy", "playbooks/deploy.yml", "-e", f"app_build_source={releases['changed']}",
                              *NO_TRIAL)
        done = time.time()
        result = load.stop()
        kept = {host: sorted(stack.host(host).check_output("ls /srv/djdemo/releases").split()) for host in APP_HOSTS}
    finally:
        for host in APP_HOSTS:
            stack.host(host).check_output("sudo rm -rf " + " ".join(f"/srv/djdemo/releases/{name}" for name in STALE))
    assert all(c["failed"] == 0 for c in recap(proc.stdout, APP_HOSTS).values())
    assert_nothing_failed(result)
    # While each host was out, the other was held in the edge, then given back to its probe.
    for state in ("held", "released"):
        assert set(task_results(proc.stdout, f"App hosts left in service, on every edge - {state}").values()) == {"changed"}, state
    new, old = releases["changed_id"], releases["base"]
    assert [current(stack, host) for host in APP_HOSTS] == [new, new]
    assert [current(stack, host, "previous") for host in APP_HOSTS] == [old, old]
    assert kept == {host: sorted([STALE[1], old, new]) for host in APP_HOSTS}, kept
    seen = result["releases"]
    assert set(seen) <= {old, new} and seen[new]["answers"] > 0, seen
    # No answer from the old release once the deploy has finished.
    assert result["started_at"] + seen[old]["last"] <= done, (seen, result["started_at"], done)

    code, _, page = visitor("/?after-deploy")
    new_css = CSS.search(page).group(0)
    assert code == 200 and new_css != old_css
    for url in (old_css, new_css):  # a query string passes Varnish's cache: the app hosts answer
        assert visitor(f"{url}?v={time.time()}")[0] == 200, url


def test_broken_release_goes_back_by_itself(stack, releases):
    """A release whose /readyz fails is stopped at the first host's gate: every host ends on the
    release it ran, the run fails naming the host and the check, and no request failed."""
    before = releases["changed_id"]
    load = Load(stack, LOAD)
    load.start()
    proc = stack.playbook("deploy-broken", "playbooks/deploy.yml", "-e", f"app_build_source={releases['broken']}", *NO_TRIAL,
                          check=False)
    result = load.stop()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(rf"Deploy of {releases['broken_id']} failed on app1 at 'Check the app's own readiness", out), \
        out[-3000:]
    assert "Every app host is back on the release it ran before" in out
    assert_nothing_failed(result)
    assert [current(stack, host) for host in APP_HOSTS] == [before, before]
    assert [current(stack, host, "previous") for host in APP_HOSTS] == [releases["base"]] * 2
    assert set(result["releases"]) == {before}, result["releases"]
    for host in APP_HOSTS:  # both back in the edge, healthy
        listed = stack.host("edge1").check_output(f"sudo varnishadm backend.list {host}")
        assert re.search(rf"\.{host}\s+probe\s+\S+\s+healthy", listed), listed


def test_rollback_needs_no_release_id(stack, releases):
    """`make rollback` goes back to the release before, with the same rolling mechanics."""
    load = Load(stack, LOAD)
    load.start()
    proc = run(["make", "rollback"], env=STACK_ENV)
    result = load.stop()
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert_nothing_failed(result)
    base = releases["base"]
    assert [current(stack, host) for host in APP_HOSTS] == [base, base]
    assert [current(stack, host, "previous") for host in APP_HOSTS] == [releases["changed_id"]] * 2


def test_a_second_deploy_migrating_at_once_stops(stack, releases):
    """While another deploy holds the migration lock, a deploy stops at its migrations with a
    message saying so, and changes nothing."""
    key = int(hashlib.sha1(b"djdemo").hexdigest()[:15], 16)
    primary = next(h for h in ("db1", "db2") if stack.host(h).check_output(
        "sudo -u postgres psql -XAtc 'SELECT pg_is_in_recovery()'") == "f")
    db = stack.host(primary)
    db.check_output(f"nohup sudo -u postgres psql -Xd djdemo -c 'SELECT pg_advisory_lock({key}), pg_sleep(120)' "
                    "> /dev/null 2>&1 < /dev/null &")
    try:
        for _ in range(20):
            held = db.check_output(f"sudo -u postgres psql -XAtd djdemo -c \"SELECT count(*) FROM pg_locks "
                                   "WHERE locktype = 'advisory' AND granted\"")
            if held != "0":
                break
            time.sleep(0.5)
        proc = stack.playbook("deploy-locked", "playbooks/deploy.yml", "-e", f"app_release_id={releases['base']}",
                              "--tags", "migrate", check=False)
    finally:
        db.run("sudo -u postgres psql -Xd djdemo -c \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE query LIKE '%pg_advisory_lock%' AND pid <> pg_backend_pid()\"")
    assert proc.returncode != 0
    assert "Another deploy of djdemo is migrating the database right now" in proc.stdout + proc.stderr
    assert [current(stack, host) for host in APP_HOSTS] == [releases["base"]] * 2
