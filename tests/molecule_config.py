"""A molecule scenario's molecule.yml as molecule reads it: its ${LAB_NAME} and network
variables replaced from the environment (or their defaults), for the scenario's tests."""
import os
import re

import yaml


def load(scenario_dir):
    """molecule.yml with every ${NAME:-default} replaced by the environment's value or the default."""
    text = (scenario_dir / "molecule.yml").read_text()
    return yaml.safe_load(re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m[1], m[2]), text))
