"""Lab secrets are generated once into the encrypted vault; existing ones never change.

Runs the lab role's secrets tasks against a throw-away vault (its own password file),
so the lab's real vault is never touched.
"""
import subprocess

import yaml
from cryptography.hazmat.primitives import serialization

from helpers import ROOT, recap, run

PLAY = """- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: The lab role's secrets
      ansible.builtin.include_role:
        name: lab
        tasks_from: secrets.yml
"""


def _secrets(tmp_path, passwords, keys):
    (tmp_path / "play.yml").write_text(PLAY)
    extra = yaml.safe_dump({"lab_dir": str(tmp_path / "lab"), "lab_vault_file": str(tmp_path / "vault.yml"),
                            "lab_vault_passwords": passwords, "lab_vault_rsa_keys": keys})
    (tmp_path / "vars.yml").write_text(extra)
    proc = run(["ansible-playbook", "-i", "localhost,", "-e", f"@{tmp_path / 'vars.yml'}", str(tmp_path / "play.yml")],
               env={"ANSIBLE_VAULT_PASSWORD_FILE": str(tmp_path / "pass"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles")},
               check=True)
    return proc


def _view(tmp_path):
    out = subprocess.run(["ansible-vault", "view", "--vault-password-file", str(tmp_path / "pass"),
                          str(tmp_path / "vault.yml")], check=True, text=True, capture_output=True).stdout
    return yaml.safe_load(out)


def test_keys_and_passwords_are_generated_once_and_kept(tmp_path):
    (tmp_path / "pass").write_text("test-vault-password-0123456789\n")
    first = _secrets(tmp_path, ["vault_a"], [])
    assert set(_view(tmp_path)) == {"vault_a"}
    password = _view(tmp_path)["vault_a"]

    # A key is added later: generated once, the existing password untouched.
    second = _secrets(tmp_path, ["vault_a"], ["vault_opendkim_key_example_test"])
    vault = _view(tmp_path)
    assert vault["vault_a"] == password
    key = serialization.load_pem_private_key(vault["vault_opendkim_key_example_test"].encode(), password=None)
    assert key.key_size >= 2048
    raw = (tmp_path / "vault.yml").read_text()
    assert raw.startswith("$ANSIBLE_VAULT;") and "PRIVATE KEY" not in raw
    # No key file anywhere but inside the encrypted vault.
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
                and p.name != "id_ed25519"]

    # Run again: nothing changes.
    third = _secrets(tmp_path, ["vault_a"], ["vault_opendkim_key_example_test"])
    assert _view(tmp_path) == vault
    assert recap(third.stdout)["localhost"]["changed"] == 0, third.stdout
    for proc in (first, second, third):
        assert "PRIVATE KEY" not in proc.stdout + proc.stderr
