"""The demo app (app/): its own Django tests, its release id, and the build of its artifact."""
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT, failed_task, recap, run, task_results

APP = ROOT / "app"
LOCK = APP / "requirements.lock"
DEV_LOCK = APP / "requirements-dev.lock"
RELEASE_ID = re.compile(r"^\d+\.\d+\.\d+-[0-9a-f]{12}$")
# Build targets by their tag: Debian 12's and Debian 13's (the role's default) on x86_64.
TARGETS = {"cp311-x86_64": {"python": "3.11", "arch": "x86_64", "glibc": "2.36"},
           "cp313-x86_64": {"python": "3.13", "arch": "x86_64", "glibc": "2.41"}}


@pytest.fixture(scope="session")
def app_python():
    """A venv with exactly the locked dependencies, made once per requirements.lock."""
    key = hashlib.sha256(LOCK.read_bytes() + DEV_LOCK.read_bytes()).hexdigest()[:16]
    base = ROOT / ".cache" / "app-venv"
    venv = base / key
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        if base.is_dir():
            for old in base.iterdir():  # venvs of earlier lock files
                shutil.rmtree(old, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(venv)], check=True)
        run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(LOCK),
             "-r", str(DEV_LOCK)], check=True, timeout=900)
        (venv / ".complete").touch()
    return python


def release_id(app_dir=APP):
    proc = run([sys.executable, str(ROOT / "bin" / "app-release-id"), "--app-dir", str(app_dir)], check=True)
    return proc.stdout.strip()


def build(build_dir, *tags, extra=(), timeout=1200):
    """playbooks/build.yml into build_dir, for the targets named by their tag (none: the role's default)."""
    targets = ["-e", json.dumps({"app_build_targets": [TARGETS[tag] for tag in tags]})] if tags else []
    return run(["ansible-playbook", "playbooks/build.yml", "-e", f"app_build_dir={build_dir}", *targets, *extra],
               timeout=timeout)


def controller_runs(python):
    """Whether the controller has a working `python`, as the build's offline trial looks for it."""
    try:
        return subprocess.run([python, "-c", ""], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def check_wheelhouse(wheelhouse, tag):
    """A complete wheelhouse for a target: release.json naming it, SHA256SUMS over every other
    file (every sum right), the app's wheel and one wheel per locked pin for that target.
    Returns the wheels' names."""
    ident = wheelhouse.parent.name
    info = json.loads((wheelhouse / "release.json").read_text())
    assert {key: info[key] for key in ("id", "app", "version", "python", "arch", "glibc")} == \
        {"id": ident, "app": "djdemo", "version": "1.0.0", **TARGETS[tag]}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", info["built"])

    sums = {}
    for line in (wheelhouse / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    files = {p.relative_to(wheelhouse).as_posix() for p in wheelhouse.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(sums) == files
    for name, digest in sums.items():
        assert hashlib.sha256((wheelhouse / name).read_bytes()).hexdigest() == digest, name
    assert subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=wheelhouse).returncode == 0

    # The app's wheel and one wheel per locked pin, for this CPython on x86_64.
    abi = tag.split("-")[0]
    wheels = sorted(p.name for p in (wheelhouse / "wheels").iterdir())
    assert "djdemo-1.0.0-py3-none-any.whl" in wheels
    normalized = {re.sub(r"[-_.]+", "_", w.split("-")[0]).lower(): w for w in wheels}
    pins = [line.split("==") for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]
    for name, version in pins:
        wheel = normalized.get(re.sub(r"[-_.]+", "_", name).lower())
        assert wheel and f"-{version}-" in wheel, f"{name}=={version}: {wheels}"
        tags = wheel[:-len(".whl")].split("-")[-3:]
        assert tags[0] in ("py3", "py2.py3", abi) and tags[1] in ("none", "abi3", abi), wheel
        assert tags[2] == "any" or "x86_64" in tags[2] and "manylinux" in tags[2], wheel
    assert len(wheels) == len(pins) + 1
    return wheels


def test_django_test_suite(app_python):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJDEMO_", "DJANGO_"))}
    env.update(PYTHONPATH=str(APP / "src"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([str(app_python), "-m", "django", "test", "--settings", "tests.settings", "tests"],
                          cwd=APP, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-20000:]
    # Every test the app defines ran, and none was skipped.
    defined = sum(len(re.findall(r"^    def test_", f.read_text(), re.M)) for f in (APP / "tests").glob("test_*.py"))
    ran = re.search(r"^Ran (\d+) tests?", output, re.M)
    assert defined and ran and int(ran.group(1)) == defined, (defined, output[-5000:])
    assert re.search(r"^OK$", output, re.M), output[-5000:]


def lint_migrations(app_python, app_dir):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJDEMO_", "DJANGO_"))}
    env.update(PYTHONPATH=str(app_dir / "src"), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([str(app_python), "-m", "django", "lintmigrations", "--settings", "tests.migration_lint_settings"],
                          cwd=app_dir, env=env, capture_output=True, text=True, timeout=300)


def test_migrations_are_safe_to_roll(app_python, tmp_path):
    """During a rolling deploy the running release works on the migrated schema: the linter
    passes the app's migrations and flags one that drops a column."""
    proc = lint_migrations(app_python, APP)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert re.search(r"\(core, 0001_initial\)\.\.\. OK", proc.stdout), proc.stdout

    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (app / "src" / "djdemo" / "core" / "migrations" / "0002_drop_text.py").write_text(
        "from django.db import migrations\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("core", "0001_initial")]\n'
        '    operations = [migrations.RemoveField("note", "text")]\n')
    proc = lint_migrations(app_python, app)
    assert proc.returncode != 0, proc.stdout
    assert re.search(r"\(core, 0002_drop_text\)\.\.\. ERR", proc.stdout), proc.stdout


def test_release_id_is_content_based(tmp_path):
    copy = tmp_path / "app"
    shutil.copytree(APP, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"))
    original = release_id(copy)
    assert RELEASE_ID.match(original), original
    assert original.startswith("1.0.0-")
    # Stable: again, in another directory, after touching mtimes, with build leftovers around.
    assert release_id(copy) == original == release_id(APP)
    os.utime(copy / "src" / "djdemo" / "core" / "views.py", (0, 0))
    (copy / "src" / "djdemo" / "__pycache__").mkdir(exist_ok=True)
    (copy / "src" / "djdemo" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (copy / "src" / "djdemo.egg-info").mkdir()
    (copy / "src" / "djdemo.egg-info" / "PKG-INFO").write_text("junk")
    (copy / "tests" / "test_extra.py").write_text("# tests are not part of a release\n")
    assert release_id(copy) == original

    # Any change to what ships is a new release.
    views = copy / "src" / "djdemo" / "core" / "views.py"
    views.write_text(views.read_text() + "\n# changed\n")
    changed_source = release_id(copy)
    assert changed_source != original and changed_source.startswith("1.0.0-")
    (copy / "requirements.lock").write_text(LOCK.read_text() + "# changed\n")
    changed_lock = release_id(copy)
    assert changed_lock not in (original, changed_source)
    (copy / "src" / "djdemo" / "core" / "static" / "core" / "new.css").write_text("p {}\n")
    assert release_id(copy) not in (original, changed_source, changed_lock)

    # The id names the source alone: no target to give.
    proc = run([sys.executable, str(ROOT / "bin" / "app-release-id"), "--python", "3.13"])
    assert proc.returncode != 0 and "unrecognized arguments: --python" in proc.stderr, proc.stderr


def test_build_twice(tmp_path):
    """The role's default target (Debian 13's): a release holds its wheelhouse in <id>/<tag>/;
    an unchanged source builds nothing; a changed app reuses the dependency wheels of a
    release with the same pins and target, changed pins download them."""
    build_dir = tmp_path / "build"
    first = build(build_dir)
    assert first.returncode == 0, first.stdout[-20000:] + first.stderr[-5000:]
    assert recap(first.stdout)["localhost"]["changed"] > 0, first.stdout
    second = build(build_dir, timeout=600)
    assert second.returncode == 0, second.stdout[-20000:] + second.stderr[-5000:]
    counts = recap(second.stdout)["localhost"]
    assert counts["changed"] == 0 and counts["failed"] == 0, second.stdout

    ident = release_id()
    assert (build_dir / "LATEST").read_text().strip() == ident
    assert sorted(p.name for p in build_dir.iterdir()) == sorted(["LATEST", ident])  # no partial build left
    assert [p.name for p in (build_dir / ident).iterdir()] == ["cp313-x86_64"]
    wheels = check_wheelhouse(build_dir / ident / "cp313-x86_64", "cp313-x86_64")

    # The offline trial runs only where the controller has the target's Python.
    if controller_runs("python3.13"):
        assert "Install the release into it from the wheelhouse alone" in first.stdout
    else:
        assert "Not trying the wheelhouse offline: the controller has no python3.13" in " ".join(first.stdout.split())

    # A changed app with the same pins takes the dependency wheels of the release above, not a
    # new download; changed pins download them.
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (app / "src" / "djdemo" / "changed.py").write_text("CHANGED = True\n")
    code_only = build(build_dir, extra=["-e", f"app_build_source={app}"], timeout=600)
    assert code_only.returncode == 0, code_only.stdout[-20000:]
    assert task_results(code_only.stdout, "Reuse the dependency wheels of an earlier release with the same pins "
                        "and target") == {"localhost": "changed"}
    assert "Download every locked dependency as a wheel for the target hosts" not in code_only.stdout
    reused = build_dir / release_id(app) / "cp313-x86_64"
    assert sorted(p.name for p in (reused / "wheels").iterdir()) == wheels
    assert subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=reused).returncode == 0
    with open(app / "requirements.lock", "a") as lock:
        lock.write("# pins changed\n")
    new_pins = build(build_dir, extra=["-e", f"app_build_source={app}"])
    assert new_pins.returncode == 0, new_pins.stdout[-20000:]
    assert task_results(new_pins.stdout, "Download every locked dependency as a wheel for the target hosts") == \
        {"localhost": "changed"}


def test_one_release_for_two_targets(tmp_path):
    """Debian 12 and Debian 13 hosts run the same release: one id, a wheelhouse per target.
    Adding a target to a release builds that one alone; the app's wheel is the same bytes in
    both, the binary dependencies are each CPython's own."""
    build_dir = tmp_path / "build"
    ident = release_id()
    first = build(build_dir, "cp311-x86_64")
    assert first.returncode == 0, first.stdout[-20000:] + first.stderr[-5000:]
    cp311 = build_dir / ident / "cp311-x86_64"
    before = (cp311 / "SHA256SUMS").stat()
    if controller_runs("python3.11"):
        assert "Install the release into it from the wheelhouse alone" in first.stdout
        assert "Not trying the wheelhouse offline" not in first.stdout

    both = build(build_dir, "cp311-x86_64", "cp313-x86_64")
    assert both.returncode == 0, both.stdout[-20000:] + both.stderr[-5000:]
    assert both.stdout.count("TASK [app : Build the app's wheel]") == 1, both.stdout  # cp313's alone
    assert (cp311 / "SHA256SUMS").stat().st_ino == before.st_ino
    again = build(build_dir, "cp311-x86_64", "cp313-x86_64", timeout=600)
    assert again.returncode == 0 and recap(again.stdout)["localhost"]["changed"] == 0, again.stdout[-20000:]

    assert (build_dir / "LATEST").read_text().strip() == ident
    assert sorted(p.name for p in build_dir.iterdir()) == sorted(["LATEST", ident])
    assert sorted(p.name for p in (build_dir / ident).iterdir()) == sorted(TARGETS)
    wheels = {tag: check_wheelhouse(build_dir / ident / tag, tag) for tag in TARGETS}
    app_wheel = "wheels/djdemo-1.0.0-py3-none-any.whl"
    assert (cp311 / app_wheel).read_bytes() == (build_dir / ident / "cp313-x86_64" / app_wheel).read_bytes()
    # The binary dependencies (uvloop among them) are each CPython's own build.
    for tag, other in zip(TARGETS, reversed(TARGETS)):
        own = set(wheels[tag]) - set(wheels[other])
        assert "uvloop" in {name.split("-")[0] for name in own}, own
        assert all(f"-{tag.split('-')[0]}-" in name for name in own), own


def test_a_host_names_its_own_target(tmp_path):
    """Entry point `target` publishes the host's build target from the host's own facts: the
    Python Ansible runs there, its CPU, and its distribution's glibc (vars/Debian-N.yml)."""
    with open("/etc/os-release") as release:
        os_release = dict(line.strip().replace('"', "").split("=", 1) for line in release if "=" in line)
    glibc = {"12": "2.36", "13": "2.41"}.get(os_release.get("VERSION_ID"))
    if os_release.get("ID") != "debian" or not glibc:
        pytest.skip("the controller is not Debian 12 or 13")
    (tmp_path / "inventory.ini").write_text(f"host ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "play.yml").write_text(
        "- hosts: host\n  gather_facts: false\n  tasks:\n"
        "    - {ansible.builtin.include_role: {name: app, tasks_from: target}}\n"
        "    - {ansible.builtin.debug: {msg: 'TARGET {{ app_build_target | to_json }} END'}}\n")
    proc = run(["ansible-playbook", "-i", str(tmp_path / "inventory.ini"), str(tmp_path / "play.yml")], check=True)
    found = json.loads(re.search(r"TARGET (\{.*\}) END", " ".join(proc.stdout.split()))[1])
    assert found == {"python": "%d.%d" % sys.version_info[:2], "arch": platform.machine(), "glibc": glibc}


def test_failed_build_leaves_nothing(tmp_path):
    """A build that breaks half-way leaves no release directory and no partial one."""
    source = tmp_path / "app"
    shutil.copytree(APP, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"))
    pyproject = source / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"Django>=5.2,<5.3",', '"Django>=5.2,<5.3", "not a requirement!",'))
    build_dir = tmp_path / "build"
    proc = run(["ansible-playbook", "playbooks/build.yml", "-e", f"app_build_dir={build_dir}",
                "-e", f"app_build_source={source}"], timeout=600)
    assert proc.returncode != 0, proc.stdout
    assert "Build the app's wheel" in proc.stdout and "Remove the failed build" in proc.stdout, proc.stdout
    assert sorted(p.name for p in build_dir.iterdir()) == [], list(build_dir.iterdir())


BAD_TARGETS = [
    ({"arch": "sparc"}, "value of arch must be one of: x86_64, aarch64, i686, ppc64le, s390x, got: sparc found in "
     "app_build_targets", "app : Validating arguments against arg spec 'build'"),
    ({"python": "3"}, "app_build_targets must list", "app : Check the build targets (app_build_targets)"),
    ({"glibc": "2.16"}, "app_build_targets must list", "app : Check the build targets (app_build_targets)"),
]


@pytest.mark.parametrize(("bad", "message", "task"), BAD_TARGETS, ids=["arch", "python", "glibc"])
def test_bad_build_input_stops_before_any_change(tmp_path, bad, message, task):
    """The role's entry point `build` checks its inputs (argument spec, then an assert for what
    a spec cannot express) before it creates anything: a target with a bad value, next to a good one."""
    build_dir = tmp_path / "build"
    targets = [TARGETS["cp311-x86_64"], {**TARGETS["cp313-x86_64"], **bad}]
    proc = run(["ansible-playbook", "playbooks/build.yml", "-e", f"app_build_dir={build_dir}",
                "-e", json.dumps({"app_build_targets": targets})], timeout=300)
    assert proc.returncode != 0, proc.stdout
    assert message in " ".join(proc.stdout.split()), proc.stdout[-5000:]
    assert failed_task(proc.stdout, proc.stderr).startswith(task), proc.stdout[-5000:]
    assert recap(proc.stdout)["localhost"]["changed"] == 0 and not build_dir.exists(), proc.stdout
