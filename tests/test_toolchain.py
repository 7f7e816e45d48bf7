"""The controller toolchain matches what the project declares."""
import json
import re

import yaml
from ansible.module_utils.compat.version import LooseVersion

from helpers import ROOT, run


def satisfies(version, spec):
    for clause in spec.split(","):
        clause = clause.strip()
        for op in (">=", "<=", "==", "!=", ">", "<"):
            if clause.startswith(op):
                want = LooseVersion(clause[len(op):])
                have = LooseVersion(version)
                ok = {">=": have >= want, "<=": have <= want, "==": have == want,
                      "!=": have != want, ">": have > want, "<": have < want}[op]
                if not ok:
                    return False
                break
    return True


def test_bundled_collections_satisfy_requirements_yml():
    declared = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    names = [item["name"] for item in declared]
    assert len(names) == len(set(names)), f"declared more than once: {sorted({n for n in names if names.count(n) > 1})}"
    listing = json.loads(run(["ansible-galaxy", "collection", "list", "--format", "json"], check=True).stdout)
    installed = {}
    for path_collections in listing.values():
        for name, info in path_collections.items():
            installed.setdefault(name, info["version"])
    for item in declared:
        assert item["name"] in installed, f"{item['name']} is not installed"
        assert satisfies(installed[item["name"]], item["version"]), \
            f"{item['name']} {installed[item['name']]} is outside {item['version']}"


FQCN = re.compile(r"\b((?:community|ansible)\.[a-z_]+)\.[a-z_]+\b")


def test_every_collection_used_is_declared():
    declared = {c["name"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]}
    files = [ROOT / "ansible.cfg"] + [p for d in ("roles", "playbooks", "molecule") for p in (ROOT / d).rglob("*.yml")]
    used = {m.group(1) for f in files for m in FQCN.finditer(f.read_text())} - {"ansible.builtin"}
    assert used <= declared, f"used but not in requirements.yml: {sorted(used - declared)}"


def test_requirements_txt_pins_every_tool():
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = [ln for ln in lines if ln]
    assert pins and all("==" in ln for ln in pins), pins
