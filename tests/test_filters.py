"""filter_plugins/djstack.py: the one place a host's private address is worked out."""
import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "filter_plugins"))
from djstack import djstack_address  # noqa: E402

HOSTVARS = {
    "db1": {"private_ip": "10.0.0.21", "ansible_host": "203.0.113.21", "pgbackrest_host_name": "db1.internal"},
    "db2": {"private_ip": "", "ansible_host": "203.0.113.22"},
    "db3": {},
}


def test_private_ip_first_then_ansible_host_then_the_name():
    assert djstack_address("db1", HOSTVARS) == "10.0.0.21"
    assert djstack_address("db2", HOSTVARS) == "203.0.113.22"  # an empty private_ip counts as unset
    assert djstack_address("db3", HOSTVARS) == "db3"
    assert djstack_address("outside.example", HOSTVARS) == "outside.example"


def test_a_named_host_variable_overrides_the_address():
    assert djstack_address("db1", HOSTVARS, "pgbackrest_host_name") == "db1.internal"
    assert djstack_address("db2", HOSTVARS, "pgbackrest_host_name") == "203.0.113.22"
