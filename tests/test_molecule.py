"""Every role's molecule scenario: converge, then the checks only that scenario can prove
(idempotence and check mode of the same roles are proven by the stack test)."""
import pytest

import molecule_runs
from helpers import run

# The scenarios without availability or timing checks come first: they overlap the stack lab's
# set-up, which runs in the background (tests/z_stack/conftest.py) and shares the CPU.
FIRST = ["common", "mail", "cache"]
# Run last, beside the stack's redeploy test, which starts it (tests/z_stack/test_redeploy.py):
# the scenario spends minutes waiting (archive timeouts, a backup host down, a point-in-time
# restore, a failover) while the redeploy converges a whole lab; the stack's load tests,
# which count failed requests, never share the CPU with it. Its test sorts after every
# other test (the `late` mark, tests/conftest.py) and collects the outcome.
LATE = sorted(molecule_runs.BESIDE_REDEPLOY)
SCENARIOS = ([s for s in FIRST if s in molecule_runs.FOUND] + sorted(molecule_runs.FOUND - set(FIRST) - set(LATE))
             + [s for s in LATE if s in molecule_runs.FOUND])


@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=[pytest.mark.timeout(molecule_runs.limit(s) + 400)] + ([pytest.mark.late] if s in LATE else []))
    for s in SCENARIOS])
def test_molecule_scenario(scenario):
    passed = False
    try:
        proc = molecule_runs.result(scenario)
        assert proc.returncode == 0, f"molecule test -s {scenario} failed\n{proc.stdout[-30000:]}\n{proc.stderr[-8000:]}"
        passed = True
    finally:
        if not passed:  # molecule destroys after a failed step, not after being killed: make sure
            run(["molecule", "destroy", "-s", scenario], timeout=300)


def teardown_module():
    molecule_runs.finish()
