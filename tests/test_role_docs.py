"""Each role documents its variables where a newcomer looks, its README, generated from the
role's own files (bin/role-docs); and the role's two descriptions of a variable agree: the
argument spec (types, checks) and defaults/main.yml (the values)."""
import shutil

import pytest
import yaml

from helpers import ROOT, run

ROLES = sorted(p.parent.parent for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def load(path):
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def templated(value):
    """A value computed when the role runs (a Jinja expression anywhere inside it)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(templated(v) for v in value.values())
    if isinstance(value, list):
        return any(templated(v) for v in value)
    return False


def test_every_role_has_a_readme_with_its_current_variables():
    proc = run([str(ROOT / "bin" / "role-docs"), "--check"])
    assert proc.returncode == 0, proc.stderr
    missing = [role.name for role in ROLES if not (role / "README.md").exists()]
    assert not missing, missing


def test_the_check_fails_on_a_stale_readme(tmp_path):
    """The check above can fail: in a copy of the tool and one role, a README whose variables
    section names a variable the role does not have is stale; writing it makes it current."""
    shutil.copytree(ROOT / "roles" / "memcached", tmp_path / "roles" / "memcached")
    (tmp_path / "bin").mkdir()
    shutil.copy(ROOT / "bin" / "role-docs", tmp_path / "bin" / "role-docs")
    readme = tmp_path / "roles" / "memcached" / "README.md"
    readme.write_text(readme.read_text().replace("| `memcached_port` |", "| `memcached_renamed_port` |"))
    proc = run([str(tmp_path / "bin" / "role-docs"), "--check"])
    assert proc.returncode == 1 and "roles/memcached/README.md" in proc.stderr, proc.stderr
    run([str(tmp_path / "bin" / "role-docs")], check=True)
    assert readme.read_text() == (ROOT / "roles" / "memcached" / "README.md").read_text()


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_and_argument_specs_agree(role):
    specs = load(role / "meta" / "argument_specs.yml")["argument_specs"]
    options = {name: option for spec in specs.values() for name, option in spec.get("options", {}).items()}
    defaults = load(role / "defaults" / "main.yml")
    problems = [f"{name} has a default but no argument spec" for name in defaults if name not in options]
    for name, option in options.items():
        if "default" in option and name not in defaults:
            problems.append(f"{name}: the argument spec has a default, defaults/main.yml none")
        elif "default" in option and option["default"] != defaults[name]:
            problems.append(f"{name}: argument spec default {option['default']!r} != defaults/main.yml {defaults[name]!r}")
        elif name in defaults and "default" not in option and option.get("required"):
            problems.append(f"{name} is required by its argument spec but has a default")
    assert not problems, "\n".join(problems)
