"""Bad input fails before anything changes, with a message naming the variable.

The role runs against a host that cannot be reached: if validation let bad input
through, the first real task would report the host unreachable instead.
"""
import json

import pytest

from helpers import ROOT, recap, run

GOOD_COMMON = {
    "common_admin_users": [{"name": "ops", "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoodKeyForTests ops"]}],
    "common_admin_networks": ["192.0.2.0/24"],
}

GOOD_APP = {"app_secret_key": "s" * 10 + "ecret-key-for-tests-0123456789abcdef", "app_db_host": "192.0.2.21",
            "app_db_password": "d" * 20, "app_redis_password": "r" * 20, "app_release_id": "1.0.0-000000000000"}

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

GOOD_NGINX = {"nginx_tls_cert_src": _SOME_FILE, "nginx_tls_key_src": _SOME_FILE}
GOOD_VARNISH = {"varnish_backends": [{"name": "app1", "host": "192.0.2.11", "port": 8000}],
                "varnish_purge_listen_address": "192.0.2.10"}


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
    ("common", {**GOOD_COMMON, "common_admin_users": [{"name": "ops", "state": "absent"}]}, "common_admin_users"),
    ("lab", {"lab_state": "exploded"}, "lab_state"),
    ("redis", {"redis_admin_password": "x" * 20}, "missing required arguments: redis_app_password"),
    ("redis", {**GOOD_REDIS, "redis_mode": "store"}, "redis_mode"),
    ("redis", {**GOOD_REDIS, "redis_persistence": "both"}, "redis_persistence"),
    ("memcached", {"memcached_memory_mb": "lots"}, "memcached_memory_mb"),
    ("app", {**GOOD_APP, "app_server": "waitress"}, "app_server"),
    ("app", {k: v for k, v in GOOD_APP.items() if k != "app_secret_key"}, "missing required arguments: app_secret_key"),
    ("app", {**GOOD_APP, "app_release_id": "0.0.0-notbuilt"}, "app_release_id '0.0.0-notbuilt' is not a built release"),
    ("app", {**GOOD_APP, "app_cache_backend": "redis", "app_redis_password": ""}, "app_redis_password is required"),
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
    # No `backup` group in the harness's inventory: no repository host.
    ("pgbackrest", GOOD_PGBACKREST, "pgbackrest_repo_host"),
    ("nginx", {}, "With nginx_tls_source file, nginx_tls_cert_src"),
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


@pytest.mark.parametrize("role,variables,expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_fails_before_any_change(tmp_path, role, variables, expected):
    (tmp_path / "inventory.ini").write_text(
        "target ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody\n")
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text(
        f"- hosts: target\n  gather_facts: false\n  roles:\n    - role: {role}\n")
    proc = run(["ansible-playbook", "-i", str(tmp_path / "inventory.ini"), "-e", f"@{tmp_path / 'vars.json'}",
                str(tmp_path / "play.yml")])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert expected in output, output
    counts = recap(proc.stdout)["target"]
    assert counts["failed"] == 1 and counts["changed"] == 0 and counts["unreachable"] == 0, output


@pytest.mark.parametrize("role,variables", [("common", GOOD_COMMON), ("nginx", GOOD_NGINX), ("varnish", GOOD_VARNISH)])
def test_good_input_passes_validation(tmp_path, role, variables):
    """The same harness with valid input gets past validation (to the unreachable host)."""
    (tmp_path / "inventory.ini").write_text(
        "target ansible_host=127.0.0.1 ansible_port=9 ansible_connection=ssh ansible_user=nobody\n")
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text(f"- hosts: target\n  gather_facts: false\n  roles:\n    - role: {role}\n")
    proc = run(["ansible-playbook", "-i", str(tmp_path / "inventory.ini"), "-e", f"@{tmp_path / 'vars.json'}",
                str(tmp_path / "play.yml")])
    assert recap(proc.stdout)["target"]["unreachable"] == 1, proc.stdout
