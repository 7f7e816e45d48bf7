"""ACME as its users see it: each edge host serves a certificate the ACME CA (pebble) issued
for the site's name, got by certbot on the host; edge2's order was checked through edge1
(the CA resolves the site's name to edge1 only); certbot's timer unit renews on the host by
itself and nginx serves the new certificate; a second converge orders nothing.

Addresses and the site's name are read from molecule.yml, so the two never drift.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra

SCENARIO = Path(__file__).resolve().parent.parent
ROOT = SCENARIO.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import molecule_config  # noqa: E402  (the project's shared test helpers)
MOLECULE = molecule_config.load(SCENARIO)
HOSTVARS = MOLECULE["provisioner"]["inventory"]["host_vars"]
SITE = MOLECULE["provisioner"]["inventory"]["group_vars"]["all"]["site_domain"]
EDGES = [p["name"] for p in MOLECULE["platforms"] if "edge" in p["groups"]]
CA_HOST = next(p["name"] for p in MOLECULE["platforms"] if "acme" in p["groups"])
ROOT_PEM = "/tmp/pebble-root.pem"


def host(name):
    return testinfra.get_host(f"docker://{name}")


def address(name):
    return HOSTVARS[name]["private_ip"]


@pytest.fixture(scope="module")
def ca():
    """The CA host, with pebble's root certificate fetched from its management API (pebble
    makes a new root at each start: the tests trust exactly the one that issued)."""
    h = host(CA_HOST)
    h.run_expect([0], f"curl -sf --cacert /etc/pebble/ca.pem -o {ROOT_PEM} https://{address(CA_HOST)}:15000/roots/0")
    return h


def served(ca, edge):
    """(verify result, serial, issuer) of the certificate the edge serves for the site, as seen
    from the CA host (outside the edge), verified against pebble's root for the site's name."""
    out = ca.run(f"openssl s_client -connect {address(edge)}:443 -servername {SITE} -CAfile {ROOT_PEM} "
                 f"-verify_hostname {SITE} -showcerts </dev/null 2>/dev/null")
    verify = re.search(r"Verify return code: (\d+) \(([^)]*)\)", out.stdout)
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out.stdout, re.S)
    assert verify and pem, out.stdout[-3000:]
    details = ca.run(f"echo '{pem[0]}' | openssl x509 -noout -serial -issuer")
    serial = re.search(r"serial=(\w+)", details.stdout)[1]
    return verify[1], serial, details.stdout


@pytest.mark.parametrize("edge", EDGES)
def test_each_edge_serves_a_certificate_the_acme_ca_issued_for_the_site(ca, edge):
    verify, _, details = served(ca, edge)
    assert verify == "0", details
    assert "Pebble Intermediate CA" in details, details


def test_edge2s_order_was_checked_through_edge1(ca):
    """The CA resolves the site's name to edge1 only, so its check of edge2's answer reached
    edge1, which did not hold it and asked edge2 (one hop): edge2 logged it from edge1."""
    assert address(EDGES[0]) in ca.file("/etc/hosts").content_string
    log = host(EDGES[1]).file("/var/log/nginx/access.log").content_string
    relayed = [line for line in log.splitlines()
               if line.startswith(address(EDGES[0]) + " ") and "/.well-known/acme-challenge/" in line and '" 200 ' in line]
    assert relayed, log[-3000:]


@pytest.mark.parametrize("edge", EDGES)
def test_certbots_timer_renews_on_the_host(edge):
    timer = host(edge).service("certbot.timer")
    assert timer.is_enabled and timer.is_running


def test_the_timer_unit_renews_and_nginx_serves_the_new_certificate(ca):
    """Make edge2's certificate due (its renewal window wider than its life), start the unit
    the timer starts, and the edge serves a new certificate, verified; nobody ran Ansible."""
    edge = host(EDGES[1])
    _, before, _ = served(ca, EDGES[1])
    edge.run_expect([0], f"sed -i 's/^renew_before_expiry = .*/renew_before_expiry = 100000 days/' "
                         f"/etc/letsencrypt/renewal/{SITE}.conf")
    try:
        unit = edge.run("systemctl start certbot.service")
        assert unit.rc == 0, edge.run("journalctl -u certbot.service --no-pager -n 50").stdout
    finally:
        edge.run_expect([0], f"sed -i 's/^renew_before_expiry = .*/renew_before_expiry = 30 days/' "
                             f"/etc/letsencrypt/renewal/{SITE}.conf")
    verify, after, details = served(ca, EDGES[1])
    assert verify == "0" and after != before, (before, after, details)
    assert "installed the certificate" in edge.run("journalctl -t djstack-nginx-acme --no-pager").stdout


def test_a_second_converge_orders_nothing():
    """With certificates in place, a playbook run changes nothing on the edges (no new order)."""
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_LIBRARY=str(ROOT / "library"),
               ANSIBLE_FILTER_PLUGINS=str(ROOT / "filter_plugins"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / "converge.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:]
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M)
    assert recap and all(changed == "0" for _, changed in recap), proc.stdout[-5000:]
