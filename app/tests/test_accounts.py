"""Password reset by mail, the admin behind login, and the ensure_admin command."""
import os
import re
from io import StringIO
from unittest import mock

from django.contrib.auth.models import User
from django.core import mail
from django.core.management import call_command
from django.test import TestCase

from djdemo.core.models import Note

LINK = re.compile(r"https://djdemo\.example(/accounts/reset/[^/\s]+/[^/\s]+/)")


class PasswordReset(TestCase):
    def setUp(self):
        self.user = User.objects.create_user("alice", "alice@example.com", "old-password-123")
        User.objects.create_user("bob", "bob@example.com", "bob-password-123")

    def test_one_mail_with_a_working_link(self):
        # As it arrives through the edge: the public Host, and X-Forwarded-Proto makes the link https.
        https = {"headers": {"host": "djdemo.example", "x-forwarded-proto": "https"}}
        response = self.client.post("/accounts/password_reset/", {"email": "alice@example.com"}, **https)
        self.assertRedirects(response, "/accounts/password_reset/done/", fetch_redirect_response=False)
        self.assertEqual(len(mail.outbox), 1)
        message = mail.outbox[0]
        self.assertEqual(message.to, ["alice@example.com"])
        self.assertEqual(message.from_email, "djdemo@djdemo.example")
        self.assertIn("alice", message.body)
        self.assertIn("djdemo.example", message.subject)

        link = LINK.search(message.body).group(1)
        response = self.client.get(link, **https)
        self.assertEqual(response.status_code, 302)  # to the same URL with the token moved into the session
        form_url = response["Location"]
        self.assertContains(self.client.get(form_url, **https), "Choose a new password")
        response = self.client.post(form_url, {"new_password1": "n3w-Passw0rd!x", "new_password2": "n3w-Passw0rd!x"},
                                    **https)
        self.assertRedirects(response, "/accounts/reset/done/", fetch_redirect_response=False)
        self.assertTrue(self.client.login(username="alice", password="n3w-Passw0rd!x"))
        self.assertContains(self.client.get(form_url, **https), "no longer works")

    def test_unknown_address_sends_nothing_and_says_the_same(self):
        response = self.client.post("/accounts/password_reset/", {"email": "nobody@example.com"})
        self.assertRedirects(response, "/accounts/password_reset/done/", fetch_redirect_response=False)
        self.assertEqual(len(mail.outbox), 0)

    def test_pages_render(self):
        for url in ("/accounts/password_reset/", "/accounts/password_reset/done/", "/accounts/reset/done/",
                    "/accounts/login/"):
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 200)


class Admin(TestCase):
    def test_requires_login(self):
        for url in ("/admin/", "/admin/core/note/"):
            with self.subTest(url=url):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 302)
                self.assertTrue(response["Location"].startswith("/admin/login/"))

    def test_staff_sees_notes(self):
        User.objects.create_superuser("admin", "admin@example.com", "admin-password-123")
        Note.objects.create(text="visible in the admin")
        self.client.login(username="admin", password="admin-password-123")
        self.assertContains(self.client.get("/admin/core/note/"), "visible in the admin")

    def test_cookies_are_secure_by_default(self):
        User.objects.create_superuser("admin", "admin@example.com", "admin-password-123")
        response = self.client.post("/admin/login/?next=/admin/",
                                    {"username": "admin", "password": "admin-password-123"})
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response.cookies["sessionid"]["secure"])
        self.assertTrue(response.cookies["sessionid"]["httponly"])


class EnsureAdmin(TestCase):
    def run_command(self, password, **options):
        out = StringIO()
        with mock.patch.dict(os.environ, {"DJANGO_SUPERUSER_PASSWORD": password}):
            call_command("ensure_admin", stdout=out, **options)
        return out.getvalue().strip()

    def test_idempotent(self):
        self.assertEqual(self.run_command("first-pass-123", username="ops", email="ops@example.com"), "created")
        self.assertEqual(self.run_command("first-pass-123", username="ops", email="ops@example.com"), "unchanged")
        self.assertEqual(self.run_command("second-pass-456", username="ops", email="ops@example.com"), "updated")
        user = User.objects.get(username="ops")
        self.assertTrue(user.is_superuser and user.is_staff)
        self.assertTrue(user.check_password("second-pass-456"))

    def test_needs_a_password(self):
        from django.core.management import CommandError

        with mock.patch.dict(os.environ, {}, clear=False):
            os.environ.pop("DJANGO_SUPERUSER_PASSWORD", None)
            with self.assertRaisesMessage(CommandError, "DJANGO_SUPERUSER_PASSWORD"):
                call_command("ensure_admin", username="ops")
