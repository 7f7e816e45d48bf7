"""Mail in the whole lab: the demo app's password reset, requested through the edge like a
visitor would, leaves through the relay signed with DKIM and lands in the lab's sink."""
import base64
import email
import shlex
import sys
import time

from conftest import SITE, csrf_token
from helpers import ROOT

sys.path.insert(0, str(ROOT / "tests"))
from dkimzone import verify_dkim  # noqa: E402

ZONE_FILE = ROOT / "build" / "dns" / "lab" / "djstack.test.zone"
SINK = "/var/mail/sink/Maildir"


def test_password_reset_mail_arrives_with_a_valid_dkim_signature(stack, visitor, app_user):
    jar = "/tmp/reset-jar"
    client = stack.host("client1")
    client.run(f"rm -f {jar}")
    code, _, form = visitor("/accounts/password_reset/", jar=jar)
    assert code == 200, form[:500]
    code, headers, body = visitor("/accounts/password_reset/",
                                  "-H", shlex.quote(f"Referer: https://{SITE}/accounts/password_reset/"),
                                  "--data-urlencode", shlex.quote(f"csrfmiddlewaretoken={csrf_token(form)}"),
                                  "--data-urlencode", shlex.quote(f"email={app_user}@example.test"), jar=jar)
    assert code == 302, (headers, body[:500])
    message = _signed_mail_in_sink(client, f"To: {app_user}@example.test")
    assert message["From"] == "noreply@djstack.test"
    assert f"https://{SITE}/accounts/reset/" in message.get_payload(decode=True).decode()


def test_error_mails_reach_the_admins_through_the_relay(stack):
    """Server errors are mailed to app_admins: Django's mail_admins (what its error handler
    calls), run on an app host with the service's own settings, reaches the sink signed."""
    marker = f"admins-{time.time_ns()}"
    stack.host("app1").check_output(
        f"sudo /usr/local/sbin/djdemo-manage shell -c "
        f"{shlex.quote(f'from django.core.mail import mail_admins; mail_admins({marker!r}, {marker!r})')}")
    message = _signed_mail_in_sink(stack.host("client1"), marker)
    assert message["To"] == "ops@djstack.test", message["To"]
    assert message["From"].endswith("@djstack.test"), message["From"]


def _signed_mail_in_sink(client, text, seconds=60):
    """The sink's message containing `text`, once it arrived; its DKIM signature must verify."""
    deadline, found = time.time() + seconds, None
    while time.time() < deadline and not found:
        out = client.run(f"sudo grep -rlF {shlex.quote(text)} {SINK}/new {SINK}/cur")
        found = out.stdout.split()[-1] if out.rc == 0 and out.stdout.strip() else None
        time.sleep(1)
    assert found, f"no mail with {text!r} reached the sink"
    raw = base64.b64decode(client.check_output(f"sudo base64 -w0 {found}"))
    ok, signer = verify_dkim(raw, ZONE_FILE)
    assert ok, raw.decode(errors="replace")[:2000]
    assert signer.keysize >= 2048
    assert dict(signer.signature_fields)[b"d"] == b"djstack.test"
    return email.message_from_bytes(raw)


def test_the_client_host_cannot_use_the_relay(stack):
    probe = stack.host("client1").run(f"nc -z -w 3 {stack.addresses()['mail1']} 25")
    assert probe.rc != 0, "the relay's SMTP port answers the client host"
