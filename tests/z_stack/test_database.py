"""The database tier in the full lab: what the app hosts, the outside world and an operator see."""
import json
import time

import pytest

from conftest import MANAGED, STACK_ENV, Load, missing_writes  # noqa: F401  (same stack fixture)
from helpers import ROOT, recap

CA_ON_APP = "/tmp/djstack-db-test-ca.crt"


@pytest.fixture(scope="module")
def app_psql(stack):
    """psql on app1 with the lab CA, and the app's password (read through Ansible, never printed)."""
    stack.ansible("app1", "-b", "-m", "ansible.builtin.apt", "-a", "name=postgresql-client state=present")
    ca = ROOT / ".lab" / "pki" / STACK_ENV["LAB_NAME"] / "ca.crt"
    stack.ansible("app1", "-m", "ansible.builtin.copy", "-a", f"src={ca} dest={CA_ON_APP} mode=0644")
    out = stack.ansible("db1", "-m", "ansible.builtin.debug", "-a", "var=postgresql_app_password", "-o")
    password = json.loads(out.split(" => ", 1)[1])["postgresql_app_password"]
    host = stack.host("app1")

    def psql(target, sql):
        address = stack.addresses()[target]
        return host.run(f"PGPASSWORD='{password}' psql 'host={address} dbname=djdemo user=djdemo sslmode=verify-full "
                        f"sslrootcert={CA_ON_APP} connect_timeout=5' -XAtqc \"{sql}\"")
    return psql


def test_row_written_on_the_primary_is_read_on_the_replica(app_psql):
    token = f"z{time.time_ns()}"
    result = app_psql("db1", f"CREATE TABLE IF NOT EXISTS stack_probe (v text); INSERT INTO stack_probe VALUES ('{token}')")
    assert result.rc == 0, result.stderr
    for _ in range(20):
        seen = app_psql("db2", f"SELECT count(*) FROM stack_probe WHERE v = '{token}'")
        if seen.stdout.strip() == "1":
            break
        time.sleep(0.25)
    assert seen.stdout.strip() == "1", seen.stdout + seen.stderr
    refused = app_psql("db2", "INSERT INTO stack_probe VALUES ('x')")
    assert refused.rc != 0 and "read-only" in refused.stderr


@pytest.mark.parametrize("port", [5432, 8432])
def test_database_ports_are_closed_to_the_client_host(stack, port):
    probe = stack.host("client1").run(f"nc -z -w 3 {stack.addresses()['db1']} {port}")
    assert probe.rc != 0, f"port {port} on db1 answers the client host"


def test_a_backup_exists_in_the_repository(stack):
    info = json.loads(stack.host("backup1").check_output("sudo -u postgres pgbackrest --stanza=main --output=json info"))[0]
    assert info["status"]["code"] == 0, info["status"]
    assert len(info["backup"]) >= 1
    assert info["cipher"] == "aes-256-cbc"


def test_the_readmes_pgbackrest_tags_run_changes_nothing(stack):
    """README: `ansible-playbook playbooks/database.yml --tags pgbackrest` applies pgBackRest's
    settings alone: on the converged lab it runs pgBackRest's tasks, fails nowhere and changes
    nothing."""
    proc = stack.playbook("pgbackrest tags", "playbooks/database.yml", "--tags", "pgbackrest")
    counts = recap(proc.stdout, ["db1", "db2", "backup1"])
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), proc.stdout[-5000:]
    assert "TASK [pgbackrest : Write pgbackrest.conf, the TLS files and the archive watch]" in proc.stdout, proc.stdout[-5000:]


def test_memory_settings_follow_the_host(stack):
    """The lab pins shared_buffers and effective_cache_size (containers see the whole machine's
    RAM); work_mem and maintenance_work_mem are left to the role, which derives them from the
    host's memory and max_connections (roles/postgresql/vars/main.yml)."""
    db1 = stack.host("db1")
    mem_mb = int(db1.check_output("awk '/MemTotal/ {print $2}' /proc/meminfo")) // 1024
    max_connections = int(db1.check_output("sudo -u postgres psql -XAtc 'SHOW max_connections'"))
    got = dict(line.split("|") for line in db1.check_output(
        "sudo -u postgres psql -XAtc \"SELECT name, pg_size_bytes(current_setting(name)) / 1048576 FROM (VALUES "
        "('shared_buffers'), ('effective_cache_size'), ('work_mem'), ('maintenance_work_mem')) v(name)\"").splitlines())
    assert got == {
        "shared_buffers": "128", "effective_cache_size": "512",  # inventories/lab/group_vars/db.yml
        "work_mem": str(min(max(int(mem_mb * 0.75 / (3 * max_connections)), 4), 256)),
        "maintenance_work_mem": str(min(max(mem_mb // 16, 64), 2048)),
    }, (mem_mb, max_connections)


def test_a_differential_backup_runs_from_its_scheduled_unit_with_peers_by_address(stack):
    """The timers are scheduled, and the unit they start really backs up (run now, not at 01:30).
    The tier needs no DNS: while every host's own name lookup sends the others' names to a
    black hole (TEST-NET-1), the backup and a WAL archive check still go through."""
    backup = stack.host("backup1")
    for kind in ("full", "diff"):
        assert backup.service(f"pgbackrest-{kind}.timer").is_enabled
        assert backup.check_output(f"systemctl show -p NextElapseUSecRealtime --value pgbackrest-{kind}.timer")
    info = "sudo -u postgres pgbackrest --stanza=main --output=json info"
    before = [b["label"] for b in json.loads(backup.check_output(info))[0]["backup"]]
    tier = ("db1", "db2", "backup1")
    blackhole = "192.0.2.1 " + " ".join(tier) + "  # djstack-test"
    try:
        for name in tier:
            stack.host(name).check_output(f"echo '{blackhole}' | sudo tee -a /etc/hosts")
        assert backup.check_output("getent hosts db1").startswith("192.0.2.1")
        backup.check_output("sudo systemctl start pgbackrest-backup@diff.service")
        primary = next(h for h in ("db1", "db2") if stack.host(h).check_output(
            "sudo -u postgres psql -XAtc 'SELECT pg_is_in_recovery()'") == "f")
        check = stack.host(primary).run("sudo -u postgres pgbackrest --stanza=main check")
        assert check.rc == 0, check.stdout + check.stderr
    finally:
        for name in tier:  # /etc/hosts is Docker's bind mount: rewritten in place, not replaced
            stack.host(name).run("sudo sh -c 'grep -v \"# djstack-test$\" /etc/hosts > /tmp/hosts.kept; "
                                 "cat /tmp/hosts.kept > /etc/hosts; rm /tmp/hosts.kept'")
    after = json.loads(backup.check_output(info))[0]["backup"]
    new = [b for b in after if b["label"] not in before]
    assert len(new) == 1 and new[0]["type"] == "diff", new
    assert new[0].get("error") in (None, False), new


def test_restore_under_writes_loses_no_acknowledged_write_and_serves_nothing_cached_before(stack, visitor):
    """playbooks/restore.yml (the latest state) while writes come in through the edge: the app
    servers stop before the primary's last WAL is archived, so every write acknowledged before or
    after the restore is in the restored database (a write acknowledged after the last archived
    segment would be lost); the replica is re-seeded and streams again; nothing cached before
    the restore is served after it, neither by the app's cache nor by the edge."""
    probe = "from django.core.cache import cache; "
    app1, db2 = stack.host("app1"), stack.host("db2")
    app1.check_output(f"sudo /usr/local/sbin/djdemo-manage shell -c \"{probe}cache.set('restore-probe', 'old', None)\"")
    visitor("/?restore-probe")
    assert visitor("/?restore-probe")[1]["x-cache"] == "HIT"
    load = Load(stack, ["--rate", "10", "--mix", "30,30,40", "--record-writes"])
    load.start()
    started = time.time()
    stack.playbook("restore", "playbooks/restore.yml", "-e", "restore_confirm_overwrite=true")
    done = time.time()
    result = load.stop()

    writes = [(result["started_at"] + w[0], *w[1:]) for w in result["writes"]]
    acked = [w for w in writes if w[1]]
    assert any(at < done - 20 for at, *_ in acked) and any(at > done for at, *_ in acked), \
        f"writes must be acknowledged before the restore and after it: {result['failures']}"
    assert missing_writes(stack, "db1", acked) == [], "acknowledged writes the restore lost"
    newest = max(w[1] for w in acked)
    assert db2.check_output("sudo -u postgres psql -XAtc 'SELECT pg_is_in_recovery()'") == "t"
    for _ in range(20):
        if db2.check_output(f"sudo -u postgres psql -d djdemo -XAtc 'SELECT count(*) FROM core_note WHERE id = {newest}'") == "1":
            break
        time.sleep(0.5)
    assert db2.check_output(f"sudo -u postgres psql -d djdemo -XAtc 'SELECT count(*) FROM core_note WHERE id = {newest}'") == "1"
    # The app servers were down meanwhile: no write acknowledged between their stop and start.
    assert result["failed"] > 0, "the restore did not keep the app from answering"
    assert app1.check_output(f"sudo /usr/local/sbin/djdemo-manage shell -v 0 -c \"{probe}print(cache.get('restore-probe'))\"") == "None"
    assert visitor("/?restore-probe")[1]["x-cache"] == "MISS"
    print("\nMEASURED restore " + json.dumps({"playbook_s": round(done - started, 1), "acknowledged_writes": len(acked),
                                              "failed_requests": result["failed"], "failures": result["failures"]}))
