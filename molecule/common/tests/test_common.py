"""What an operator checks on a freshly hardened host."""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[1]
ROOT = SCENARIO.parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import failed_task, recap, task_results  # noqa: E402  (the project's shared test helpers)


def sshd_effective(host):
    out = host.check_output("sshd -T -C user=tester,host=x,addr=127.0.0.1")
    conf = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        conf[key] = value
    return conf


def test_sshd_effective_settings(host):
    conf = sshd_effective(host)
    assert conf["permitrootlogin"] == "no"
    assert conf["passwordauthentication"] == "no"
    assert conf["kbdinteractiveauthentication"] == "no"
    assert conf["authenticationmethods"] == "publickey"
    assert conf["allowgroups"] == "admins"
    assert conf["x11forwarding"] == "no"
    for weak in ("cbc", "3des", "arcfour"):
        assert weak not in conf["ciphers"]
    assert "sha1" not in conf["macs"]
    assert "group1-sha1" not in conf["kexalgorithms"]


def ssh_local(host, user, command="true", extra=""):
    return host.run(
        "ssh -i /root/id_test -o BatchMode=yes -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile=/dev/null {extra} {user}@127.0.0.1 {command}"
    )


def test_admin_logs_in_with_key_and_uses_sudo(host):
    result = ssh_local(host, "tester", "sudo -n id -u")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_root_is_refused_even_with_an_authorised_key(host):
    assert host.file("/root/.ssh/authorized_keys").exists
    result = ssh_local(host, "root")
    assert result.rc == 255
    assert "Permission denied" in result.stderr


def test_passwords_are_not_offered(host):
    result = ssh_local(host, "tester", extra="-o PreferredAuthentications=password,keyboard-interactive")
    assert result.rc == 255
    assert "Permission denied (publickey)" in result.stderr


def test_removed_admin_is_gone(host):
    assert not host.user("leaver").exists
    assert "admins" in host.user("tester").groups


def test_sudoers_drop_in_is_valid(host):
    f = host.file("/etc/sudoers.d/50-admins")
    assert f.mode == 0o440
    assert "%admins ALL=(ALL:ALL) NOPASSWD: ALL" in f.content_string
    assert host.run("visudo -c").rc == 0


def test_ruleset_is_loaded_with_policy_drop(host):
    ruleset = host.check_output("nft list table inet djstack_filter")
    assert "hook input priority filter; policy drop;" in ruleset
    assert "hook forward priority filter; policy drop;" in ruleset
    assert "ip saddr 192.0.2.0/24 tcp dport 22 accept" in ruleset
    assert "ip6 saddr 2001:db8::/32 tcp dport 22 accept" in ruleset
    assert "ip saddr 198.51.100.0/24 tcp dport 8080 accept" in ruleset
    # A rule for another group opens nothing here.
    assert "9999" not in ruleset
    assert host.service("nftables").is_enabled


def test_ssh_port_is_closed_to_the_controller(host):
    """The controller is not in common_admin_networks: its SYN must be dropped."""
    address = host.interface("eth0").addresses[0]
    with pytest.raises((socket.timeout, TimeoutError, ConnectionRefusedError, OSError)):
        socket.create_connection((address, 22), timeout=3).close()
    # ...while sshd itself is up and answers on loopback.
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_time_journald_and_upgrades(host):
    assert host.service("systemd-timesyncd").is_enabled
    assert "NTP=ntp1.example.net ntp2.example.net" in host.file(
        "/etc/systemd/timesyncd.conf.d/50-ntp.conf").content_string
    journald = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=500M" in journald
    auto = host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in auto
    dry = host.run("unattended-upgrade --dry-run -v 2>&1 | head -20")
    assert "Allowed origins are:" in dry.stdout
    assert "Debian-Security" in dry.stdout


def test_stateful_services_are_held_from_unattended_upgrades_and_pending_work_is_reported(host):
    """Unattended upgrades never install the packages whose scripts restart a stateful service;
    the daily report (and the login message) names a pending reboot."""
    dry = host.run("unattended-upgrade --dry-run -v 2>&1 | head -30")
    assert "Initial blacklist: postgresql redis varnish memcached pgbackrest" in dry.stdout, dry.stdout
    assert host.service("djstack-pending.timer").is_enabled
    host.run_expect([0], "echo linux-image-amd64 > /run/reboot-required.pkgs && touch /run/reboot-required")
    try:
        host.run_expect([0], "systemctl start djstack-pending.service")
        journal = host.check_output("journalctl -t djstack-pending --no-pager -n 5")
        assert "reboot required since" in journal and "linux-image-amd64" in journal, journal
        assert "reboot required since" in host.check_output("run-parts /etc/update-motd.d")
    finally:
        host.run("rm -f /run/reboot-required /run/reboot-required.pkgs")


def test_a_ruleset_nft_rejects_never_goes_live(host):
    """A firewall rule that passes the argument spec but is no valid nftables (a network that is
    no address): `nft -c` refuses the file, the run stops there, and the loaded ruleset and the
    file on disk stay as they were."""
    before = host.check_output("nft list table inet djstack_filter"), host.file("/etc/nftables.conf").sha256sum
    bad = [{"name": "typo", "group": "all", "port": 8081, "from_networks": ["198.51.100.0/244"]}]
    proc = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / "converge.yml"),
         "-e", json.dumps({"common_firewall_rules": bad})],
        cwd=ROOT, env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles")},
        capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert failed_task(proc.stdout, proc.stderr) == (
        "common : Write sudoers, sshd_config, the nftables ruleset, time, journald and upgrade settings "
        "(each checked before it goes live)")
    assert "/etc/nftables.conf: failed to validate, nothing was changed" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    assert (host.check_output("nft list table inet djstack_filter"), host.file("/etc/nftables.conf").sha256sum) == before


def converge(*args):
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / "converge.yml"), *args],
        cwd=ROOT, env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True, text=True, timeout=600)


def test_admin_accounts_drifted_by_hand_are_put_back_and_left_alone_once_right(host):
    """The role skips its group/user/key module runs when a read-only probe finds every account as
    listed: a changed shell, a key added by hand and a removed admin back on the host must each
    still be found and undone, and the next run must find nothing to do."""
    key_file = "/home/tester/.ssh/authorized_keys"
    listed_keys = host.file(key_file).content_string
    host.run_expect([0], "chsh -s /bin/sh tester && useradd -m leaver && echo "
                         f"'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHandAddedKeyHandAddedKeyHandAddedKey000 hand' >> {key_file}")
    first = converge()
    assert first.returncode == 0, first.stdout[-3000:]
    (name,) = recap(first.stdout)  # the scenario's one host
    for task in ("Manage the admin accounts", "Authorise exactly the listed SSH keys"):
        assert task_results(first.stdout, task) == {name: "changed"}, (task, first.stdout[-3000:])
    assert host.user("tester").shell == "/bin/bash"
    assert not host.user("leaver").exists
    assert host.file(key_file).content_string == listed_keys
    second = converge("-v")
    assert second.returncode == 0 and recap(second.stdout)[name]["changed"] == 0, second.stdout[-3000:]
    assert re.search(r'"?stdout"?: "?as wanted', second.stdout), second.stdout[-3000:]
    for task in ("Manage the admin accounts", "Authorise exactly the listed SSH keys"):
        assert task_results(second.stdout, task).get(name, "skipping") == "skipping", (task, second.stdout[-3000:])
