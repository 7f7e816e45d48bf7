"""The production example is a working inventory (issue 23, item 1).

A copy of inventories/production gets what a user adds (a vault under an id of its own,
with throw-away secrets, and throw-away TLS files), and every role that site.yml runs on a
tier checks its input on each of the tier's hosts: the role's argument spec and its own
tasks/validate.yml, the checks that run before any change. The roles per tier are read from
site.yml and the playbooks it imports, so a role added to a tier is checked here too.
The hosts are never contacted (they point at a closed port): the checks run on the
controller. The lab runs the same files (ansible.cfg lists inventories/production/groups.yml
first), so every stack test converges these settings with the lab's overlay on top.
"""
import datetime
import ipaddress
import json
import re
import secrets
import shutil

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from helpers import ROOT, recap, run, task_results

# Facts of a Debian 12 host, so the roles' checks never gather them from a host.
FACTS = {"ansible_distribution": "Debian", "ansible_distribution_major_version": "12",
         "ansible_distribution_release": "bookworm", "ansible_memtotal_mb": 4096, "ansible_processor_vcpus": 2,
         "ansible_processor_nproc": 2, "ansible_virtualization_type": "kvm", "ansible_fqdn": "host.example.com",
         "ansible_hostname": "host", "ansible_python": {"version": {"major": 3, "minor": 11}},
         "ansible_architecture": "x86_64"}
# Any contact with a host fails fast and shows as unreachable.
NOWHERE = {"ansible_host": "127.0.0.1", "ansible_port": 9}
RELEASE = "1.0.0-0123456789ab"


def tier_roles():
    """[(hosts pattern, role)] for every role site.yml applies, from the playbooks themselves."""
    pairs = []

    def walk(playbook):
        for play in yaml.safe_load(playbook.read_text()) or []:
            imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
            if imported:
                walk(playbook.parent / imported)
                continue
            hosts = re.sub(r"\{\{.*default\('([^']+)'\).*\}\}", r"\1", play["hosts"])
            names = [r["role"] if isinstance(r, dict) else r for r in play.get("roles", [])]

            def included(tasks):
                for task in tasks or []:
                    for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
                        if key in task and "{{" not in task[key]["name"]:
                            names.append(task[key]["name"])
                    included(task.get("block"))
            for section in ("pre_tasks", "tasks", "post_tasks"):
                included(play.get(section))
            pairs.extend((hosts, name) for name in names if (hosts, name) not in pairs)
    walk(ROOT / "site.yml")
    return [(hosts, role) for hosts, role in pairs if hosts != "localhost"]


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_pem(path, key_path, key, cert, chain=()):
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *chain)))


def throwaway_tls(tls_dir, hosts, site_domain):
    """A throw-away CA, a certificate per host naming its address as the README asks (IP: and
    DNS:), and the site's full chain: the files group_vars name under files/tls/."""
    tls_dir.mkdir(parents=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("throw-away CA")).issuer_name(_name("throw-away CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (tls_dir / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def issue(cn, dns, ips):
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return key, cert

    for name, address in hosts.items():
        key, cert = issue(name, [name, address], [address])
        _write_pem(tls_dir / f"{name}.crt", tls_dir / f"{name}.key", key, cert)
    key, cert = issue(site_domain, [site_domain], [])
    _write_pem(tls_dir / f"{site_domain}.fullchain.pem", tls_dir / f"{site_domain}.key", key, cert, chain=[ca])


def throwaway_vault(inventory, password_file):
    """Every vault_* variable the example's group_vars name, with throw-away values, encrypted
    under the vault id `production` (README step 3), as a user's vault.yml."""
    names = set()
    for path in (inventory / "group_vars").rglob("*.yml"):
        names |= set(re.findall(r"\{\{\s*(vault_[a-z0-9_]+)", path.read_text()))
    assert names, "the example names no vault_* variable"
    dkim = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    values = {n: dkim if n.startswith("vault_opendkim_key_") else secrets.token_urlsafe(40) for n in sorted(names)}
    password_file.write_text(secrets.token_urlsafe(32))
    vault = inventory / "group_vars" / "all" / "vault.yml"
    vault.write_text(yaml.safe_dump(values))
    run(["ansible-vault", "encrypt", "--vault-id", f"production@{password_file}", "--encrypt-vault-id", "production",
         str(vault)], check=True)
    assert vault.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;production")
    return names


def copy_of_the_example(tmp_path, adapt=None):
    """A user's copy of inventories/production in tmp_path/inventory: `adapt(inventory)` edits it
    first (hosts, keys), then it gets a throw-away vault and, from the inventory as Ansible reads
    it (once), throw-away TLS files for its hosts and site. Returns (inventory, password file,
    the ansible-inventory listing)."""
    inventory = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories" / "production", inventory)
    if adapt:
        adapt(inventory)
    password_file = tmp_path / "vault-pass"
    throwaway_vault(inventory, password_file)
    listing = json.loads(run(["ansible-inventory", "-i", str(inventory), "--vault-id", f"production@{password_file}",
                              "--list"], check=True).stdout)
    hostvars = listing["_meta"]["hostvars"]
    throwaway_tls(inventory / "files" / "tls", {name: hv["private_ip"] for name, hv in hostvars.items()},
                  next(iter(hostvars.values()))["site_domain"])
    return inventory, password_file, listing


@pytest.fixture
def production(tmp_path):
    """A user's copy of the example: inventories/production plus the vault and TLS files."""
    inventory, password_file, listing = copy_of_the_example(tmp_path)
    hosts = {name: hv["private_ip"] for name, hv in listing["_meta"]["hostvars"].items()}
    assert len(hosts) >= 8, hosts
    build = tmp_path / "build"
    wheelhouse = build / RELEASE / "cp311-x86_64"  # the target of FACTS' Debian 12 host
    wheelhouse.mkdir(parents=True)
    (wheelhouse / "SHA256SUMS").write_text("")
    (wheelhouse / "release.json").write_text(json.dumps({"id": RELEASE, "python": "3.11", "arch": "x86_64", "glibc": "2.36"}))
    return {"inventory": inventory, "hosts": hosts, "listing": listing, "password_file": password_file, "build": build,
            "tmp": tmp_path}


def check_every_tier(production):
    """Run every tier role's checks on its hosts; returns the process and the expected checks."""
    plays, expected = [], []
    for hosts, role in tier_roles():
        tasks = [{"name": f"Argument spec of {role}", "ansible.builtin.validate_argument_spec": {
            "argument_spec": "{{ (lookup('ansible.builtin.file', '" + str(ROOT / "roles" / role / "meta" / "argument_specs.yml")
                             + "') | from_yaml).argument_specs.main.options }}"}}]
        if (ROOT / "roles" / role / "tasks" / "validate.yml").is_file():
            tasks.append({"name": f"Own checks of {role}", "ansible.builtin.include_role": {
                "name": role, "tasks_from": "validate.yml"}})
        tasks.append({"name": f"Input of {role} passed", "ansible.builtin.debug": {"msg": "passed"}})
        plays.append({"name": f"{role} on {hosts}", "hosts": hosts, "gather_facts": False, "tasks": tasks})
        expected.append((hosts, role))
    playbook = production["tmp"] / "check.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    extra = production["tmp"] / "extra.json"
    extra.write_text(json.dumps({**FACTS, **NOWHERE, "app_release_id": RELEASE,
                                 "app_build_dir": str(production["build"])}))
    proc = run(["ansible-playbook", "-i", str(production["inventory"]), "--vault-id",
                f"production@{production['password_file']}", "-e", f"@{extra}", str(playbook)], timeout=600)
    return proc, expected


def test_every_tier_accepts_the_production_example(production):
    proc, expected = check_every_tier(production)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    counts = recap(proc.stdout, production["hosts"])
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values()), counts
    listing = production["listing"]

    def members(group):
        data = listing.get(group, {})
        return set(data.get("hosts", [])).union(*[members(c) for c in data.get("children", [])])
    for hosts, role in expected:
        wanted = set().union(*[members(g) for g in hosts.split(":")])
        if hosts == "client":  # the lab's mail sink: production has no client group
            assert not wanted
            continue
        passed = task_results(proc.stdout, f"Input of {role} passed")
        assert wanted and all(passed.get(h) == "ok" for h in wanted), (hosts, role, wanted, passed)
    # Every role of every tier was checked: the roles site.yml applies to the managed hosts.
    assert {r for _, r in expected} >= {"common", "redis", "memcached", "postgresql", "pgbackrest",
                                        "opendkim", "postfix", "app", "varnish", "nginx"}


@pytest.mark.parametrize("remove,expected", [
    ("app.yml", "missing required arguments: app_db_host, app_db_password, app_secret_key"),
    ("all/site.yml", "site_domain"),
], ids=["without-app-settings", "without-site-name"])
def test_a_missing_setting_is_named(production, remove, expected):
    """The check above fails when the example lacks what issue 23 found missing."""
    (production["inventory"] / "group_vars" / remove).unlink()
    proc, _ = check_every_tier(production)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and expected in output, output[-6000:]
    assert all(c["unreachable"] == 0 for c in recap(proc.stdout).values()), output[-6000:]
