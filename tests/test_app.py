"""The demo app (app/): its own Django tests, its release id, and the build of its artifact."""
import hashlib
import json
import os
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


def release_id(app_dir=APP, *extra):
    proc = run([sys.executable, str(ROOT / "bin" / "app-release-id"), "--app-dir", str(app_dir), *extra], check=True)
    return proc.stdout.strip()


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

    # Another target is another artifact.
    assert release_id(APP, "--python", "3.13") != original
    assert release_id(APP, "--arch", "aarch64") != original


def test_build_twice(tmp_path):
    build_dir = tmp_path / "build"
    command = ["ansible-playbook", "playbooks/build.yml", "-e", f"app_build_dir={build_dir}"]
    first = run(command, timeout=1200)
    assert first.returncode == 0, first.stdout[-20000:] + first.stderr[-5000:]
    assert recap(first.stdout)["localhost"]["changed"] > 0, first.stdout
    second = run(command, timeout=600)
    assert second.returncode == 0, second.stdout[-20000:] + second.stderr[-5000:]
    counts = recap(second.stdout)["localhost"]
    assert counts["changed"] == 0 and counts["failed"] == 0, second.stdout

    ident = release_id()
    assert (build_dir / "LATEST").read_text().strip() == ident
    release = build_dir / ident
    assert sorted(p.name for p in build_dir.iterdir()) == sorted(["LATEST", ident])  # no partial build left
    info = json.loads((release / "release.json").read_text())
    assert {key: info[key] for key in ("id", "app", "python", "version")} == \
        {"id": ident, "app": "djdemo", "python": "3.11", "version": "1.0.0"}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", info["built"])

    # SHA256SUMS covers every other file, and every sum is right.
    sums = {}
    for line in (release / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    files = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(sums) == files
    for name, digest in sums.items():
        assert hashlib.sha256((release / name).read_bytes()).hexdigest() == digest, name
    assert subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=release).returncode == 0

    # The wheelhouse: the app's wheel and one wheel per locked pin, for CPython 3.11 on x86_64.
    wheels = sorted(p.name for p in (release / "wheels").iterdir())
    assert "djdemo-1.0.0-py3-none-any.whl" in wheels
    normalized = {re.sub(r"[-_.]+", "_", w.split("-")[0]).lower(): w for w in wheels}
    pins = [line.split("==") for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]
    for name, version in pins:
        wheel = normalized.get(re.sub(r"[-_.]+", "_", name).lower())
        assert wheel and f"-{version}-" in wheel, f"{name}=={version}: {wheels}"
        tags = wheel[:-len(".whl")].split("-")[-3:]
        assert tags[0] in ("py3", "py2.py3", "cp311") and tags[1] in ("none", "abi3", "cp311"), wheel
        assert tags[2] == "any" or "x86_64" in tags[2] and "manylinux" in tags[2], wheel
    assert len(wheels) == len(pins) + 1

    # The offline install check ran where the controller has the target's Python.
    if shutil.which("python3.11"):
        assert "Install the release into it from the wheelhouse alone" in first.stdout
        assert "Not trying the wheelhouse offline" not in first.stdout

    # A changed app with the same pins takes the dependency wheels of the release above, not a
    # new download; changed pins download them.
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (app / "src" / "djdemo" / "changed.py").write_text("CHANGED = True\n")
    code_only = run([*command, "-e", f"app_build_source={app}"], timeout=600)
    assert code_only.returncode == 0, code_only.stdout[-20000:]
    assert task_results(code_only.stdout, "Reuse the dependency wheels of an earlier release with the same pins "
                        "and target") == {"localhost": "changed"}
    assert "Download every locked dependency as a wheel for the target hosts" not in code_only.stdout
    reused = build_dir / release_id(app)
    assert sorted(p.name for p in (reused / "wheels").iterdir()) == wheels
    assert subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=reused).returncode == 0
    with open(app / "requirements.lock", "a") as lock:
        lock.write("# pins changed\n")
    new_pins = run([*command, "-e", f"app_build_source={app}"], timeout=1200)
    assert new_pins.returncode == 0, new_pins.stdout[-20000:]
    assert task_results(new_pins.stdout, "Download every locked dependency as a wheel for the target hosts") == \
        {"localhost": "changed"}


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


@pytest.mark.parametrize(("variable", "value", "message", "task"), [
    ("app_build_arch", "sparc", "value of app_build_arch must be one of: x86_64, aarch64, i686, ppc64le, s390x, got: sparc",
     "app : Validating arguments against arg spec 'build'"),
    ("app_build_python", "3", "app_build_python must look like 3.11", "app : Check the build variables"),
])
def test_bad_build_input_stops_before_any_change(tmp_path, variable, value, message, task):
    """The role's entry point `build` checks its inputs (argument spec, then an assert for what
    a spec cannot express) before it creates anything."""
    build_dir = tmp_path / "build"
    proc = run(["ansible-playbook", "playbooks/build.yml", "-e", f"app_build_dir={build_dir}", "-e", f"{variable}={value}"],
               timeout=300)
    assert proc.returncode != 0, proc.stdout
    assert message in " ".join(proc.stdout.split()), proc.stdout[-5000:]
    assert failed_task(proc.stdout, proc.stderr).startswith(task), proc.stdout[-5000:]
    assert recap(proc.stdout)["localhost"]["changed"] == 0 and not build_dir.exists(), proc.stdout
