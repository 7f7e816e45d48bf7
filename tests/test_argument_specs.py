"""Bad input fails before anything changes, with a message naming the variable.

The role runs against a host that cannot be reached: if validation let bad input
through, the first real task would report the host unreachable instead.
"""
import json
import re
from functools import lru_cache

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from helpers import ROOT, recap, run

GOOD_COMMON = {
    "common_admin_users": [{"name": "ops", "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoodKeyForTests ops"]}],
    "common_admin_networks": ["192.0.2.0/24"],
}

GOOD_APP = {"app_secret_key": "s" * 10 + "ecret-key-for-tests-0123456789abcdef", "app_db_host": "192.0.2.21",
            "app_db_password": "d" * 20, "app_redis_password": "r" * 20, "app_release_id": "1.0.0-000000000000"}

# The facts the app role gathers before its checks that need them (the harness host is unreachable).
FACTS = {"ansible_processor_vcpus": 2, "ansible_virtualization_type": "docker"}

GOOD_REDIS = {"redis_admin_password": "a" * 20, "redis_app_password": "b" * 20}

# Any controller file stands in for a certificate: validation only checks it exists.
_SOME_FILE = str(ROOT / "ansible.cfg")
GOOD_POSTGRESQL = {
    "postgresql_replication_role": "primary",
    "postgresql_app_password": "c" * 20,
    "postgresql_replication_password": "d" * 20,
    "postgresql_listen_address": "192.0.2.21",
    "postgresql_tls_cert_src": _SOME_FILE, "postgresql_tls_key_src": _SOME_FILE, "postgresql_tls_ca_src": _SOME_FILE,
}
GOOD_PGBACKREST = {"pgbackrest_cipher_pass": "e" * 24, "pgbackrest_tls_cert_src": _SOME_FILE,
                   "pgbackrest_tls_key_src": _SOME_FILE, "pgbackrest_tls_ca_src": _SOME_FILE}

GOOD_NGINX = {"site_domain": "www.example.test", "nginx_tls_cert_src": _SOME_FILE, "nginx_tls_key_src": _SOME_FILE}
GOOD_VARNISH = {"site_domain": "www.example.test", "varnish_backends": [{"name": "app1", "host": "192.0.2.11", "port": 8000}],
                "varnish_purge_listen_address": "192.0.2.10"}


@lru_cache(maxsize=None)
def _rsa_pem(bits):
    """A throw-away RSA key made at test time (never a committed private key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _dkim_domains(bits=2048, **item):
    return [{"name": "example.test", "selector": "mail2026", "private_key": _rsa_pem(bits), **item}]


def _without(good, name):
    return {k: v for k, v in good.items() if k != name}


CASES = [
    # (role, variables, text the error must contain)
    ("common", {**GOOD_COMMON, "common_admin_users": "ops"}, "common_admin_users"),
    ("common", {**GOOD_COMMON, "common_admin_users": [{"name": "ops", "ssh_key": ["x"]}]}, "ssh_key"),
    ("common", {k: v for k, v in GOOD_COMMON.items() if k != "common_admin_networks"},
     "missing required arguments: common_admin_networks"),
    ("common", {**GOOD_COMMON, "common_firewall_rules": [{"name": "x", "group": "all", "port": 1, "proto": "icmpx",
                                                          "from_networks": ["0.0.0.0/0"]}]}, "proto"),
    ("common", {**GOOD_COMMON, "common_sshd_port": "twenty-two"}, "common_sshd_port"),
    ("common", {**GOOD_COMMON, "common_firewall_rules": [{"name": "open-to-nobody", "group": "all", "port": 8080}]},
     "open-to-nobody"),
    ("common", {**GOOD_COMMON, "common_firewall_rules": [
        {"name": "to-a-group-nobody-knows", "group": "all", "port": 8080, "from_groups": ["nosuchgroup"]}]},
     "to-a-group-nobody-knows"),
    ("common", {**GOOD_COMMON, "common_admin_users": [{"name": "ops", "state": "absent"}]}, "common_admin_users"),
    ("lab", {"lab_state": "exploded"}, "lab_state"),
    ("packages", {"packages_for": "a role"}, "missing required arguments: packages_names"),
    ("packages", {"packages_for": "a role", "packages_names": "nginx", "packages_cache_valid_time": "an hour"},
     "packages_cache_valid_time"),
    ("redis", {"redis_admin_password": "x" * 20}, "missing required arguments: redis_app_password"),
    ("redis", {**GOOD_REDIS, "redis_mode": "store"}, "redis_mode"),
    ("redis", {**GOOD_REDIS, "redis_persistence": "both"}, "redis_persistence"),
    ("memcached", {"memcached_memory_mb": "lots"}, "memcached_memory_mb"),
    ("app", {**GOOD_APP, "app_server": "waitress"}, "app_server"),
    ("app", {k: v for k, v in GOOD_APP.items() if k != "app_secret_key"}, "missing required arguments: app_secret_key"),
    ("app", {**GOOD_APP, **FACTS, "app_release_id": "0.0.0-notbuilt"}, "app_release_id '0.0.0-notbuilt' is not a built release"),
    ("app", {**GOOD_APP, "app_cache_backend": "redis", "app_redis_password": ""}, "app_redis_password is required"),
    # 13 workers x 4 threads x 2 aliases = 104 connections: more than the default 100.
    ("app", {**GOOD_APP, **FACTS, "app_workers": 13, "app_db_replica_hosts": ["192.0.2.22"]},
     "The app tier can open 104 connections to the primary"),
    ("postgresql", {**GOOD_POSTGRESQL, "postgresql_replication_role": "leader"}, "postgresql_replication_role"),
    ("postgresql", _without(GOOD_POSTGRESQL, "postgresql_app_password"),
     "missing required arguments: postgresql_app_password"),
    ("postgresql", _without(GOOD_POSTGRESQL, "postgresql_replication_password"),
     "missing required arguments: postgresql_replication_password"),
    # The harness's inventory has no db_primary group: a replica there has no primary.
    ("postgresql", {**GOOD_POSTGRESQL, "postgresql_replication_role": "replica"}, "postgresql_primary_host"),
    ("postgresql", {**GOOD_POSTGRESQL, "postgresql_app_password": "short"},
     "postgresql_app_password, postgresql_replication_password"),
    ("postgresql", {**GOOD_POSTGRESQL, "postgresql_tls_cert_src": "/nonexistent/db1.crt"}, "postgresql_tls_cert_src"),
    ("pgbackrest", _without(GOOD_PGBACKREST, "pgbackrest_cipher_pass"), "missing required arguments: pgbackrest_cipher_pass"),
    ("pgbackrest", {**GOOD_PGBACKREST, "pgbackrest_repositories": [{"type": "s3", "path": "/x", "bucket": "b"}]},
     "pgbackrest_repositories[0] (s3) needs bucket, endpoint, region, key and key_secret"),
    ("pgbackrest", {**GOOD_PGBACKREST, "pgbackrest_repositories": [{"type": "gcs", "path": "/x"}]},
     "pgbackrest_repositories"),
    ("pgbackrest", {**GOOD_PGBACKREST, "pgbackrest_phase": "stanza"}, "pgbackrest_phase"),
    # No `backup` group in the harness's inventory: no repository host.
    ("pgbackrest", GOOD_PGBACKREST, "pgbackrest_repo_host"),
    ("postfix", {"postfix_bind_address": "0.0.0.0"}, "postfix_bind_address"),
    ("postfix", {"postfix_relay_client_networks": ["0.0.0.0/0"]}, "postfix_relay_client_networks"),
    ("postfix", {"postfix_smtpd_tls_security_level": "none"}, "postfix_smtpd_tls_security_level"),
    ("postfix", {"postfix_message_size_limit": "huge"}, "postfix_message_size_limit"),
    ("postfix", {"postfix_tls_cert_src": _SOME_FILE}, "postfix_tls_cert_src and postfix_tls_key_src"),
    ("postfix", {"postfix_transport_override": "sink.example"}, "postfix_transport_override"),
    # DKIM: no domain at all, a domain without a name, an empty list, a key below
    # 2048 bits, something that is not a key, a malformed selector.
    ("opendkim", {}, "missing required arguments: opendkim_domains"),
    ("opendkim", {"opendkim_domains": [{"selector": "mail2026", "private_key": "x"}]}, "missing required arguments: name"),
    ("opendkim", {"opendkim_domains": []}, "opendkim_domains must list at least one signing domain"),
    ("opendkim", {"opendkim_domains": _dkim_domains(1024)}, "the key of example.test has 1024 bits"),
    ("opendkim", {"opendkim_domains": _dkim_domains(private_key="not a key")},
     "the private_key of example.test is not a readable private key"),
    ("opendkim", {"opendkim_domains": _dkim_domains(selector="Mail 2026")}, "with a selector of lowercase letters"),
    ("opendkim", {"opendkim_domains": _dkim_domains(), "opendkim_dmarc_policy": "none"}, "opendkim_dmarc_policy"),
    ("nginx", {}, "With nginx_tls_source file, nginx_tls_cert_src"),
    ("nginx", _without(GOOD_NGINX, "site_domain"), "The site has no name: set site_domain"),
    ("varnish", _without(GOOD_VARNISH, "site_domain"), "The site has no name for the health probe"),
    ("nginx", {**GOOD_NGINX, "nginx_tls_key_src": "/nonexistent/edge1.key"}, "nginx_tls_key_src"),
    ("nginx", {**GOOD_NGINX, "nginx_tls_protocols": ["TLSv1.1", "TLSv1.2"]}, "nginx_tls_protocols"),
    ("nginx", {**GOOD_NGINX, "nginx_tls_protocols": []}, "nginx_tls_protocols at least one"),
    ("nginx", {**GOOD_NGINX, "nginx_tls_source": "letsencrypt"}, "nginx_tls_source"),
    ("nginx", {"nginx_tls_source": "acme"}, "nginx_acme_email"),
    ("nginx", {**GOOD_NGINX, "nginx_allowed_methods": ["GET", "PURGE"]}, "without PURGE or BAN"),
    ("nginx", {**GOOD_NGINX, "nginx_client_max_body_size": "ten megabytes"}, "nginx_client_max_body_size"),
    # The harness's inventory has no `app` group: no backends.
    ("varnish", {}, "varnish_backends is empty"),
    ("varnish", {**GOOD_VARNISH, "varnish_backends": []}, "varnish_backends is empty"),
    ("varnish", {**GOOD_VARNISH, "varnish_backends": [{"host": "192.0.2.11"}]}, "name"),
    ("varnish", {**GOOD_VARNISH, "varnish_storage_size": "lots"}, "varnish_storage_size"),
    ("varnish", {**GOOD_VARNISH, "varnish_storage_percent": "half"}, "varnish_storage_percent"),
    ("varnish", {**GOOD_VARNISH, "varnish_purge_allowed": ["0.0.0.0/0"]}, "varnish_purge_allowed"),
    ("varnish", {**GOOD_VARNISH, "varnish_backends": [{"name": "std", "host": "192.0.2.11"}]}, "must be distinct and not one of"),
    ("varnish", {**GOOD_VARNISH, "varnish_grace": "six hours"}, "durations such as"),
]


def _batch(index):
    """The cases that share one playbook run: a role's cases each on a host of its own, except
    the app role's, whose checks add up what every host of the play asks of the database."""
    role = CASES[index][0]
    return (role, index) if role == "app" else (role,)


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """One playbook run per batch (one Ansible start for many cases): each case is an unreachable
    host holding the case's variables, which includes the role. {case index: (the host's results
    in the order they ran, its stats)}, read from the json callback."""
    batches = {}
    for index in range(len(CASES)):
        batches.setdefault(_batch(index), []).append(index)
    found = {}
    for indices in batches.values():
        tmp = tmp_path_factory.mktemp("bad-input")
        (tmp / "host_vars").mkdir()
        for i in indices:
            (tmp / "host_vars" / f"case{i}.json").write_text(json.dumps(CASES[i][1]))
        (tmp / "inventory.ini").write_text("".join(
            f"case{i} ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody\n"
            for i in indices))
        (tmp / "play.yml").write_text(
            f"- hosts: all\n  gather_facts: false\n  roles:\n    - role: {CASES[indices[0]][0]}\n")
        proc = run(["ansible-playbook", "-i", str(tmp / "inventory.ini"), str(tmp / "play.yml")],
                   env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
        report, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
        results = {}
        for play in report["plays"]:
            for task in play["tasks"]:
                for host, result in task["hosts"].items():
                    results.setdefault(host, []).append((task["task"]["name"], result))
        for i in indices:
            found[i] = (results.get(f"case{i}", []), report["stats"].get(f"case{i}"), proc.stderr)
    return found


@pytest.mark.parametrize("role,variables,expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_fails_before_any_change(bad_input_runs, role, variables, expected, request):
    """The case's host stops at a failed check whose message names the variable: nothing
    changed, nothing reached the host."""
    results, stats, stderr = bad_input_runs[request.node.callspec.indices["role"]]
    failed = [(name, result) for name, result in results if result.get("failed")]
    assert failed, (results, stderr[-3000:])
    # The task's name counts: a check whose result is censored (no_log) names the variable there.
    assert expected in failed[-1][0] + json.dumps(failed[-1][1]), failed[-1]
    assert (stats["failures"], stats["changed"], stats["unreachable"]) == (1, 0, 0), (stats, results)


def test_no_key_material_in_the_output_of_a_refused_key(tmp_path):
    """The 1024-bit case fails naming the size, and the key itself never shows."""
    key = _rsa_pem(1024)
    (tmp_path / "inventory.ini").write_text(
        "target ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody\n")
    (tmp_path / "vars.json").write_text(json.dumps({"opendkim_domains": _dkim_domains(1024)}))
    (tmp_path / "play.yml").write_text("- hosts: target\n  gather_facts: false\n  roles:\n    - role: opendkim\n")
    proc = run(["ansible-playbook", "-v", "-i", str(tmp_path / "inventory.ini"), "-e", f"@{tmp_path / 'vars.json'}",
                str(tmp_path / "play.yml")])
    output = proc.stdout + proc.stderr
    assert "1024 bits" in output, output
    body = "".join(key.strip().splitlines()[1:-1])
    assert "PRIVATE KEY" not in output and not any(body[i:i + 40] in output.replace("\n", "") for i in range(0, len(body) - 40, 40))


@pytest.mark.parametrize("role,variables", [
    ("common", GOOD_COMMON), ("nginx", GOOD_NGINX), ("varnish", GOOD_VARNISH),
    ("opendkim", {"opendkim_domains": _dkim_domains(2048)}), ("postfix", {}),
], ids=["common", "nginx", "varnish", "opendkim", "postfix"])
def test_good_input_passes_validation(tmp_path, role, variables):
    """The same harness with valid input gets past validation (to the unreachable host)."""
    (tmp_path / "inventory.ini").write_text(
        "target ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody\n")
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text(f"- hosts: target\n  gather_facts: false\n  roles:\n    - role: {role}\n")
    proc = run(["ansible-playbook", "-i", str(tmp_path / "inventory.ini"), "-e", f"@{tmp_path / 'vars.json'}",
                str(tmp_path / "play.yml")])
    assert recap(proc.stdout)["target"]["unreachable"] == 1, proc.stdout


@pytest.mark.parametrize("variables,expected", [
    ({"opendkim_domains": _dkim_domains(1024)}, "the key of example.test has 1024 bits"),
    ({"opendkim_domains": _dkim_domains(2048), "postfix_bind_address": "0.0.0.0"}, "postfix_bind_address"),
], ids=["dkim-key-1024", "postfix-after-good-dkim"])
def test_mail_playbook_checks_every_role_before_any_change(tmp_path, variables, expected):
    """playbooks/mail.yml checks both roles' input before either touches the host."""
    (tmp_path / "inventory.ini").write_text(
        "[mail]\ntarget ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody\n")
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    proc = run(["ansible-playbook", "-i", str(tmp_path / "inventory.ini"), "-e", f"@{tmp_path / 'vars.json'}",
                str(ROOT / "playbooks" / "mail.yml")])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and expected in output, output
    counts = recap(proc.stdout)["target"]
    assert counts["failed"] == 1 and counts["changed"] == 0 and counts["unreachable"] == 0, output


@pytest.mark.parametrize("playbook,group,extra,expected", [
    ("backup.yml", "backup", ["-e", "backup_type=weekly"], "pgbackrest_backup_type"),
    ("restore.yml", "db_primary", ["-e", "restore_confirm_overwrite=perhaps"], "pgbackrest_restore_confirm_overwrite"),
    ("failover.yml", "db", ["-e", "failover_mode=sideways"], "failover_mode must be switchover, failover or rejoin"),
], ids=["backup-type", "restore-flag", "failover-mode"])
def test_procedure_playbooks_refuse_bad_input_before_any_change(tmp_path, playbook, group, extra, expected):
    """The ops playbooks hand their input to the roles' procedure entry points, whose argument
    specs (or the playbook's own check of the request) refuse it before any task reaches the host."""
    (tmp_path / "inventory.ini").write_text(
        f"[{group}]\ntarget ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody\n"
        + ("[db]\nother ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody\n"
           "[db_replica]\nother\n[db_primary]\ntarget\n" if group == "db" else ""))
    proc = run(["ansible-playbook", "-i", str(tmp_path / "inventory.ini"), *extra, str(ROOT / "playbooks" / playbook)])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and expected in output, output
    counts = recap(proc.stdout)["target"]
    assert counts["failed"] == 1 and counts["changed"] == 0 and counts["unreachable"] == 0, output


def _cert_naming(tmp_path, *names):
    """A throw-away self-signed certificate whose subjectAltName lists `names` (DNS:x, IP:x)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "target")])
    sans = [x509.IPAddress(ipaddress.ip_address(n[3:])) if n.startswith("IP:") else x509.DNSName(n[4:]) for n in names]
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(key, hashes.SHA256()))
    path = tmp_path / "target.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


@pytest.mark.parametrize("debian,passes", [("12", False), ("13", True)])
def test_pgbackrest_refuses_a_certificate_without_the_address_peers_use(tmp_path, debian, passes):
    """Peers reach a host's pgBackRest server at its private address (no DNS). A certificate with
    that address as an IP entry only is refused on Debian 12 (pgBackRest 2.45 checks DNS entries
    only) before the host is contacted, naming the entry to add; Debian 13's 2.55 accepts it."""
    (tmp_path / "inventory.ini").write_text(
        "[db]\ntarget ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody private_ip=192.0.2.21\n"
        "[backup]\nbackup1 ansible_host=127.0.0.1 ansible_port=9 private_ip=192.0.2.51\n")
    variables = {**GOOD_PGBACKREST, "pgbackrest_tls_cert_src": _cert_naming(tmp_path, "DNS:target", "IP:192.0.2.21"),
                 "ansible_distribution": "Debian", "ansible_distribution_major_version": debian}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text("- hosts: target\n  gather_facts: false\n  roles:\n    - role: pgbackrest\n")
    proc = run(["ansible-playbook", "-i", str(tmp_path / "inventory.ini"), "-e", f"@{tmp_path / 'vars.json'}",
                str(tmp_path / "play.yml")])
    output = proc.stdout + proc.stderr
    counts = recap(proc.stdout)["target"]
    if passes:
        assert counts["unreachable"] == 1 and counts["failed"] == 0, output
    else:
        assert counts["failed"] == 1 and counts["changed"] == 0 and counts["unreachable"] == 0, output
        assert "reach target's pgBackRest server as '192.0.2.21'" in output and "Add DNS:192.0.2.21" in output, output


def test_check_mode_names_a_release_not_built_and_stops_there(tmp_path):
    """README step 5: `--check` before a release is built says so and ends the app play for the
    host (nothing fails, the host is never contacted: the stop comes before any host task)."""
    (tmp_path / "inventory.ini").write_text(
        "target ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody\n")
    (tmp_path / "vars.json").write_text(json.dumps({**GOOD_APP, **FACTS, "app_release_id": "9.9.9-notbuilt0000",
                                                    "app_build_dir": str(tmp_path / "build")}))
    (tmp_path / "play.yml").write_text("- hosts: target\n  gather_facts: false\n  roles:\n    - role: app\n")
    proc = run(["ansible-playbook", "--check", "-i", str(tmp_path / "inventory.ini"), "-e", f"@{tmp_path / 'vars.json'}",
                str(tmp_path / "play.yml")])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Check mode: target cannot stage release 9.9.9-notbuilt0000: it is not built." in output, output
    counts = recap(proc.stdout)["target"]
    assert counts["failed"] == 0 and counts["unreachable"] == 0, output


def test_every_call_of_an_entry_point_runs_its_argument_spec():
    """Ansible validates an entry point only when tasks_from is its exact name: `tasks_from:
    opening.yml` loads the same file but skips the spec of `opening` without a word. Every
    call in the project names the entry point, and every entry point has its tasks file."""
    problems = []
    for spec_file in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        role = spec_file.parent.parent
        for entry in yaml.safe_load(spec_file.read_text())["argument_specs"]:
            if not (role / "tasks" / f"{entry}.yml").exists():
                problems.append(f"{role.name}: entry point {entry} has no tasks/{entry}.yml")
    calls = re.compile(r"name: (\w+)\s+tasks_from: ([\w.]+)")
    for path in [*ROOT.glob("*.yml"), *ROOT.glob("playbooks/**/*.yml"), *ROOT.glob("roles/**/*.yml"),
                 *ROOT.glob("molecule/**/*.yml")]:
        for role, tasks_from in calls.findall(path.read_text()):
            specs = ROOT / "roles" / role / "meta" / "argument_specs.yml"
            entries = yaml.safe_load(specs.read_text())["argument_specs"] if specs.exists() else {}
            if tasks_from.removesuffix(".yml") in entries and tasks_from not in entries:
                problems.append(f"{path.relative_to(ROOT)}: tasks_from {tasks_from} skips the spec of {tasks_from[:-4]}")
    assert not problems, "\n".join(problems)
