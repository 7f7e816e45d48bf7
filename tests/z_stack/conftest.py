"""A whole lab of its own (names and subnet apart from the default lab), converged with site.yml.

STACK_LAB_NAME / STACK_LAB_NET choose them; KEEP_STACK=1 keeps the lab afterwards.
STACK_REUSE=1 (development only) runs the checks against a kept lab without converging it
again; the tests that inspect the playbook runs then fail.
"""
import json
import os
import re
import shlex

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
    if os.environ.get("STACK_REUSE") == "1":
        yield s
        return
    try:
        s.playbook("lab", "playbooks/lab.yml")
        s.playbook("converge", "site.yml")
        s.playbook("rerun", "site.yml")
        s.playbook("check", "site.yml", "--check", "--diff", check=False)
        yield s
    finally:
        if os.environ.get("KEEP_STACK") != "1":
            run(["ansible-playbook", "playbooks/lab.yml", "-e", "lab_state=absent"], env=STACK_ENV)





SITE = "www.djstack.test"
CA_ON_CLIENT = "/tmp/djstack-edge-ca.crt"
USER, PASSWORD = "edge-visitor", "edge-visitor-password-not-a-secret"


@pytest.fixture(scope="module")
def visitor(stack):
    """curl on client1 against https://SITE/ at edge1's address, verifying the lab CA.
    request(path or URL, *curl args, jar=cookie jar) -> (status, headers (lower-case names), body)."""
    ca = ROOT / ".lab" / "pki" / STACK_LAB_NAME / "ca.crt"
    run(["ansible", "client1", "-m", "ansible.builtin.copy", "-a", f"src={ca} dest={CA_ON_CLIENT} mode=0644"],
        env=STACK_ENV, check=True)
    client, edge = stack.host("client1"), stack.addresses()["edge1"]

    def request(path, *args, jar=None):
        url = path if path.startswith("http") else f"https://{SITE}{path}"
        cookies = f"-b {jar} -c {jar}" if jar else ""
        out = client.check_output(
            f"curl -sS -m 15 --cacert {CA_ON_CLIENT} --resolve {SITE}:443:{edge} --resolve {SITE}:80:{edge} "
            f"{cookies} -D /tmp/edge-h -o /tmp/edge-b -w '%{{http_code}}' {' '.join(args)} {shlex.quote(url)}"
            "; echo; cat /tmp/edge-h; echo; cat /tmp/edge-b")
        code, _, rest = out.partition("\n")
        head, _, body = rest.partition("\r\n\r\n")
        headers = {}
        for line in head.splitlines()[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(code), headers, body
    return request


@pytest.fixture(scope="module")
def app_user(stack):
    """A real user of the app (made with the app's own management command on app1); its name."""
    script = ("from django.contrib.auth import get_user_model; U = get_user_model(); "
              f"u = U.objects.filter(username='{USER}').first() or U(username='{USER}', email='{USER}@example.test'); "
              f"u.set_password('{PASSWORD}'); u.save()")
    stack.host("app1").check_output(f"sudo /usr/local/sbin/djdemo-manage shell -c {shlex.quote(script)}")
    return USER


def csrf_token(form):
    """Django's CSRF token from a rendered form."""
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
