"""Every role's molecule scenario: converge, then the checks only that scenario can prove
(idempotence and check mode of the same roles are proven by the stack test)."""
import threading

import pytest

from helpers import ROOT, run

# The scenarios without availability or timing checks come first: they overlap the stack lab's
# set-up, which runs in the background (tests/z_stack/conftest.py) and shares the CPU.
FIRST = ["common", "mail", "cache"]
_FOUND = {p.parent.name for p in ROOT.glob("molecule/*/molecule.yml")}
SCENARIOS = [name for name in FIRST if name in _FOUND] + sorted(_FOUND - set(FIRST))
# Seconds a whole scenario may take before it counts as hung (about twice its usual time).
LIMITS = {"database": 1500}
DEFAULT_LIMIT = 900
# Scenarios started beside another one, on containers and a network of their own. The
# database scenario spends minutes waiting (archive timeouts, a backup host down, a
# point-in-time restore, a failover) on a CPU the stack set-up no longer shares when it
# starts; the edge scenario fills that time. Its test then only collects the result.
BESIDE = {"database": ["edge"]}
_RUNS = {}


def _start(scenario):
    """Run `molecule test -s scenario` in a thread (once); the outcome lands in _RUNS[scenario]."""
    if scenario in _RUNS:
        return
    outcome = {}

    def work():
        try:
            outcome["proc"] = run(["molecule", "test", "-s", scenario], timeout=LIMITS.get(scenario, DEFAULT_LIMIT))
        except BaseException as err:  # a hang: helpers.run() fails, naming the command
            outcome["error"] = err

    outcome["thread"] = threading.Thread(target=work, name=f"molecule-{scenario}", daemon=True)
    outcome["thread"].start()
    _RUNS[scenario] = outcome


@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.timeout(LIMITS.get(s, DEFAULT_LIMIT) + 400)) for s in SCENARIOS])
def test_molecule_scenario(scenario, request):
    passed = False
    try:
        _start(scenario)
        selected = {item.callspec.params["scenario"] for item in request.session.items
                    if getattr(item, "originalname", "") == "test_molecule_scenario"}
        for other in BESIDE.get(scenario, []):
            if other in selected:
                _start(other)
        outcome = _RUNS[scenario]
        outcome["collected"] = True
        outcome["thread"].join()
        if "error" in outcome:
            raise outcome["error"]
        proc = outcome["proc"]
        assert proc.returncode == 0, f"molecule test -s {scenario} failed\n{proc.stdout[-30000:]}\n{proc.stderr[-8000:]}"
        passed = True
    finally:
        if not passed:  # molecule destroys after a failed step, not after being killed: make sure
            run(["molecule", "destroy", "-s", scenario], timeout=300)


def teardown_module():
    """A scenario started beside another whose own test never ran (deselected, or the run
    stopped) is waited for and removed all the same."""
    for scenario, outcome in _RUNS.items():
        if outcome.get("collected"):
            continue
        outcome["thread"].join()
        if outcome.get("proc") is None or outcome["proc"].returncode != 0:
            run(["molecule", "destroy", "-s", scenario], timeout=300)
