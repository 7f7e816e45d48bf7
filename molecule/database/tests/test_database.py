"""The database tier as its users see it: the app host over the network, the
operators with the project's playbooks. Destructive tests (restore, failover) last.

Secrets and addresses are read from molecule.yml, so the two never drift.
"""
import base64
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
import yaml

SCENARIO = Path(__file__).resolve().parent.parent
ROOT = SCENARIO.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers import failed_task, recap  # noqa: E402  (the project's shared test helpers)
MOLECULE = yaml.safe_load(
    os.path.expandvars((SCENARIO / "molecule.yml").read_text().replace("${LAB_NAME:-djstack}", os.environ.get("LAB_NAME", "djstack"))
                       .replace("${MOLECULE_DB_NET:-10.231.210}", os.environ.get("MOLECULE_DB_NET", "10.231.210"))))
VARS = MOLECULE["provisioner"]["inventory"]["group_vars"]["all"]
HOSTVARS = MOLECULE["provisioner"]["inventory"]["host_vars"]
APP_USER = APP_DB = "djdemo"
APP_PASSWORD = VARS["postgresql_app_password"]
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
CA = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki" / "ca.crt"
PG = "/usr/lib/postgresql/15/bin"
MEASURED = {}


def _only_host(group):
    hosts = testinfra.get_hosts([f"ansible://{group}"], ansible_inventory=INVENTORY)
    assert len(hosts) == 1, f"expected one host in group {group}"
    return hosts[0]


def _name(group):
    return next(p["name"] for p in MOLECULE["platforms"] if group in p["groups"])


def _address(group):
    return HOSTVARS[_name(group)]["private_ip"]


@pytest.fixture(scope="module")
def db1():
    return _only_host("db_primary")


@pytest.fixture(scope="module")
def db2():
    return _only_host("db_replica")


@pytest.fixture(scope="module")
def backup():
    return _only_host("backup")


@pytest.fixture(scope="module")
def client():
    host = _only_host("app")
    host.check_output(f"echo {base64.b64encode(CA.read_bytes()).decode()} | base64 -d > /root/djstack-ca.crt")
    return host


def conninfo(address, user=APP_USER, db=APP_DB, sslmode="verify-full"):
    return f"host={address} port=5432 dbname={db} user={user} sslmode={sslmode} sslrootcert=/root/djstack-ca.crt connect_timeout=5"


def psql_cmd(address, sql, password=APP_PASSWORD, **kw):
    return f"PGPASSWORD='{password}' psql '{conninfo(address, **kw)}' -XAtqc \"{sql}\""


def psql(host, address, sql, **kw):
    """psql over the network; returns (rc, output)."""
    result = host.run(psql_cmd(address, sql, **kw))
    return result.rc, (result.stdout + result.stderr).strip()


def local(host, sql, db="postgres"):
    """psql as postgres on the database host itself."""
    return host.check_output(f"runuser -u postgres -- psql -XAtq -d {db} -c \"{sql}\"")


def playbook(name, *args):
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    start = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", INVENTORY, str(ROOT / "playbooks" / name), *args],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)
    proc.text = " ".join((proc.stdout + proc.stderr).split())  # messages are wrapped: compare them unwrapped
    proc.failures = "\n".join(line for line in proc.stdout.splitlines() if "fatal:" in line or "FAILED!" in line or "msg" in line)
    return proc, time.monotonic() - start


def report(key, value):
    MEASURED[key] = value
    print(f"\nMEASURED {key} = {value}")


# --- Replication ------------------------------------------------------------------

def test_replica_streams_synchronously_from_its_slot(db1):
    rows = local(db1, "SELECT application_name, state, sync_state FROM pg_stat_replication")
    slot = _name("db_replica").lower().replace("-", "_")
    assert rows == f"{slot}|streaming|quorum", rows
    assert local(db1, "SELECT active FROM pg_replication_slots") == "t"


def test_row_on_primary_is_readable_on_replica_within_one_second(client):
    primary, replica = _address("db_primary"), _address("db_replica")
    rc, out = psql(client, primary, "CREATE TABLE IF NOT EXISTS probe (v text PRIMARY KEY)")
    assert rc == 0, out
    token = f"t{time.time_ns()}"
    script = (
        f"{psql_cmd(primary, f'INSERT INTO probe VALUES (' + chr(39) + token + chr(39) + ')')} >/dev/null || exit 3; "
        "t0=$(date +%s.%N); "
        f"for i in $(seq 1 500); do {psql_cmd(replica, f'SELECT count(*) FROM probe WHERE v = ' + chr(39) + token + chr(39))} "
        "| grep -qx 1 && break; done; t1=$(date +%s.%N); python3 -c \"print($t1 - $t0)\"")
    delay = float(client.check_output(f"bash -c {shlex.quote(script)}"))
    report("replication_visible_on_replica_s (incl. one psql connection)", round(delay, 3))
    assert delay < 1.0


def test_replica_refuses_writes(client):
    rc, out = psql(client, _address("db_replica"), "INSERT INTO probe VALUES ('on-the-replica')")
    assert rc != 0 and "read-only transaction" in out, out


# --- Authentication --------------------------------------------------------------

def test_connection_without_tls_is_refused(client):
    rc, out = psql(client, _address("db_primary"), "SELECT 1", sslmode="disable")
    assert rc != 0 and "no encryption" in out, out


def test_wrong_password_is_refused(client):
    rc, out = psql(client, _address("db_primary"), "SELECT 1", password="not-the-password-at-all")
    assert rc != 0 and "password authentication failed" in out, out


def test_other_user_or_database_is_refused_from_the_app_host(client):
    rc, out = psql(client, _address("db_primary"), "SELECT 1", db="postgres")
    assert rc != 0 and "no pg_hba.conf entry" in out, out


def test_host_not_in_the_data_is_refused(backup):
    rc, out = psql(backup, _address("db_primary"), "SELECT 1", sslmode="require")
    assert rc != 0 and "no pg_hba.conf entry" in out, out


def test_tls_and_scram_settings(db1, db2):
    for host in (db1, db2):
        assert local(host, "SHOW ssl") == "on"
        assert local(host, "SHOW ssl_min_protocol_version") == "TLSv1.2"
        assert local(host, "SHOW password_encryption") == "scram-sha-256"
        assert local(host, "SHOW data_checksums") == "on"
        assert local(host, "SHOW shared_buffers") == "64MB"
        hba = host.file("/etc/postgresql/15/main/pg_hba.conf").content_string
        methods = {line.split()[-1] for line in hba.splitlines() if line.strip() and not line.startswith("#")}
        assert methods == {"peer", "reject", "scram-sha-256"}, methods
        assert "hostnossl  all       all   0.0.0.0/0  reject" in hba and "::/0       reject" in hba
        assert local(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"
    assert local(db1, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'djdemo'") == "t"
    auto = db2.file("/var/lib/postgresql/15/main/postgresql.auto.conf").content_string
    assert "primary_conninfo" in auto and VARS["postgresql_replication_password"] not in auto
    assert db2.file("/var/lib/postgresql/.pgpass").mode == 0o600


# --- Backups -----------------------------------------------------------------------

def test_archiving_and_backup_playbook(db1, backup):
    proc, seconds = playbook("backup.yml")
    assert proc.returncode == 0, proc.stdout[-5000:]
    report("backup_playbook_full_s", round(seconds, 1))
    info = json.loads(backup.check_output("runuser -u postgres -- pgbackrest --stanza=main --output=json info"))[0]
    assert info["status"]["code"] == 0
    assert [b["type"] for b in info["backup"]].count("full") >= 2
    assert info["cipher"] == "aes-256-cbc"
    assert local(db1, "SELECT failed_count = 0 OR last_archived_time > last_failed_time FROM pg_stat_archiver") == "t"
    assert backup.service("pgbackrest-full.timer").is_enabled and backup.service("pgbackrest-diff.timer").is_enabled


def test_the_pgbackrest_tag_alone_runs_and_changes_nothing(db1):
    """`database.yml --tags pgbackrest` (README): the PostgreSQL role's state checks run under
    every tag, so the distribution's version they need is loaded under every tag too."""
    proc, _ = playbook("database.yml", "--tags", "pgbackrest")
    assert proc.returncode == 0, proc.failures + proc.stdout[-3000:]
    assert all(c["changed"] == 0 for c in recap(proc.stdout, [_name("db_primary"), _name("backup")]).values()), proc.stdout[-3000:]


def _mb(host, path):
    return int(host.check_output(f"du -sm {path} | cut -f1"))


def test_backup_host_down_wal_stays_bounded_then_the_archive_catches_up(db1, backup):
    """The repository unreachable while the primary writes far more WAL than the queue limit
    (pgbackrest_archive_queue_max, 32MiB here): writes go on, pg_wal comes back within
    max_wal_size plus the queue (pgBackRest drops the rest from the archive and PostgreSQL's log
    says so), and once the repository is back the archive catches up and a backup succeeds."""
    queue_mb, max_wal_mb, pg_wal = 32, 256, "/var/lib/postgresql/15/main/pg_wal"
    bound = max_wal_mb + queue_mb + 48  # + the segments being written and recycled
    local(db1, "CREATE TABLE IF NOT EXISTS walfill (id int, pad text)", db=APP_DB)
    start = local(db1, "SELECT pg_current_wal_lsn()")
    backup.check_output("systemctl stop pgbackrest")
    try:
        failed = int(local(db1, "SELECT failed_count FROM pg_stat_archiver"))
        local(db1, "SELECT pg_switch_wal()")
        deadline = time.time() + 90
        while int(local(db1, "SELECT failed_count FROM pg_stat_archiver")) == failed and time.time() < deadline:
            time.sleep(2)
        db1.check_output("systemctl start pgbackrest-archive-watch.service")  # what its timer runs
        for _ in range(6):  # about 100 MB of WAL each
            local(db1, "INSERT INTO walfill SELECT g, repeat(md5(g::text), 28) FROM generate_series(1, 100000) g; "
                       "TRUNCATE walfill", db=APP_DB)
        written = int(local(db1, f"SELECT (pg_wal_lsn_diff(pg_current_wal_lsn(), '{start}') / 1048576)::int"))
        deadline, sizes = time.time() + 90, []
        while time.time() < deadline:
            local(db1, "CHECKPOINT")
            sizes.append(_mb(db1, pg_wal))
            if sizes[-1] <= bound:
                break
            time.sleep(3)
        db1.check_output("systemctl start pgbackrest-archive-watch.service")
    finally:
        backup.check_output("systemctl start pgbackrest")
    report("backup_down_wal_written_mb", written)
    report("backup_down_pg_wal_mb", sizes)
    assert written > bound + 150, "too little WAL written to prove the bound"
    assert sizes[-1] <= bound, f"pg_wal stayed at {sizes} MB (bound {bound}) after {written} MB were written"
    assert "dropped WAL file" in db1.check_output("cat /var/log/postgresql/postgresql-15-main.log"), \
        "nothing tells the operator that WAL was dropped"
    segment = local(db1, "SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.time() + 90
    while local(db1, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment and time.time() < deadline:
        time.sleep(1)
    assert local(db1, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment, "the archive did not catch up"
    proc, _ = playbook("backup.yml", "-e", "backup_type=diff")
    assert proc.returncode == 0, proc.failures + proc.stdout[-3000:]
    for _ in range(2):  # a segment dropped after the last look is said first
        db1.check_output("systemctl start pgbackrest-archive-watch.service")
    # The operator is told in the journal: archiving failed, WAL was dropped, it works again.
    journal = db1.check_output("journalctl -q -o cat -t pgbackrest-archive-watch -p notice")
    for said in ("WAL archiving is failing", "pgBackRest dropped", "WAL archiving works again"):
        assert said in journal, f"the journal does not say {said!r}:\n{journal}"
    assert "pgBackRest dropped" in db1.check_output("journalctl -q -o cat -t pgbackrest-archive-watch -p err")


def test_converge_never_reinitialises_or_reseeds(db1, db2):
    """Guard: a routine run on existing clusters keeps them (same system identifier, same rows)."""
    ids = {h: h.check_output(f"runuser -u postgres -- {PG}/pg_controldata /var/lib/postgresql/15/main | grep 'system identifier'")
           for h in (db1, db2)}
    local(db1, "CREATE TABLE IF NOT EXISTS guard (v int); INSERT INTO guard VALUES (42)", db=APP_DB)
    proc, seconds = playbook("database.yml", "--tags", "postgresql")
    assert proc.returncode == 0, proc.stdout[-5000:]
    for host, before in ids.items():
        after = host.check_output(f"runuser -u postgres -- {PG}/pg_controldata /var/lib/postgresql/15/main | grep 'system identifier'")
        assert after == before
    time.sleep(1)
    assert local(db2, "SELECT count(*) FROM guard", db=APP_DB) == "1"


def test_a_primary_that_disagrees_with_the_replica_or_the_repository_stops_the_run(db1, db2):
    """Guards of a rebuilt primary: with no cluster while the replica holds one, the run stops
    instead of starting an empty database beside the old one; with a cluster that is not the
    one the repository backs up (another system identifier), it stops too. Nothing is created."""
    data, service = "/var/lib/postgresql/15/main", "postgresql@15-main.service"
    db1.check_output(f"systemctl stop {service} && mv {data} {data}.aside")
    try:
        proc, _ = playbook("database.yml", "--tags", "postgresql")
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert f"{_name('db_primary')} is the primary in the inventory but has no cluster, while {_name('db_replica')} has one" \
            in proc.text, proc.text[-5000:]
        assert not db1.file(f"{data}/PG_VERSION").exists, "a cluster was created anyway"

        db1.check_output(f"runuser -u postgres -- {PG}/initdb -D {data} >/dev/null && systemctl start {service}")
        proc, _ = playbook("database.yml", "--tags", "postgresql", "--limit", _name("db_primary"))
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert "but stanza 'main' in the repository belongs to" in proc.text, proc.text[-5000:]
    finally:
        db1.check_output(f"systemctl stop {service}; rm -rf {data}; mv {data}.aside {data} && systemctl start {service}")
    assert local(db1, "SELECT pg_is_in_recovery()") == "f"
    assert _replays(db2, "SELECT count(*) FROM guard", "1")


def test_a_postgresql_conf_that_postgres_rejects_never_goes_live(db1):
    """A setting the argument spec lets through but PostgreSQL refuses: `postgres -C` fails on the
    candidate file, the run stops at that task, and the live file and server are untouched."""
    conf = "/etc/postgresql/15/main/postgresql.conf"
    before = db1.file(conf).sha256sum, local(db1, "SHOW work_mem")
    proc, _ = playbook("database.yml", "--tags", "postgresql", "--limit", _name("db_primary"),
                       "-e", json.dumps({"postgresql_settings": {"work_mem": "plenty"}}))
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert failed_task(proc.stdout, proc.stderr) == "postgresql : Write the start-up fence, pg_hba.conf and postgresql.conf (checked by postgres -C before it goes live)"
    assert (db1.file(conf).sha256sum, local(db1, "SHOW work_mem")) == before


def test_restore_refuses_a_primary_without_the_flag_and_keeps_unarchived_wal(db1, backup):
    """A running primary, then a stopped one, is not overwritten without restore_confirm_overwrite;
    with it, WAL the stopped primary never archived (the repository was away) is not deleted:
    the push fails, the run stops naming the choice, and the cluster is untouched."""
    local(db1, "CREATE TABLE IF NOT EXISTS untouched (v int); INSERT INTO untouched VALUES (1)", db=APP_DB)
    proc, _ = playbook("restore.yml")
    assert proc.returncode != 0
    assert "(running)" in proc.text and "restore_confirm_overwrite" in proc.text and "Nothing was changed" in proc.text, proc.text[-5000:]
    ready = "/var/lib/postgresql/15/main/pg_wal/archive_status/*.ready"
    backup.check_output("systemctl stop pgbackrest")
    try:
        local(db1, "INSERT INTO untouched VALUES (2)", db=APP_DB)
        local(db1, "SELECT pg_switch_wal()")
        for _ in range(20):  # the archiver tries, fails, and leaves the segment marked .ready
            if db1.run(f"ls {ready}").rc == 0:
                break
            time.sleep(0.5)
        db1.check_output("systemctl stop postgresql@15-main")
        proc, _ = playbook("restore.yml")
        assert proc.returncode != 0 and "(stopped)" in proc.text and "Nothing was changed" in proc.text, proc.text[-5000:]
        proc, _ = playbook("restore.yml", "-e", "restore_confirm_overwrite=true")
        assert proc.returncode != 0
        assert "could not be pushed" in proc.text and "restore_discard_unarchived_wal=true" in proc.text, proc.text[-5000:]
        assert db1.run(f"ls {ready}").rc == 0, "the unarchived WAL is gone"
    finally:
        backup.check_output("systemctl start pgbackrest")
        db1.check_output("systemctl start postgresql@15-main")
    assert local(db1, "SELECT count(*) FROM untouched", db=APP_DB) == "2"
    assert local(db1, "SELECT pg_is_in_recovery()") == "f"


def test_point_in_time_restore_brings_back_exactly_the_rows_before(db1, db2):
    local(db1, "CREATE TABLE pitr (id int PRIMARY KEY); INSERT INTO pitr SELECT generate_series(1, 1000)", db=APP_DB)
    time.sleep(1.5)
    target = local(db1, "SELECT now()")
    time.sleep(1.5)
    local(db1, "DELETE FROM pitr WHERE id > 10; INSERT INTO pitr VALUES (5000); DROP TABLE guard", db=APP_DB)
    # What an interrupted seed leaves (a partial copy) and two older moved-aside copies: the
    # re-seed discards the first and keeps only the newest copy (postgresql_reseed_keep: 1).
    db2.check_output("cd /var/lib/postgresql/15 && mkdir -p main.seeding/base main.reseed-20200101T000000Z "
                     "main.reseed-20200102T000000Z && echo partial > main.seeding/PG_VERSION")
    proc, seconds = playbook("restore.yml", "-e", "restore_confirm_overwrite=true", "-e", f"restore_target_time='{target}'")
    assert proc.returncode == 0, proc.stdout[-8000:]
    report("restore_playbook_pitr_incl_reseed_and_new_backup_s", round(seconds, 1))
    assert local(db1, "SELECT count(*), min(id), max(id) FROM pitr", db=APP_DB) == "1000|1|1000"
    assert local(db1, "SELECT count(*) FROM guard", db=APP_DB) == "1"
    assert local(db1, "SELECT pg_is_in_recovery()") == "f"
    # pg_amcheck: every table and B-tree index, heap against index.
    check = db1.run(f"PGOPTIONS='-c synchronous_commit=local' runuser -u postgres -- {PG}/pg_amcheck --all --heapallindexed --install-missing")
    assert check.rc == 0, check.stdout + check.stderr
    # The replica was re-seeded from the restored primary and streams again.
    for _ in range(30):
        if local(db2, "SELECT count(*) FROM pitr", db=APP_DB) == "1000":
            break
        time.sleep(1)
    assert local(db2, "SELECT count(*) FROM pitr", db=APP_DB) == "1000"
    assert local(db2, "SELECT pg_is_in_recovery()") == "t"
    aside = db2.check_output("ls -d /var/lib/postgresql/15/main.reseed-* /var/lib/postgresql/15/main.seeding 2>/dev/null; true").split()
    assert len(aside) == 1 and "main.reseed-2020" not in aside[0], f"expected only the newest moved-aside copy: {aside}"


# --- Failover (destroys the primary; last) -----------------------------------------------

def test_failover_loses_no_acknowledged_row(db1, db2, client):
    primary, replica = _address("db_primary"), _address("db_replica")
    rc, out = psql(client, primary, "CREATE TABLE ha (id int PRIMARY KEY)")
    assert rc == 0, out
    time.sleep(1)
    writer = ("i=0; while true; do i=$((i+1)); "
              f"{psql_cmd(primary, 'INSERT INTO ha VALUES ($i)')} >/dev/null 2>&1 && echo $i >> /root/acked; done")
    client.check_output(f"rm -f /root/acked; printf '%s\\n' {shlex.quote(writer)} > /root/djstack-writer.sh")
    client.check_output("nohup bash /root/djstack-writer.sh >/dev/null 2>&1 &")
    time.sleep(3)
    killed = time.monotonic()
    db1.check_output("systemctl kill --signal=SIGKILL postgresql@15-main.service")
    proc, playbook_seconds = playbook("failover.yml", "-e", "failover_mode=failover")
    assert proc.returncode == 0, proc.stdout[-8000:]
    for _ in range(60):
        rc, out = psql(client, replica, "INSERT INTO ha VALUES (-1)")
        if rc == 0:
            break
        time.sleep(0.5)
    writes_back = time.monotonic() - killed
    client.run("pkill -f djstack-writer.sh")
    assert rc == 0, out
    report("failover_playbook_s", round(playbook_seconds, 1))
    report("failover_kill_to_first_write_on_new_primary_s", round(writes_back, 1))
    assert writes_back < 30
    acked = [int(x) for x in client.check_output("cat /root/acked").split()]
    report("failover_rows_acknowledged_before_kill", len(acked))
    assert len(acked) > 10
    on_new = {int(x) for x in local(db2, "SELECT id FROM ha", db=APP_DB).split()}
    assert set(acked) <= on_new, f"lost acknowledged rows: {sorted(set(acked) - on_new)[:20]}"


def test_routine_run_refuses_when_inventory_disagrees(db1, db2):
    """Guard: after the failover, the inventory still says db1 primary / db2 replica: the role stops, changes nothing."""
    proc, _ = playbook("database.yml", "--tags", "postgresql", "--limit", _name("db_replica"))
    assert proc.returncode != 0
    assert "update the inventory" in proc.text, proc.text[-5000:]
    assert "changed=0" in proc.stdout
    assert local(db2, "SELECT pg_is_in_recovery()") == "f"
    print("\nMEASURED summary " + json.dumps(MEASURED))


def _replays(host, sql, expected, db=APP_DB, seconds=10):
    for _ in range(seconds * 4):
        if local(host, sql, db=db) == expected:
            return True
        time.sleep(0.25)
    return False
