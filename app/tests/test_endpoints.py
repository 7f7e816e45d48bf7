"""/, /healthz, /status and /notes."""
import json
from unittest import mock

from django.core import mail
from django.core.cache import cache
from django.db import OperationalError, connections
from django.test import Client, TestCase, override_settings

from djdemo.core.models import Note

BROKEN_REDIS = {"default": {"BACKEND": "djdemo.cache.TolerantRedisCache",
                            "LOCATION": "redis://127.0.0.1:9/0",
                            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}


class Home(TestCase):
    def test_anonymous_cacheable_page(self):
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(set(response["Cache-Control"].split(", ")), {"public", "max-age=60"})
        self.assertNotIn("Set-Cookie", response.headers)
        self.assertNotIn("Cookie", response.headers.get("Vary", ""))
        self.assertContains(response, "1.0.0-testrelease0")
        self.assertContains(response, "/static/core/site.css")

    def test_no_cookie_even_for_a_visitor_with_a_session(self):
        self.client.cookies["sessionid"] = "whatever"
        self.client.cookies["csrftoken"] = "x" * 32
        response = self.client.get("/")
        self.assertNotIn("Set-Cookie", response.headers)
        self.assertNotIn("Cookie", response.headers.get("Vary", ""))

    def test_unknown_host_is_refused(self):
        with self.assertLogs("django.security.DisallowedHost", "ERROR") as logs:
            self.assertEqual(self.client.get("/", headers={"host": "evil.example"}).status_code, 400)
        self.assertIn("evil.example", logs.output[0])
        self.assertIsNone(logs.records[0].exc_info)  # one line in the journal, no traceback


class Healthz(TestCase):
    def test_healthy(self):
        response = self.client.get("/healthz")
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["checks"], {"database": "ok", "cache": "ok"})
        self.assertEqual(body["release"], "1.0.0-testrelease0")
        self.assertIn("no-store", response["Cache-Control"])
        self.assertNotIn("Set-Cookie", response.headers)

    def test_head_works_for_probes(self):
        self.assertEqual(self.client.head("/healthz").status_code, 200)

    def test_broken_cache_is_degraded_for_the_probe_and_not_ready_for_a_deploy(self):
        with override_settings(CACHES=BROKEN_REDIS), self.assertLogs("djdemo.core.views", "WARNING"):
            live = self.client.get("/healthz")
            ready = self.client.get("/readyz")
        self.assertEqual(live.status_code, 200)
        self.assertEqual(live.json()["status"], "degraded")
        self.assertEqual(live.json()["checks"]["database"], "ok")
        self.assertTrue(live.json()["checks"]["cache"].startswith("fail: "), live.json())
        self.assertEqual(ready.status_code, 503)
        self.assertEqual(ready.json()["status"], "fail")
        self.assertIn("no-store", live["Cache-Control"])
        self.assertIn("no-store", ready["Cache-Control"])

    def test_ready_when_everything_answers(self):
        response = self.client.get("/readyz")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["status"], "ok")

    def test_a_failed_probe_mails_nobody(self):
        with mock.patch.object(connections["default"], "cursor", side_effect=OperationalError("gone")), \
                self.assertLogs("djdemo.core.views", "WARNING"):
            self.client.get("/healthz")
        self.assertEqual(mail.outbox, [])

    def test_broken_database_is_503(self):
        with mock.patch.object(connections["default"], "cursor", side_effect=OperationalError("gone")), \
                self.assertLogs("djdemo.core.views", "WARNING") as logs:
            response = self.client.get("/healthz")
            ready = self.client.get("/readyz")
        self.assertEqual((response.status_code, ready.status_code), (503, 503))
        self.assertEqual(response.json()["checks"], {"database": "fail: OperationalError", "cache": "ok"})
        self.assertIn("gone", "\n".join(logs.output))  # the reason goes to the log, not the response


class Status(TestCase):
    def setUp(self):
        cache.clear()

    def test_keys(self):
        response = self.client.get("/status")
        self.assertEqual(response.status_code, 200)
        self.assertIn("no-store", response["Cache-Control"])
        body = response.json()
        self.assertLessEqual({"release", "app_server", "host", "read_db_host", "replica_lag_seconds", "counter",
                              "cache_backend", "python", "django"}, set(body))
        self.assertEqual(body["release"], "1.0.0-testrelease0")
        self.assertEqual(body["app_server"], "gunicorn")
        self.assertEqual(body["cache_backend"], "locmem")
        self.assertEqual(body["read_db_alias"], "default")
        self.assertIsNone(body["read_db_host"])  # SQLite
        self.assertIsNone(body["replica_lag_seconds"])
        self.assertTrue(body["host"])
        self.assertTrue(body["django"].startswith("5.2"))
        self.assertNotIn("errors", body)

    def test_counter_increments(self):
        first = self.client.get("/status").json()["counter"]
        second = self.client.get("/status").json()["counter"]
        third = Client().get("/status").json()["counter"]
        self.assertEqual(first, 1)
        self.assertEqual((second, third), (2, 3))

    def test_counter_comes_back_after_eviction(self):
        self.client.get("/status")
        cache.clear()
        self.assertEqual(self.client.get("/status").json()["counter"], 1)

    def test_broken_cache_is_reported_not_fatal(self):
        with override_settings(CACHES=BROKEN_REDIS), self.assertLogs("djdemo.core.views", "WARNING"):
            body = self.client.get("/status").json()
        self.assertIsNone(body["counter"])
        self.assertIn("cache", body["errors"])


class Notes(TestCase):
    def post(self, payload, client=None, content_type="application/json"):
        client = client or self.client
        data = json.dumps(payload) if content_type == "application/json" else payload
        return client.post("/notes", data, content_type=content_type)

    def test_write_then_read(self):
        response = self.post({"text": "  hello from the primary  "})
        self.assertEqual(response.status_code, 201)
        created = response.json()
        self.assertEqual(created["text"], "hello from the primary")
        self.assertEqual(created["write_db_alias"], "default")
        self.assertEqual(Note.objects.using("default").get(pk=created["id"]).text, "hello from the primary")

        listing = self.client.get("/notes")
        self.assertEqual(listing.status_code, 200)
        self.assertIn("no-store", listing["Cache-Control"])
        body = listing.json()
        self.assertEqual(body["notes"][0]["id"], created["id"])
        self.assertEqual(body["read_db_alias"], "default")
        self.assertIn("read_db_host", body)

        detail = self.client.get(f"/notes/{created['id']}")
        self.assertEqual(detail.status_code, 200)
        self.assertEqual(detail.json()["text"], "hello from the primary")
        self.assertEqual(self.client.get(f"/notes/{created['id'] + 1000}").status_code, 404)

    def test_newest_first_and_limited(self):
        for number in range(5):
            self.post({"text": f"note {number}"})
        notes = self.client.get("/notes?limit=3").json()["notes"]
        self.assertEqual([note["text"] for note in notes], ["note 4", "note 3", "note 2"])

    def test_json_needs_no_csrf_token(self):
        response = self.post({"text": "from curl"}, client=Client(enforce_csrf_checks=True))
        self.assertEqual(response.status_code, 201)

    def test_form_posts_are_refused(self):
        # What a cross-site form could send: refused, so the CSRF exemption opens nothing.
        for content_type in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=BoUnDaRy",
                             "text/plain"):
            with self.subTest(content_type=content_type):
                response = self.client.generic("POST", "/notes", "text=forged", content_type=content_type)
                self.assertEqual(response.status_code, 415)
        self.assertFalse(Note.objects.exists())

    def test_bad_input(self):
        for payload in ({}, {"text": ""}, {"text": "   "}, {"text": 5}, ["text"], {"text": "x" * 501}):
            with self.subTest(payload=payload):
                self.assertEqual(self.post(payload).status_code, 400)
        response = self.client.generic("POST", "/notes", "{not json", content_type="application/json")
        self.assertEqual(response.status_code, 400)

    def test_other_methods(self):
        self.assertEqual(self.client.delete("/notes").status_code, 405)
        self.assertEqual(self.client.post("/status").status_code, 405)


class Slow(TestCase):
    def test_sleeps_then_answers_uncacheable(self):
        with mock.patch("djdemo.core.views.asyncio.sleep") as sleep:
            response = self.client.get("/slow?seconds=2.5")
        sleep.assert_awaited_once_with(2.5)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["slept"], 2.5)
        self.assertIn("no-cache", response["Cache-Control"])

    def test_bounded(self):
        for value in ("-1", "31", "abc", "nan"):
            with self.subTest(seconds=value):
                self.assertEqual(self.client.get(f"/slow?seconds={value}").status_code, 400)
        self.assertEqual(self.client.post("/slow").status_code, 405)


class CacheDown(TestCase):
    """A dead cache server makes pages slower, never failed: every call answers as a miss,
    and the server is skipped for a few seconds after a failure (no timeout per request)."""

    def test_pages_and_writes_are_served(self):
        with override_settings(CACHES=BROKEN_REDIS), self.assertLogs("djdemo.cache", "WARNING"):
            self.assertEqual(self.client.get("/").status_code, 200)
            self.assertEqual(self.client.get("/status").status_code, 200)
            created = self.client.post("/notes", json.dumps({"text": "while the cache is down"}),
                                       content_type="application/json")
            self.assertEqual(created.status_code, 201)
            self.assertEqual(self.client.get(f"/notes/{created.json()['id']}").status_code, 200)

    def test_a_logged_in_user_stays_logged_in(self):
        from django.contrib.auth import get_user_model
        get_user_model().objects.create_user("cachedown", password="cachedown-password-0123")
        self.assertTrue(self.client.login(username="cachedown", password="cachedown-password-0123"))
        with override_settings(CACHES=BROKEN_REDIS), self.assertLogs("djdemo.cache", "WARNING"):
            response = self.client.get("/accounts/password_change/")
        self.assertEqual(response.status_code, 200)  # not a redirect to the login page

    def test_the_server_is_skipped_after_a_failure(self):
        from django.core.cache import caches
        with override_settings(CACHES=BROKEN_REDIS), self.assertLogs("djdemo.cache", "WARNING") as logs:
            backend = caches["default"]
            self.assertEqual(backend.get("k", "fallback"), "fallback")
            with mock.patch("django.core.cache.backends.redis.RedisCache.get") as server:
                self.assertIsNone(backend.get("k"))
                backend.set("k", 1)
            server.assert_not_called()
        self.assertEqual(len(logs.output), 1, logs.output)  # one warning per outage, not per call
