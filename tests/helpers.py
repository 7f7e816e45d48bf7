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


def run(args, env=None, check=False, timeout=3600):
    """Run a command in the repository root; its output is kept for the assertion messages."""
    full_env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                    ANSIBLE_NOCOLOR="1", **(env or {}))
    proc = subprocess.run(args, cwd=ROOT, env=full_env, text=True, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-20000:]}\n{proc.stderr[-5000:]}")
    return proc


def recap(output):
    """The PLAY RECAP counters per host."""
    return {m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
            for m in RECAP.finditer(output)}
