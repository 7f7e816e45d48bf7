"""Redeploy on fresh infrastructure (`make redeploy-test`): write data through the site, make
sure the backup repository has it, fingerprint it, destroy every host with `make destroy`,
rebuild with `make lab` (nothing else typed), and compare.

Before `make lab`, a user's copy of inventories/production checks the fresh hosts with
`site.yml --check --diff` (README, "Using it on real servers"), and the second app host comes
back on the other Debian release (a server replaced by one of another release).

This module sorts last among the stack tests on purpose: it replaces every host of the lab.
It prints the RPO (acknowledged writes not restored, and their time window) and the time to
recover, and keeps them in .lab/redeploy-<lab>.json for bench/RESULTS.md.
"""
import json
import re
import shlex
import time

import pytest
import yaml

import molecule_runs
from conftest import CA_ON_CLIENT, MANAGED, SITE, STACK_ENV, STACK_LAB_NAME
from conftest import log_in as log_in_through_edge
from helpers import ROOT, recap, run, task_results

STAFF, STAFF_PASSWORD = "redeploy-admin", "redeploy-admin-password-not-a-secret"
JAR = "/tmp/redeploy-jar"
NOTES_TABLE = "public.core_note"
TIMELINE = "SELECT timeline_id FROM pg_control_checkpoint()"


def sh(stack, host, command):
    return stack.host(host).check_output(command)


def psql(stack, sql, host="db1", db="djdemo"):
    return sh(stack, host, f"sudo -u postgres psql -d {db} -XAtqc {shlex.quote(sql)}")


def post_note(visitor, text):
    code, _, body = visitor("/notes", "-H", shlex.quote("Content-Type: application/json"),
                            "--data", shlex.quote(json.dumps({"text": text})))
    assert code == 201, body[:500]
    return json.loads(body)["id"]


def wait_archived(stack):
    """Close the current WAL segment and wait until pgBackRest has it: what is acknowledged
    before this point is in the repository."""
    wal = psql(stack, "SELECT pg_walfile_name(pg_switch_wal())")
    for _ in range(120):
        archived = psql(stack, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if archived >= wal:
            return wal
        time.sleep(1)
    raise AssertionError(f"WAL {wal} was not archived within 120 s (last archived: {archived})")


def fingerprint(stack, visitor, note_ids, last_archived_note):
    """Every table's rows in a stable order, hashed; the chosen pages; the DKIM key; the stanza.
    Notes written after the archive point are left out of the hash: whether they survive is
    the RPO, reported on its own."""
    tables = psql(stack, "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                         "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").split()
    assert NOTES_TABLE in tables, tables
    rows = {}
    for table in tables:
        where = f" WHERE t.id <= {last_archived_note}" if table == NOTES_TABLE else ""
        rows[table] = psql(stack, f"SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' "
                                  f"ORDER BY t::text), '')) FROM {table} t{where}")
    pages = {}
    for path in ["/", *[f"/notes/{i}" for i in note_ids]]:
        code, _, body = visitor(path)
        assert code == 200, (path, body[:300])
        pages[path] = body
    info = json.loads(sh(stack, "backup1", "sudo -u postgres pgbackrest --stanza=main --output=json info"))[0]
    key = sh(stack, "mail1", "sudo sh -c 'openssl pkey -in /etc/dkimkeys/*.private -pubout' | sha256sum")
    zone = (ROOT / "build" / "dns" / "lab" / "djstack.test.zone").read_text()
    edge_names = sh(stack, "client1", f"echo | openssl s_client -connect {stack.addresses()['edge1']}:443 "
                                      f"-servername {SITE} 2>/dev/null | openssl x509 -noout -ext subjectAltName")
    return {
        "rows": rows,
        "pages": pages,
        "system_id": psql(stack, "SELECT system_identifier FROM pg_control_system()"),
        "stanza_system_ids": sorted(str(db["system-id"]) for db in info["db"]),
        "dkim_public_key": key.split()[0],
        "dkim_dns_record": [line for line in zone.splitlines() if "_domainkey" in line],
        "tls_names": edge_names.strip(),
    }


def log_in(stack, visitor):
    """A staff user logs in through the edge; the session cookie jar stays on the controller."""
    script = ("from django.contrib.auth import get_user_model; U = get_user_model(); "
              f"u = U.objects.filter(username='{STAFF}').first() or U(username='{STAFF}', is_staff=True); "
              f"u.is_staff = True; u.set_password('{STAFF_PASSWORD}'); u.save()")
    sh(stack, "app1", f"sudo /usr/local/sbin/djdemo-manage shell -c {shlex.quote(script)}")
    log_in_through_edge(stack, visitor, JAR, STAFF, STAFF_PASSWORD)
    assert_logged_in(visitor)
    return sh(stack, "client1", f"cat {JAR}")


def assert_logged_in(visitor):
    code, headers, body = visitor("/admin/", jar=JAR)
    assert code == 200 and STAFF in body, (code, headers, body[:500])


def host_key(stack, host):
    return sh(stack, host, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1]


def containers():
    return run(["docker", "ps", "-a", "-q", "--filter", f"label=djstack.lab={STACK_LAB_NAME}"], check=True).stdout.split()


# A whole fresh converge (about 270 s here, more on a busy CI machine) plus the checks.
@pytest.mark.timeout(1800)
def test_destroy_every_host_then_make_lab_brings_the_same_site_back(stack, visitor, request, tmp_path):
    # The database tier's molecule scenario runs beside this test (see tests/test_molecule.py).
    for scenario in molecule_runs.BESIDE_REDEPLOY & molecule_runs.selected(request.session):
        molecule_runs.start(scenario)
    # Data through the site: a logged-in staff session, notes through the edge.
    jar = log_in(stack, visitor)
    note_ids = [post_note(visitor, f"redeploy note {i} {time.time_ns()}") for i in range(20)]
    archived_wal = wait_archived(stack)
    before = fingerprint(stack, visitor, note_ids, max(note_ids))
    old_keys = {h: host_key(stack, h) for h in ("db1", "edge1")}
    timeline = int(psql(stack, TIMELINE))
    # Writes acknowledged after the archive point, right before the hosts go: the RPO.
    late = []
    for i in range(5):
        late.append((post_note(visitor, f"late note {i}"), time.time()))
    destroyed_at = time.time()

    run(["make", "destroy"], env=STACK_ENV, check=True)
    assert containers() == [], "make destroy left containers"
    stack.reset()

    # The fresh hosts, the second app host on the other Debian release under its old name and
    # address (a server replaced by one of another release): the fleet mixes releases, so the
    # build makes one wheelhouse per Python and each host installs its own; no fact of the old
    # host is used. `make lab` below keeps that host as it is (roles/lab never replaces a host).
    suite = STACK_ENV["LAB_DEBIAN_SUITE"]
    other = "bookworm" if suite == "trixie" else "trixie"
    releases = tmp_path / "releases.yml"
    releases.write_text(yaml.safe_dump({"all": {"hosts": {"app2": {"lab_debian_suite": other}}}}))
    started = time.time()
    run(["ansible-playbook", "-i", "inventories/production/groups.yml", "-i", "inventories/lab", "-i", str(releases),
         "playbooks/lab.yml"], env=STACK_ENV, check=True, timeout=600)
    created = time.time() - started

    # README "Using it on real servers", step 5, on these fresh hosts: a user's copy of
    # inventories/production (the lab's addresses, key and throw-away secrets) run with
    # `site.yml --check --diff`. Check mode installs nothing, so each host's plays stop at their
    # first missing packages, saying what a real run installs; nothing fails, nothing is
    # unreachable, nothing changes. (The lab itself is the production example plus a thin
    # overlay: every stack converge runs the example's group_vars for real.)
    inventory, password, hostvars, _ = production_copy(tmp_path, STACK_ENV["LAB_NET_PREFIX"])
    check = run(["ansible-playbook", "-i", str(inventory), "--vault-id", f"production@{password}", "site.yml",
                 "--check", "--diff"], env=STACK_ENV, timeout=900)
    counts = recap(check.stdout, hostvars)
    assert check.returncode == 0 and all(c["failed"] == c["unreachable"] == 0 for c in counts.values()), \
        (counts, check.stdout[-5000:])
    quiet = [h for h in hostvars if f"Check mode: {h} lacks" not in check.stdout]
    assert not quiet, f"no word on what a real run installs on {quiet}:\n{check.stdout[-5000:]}"

    # A host stopped, as a reboot of the machine leaves every container: `make lab` starts it.
    run(["docker", "stop", f"{STACK_LAB_NAME}-mail1"], check=True)
    started = time.time()
    lab = run(["make", "lab"], env=STACK_ENV, check=True, timeout=1500)
    recovered = created + time.time() - started  # host creation and make lab, not the check run
    # Every fresh host was bootstrapped with the bootstrap account, then the run logged in again
    # as the admin on a new connection (not on the bootstrap account's lingering SSH master).
    relogin = task_results(lab.stdout, "Check that the admin logs in")
    assert relogin == {h: "ok" for h in MANAGED}, f"admin log-in after bootstrap: {relogin}"

    # The rebuilt client needs the lab CA again (its /tmp is new), and the saved session.
    ca = ROOT / ".lab" / "pki" / STACK_LAB_NAME / "ca.crt"
    stack.ansible("client1", "-m", "ansible.builtin.copy", "-a", f"src={ca} dest={CA_ON_CLIENT} mode=0644")
    stack.ansible("client1", "-m", "ansible.builtin.copy", "-a", f"dest={JAR} mode=0600 content={shlex.quote(jar)}")
    new_keys = {h: host_key(stack, h) for h in old_keys}
    assert sh(stack, "mail1", "systemctl is-active postfix opendkim").split() == ["active", "active"]
    after = fingerprint(stack, visitor, note_ids, max(note_ids))

    # The same system identifier: restored, not initialised (initdb makes a new one).
    for part in before:
        assert after[part] == before[part], f"{part} differs after the redeploy"
    assert int(psql(stack, TIMELINE)) > timeline, "no archive recovery ran on the rebuilt primary"
    assert_logged_in(visitor)
    assert all(new_keys[h] != old_keys[h] for h in old_keys), "rebuilt hosts kept their SSH host keys?"
    # One release on both app hosts, each on its own Debian's Python.
    python = {"bookworm": "3.11", "trixie": "3.13"}
    found = {h: sh(stack, h, "/srv/djdemo/current/venv/bin/python -c 'import os, platform; "
                            "print(platform.python_version(), os.path.realpath(\"/srv/djdemo/current\"))'").split()
             for h in ("app1", "app2")}
    assert {h: v.rsplit(".", 1)[0] for h, (v, _) in found.items()} == {"app1": python[suite], "app2": python[other]}, found
    assert found["app1"][1] == found["app2"][1], found

    restored = set(psql(stack, f"SELECT id FROM {NOTES_TABLE} WHERE id > {max(note_ids)}").split())
    lost = [(i, t) for i, t in late if str(i) not in restored]
    window = (destroyed_at - min(t for _, t in lost)) if lost else 0.0
    report = {
        "archived_wal_before_destroy": archived_wal,
        "acknowledged_after_archive": len(late),
        "lost": len(lost),
        "rpo_window_s": round(window, 1),
        "recovery_s": round(recovered, 1),
        "tables": len(before["rows"]),
        "pages": len(before["pages"]),
    }
    (ROOT / ".lab" / f"redeploy-{STACK_LAB_NAME}.json").write_text(json.dumps(report, indent=2))
    print(f"\nREDEPLOY: RPO {len(lost)} of {len(late)} writes acknowledged after the last archived "
                         f"WAL lost (window {window:.1f} s); every write before it restored; "
                         f"time to recover (make lab) {recovered:.0f} s")


def production_copy(tmp_path, prefix):
    """A user's copy of inventories/production on this lab's fresh hosts: the example's hosts
    at the lab's addresses, the lab's SSH key as the admin's, the controller's address as the
    admin network, how this controller connects (key, known_hosts), a vault of throw-away
    secrets under the id `production` and throw-away TLS files (README "Using it on real
    servers", steps 1-4). Nothing else of the lab's overlay."""
    from test_production_inventory import copy_of_the_example

    def adapt(inventory):
        hosts = inventory / "hosts.yml"
        text = re.sub(r"\b203\.0\.113\.(\d+)", prefix + r".\1", hosts.read_text())
        hosts.write_text(re.sub(r"\b10\.0\.0\.(\d+)", prefix + r".\1", text))
        common = inventory / "group_vars" / "all" / "common.yml"
        key = (ROOT / ".lab" / "id_ed25519.pub").read_text().strip()
        text, keys = re.subn(r"ssh-ed25519 \S+ alice@laptop", key, common.read_text())
        text, networks = re.subn(r"198\.51\.100\.0/24", f"{prefix}.1/32", text)
        assert keys == networks == 1, "the example's admin key or admin network moved: update this test"
        common.write_text(text)
        (inventory / "group_vars" / "all" / "connection.yml").write_text(yaml.safe_dump({
            "ansible_ssh_private_key_file": str(ROOT / ".lab" / "id_ed25519"),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={tmp_path / 'known_hosts'} -o StrictHostKeyChecking=accept-new"}))

    inventory, password, listing = copy_of_the_example(tmp_path, adapt)
    hostvars = listing["_meta"]["hostvars"]
    assert len(hostvars) == len(MANAGED), sorted(hostvars)
    return inventory, password, hostvars, next(iter(hostvars.values()))["site_domain"]
