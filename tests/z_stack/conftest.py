"""A whole lab of its own (names and subnet apart from the default lab), converged with site.yml.

STACK_LAB_NAME / STACK_LAB_NET choose them; KEEP_STACK=1 keeps the lab afterwards.
"""
import json
import os

import pytest
import testinfra

from helpers import ROOT, recap, run

STACK_LAB_NAME = os.environ.get("STACK_LAB_NAME", "djstack-test")
STACK_ENV = {
    "LAB_NAME": STACK_LAB_NAME,
    "LAB_NET_PREFIX": os.environ.get("STACK_LAB_NET", "10.231.9"),
    "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(ROOT / ".lab" / f"facts-{STACK_LAB_NAME}"),
}
MANAGED = ["edge1", "app1", "app2", "db1", "db2", "cache1", "mail1", "backup1"]


class Stack:
    def __init__(self):
        self.runs = {}

    def playbook(self, name, *args, check=True):
        proc = run(["ansible-playbook", *args], env=STACK_ENV, check=check)
        self.runs[name] = proc
        return proc

    def host(self, name):
        """A testinfra host reached through Ansible with the lab inventory (as the admin, like an operator)."""
        os.environ.update(STACK_ENV, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
        return testinfra.get_host(f"ansible://{name}?ansible_inventory={ROOT / 'inventories' / 'lab'}",
                                  force_ansible=True)

    def addresses(self):
        """Every inventory host's address, as Ansible renders it."""
        if not hasattr(self, "_addresses"):
            out = run(["ansible", "all", "-m", "ansible.builtin.debug", "-a", "var=ansible_host", "-o"],
                      env=STACK_ENV, check=True).stdout
            self._addresses = {line.split(" | ")[0]: json.loads(line.split(" => ", 1)[1])["ansible_host"]
                               for line in out.splitlines() if " => " in line}
        return self._addresses


@pytest.fixture(scope="session")
def stack():
    s = Stack()
    try:
        s.playbook("lab", "playbooks/lab.yml")
        s.playbook("converge", "site.yml")
        s.playbook("rerun", "site.yml")
        s.playbook("check", "site.yml", "--check", "--diff", check=False)
        yield s
    finally:
        if os.environ.get("KEEP_STACK") != "1":
            run(["ansible-playbook", "playbooks/lab.yml", "-e", "lab_state=absent"], env=STACK_ENV)



