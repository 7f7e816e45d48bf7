"""A whole lab of its own (names and subnet apart from the default lab), converged with site.yml.

STACK_LAB_NAME / STACK_LAB_NET choose them; KEEP_STACK=1 keeps the lab afterwards.
STACK_REUSE=1 (development only) runs the checks against a kept lab without converging it
again; the tests that inspect the playbook runs then fail.
"""
import json
import os
import re
import shlex
import threading
import time

import pytest
import testinfra

from helpers import ROOT, run

LOADED = time.time()  # the run's start: older reports are not this run's
STACK_LAB_NAME = os.environ.get("STACK_LAB_NAME", "djstack-test")
STACK_ENV = {
    "LAB_NAME": STACK_LAB_NAME,
    "LAB_NET_PREFIX": os.environ.get("STACK_LAB_NET", "10.231.9"),
    # The stack's Debian release. CI runs it on Debian 12 for now: on Debian 13 the suite ran past
    # CI's budget (2026-12-07, 80 min and counting); STACK_DEBIAN_SUITE=trixie runs it there.
    "LAB_DEBIAN_SUITE": os.environ.get("STACK_DEBIAN_SUITE", "bookworm"),
}
MANAGED = ["edge1", "app1", "app2", "db1", "db2", "cache1", "mail1", "backup1"]
# Rebuilt hosts get new host keys: the tests trust the lab's addresses, not remembered keys.
SSH_BASE = ["-i", str(ROOT / ".lab" / "id_ed25519"), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
SSH_OPTIONS = " ".join(SSH_BASE[2:] + ["-o", f"ControlPath=/tmp/.djstack-ti-{STACK_LAB_NAME}-%C",
                                       "-o", "ServerAliveInterval=15"])


class Stack:
    def __init__(self):
        self.runs = {}
        self.timings = {}  # seconds per set-up playbook run
        self.error = None  # what stopped the set-up
        self._hosts = {}
        self._addresses = None

    def playbook(self, name, *args, check=True):
        proc = run(["ansible-playbook", *args], env=STACK_ENV, check=check)
        self.runs[name] = proc
        return proc

    def ansible(self, *args):
        """An ad-hoc Ansible command against the stack's lab (its output is not kept with the runs)."""
        return run(["ansible", *args], env=STACK_ENV, check=True).stdout

    def host(self, name):
        """A testinfra host over SSH as the admin, like an operator (one multiplexed connection
        per host, so a check costs milliseconds, not an Ansible run)."""
        if name not in self._hosts:
            self.addresses()
            self._hosts[name] = testinfra.get_host(
                f"ssh://{self._users[name]}@{self._addresses[name]}", ssh_identity_file=SSH_BASE[1],
                ssh_extra_args=SSH_OPTIONS)
        return self._hosts[name]

    def reset(self):
        """Forget the SSH connections to hosts that were replaced (same addresses, new hosts)."""
        self._hosts = {}
        run(["sh", "-c", f"rm -f /tmp/.djstack-ti-{STACK_LAB_NAME}-*"])

    def addresses(self):
        """Every inventory host's address (and login), as Ansible renders them."""
        if self._addresses is None:
            out = self.ansible("all", "-m", "ansible.builtin.debug", "-a", "msg={{ [ansible_host, ansible_user] }}", "-o")
            found = {line.split(" | ")[0]: json.loads(line.split(" => ", 1)[1])["msg"]
                     for line in out.splitlines() if " => " in line}
            self._addresses = {name: address for name, (address, _) in found.items()}
            self._users = {name: user for name, (_, user) in found.items()}
        return self._addresses


# The set-up's playbook runs: (name, arguments, whether a failure stops the set-up).
SET_UP = [("lab", ["playbooks/lab.yml"], True), ("converge", ["site.yml"], True),
          ("rerun", ["site.yml"], True), ("check", ["site.yml", "--check", "--diff"], False)]
# The stack lab starts without backups: a repository left by an earlier run would be
# restored (and its passphrase may be another vault's).
PURGE = ["ansible-playbook", "playbooks/lab.yml", "-e", "lab_state=absent", "-e", "lab_purge_kept_storage=true"]
_BACKGROUND = {}


def _failures(stdout):
    """Each failed task of a playbook's output: its TASK header and the first lines of its
    'fatal:'/'failed:' report, so that a set-up failure is named in a few lines."""
    found = []
    for block in re.split(r"^(?=TASK \[)", stdout, flags=re.M):
        report = re.search(r"^(fatal|failed): \[.*", block, re.M | re.S)
        if report:
            found.append(block.splitlines()[0] + "\n" + "\n".join(report[0].splitlines()[:12]))
    return found


def _set_up(s):
    try:
        run(PURGE, env=STACK_ENV, check=True)
        for name, args, check in SET_UP:
            started = time.monotonic()
            proc = s.playbook(name, *args, check=False)
            s.timings[name] = round(time.monotonic() - started)
            if check and proc.returncode != 0:
                # The whole output goes to a file; the error (repeated for every stack test) names
                # the run and its failed tasks in a few lines, so the end of CI's log shows it.
                log = ROOT / ".lab" / f"stack-set-up-{name}.log"
                log.parent.mkdir(exist_ok=True)
                log.write_text(proc.stdout + "\n" + proc.stderr)
                failures = _failures(proc.stdout) or [proc.stdout[-3000:] + proc.stderr[-2000:]]
                pytest.fail(f"STACK SET-UP: {' '.join(args)} ({name}) exited {proc.returncode} after "
                            f"{s.timings[name]} s; its whole output is in {log}. Failed:\n"
                            + "\n".join(failures[:5])[-6000:], pytrace=False)
    except BaseException as err:  # pytest.fail() raises a BaseException; the fixture re-raises it
        s.error = err


def pytest_collection_finish(session):
    """Start the stack lab's set-up as soon as the run is known to need it: it goes on in the
    background while the controller-side and molecule tests run on containers of their own,
    and the `stack` fixture waits for it. Overlapping them saves minutes of the suite's budget
    on two cores: a converge leaves the CPU idle part of the time (package downloads,
    service starts, SSH round trips)."""
    if (session.config.option.collectonly or os.environ.get("STACK_REUSE") == "1"
            or not any("/z_stack/" in f"/{item.nodeid}" for item in session.items)):
        return
    _start()


def _start():
    s = Stack()
    thread = threading.Thread(target=_set_up, args=(s,), name="stack-set-up", daemon=True)
    thread.start()
    _BACKGROUND.update(stack=s, thread=thread)


@pytest.fixture(scope="session")
def stack():
    if os.environ.get("STACK_REUSE") == "1":
        yield Stack()
        return
    if not _BACKGROUND:  # collected in a way the hook did not see: set up now
        _start()
    s = _BACKGROUND["stack"]
    try:
        _BACKGROUND["thread"].join()  # each playbook run has its own time limit (helpers.run)
        if s.error is not None:
            raise s.error
        yield s
    finally:
        if os.environ.get("KEEP_STACK") != "1":
            run(PURGE, env=STACK_ENV)
            _BACKGROUND["purged"] = True


def pytest_sessionfinish(session):
    """A set-up that started but whose tests never ran (deselected, or the run stopped) is
    waited for and removed all the same."""
    if _BACKGROUND and not _BACKGROUND.get("purged") and os.environ.get("KEEP_STACK") != "1":
        _BACKGROUND["thread"].join()
        run(PURGE, env=STACK_ENV)


def pytest_terminal_summary(terminalreporter):
    """The stack set-up's playbook times, the redeploy test's RPO and time to recover, in the
    run's output (test_redeploy.py writes the latter)."""
    if _BACKGROUND.get("stack") is not None and _BACKGROUND["stack"].timings:
        terminalreporter.write_line(f"STACK SET-UP seconds: {json.dumps(_BACKGROUND['stack'].timings)}")
    report = ROOT / ".lab" / f"redeploy-{STACK_LAB_NAME}.json"
    if report.exists() and report.stat().st_mtime >= LOADED:
        terminalreporter.write_line(f"REDEPLOY {report.name}: {json.dumps(json.loads(report.read_text()))}")


SITE = "www.djstack.test"
CA_ON_CLIENT = "/tmp/djstack-edge-ca.crt"
USER, PASSWORD = "edge-visitor", "edge-visitor-password-not-a-secret"


@pytest.fixture(scope="module")
def visitor(stack):
    """curl on client1 against https://SITE/ at edge1's address, verifying the lab CA.
    request(path or URL, *curl args, jar=cookie jar) -> (status, headers (lower-case names), body)."""
    ca = ROOT / ".lab" / "pki" / STACK_LAB_NAME / "ca.crt"
    stack.ansible("client1", "-m", "ansible.builtin.copy", "-a", f"src={ca} dest={CA_ON_CLIENT} mode=0644")
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


LOADGEN_ON_CLIENT = "/tmp/djstack-loadgen.py"


class Load:
    """tests/loadgen.py on client1 against the site through the edge, in the background from
    start() until stop(); `args` are loadgen's (rate, mix, slow requests)."""

    def __init__(self, stack, args):
        self.client = stack.host("client1")
        self.edge = stack.addresses()["edge1"]
        self.args = args
        stack.ansible("client1", "-m", "ansible.builtin.copy", "-a",
                      f"src={ROOT / 'tests' / 'loadgen.py'} dest={LOADGEN_ON_CLIENT} mode=0644")

    def start(self):
        self.client.check_output("rm -f /tmp/loadgen.stop /tmp/loadgen.json /tmp/loadgen.err")
        self.client.check_output(
            f"nohup python3 {LOADGEN_ON_CLIENT} --address {self.edge} --host {SITE} --ca {CA_ON_CLIENT} "
            f"--seconds 600 --stop-file /tmp/loadgen.stop {' '.join(self.args)} "
            "> /tmp/loadgen.json 2> /tmp/loadgen.err < /dev/null &")
        time.sleep(3)  # the load runs before the change starts

    def stop(self):
        time.sleep(5)  # and goes on after it ended
        self.client.check_output("touch /tmp/loadgen.stop")
        for _ in range(60):  # the slow requests still in flight finish (at most 20 s in any test)
            out = self.client.run("cat /tmp/loadgen.json").stdout
            if out.rstrip().endswith("}"):
                return json.loads(out)
            time.sleep(1)
        pytest.fail("the load generator did not finish: " + self.client.run("cat /tmp/loadgen.err").stdout)


def missing_writes(stack, host, writes):
    """Of `writes` (tests/loadgen.py --record-writes rows: time, note id, primary, text), the
    acknowledged ones whose note is not on `host` with that id and that text (an id handed out
    again after a loss proves nothing)."""
    acked = [w for w in writes if w[1]]
    if not acked:
        return []
    rows = stack.host(host).check_output(
        "sudo -u postgres psql -d djdemo -XAt -F '|' -c "
        f"'SELECT id, text FROM core_note WHERE id IN ({','.join(str(w[1]) for w in acked)})'")
    found = dict(line.split("|", 1) for line in rows.splitlines())
    return [w for w in acked if found.get(str(w[1])) != w[3]]


def csrf_token(form):
    """Django's CSRF token from a rendered form."""
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)


def log_in(stack, visitor, jar, username, password):
    """Log in through the edge like a browser (form, CSRF token, POST); the session cookie is
    in `jar` on client1."""
    stack.host("client1").run(f"rm -f {jar}")
    code, _, form = visitor("/accounts/login/", jar=jar)
    assert code == 200, form[:300]
    code, headers, _ = visitor("/accounts/login/", "-H", shlex.quote(f"Referer: https://{SITE}/accounts/login/"),
                               "--data-urlencode", shlex.quote(f"csrfmiddlewaretoken={csrf_token(form)}"),
                               "--data-urlencode", f"username={username}",
                               "--data-urlencode", f"password={password}", jar=jar)
    assert code == 302, headers
