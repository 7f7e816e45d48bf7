"""The mail tier as its users see it: an app host sends through the relay, the mail
arrives at the lab's sink signed with a DKIM key that verifies against the DNS
file the role wrote; everyone else is refused, by Postfix and by the firewall.

Addresses, the domain and the selector are read from molecule.yml, so the two
never drift.
"""
import base64
import email
import os
import re
import sys
import time
import uuid
from pathlib import Path

import pytest
import testinfra
from cryptography.hazmat.primitives import serialization

SCENARIO = Path(__file__).resolve().parent.parent
ROOT = SCENARIO.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import molecule_config  # noqa: E402  (the project's shared test helpers)
MOLECULE = molecule_config.load(SCENARIO)
HOSTVARS = MOLECULE["provisioner"]["inventory"]["host_vars"]
MAILVARS = MOLECULE["provisioner"]["inventory"]["group_vars"]["mail"]
DOMAIN = MAILVARS["opendkim_domains"][0]["name"]
SELECTOR = MAILVARS["opendkim_domains"][0]["selector"]
SIZE_LIMIT = MAILVARS["postfix_message_size_limit"]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
KEY_FILE = EPHEMERAL / f"dkim-{DOMAIN}.pem"
ZONE_FILE = EPHEMERAL / "dns" / f"{DOMAIN}.zone"
CA = EPHEMERAL / "pki" / "ca.crt"
SINK_MAILDIR = "/var/mail/sink/Maildir"

import dkimzone  # noqa: E402  (the project's shared test helpers)
HOST_KEY = f"/etc/dkimkeys/{DOMAIN}.{SELECTOR}.private"


def _name(group):
    names = [p["name"] for p in MOLECULE["platforms"] if group in p["groups"]]
    assert len(names) == 1, f"expected one host in group {group}"
    return names[0]


def _only_host(group):
    # Straight through the container engine: many short commands, each without
    # an ansible run (the SMTP traffic itself goes over the lab network).
    return testinfra.get_host(f"docker://{_name(group)}")


def _address(group):
    return HOSTVARS[_name(group)]["private_ip"]


MAIL_IP, APP_IP, CLIENT_IP = _address("mail"), _address("app"), _address("client")


@pytest.fixture(scope="module")
def mail():
    return _only_host("mail")


@pytest.fixture(scope="module")
def app():
    host = _only_host("app")
    host.check_output(f"echo {base64.b64encode(CA.read_bytes()).decode()} | base64 -d > /root/djstack-ca.crt")
    return host


@pytest.fixture(scope="module")
def client():
    return _only_host("client")


# --- helpers ----------------------------------------------------------------------

SEND = r'''
import smtplib, ssl, sys
from email.message import EmailMessage
host, sender, rcpt, subject, tls, size = sys.argv[1:7]
msg = EmailMessage()
msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
msg.set_content("Someone asked for a password reset.\n" + "x" * int(size) + "\n")
try:
    with smtplib.SMTP(host, 25, timeout=15) as s:
        s.ehlo("sender.test")
        print("EHLO", s.esmtp_features.get("size", ""), "starttls" in s.esmtp_features)
        if tls == "1":
            ctx = ssl.create_default_context(cafile="/root/djstack-ca.crt")
            s.starttls(context=ctx)
            s.ehlo("sender.test")
            print("TLS", s.sock.version())
        s.send_message(msg)
    print("SENT")
except smtplib.SMTPRecipientsRefused as e:
    code, text = list(e.recipients.values())[0]
    print("REFUSED", code, text.decode())
except smtplib.SMTPResponseException as e:
    print("REFUSED", e.smtp_code, e.smtp_error.decode())
except OSError as e:
    print("NOCONNECT", type(e).__name__, e)
'''


def send(host, to_host, sender=f"noreply@{DOMAIN}", rcpt="someone@example.org", subject=None, tls=False, size=0):
    """Submit one message with Python's smtplib on `host`; returns (subject, output)."""
    subject = subject or f"probe-{uuid.uuid4().hex}"
    script = base64.b64encode(SEND.encode()).decode()
    out = host.check_output(
        f"echo {script} | base64 -d > /tmp/send.py && timeout 60 python3 /tmp/send.py "
        f"{to_host} {sender} {rcpt} {subject} {1 if tls else 0} {size}")
    return subject, out


def sink_message(client, subject, timeout=60):
    """The raw message with this subject from the sink's Maildir (waits for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.run(f"grep -rl 'Subject: {subject}' {SINK_MAILDIR}/new {SINK_MAILDIR}/cur")
        if found.rc == 0 and found.stdout.strip():
            path = found.stdout.split()[0]
            return base64.b64decode(client.check_output(f"base64 -w0 {path}"))
        time.sleep(1)
    raise AssertionError(f"no message '{subject}' in the sink within {timeout} s")


def zone_records():
    return dkimzone.zone_records(ZONE_FILE)


def verify_dkim(raw):
    return dkimzone.verify_dkim(raw, ZONE_FILE)


# --- configuration checks ----------------------------------------------------------

def test_postfix_check_and_opendkim_config_test_pass(mail):
    result = mail.run("postfix check")
    assert result.rc == 0 and not (result.stdout + result.stderr).strip(), result.stderr
    assert mail.run("opendkim -n -x /etc/opendkim.conf").rc == 0
    assert mail.service("postfix").is_enabled and mail.service("opendkim").is_enabled


def test_relay_configuration(mail):
    conf = {k: mail.check_output(f"postconf -h {k}") for k in (
        "mydestination", "local_transport", "smtpd_relay_restrictions", "mynetworks", "inet_interfaces",
        "smtp_tls_security_level", "smtpd_tls_security_level", "message_size_limit", "smtpd_milters",
        "milter_default_action")}
    assert conf["mydestination"] == ""
    assert conf["local_transport"].startswith("error:")
    assert conf["smtpd_relay_restrictions"] == "permit_mynetworks, reject_unauth_destination"
    assert conf["mynetworks"].split() == ["127.0.0.0/8", "[::1]/128", f"{APP_IP}/32"]
    assert conf["smtp_tls_security_level"] == "may" and conf["smtpd_tls_security_level"] == "may"
    assert conf["message_size_limit"] == str(SIZE_LIMIT)
    assert conf["smtpd_milters"] == "inet:127.0.0.1:8891" and conf["milter_default_action"] == "tempfail"


def listening(host, port):
    out = host.check_output(f"ss -H -tln 'sport = :{port}'")
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


def test_relay_and_milter_listen_on_private_address_and_loopback_only(mail):
    assert listening(mail, 25) == {MAIL_IP, "127.0.0.1"}
    assert listening(mail, 8891) == {"127.0.0.1"}


def test_dns_file_publishes_dkim_spf_dmarc():
    records = zone_records()
    assert set(records) == {f"{SELECTOR}._domainkey.{DOMAIN}", DOMAIN, f"_dmarc.{DOMAIN}"}
    spf = records[DOMAIN]
    assert spf.startswith("v=spf1 ") and spf.endswith(" -all") and f"ip4:{MAIL_IP}" in spf.split()
    dmarc = dict(kv.strip().split("=", 1) for kv in records[f"_dmarc.{DOMAIN}"].split(";"))
    assert dmarc["v"] == "DMARC1" and dmarc["p"] in ("quarantine", "reject")
    # The DKIM record holds the public half of the key in the vault (here: the test key), 2048+ bits.
    dkim_tags = dict(kv.strip().split("=", 1) for kv in records[f"{SELECTOR}._domainkey.{DOMAIN}"].split(";"))
    assert dkim_tags["v"] == "DKIM1" and dkim_tags["k"] == "rsa"
    published = serialization.load_der_public_key(base64.b64decode(dkim_tags["p"]))
    private = serialization.load_pem_private_key(KEY_FILE.read_bytes(), password=None)
    assert published.public_numbers() == private.public_key().public_numbers()
    assert published.key_size >= 2048
    # Strings of a TXT record are at most 255 characters.
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', ZONE_FILE.read_text()))


def test_host_signs_with_the_key_from_the_data(mail):
    key = mail.file(HOST_KEY)
    assert (key.user, key.group, key.mode) == ("opendkim", "opendkim", 0o600)
    on_host = serialization.load_pem_private_key(base64.b64decode(mail.check_output(f"base64 -w0 {HOST_KEY}")), None)
    given = serialization.load_pem_private_key(KEY_FILE.read_bytes(), None)
    assert on_host.private_numbers() == given.private_numbers()


# --- behaviour ---------------------------------------------------------------------

def test_app_mail_arrives_at_sink_with_valid_dkim_signature(app, client):
    subject, out = send(app, MAIL_IP)
    assert "SENT" in out, out
    raw = sink_message(client, subject)
    ok, signer = verify_dkim(raw)
    assert ok, raw.decode(errors="replace")[:3000]
    assert signer.keysize >= 2048
    sig = dict(signer.signature_fields)
    assert sig[b"d"] == DOMAIN.encode() and sig[b"s"] == SELECTOR.encode()
    # The relay reached the sink over TLS (opportunistic outbound TLS): the
    # topmost Received header is the sink's, about the relay.
    received = email.message_from_bytes(raw).get_all("Received")
    assert MAIL_IP in received[0] and "using TLS" in received[0], received
    # The body was not changed on the way: a modified copy must fail.
    assert not verify_dkim(raw.replace(b"password reset", b"password RESET"))[0]


def test_app_can_send_over_starttls_with_the_relays_certificate(app, client):
    subject, out = send(app, MAIL_IP, tls=True)
    assert out.split("\n")[0].endswith(" True"), out  # STARTTLS offered
    assert "TLS TLSv1.3" in out or "TLS TLSv1.2" in out, out
    assert "SENT" in out, out
    assert verify_dkim(sink_message(client, subject))[0]


def test_size_limit_is_advertised_and_enforced(app):
    _, out = send(app, MAIL_IP, subject="too-big", size=SIZE_LIMIT + 1024)
    assert out.startswith(f"EHLO {SIZE_LIMIT} "), out
    assert "REFUSED 552" in out, out


def test_sender_outside_the_signing_domains_is_refused(app):
    _, out = send(app, MAIL_IP, sender="someone@example.com")
    assert "REFUSED 554" in out and "Sender address rejected" in out, out


def test_firewall_closes_port_25_to_everyone_but_the_app_hosts(app, client):
    probe = f"timeout 10 python3 -c \"import socket; socket.create_connection(('{MAIL_IP}', 25), timeout=4); print('OPEN')\""
    assert "OPEN" in app.run(probe).stdout
    closed = client.run(probe)
    assert "OPEN" not in closed.stdout and closed.rc != 0, closed.stdout


def test_postfix_refuses_to_relay_for_the_client_even_past_the_firewall(mail, client):
    # Open the firewall for the client for a moment, so Postfix alone must refuse.
    mail.check_output(f"nft insert rule inet djstack_filter input ip saddr {CLIENT_IP} tcp dport 25 accept")
    try:
        _, out = send(client, MAIL_IP)
        _, to_local = send(client, MAIL_IP, rcpt="root@mail1")
    finally:
        mail.check_output("systemctl reload nftables")
    assert "REFUSED 554" in out and "Relay access denied" in out, out
    assert "REFUSED 554" in to_local, to_local
    assert "djstack_filter" in mail.check_output("nft list ruleset") and CLIENT_IP not in mail.check_output("nft list ruleset")


def test_postfix_refuses_to_relay_for_any_address_outside_the_app_group(mail):
    # The relay's own private address is not a relay client either (loopback traffic
    # passes the firewall, so this is Postfix's answer alone).
    _, out = send(mail, MAIL_IP)
    assert "REFUSED 554" in out and "Relay access denied" in out, out


def test_mail_waits_instead_of_leaving_unsigned_when_opendkim_is_down(mail, app, client):
    mail.check_output("systemctl stop opendkim")
    try:
        _, out = send(app, MAIL_IP)
    finally:
        mail.check_output("systemctl start opendkim")
    assert "REFUSED 451" in out, out

