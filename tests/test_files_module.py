"""library/djstack_files.py, the module that writes a role's small files in one run: run on
the controller as Ansible runs it (its arguments in a file), against a scratch directory."""
import json
import os
import stat
import sys
import tempfile

from helpers import ROOT, run


def files(*entries, check=False, diff=False, directories=()):
    """Run the module once, as Ansible would (its arguments in a file); returns (exit code,
    its JSON result, diff included)."""
    args = {"ANSIBLE_MODULE_ARGS": {"files": list(entries), "directories": list(directories),
                                    "_ansible_check_mode": check, "_ansible_diff": diff}}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(args, handle)
        handle.flush()
        proc = run([sys.executable, str(ROOT / "library" / "djstack_files.py"), handle.name], timeout=60)
    return proc.returncode, json.loads(proc.stdout)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_only_what_differs_and_sets_modes(tmp_path):
    a, b = str(tmp_path / "conf.d" / "a.conf"), str(tmp_path / "b.sh")
    wanted = [{"dest": a, "content": "a = 1\n"}, {"dest": b, "content": "#!/bin/sh\n", "mode": "0750"}]
    rc, result = files(*wanted, directories=[{"path": str(tmp_path / "conf.d")}])
    assert rc == 0 and result["changed"], result
    assert sorted(result["changed_files"]) == sorted([str(tmp_path / "conf.d"), a, b])
    assert open(a).read() == "a = 1\n" and mode(b) == 0o750 and mode(a) == 0o644
    # The same again: nothing to do.
    rc, result = files(*wanted, directories=[{"path": str(tmp_path / "conf.d")}])
    assert rc == 0 and not result["changed"] and result["changed_files"] == [], result
    # A mode changed by hand is put back, the content left alone.
    os.chmod(b, 0o777)
    rc, result = files(*wanted)
    assert result["changed_files"] == [b] and mode(b) == 0o750
    # Absent removes; absent again changes nothing.
    assert files({"dest": a, "state": "absent"})[1]["changed_files"] == [a] and not os.path.exists(a)
    assert not files({"dest": a, "state": "absent"})[1]["changed"]


def test_a_failed_check_leaves_every_file_of_the_task_as_it_was(tmp_path):
    """The first file is fine, the second fails its check: neither goes live, and no scratch
    copy is left behind."""
    first, second = tmp_path / "first.conf", tmp_path / "second.conf"
    first.write_text("old\n")
    rc, result = files({"dest": str(first), "content": "new\n"},
                       {"dest": str(second), "content": "broken\n", "validate": "grep -q valid %s"})
    assert rc != 0 and result.get("failed"), result
    assert f"{second}: failed to validate, nothing was changed" in result["msg"]
    assert first.read_text() == "old\n" and not second.exists()
    assert sorted(os.listdir(tmp_path)) == ["first.conf"]
    # The check passes: both go live.
    rc, result = files({"dest": str(first), "content": "new\n"},
                       {"dest": str(second), "content": "valid\n", "validate": "grep -q valid %s"})
    assert rc == 0 and first.read_text() == "new\n" and second.read_text() == "valid\n"


def test_backup_keeps_what_a_replaced_file_held(tmp_path):
    """`backup`: the file's old content in a copy beside it, named in backup_files; a new file
    or an unchanged one has no copy (postgresql puts a pg_hba.conf the server refuses back)."""
    hba, fresh = tmp_path / "pg_hba.conf", tmp_path / "new.conf"
    hba.write_text("host all all 10.0.0.1/32 scram-sha-256\n")
    wanted = [{"dest": str(hba), "content": "broken\n", "backup": True},
              {"dest": str(fresh), "content": "x\n", "backup": True}]
    rc, result = files(*wanted)
    assert rc == 0 and list(result["backup_files"]) == [str(hba)], result
    kept = result["backup_files"][str(hba)]
    assert os.path.dirname(kept) == str(tmp_path) and open(kept).read() == "host all all 10.0.0.1/32 scram-sha-256\n"
    assert hba.read_text() == "broken\n"
    assert files(*wanted)[1]["backup_files"] == {}


def test_check_mode_shows_the_diff_and_writes_nothing_and_secrets_never_show(tmp_path):
    plain, secret = tmp_path / "plain.conf", tmp_path / "secret.key"
    plain.write_text("port = 1\n")
    secret.write_text("old-secret\n")
    rc, result = files({"dest": str(plain), "content": "port = 2\n"},
                       {"dest": str(secret), "content": "new-secret\n", "mode": "0600", "secret": True},
                       {"dest": str(tmp_path / "missing" / "x.conf"), "content": "x\n"},
                       directories=[{"path": str(tmp_path / "missing")}], check=True, diff=True)
    assert rc == 0 and result["changed"], result
    assert plain.read_text() == "port = 1\n" and secret.read_text() == "old-secret\n"
    assert not (tmp_path / "missing").exists()
    shown = {d["after_header"]: d for d in result["diff"]}
    assert shown[str(plain)]["before"] == "port = 1\n" and shown[str(plain)]["after"] == "port = 2\n"
    # Nowhere in what the module returns (the echoed arguments included), not only the diff.
    assert "new-secret" not in json.dumps(result) and "old-secret" not in json.dumps(result), result
    assert "port = 2" in json.dumps(result["invocation"]), result["invocation"]


def test_the_hosts_log_gets_the_destinations_never_the_contents(tmp_path, monkeypatch, capsys):
    """AnsibleModule logs every argument to the host's journal unless the whole task is no_log:
    this module logs only where it writes, so no content (and no secret) reaches the log."""
    from ansible.module_utils import basic

    sys.path.insert(0, str(ROOT / "library"))
    try:
        import djstack_files
    finally:
        sys.path.pop(0)
    args = tmp_path / "args.json"
    dest = tmp_path / "secret.key"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"files": [
        {"dest": str(dest), "content": "top-secret-value\n", "mode": "0600", "secret": True}]}}))
    logged = []
    monkeypatch.setattr(sys, "argv", ["djstack_files", str(args)])
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", None)
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, log_args=None: logged.append(msg))
    try:
        djstack_files.main()
    except SystemExit as done:
        assert done.code in (0, None)
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] and dest.read_text() == "top-secret-value\n", result
    assert logged == [f"Invoked for {dest}"], logged
    assert "top-secret-value" not in json.dumps(result), result
