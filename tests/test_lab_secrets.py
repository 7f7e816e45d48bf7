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
    assert raw.startswith("$ANSIBLE_VAULT;1.1;AES256\n") and "PRIVATE KEY" not in raw
    # No key file anywhere but inside the encrypted vault.
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
                and p.name != "id_ed25519"]

    # Run again: nothing changes.
    third = _secrets(tmp_path, ["vault_a"], ["vault_opendkim_key_example_test"])
    assert _view(tmp_path) == vault
    assert recap(third.stdout)["localhost"]["changed"] == 0, third.stdout
    for proc in (first, second, third):
        assert "PRIVATE KEY" not in proc.stdout + proc.stderr


def test_other_secrets_are_never_encrypted_with_the_lab_password_by_accident(tmp_path):
    """README (production, step 3): `ansible-vault create` with the project's ansible.cfg and no
    vault id of its own stops, naming the id it wants, instead of using the lab's password
    (which `make clean` deletes); with `--vault-id production@...` the file is encrypted under
    that id, and the lab's password cannot read it."""
    secret, password = tmp_path / "vault.yml", tmp_path / "production-pass"
    secret.write_text("vault_x: plain\n")
    password.write_text("production-vault-password-0123456789\n")
    refused = run(["ansible-vault", "encrypt", str(secret)])
    assert refused.returncode != 0 and "--encrypt-vault-id=production" in refused.stderr, refused.stderr
    assert secret.read_text() == "vault_x: plain\n"

    run(["ansible-vault", "encrypt", "--vault-id", f"production@{password}", str(secret)], check=True)
    assert secret.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;production\n")
    shown = run(["ansible-vault", "view", "--vault-id", f"production@{password}", str(secret)], check=True)
    assert yaml.safe_load(shown.stdout) == {"vault_x": "plain"}
    lab_only = run(["ansible-vault", "view", str(secret)])
    assert lab_only.returncode != 0 and "plain" not in lab_only.stdout
