"""The database tier in the full lab: what the app hosts, the outside world and an operator see."""
import json
import time

import pytest

from conftest import MANAGED, STACK_ENV  # noqa: F401  (same stack fixture)
from helpers import ROOT

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


def test_a_differential_backup_runs_from_its_scheduled_unit(stack):
    """The timers are scheduled, and the unit they start really backs up (run now, not at 01:30)."""
    backup = stack.host("backup1")
    for kind in ("full", "diff"):
        assert backup.service(f"pgbackrest-{kind}.timer").is_enabled
        assert backup.check_output(f"systemctl show -p NextElapseUSecRealtime --value pgbackrest-{kind}.timer")
    info = "sudo -u postgres pgbackrest --stanza=main --output=json info"
    before = [b["label"] for b in json.loads(backup.check_output(info))[0]["backup"]]
    backup.check_output("sudo systemctl start pgbackrest-backup@diff.service")
    after = json.loads(backup.check_output(info))[0]["backup"]
    new = [b for b in after if b["label"] not in before]
    assert len(new) == 1 and new[0]["type"] == "diff", new
    assert new[0].get("error") in (None, False), new
