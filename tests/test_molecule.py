"""Every role's molecule scenario: converge, idempotence, check mode, verify."""
import pytest

from helpers import ROOT, run

SCENARIOS = sorted(p.parent.name for p in ROOT.glob("molecule/*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    proc = run(["molecule", "test", "-s", scenario], timeout=2400)
    assert proc.returncode == 0, f"molecule test -s {scenario} failed\n{proc.stdout[-30000:]}\n{proc.stderr[-8000:]}"
