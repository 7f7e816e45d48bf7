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
