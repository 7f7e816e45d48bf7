"""Shared helpers: run the project's own commands from the repository root."""
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)", re.M)
# No single command may eat the suite's budget: a hang fails the test that ran it, naming it.
DEFAULT_TIMEOUT = 1200


def run(args, env=None, check=False, timeout=DEFAULT_TIMEOUT):
    """Run a command in the repository root; its output is kept for the assertion messages.
    A command still running after `timeout` seconds is killed and fails the test, naming it."""
    full_env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                    ANSIBLE_NOCOLOR="1", **(env or {}))
    try:
        proc = subprocess.run(args, cwd=ROOT, env=full_env, text=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        pytest.fail(f"HUNG: {' '.join(map(str, args))} was still running after {timeout} s and was killed; "
                    f"its last output:\n{out[-8000:]}", pytrace=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-20000:]}\n{proc.stderr[-5000:]}")
    return proc


def recap(output, hosts=()):
    """The PLAY RECAP counters per host. Output with no recap, or without a recap line for each
    of `hosts`, fails: a check of the counters must never pass on counters it could not read."""
    counts = {}
    for m in RECAP.finditer(output):
        counts[m["host"]] = {k: int(v) for k, v in m.groupdict().items() if k != "host"}
    assert counts, f"no PLAY RECAP in the output:\n{output[-5000:]}"
    missing = set(hosts) - set(counts)
    assert not missing, f"no PLAY RECAP line for {sorted(missing)}:\n{output[-5000:]}"
    return counts


def task_results(output, task):
    """{host: status} for every run of the named task in a playbook's output ('ok', 'changed',
    'skipping', 'failed', ...), from the default callback's 'status: [host]' lines."""
    results = {}
    for block in re.split(r"^TASK \[", output, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        if title.split("]")[0].split(" : ")[-1] != task:
            continue
        for m in re.finditer(r"^(ok|changed|skipping|failed|fatal): \[([^\]]+)\]", body, re.M):
            results[m[2].split(" -> ")[0]] = m[1]
    return results


def failed_task(stdout, stderr=""):
    """The task whose failure stopped a playbook, 'role : name' for a role's task. The default
    callback prints the 'fatal:' line on stdout, or on stderr where display_failed_stderr is on
    (molecule's configuration): then the failed task is the last one the run started."""
    stdout, stderr = (re.sub(r"\x1b\[[0-9;]*m", "", text) for text in (stdout, stderr))
    if "\nfatal:" in stdout:
        before = stdout.split("\nfatal:")[0]
    else:
        assert re.search(r"^fatal:", stderr, re.M), f"no failed task in the output:\n{stdout[-3000:]}\n{stderr[-2000:]}"
        before = stdout.split("\nPLAY RECAP")[0]
    headers = re.findall(r"^TASK \[([^\]]+)\]", before, re.M)
    assert headers, f"no task in the output:\n{stdout[-3000:]}"
    return headers[-1]
