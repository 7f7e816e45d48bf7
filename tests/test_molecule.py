"""Every role's molecule scenario: converge, then the checks only that scenario can prove
(idempotence and check mode of the same roles are proven by the stack test)."""
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


@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.timeout(LIMITS.get(s, DEFAULT_LIMIT) + 400)) for s in SCENARIOS])
def test_molecule_scenario(scenario):
    limit = LIMITS.get(scenario, DEFAULT_LIMIT)
    passed = False
    try:
        proc = run(["molecule", "test", "-s", scenario], timeout=limit)
        assert proc.returncode == 0, f"molecule test -s {scenario} failed\n{proc.stdout[-30000:]}\n{proc.stderr[-8000:]}"
        passed = True
    finally:
        if not passed:  # molecule destroys after a failed step, not after being killed: make sure
            run(["molecule", "destroy", "-s", scenario], timeout=300)
