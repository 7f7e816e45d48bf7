"""Session-wide ordering: tests marked `late` run after every other test (a molecule scenario
that runs in the background beside the last stack test, see tests/test_molecule.py)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "late: run after every other test of the session")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("late") is not None)  # stable: the order stays otherwise
