"""Molecule scenarios run in background threads, so that a scenario can go on beside other
tests (tests/test_molecule.py, tests/z_stack/test_redeploy.py) and its test only collects
the outcome."""
import threading

from helpers import ROOT, run

FOUND = {p.parent.name for p in ROOT.glob("molecule/*/molecule.yml")}
# Seconds a whole scenario may take before it counts as hung (about twice its usual time).
LIMITS = {"database": 1500}
DEFAULT_LIMIT = 900
# Started by the stack's redeploy test, beside it (tests/test_molecule.py says why).
BESIDE_REDEPLOY = {"database"}
# Started in the background when the scenario named as the key starts: short scenarios with
# no availability or timing checks, whose containers and names are their own.
BESIDE = {"common": ["cache"], "mail": ["acme"]}
_RUNS = {}


def limit(scenario):
    return LIMITS.get(scenario, DEFAULT_LIMIT)


def start(scenario):
    """`molecule test -s scenario` in a thread, once per session."""
    if scenario in _RUNS:
        return
    for other in BESIDE.get(scenario, []):
        if other in FOUND:
            start(other)
    outcome = {}

    def work():
        try:
            outcome["proc"] = run(["molecule", "test", "-s", scenario], timeout=limit(scenario))
        except BaseException as err:  # a hang: helpers.run() fails, naming the command
            outcome["error"] = err

    outcome["thread"] = threading.Thread(target=work, name=f"molecule-{scenario}", daemon=True)
    outcome["thread"].start()
    _RUNS[scenario] = outcome


def result(scenario):
    """Wait for the scenario (started now if nothing started it) and return its process."""
    start(scenario)
    outcome = _RUNS[scenario]
    outcome["collected"] = True
    outcome["thread"].join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["proc"]


def selected(session):
    """The scenarios whose test this session runs."""
    return {item.callspec.params["scenario"] for item in session.items
            if getattr(item, "originalname", "") == "test_molecule_scenario"}


def finish():
    """Scenarios started in the background whose test never ran are waited for and removed."""
    for scenario, outcome in _RUNS.items():
        if outcome.get("collected"):
            continue
        outcome["thread"].join()
        if outcome.get("proc") is None or outcome["proc"].returncode != 0:
            run(["molecule", "destroy", "-s", scenario], timeout=300)
