"""filter_plugins/djstack.py: the one place a host's private address is worked out, and the one
place a firewall opening becomes nftables rules (roles/common's ruleset and every role's own)."""
import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "filter_plugins"))
from djstack import djstack_address, djstack_nft_rule  # noqa: E402

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


def test_an_opening_names_each_host_by_its_address_and_splits_the_families():
    rules = djstack_nft_rule({"name": "web", "ports": [80, 443], "from_groups": ["db"], "from_networks": ["fd00::/8"]},
                             {"db": ["db1", "db2", "db1"]}, HOSTVARS)
    assert 'ip saddr { 10.0.0.21, 203.0.113.22 } tcp dport { 80, 443 } accept comment "web"' in rules
    assert 'ip6 saddr { fd00::/8 } tcp dport { 80, 443 } accept comment "web"' in rules


def test_an_opening_to_an_empty_group_opens_nothing():
    rules = djstack_nft_rule({"name": "redis", "port": 6379, "proto": "tcp", "from_groups": ["app"]}, {"app": []}, HOSTVARS)
    assert "accept" not in rules and "nothing opened" in rules
