"""The lab converged with site.yml: what an operator checks after bootstrap."""
import pytest
import yaml

from helpers import ROOT, recap, run, task_results
from conftest import MANAGED, SSH_BASE


def test_site_converges_every_host(stack):
    counts = recap(stack.runs["converge"].stdout, MANAGED)
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values()), counts


def test_second_run_changes_nothing(stack):
    assert stack.runs["rerun"].returncode == 0, stack.runs["rerun"].stdout[-20000:]
    counts = recap(stack.runs["rerun"].stdout, MANAGED)
    changed = {h: c["changed"] for h, c in counts.items() if c["changed"]}
    assert not changed, f"changed on a second run: {changed}\n{stack.runs['rerun'].stdout[-20000:]}"


def test_check_mode_runs_clean(stack):
    proc = stack.runs["check"]
    counts = recap(proc.stdout, MANAGED)
    assert proc.returncode == 0, proc.stdout[-20000:]
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), counts


@pytest.mark.parametrize("name", MANAGED)
def test_admin_logs_in_with_the_lab_key_and_has_sudo(stack, name):
    host = stack.host(name)
    assert host.check_output("id -un") == "ops"
    assert host.run("sudo -n id -u").stdout.strip() == "0"


@pytest.mark.parametrize("user,allowed", [("ops", True), ("root", False)])
def test_only_the_admin_logs_in_over_ssh(stack, user, allowed):
    """root holds the very key that bootstrapped the host, and is refused all the same."""
    proc = run(["ssh", *SSH_BASE, f"{user}@{stack.addresses()['db1']}", "true"])
    if allowed:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 255 and "Permission denied" in proc.stderr, proc.stderr


def test_ssh_is_closed_from_outside_the_admin_networks(stack):
    addresses = stack.addresses()
    # Every host probed at once (each dropped probe waits out its 3 s): "name rc" per line.
    probes = " ".join(f"(nc -z -w 3 {addresses[name]} 22; echo {name} $?) &" for name in MANAGED)
    out = stack.host("client1").check_output(f"{probes} wait")
    results = dict(line.split() for line in out.splitlines())
    assert sorted(results) == sorted(MANAGED), out
    answering = [name for name, rc in results.items() if rc == "0"]
    assert not answering, f"SSH answers the client host on {answering}"


def test_every_host_drops_inbound_by_default(stack):
    for name in MANAGED:
        ruleset = stack.host(name).check_output("sudo -n nft list chain inet djstack_filter input")
        assert "policy drop;" in ruleset, name


def test_a_stopped_and_disabled_service_is_started_and_enabled_again(stack):
    """The common role keeps its services enabled and running (one module run for all of them,
    library/djstack_units.py): the daily report's timer, disabled and stopped, comes back."""
    host = stack.host("app1")
    host.check_output("sudo systemctl disable --now djstack-pending.timer")
    proc = stack.playbook("services", "playbooks/bootstrap.yml", "--tags", "common", "--limit", "app1")
    task = "Keep sshd, the firewall, time synchronisation and the daily report enabled and running"
    assert task_results(proc.stdout, task) == {"app1": "changed"}, proc.stdout[-3000:]
    state = host.run("systemctl is-enabled djstack-pending.timer; systemctl is-active djstack-pending.timer")
    assert state.stdout.split() == ["enabled", "active"], state.stdout


def test_readme_adding_a_host_with_limit_runs_on_that_host_and_its_group(stack):
    """README "Adding a host": `site.yml --limit newhost,its-group`. For an app host that leaves
    localhost (the build play) out of the run; the release is named from the app's source
    instead, and the run passes, on those hosts only, changing nothing on a converged lab."""
    proc = stack.playbook("limit app2,app", "site.yml", "--limit", "app2,app", check=False)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    counts = recap(proc.stdout)
    assert set(counts) == {"app1", "app2"} and not any(c["changed"] for c in counts.values()), counts
    # roles/app/tasks/release_id.yml, once, from the first app host, on the controller.
    assert task_results(proc.stdout, "Remember the release id") == {"app1": "ok"}, proc.stdout[-5000:]


def test_lab_secrets_are_in_an_encrypted_vault(stack):
    vault = ROOT / "inventories" / "lab" / "group_vars" / "all" / "vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    names = run(["ansible-vault", "view", str(vault)], check=True).stdout
    keys = {line.split(":")[0] for line in names.splitlines() if ":" in line}
    assert {"vault_redis_app_password", "vault_redis_admin_password"} <= keys


def test_no_secret_appears_in_any_run_output(stack):
    vault = ROOT / "inventories" / "lab" / "group_vars" / "all" / "vault.yml"
    secrets = yaml.safe_load(run(["ansible-vault", "view", str(vault)], check=True).stdout)
    for name, proc in stack.runs.items():
        output = proc.stdout + proc.stderr
        leaked = [key for key, value in secrets.items() if str(value) in output]
        assert not leaked, f"the {name} run printed the value of {leaked}"
