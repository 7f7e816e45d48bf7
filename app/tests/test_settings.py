"""The environment contract: defaults are safe, missing secrets stop the app."""
import os
import runpy
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase

KEY = {"DJDEMO_SECRET_KEY": "k" * 50}
SRC = Path(__file__).resolve().parent.parent / "src"


def load(environ):
    """djdemo.settings evaluated afresh under exactly this environment."""
    with mock.patch.dict(os.environ, environ, clear=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: "found in sys.modules"
        return runpy.run_module("djdemo.settings", run_name="djdemo_settings_under_test")


class SettingsFromEnvironment(SimpleTestCase):
    def test_missing_secret_key_is_refused_without_debug(self):
        with self.assertRaisesMessage(ImproperlyConfigured, "DJDEMO_SECRET_KEY"):
            load({})
        with self.assertRaisesMessage(ImproperlyConfigured, "DJDEMO_SECRET_KEY"):
            load({"DJDEMO_DEBUG": "0", "DJDEMO_SECRET_KEY": "  "})

    def test_debug_runs_without_a_secret_key(self):
        settings = load({"DJDEMO_DEBUG": "1"})
        self.assertTrue(settings["DEBUG"])
        self.assertTrue(settings["SECRET_KEY"].startswith("django-insecure-"))

    def test_the_service_refuses_to_start_without_a_secret_key(self):
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DJDEMO_", "DJANGO_"))}
        env["PYTHONPATH"] = str(SRC)
        proc = subprocess.run([sys.executable, "-m", "djdemo.manage", "check"], env=env,
                              capture_output=True, text=True, timeout=120)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("DJDEMO_SECRET_KEY is not set", proc.stderr)

    def test_safe_defaults(self):
        settings = load(KEY)
        self.assertFalse(settings["DEBUG"])
        self.assertTrue(settings["SESSION_COOKIE_SECURE"])
        self.assertTrue(settings["CSRF_COOKIE_SECURE"])
        self.assertEqual(settings["ALLOWED_HOSTS"], [])
        self.assertEqual(settings["SECURE_PROXY_SSL_HEADER"], ("HTTP_X_FORWARDED_PROTO", "https"))
        self.assertEqual(settings["CACHES"]["default"]["BACKEND"], "django.core.cache.backends.locmem.LocMemCache")
        self.assertEqual(settings["DATABASES"]["default"]["ENGINE"], "django.db.backends.sqlite3")
        self.assertEqual(settings["SESSION_ENGINE"], "django.contrib.sessions.backends.cached_db")
        self.assertEqual(settings["STORAGES"]["staticfiles"]["BACKEND"],
                         "whitenoise.storage.CompressedManifestStaticFilesStorage")
        self.assertIsNone(settings["STATIC_ROOT"])

    def test_secure_cookies_can_be_turned_off(self):
        settings = load({**KEY, "DJDEMO_SECURE_COOKIES": "false"})
        self.assertFalse(settings["SESSION_COOKIE_SECURE"])
        self.assertFalse(settings["CSRF_COOKIE_SECURE"])

    def test_bad_values_name_the_variable(self):
        for name, value in [("DJDEMO_DEBUG", "maybe"), ("DJDEMO_CACHE_BACKEND", "disk"),
                            ("DJDEMO_APP_SERVER", "waitress"), ("DJDEMO_EMAIL_PORT", "smtp")]:
            with self.subTest(name=name), self.assertRaisesMessage(ImproperlyConfigured, name):
                load({**KEY, name: value})

    def test_lists_and_mail(self):
        settings = load({**KEY, "DJDEMO_ALLOWED_HOSTS": "www.example.com, example.com,",
                         "DJDEMO_CSRF_TRUSTED_ORIGINS": "https://www.example.com",
                         "DJDEMO_ADMINS": "a@example.com,b@example.com",
                         "DJDEMO_EMAIL_HOST": "10.0.0.41", "DJDEMO_EMAIL_PORT": "2525",
                         "DJDEMO_DEFAULT_FROM_EMAIL": "web@example.com"})
        self.assertEqual(settings["ALLOWED_HOSTS"], ["www.example.com", "example.com"])
        self.assertEqual(settings["CSRF_TRUSTED_ORIGINS"], ["https://www.example.com"])
        self.assertEqual(settings["ADMINS"], [("a@example.com", "a@example.com"), ("b@example.com", "b@example.com")])
        self.assertEqual((settings["EMAIL_HOST"], settings["EMAIL_PORT"]), ("10.0.0.41", 2525))
        self.assertEqual(settings["SERVER_EMAIL"], "web@example.com")

    def test_postgresql_primary_and_replicas(self):
        settings = load({**KEY, "DJDEMO_DB_HOST": "10.0.0.21", "DJDEMO_DB_NAME": "app", "DJDEMO_DB_USER": "app",
                         "DJDEMO_DB_PASSWORD": "pw", "DJDEMO_DB_REPLICA_HOSTS": "10.0.0.22,10.0.0.23"})
        default, replica = settings["DATABASES"]["default"], settings["DATABASES"]["replica"]
        self.assertEqual(default["ENGINE"], "django.db.backends.postgresql")
        self.assertEqual((default["HOST"], default["PORT"], default["NAME"], default["USER"], default["PASSWORD"]),
                         ("10.0.0.21,10.0.0.22,10.0.0.23", "5432", "app", "app", "pw"))
        self.assertEqual(default["OPTIONS"]["sslmode"], "require")
        # Writes find whichever host takes them (after a failover too); reads prefer a replica
        # and fall back to the primary, listed last.
        self.assertEqual(default["OPTIONS"]["target_session_attrs"], "read-write")
        self.assertEqual(replica["HOST"], "10.0.0.22,10.0.0.23,10.0.0.21")
        self.assertEqual(replica["OPTIONS"]["target_session_attrs"], "prefer-standby")
        self.assertEqual(default["OPTIONS"]["connect_timeout"], 2)
        self.assertEqual(replica["TEST"], {"MIRROR": "default"})
        self.assertEqual(default["CONN_MAX_AGE"], 60)
        self.assertEqual(settings["DB_FALLBACK_MAX_AGE"], 5)

    def test_no_replica_alias_without_replica_hosts(self):
        settings = load({**KEY, "DJDEMO_DB_HOST": "db1"})
        self.assertEqual(list(settings["DATABASES"]), ["default"])

    def test_tls_to_postgresql(self):
        settings = load({**KEY, "DJDEMO_DB_HOST": "db1", "DJDEMO_DB_SSLROOTCERT": "/etc/djdemo/ca.crt"})
        options = settings["DATABASES"]["default"]["OPTIONS"]
        self.assertEqual((options["sslmode"], options["sslrootcert"]), ("verify-full", "/etc/djdemo/ca.crt"))
        settings = load({**KEY, "DJDEMO_DB_HOST": "db1", "DJDEMO_DB_SSLROOTCERT": "/ca.crt", "DJDEMO_DB_SSLMODE": "verify-ca"})
        self.assertEqual(settings["DATABASES"]["default"]["OPTIONS"]["sslmode"], "verify-ca")

    def test_uvicorn_pools_its_connections_instead_of_keeping_them_per_thread(self):
        settings = load({**KEY, "DJDEMO_DB_HOST": "db1", "DJDEMO_DB_REPLICA_HOSTS": "db2", "DJDEMO_APP_SERVER": "uvicorn"})
        for alias in ("default", "replica"):
            database = settings["DATABASES"][alias]
            self.assertEqual(database["CONN_MAX_AGE"], 0)  # Django refuses a pool with persistent connections
            pool = database["OPTIONS"]["pool"]
            self.assertEqual((pool["min_size"], pool["max_size"], pool["timeout"]), (1, 4, 5))
            self.assertTrue(callable(pool["reset"]))
        gunicorn = load({**KEY, "DJDEMO_DB_HOST": "db1", "DJDEMO_APP_SERVER": "gunicorn"})
        self.assertNotIn("pool", gunicorn["DATABASES"]["default"]["OPTIONS"])
        unpooled = load({**KEY, "DJDEMO_DB_HOST": "db1", "DJDEMO_APP_SERVER": "uvicorn", "DJDEMO_DB_POOL_SIZE": "0"})
        self.assertNotIn("pool", unpooled["DATABASES"]["default"]["OPTIONS"])

    def test_a_pooled_connection_on_the_wrong_kind_of_server_is_dropped_when_given_back(self):
        from djdemo.dbpool import reset_for

        class Conn:
            def __init__(self, standby):
                self.info = mock.Mock(**{"parameter_status.return_value": "on" if standby else "off"})

        writes, reads = reset_for("primary", 5), reset_for("standby", 5)
        writes(Conn(standby=False))
        with self.assertRaises(ConnectionError):  # the old primary, now a standby
            writes(Conn(standby=True))
        on_replica, fell_back = Conn(standby=True), Conn(standby=False)
        with mock.patch("djdemo.dbpool.time.monotonic", return_value=100.0):
            reads(on_replica), reads(fell_back)  # first given back: kept
        with mock.patch("djdemo.dbpool.time.monotonic", return_value=106.0):
            reads(on_replica)  # a read connection on a replica is kept whatever its age
            with self.assertRaises(ConnectionError):  # on the primary for longer than 5 s
                reads(fell_back)

    def test_cache_backends(self):
        redis = load({**KEY, "DJDEMO_CACHE_BACKEND": "redis", "DJDEMO_REDIS_URL": "redis://app:pw@10.0.0.31:6379/0"})
        self.assertEqual(redis["CACHES"]["default"]["BACKEND"], "djdemo.cache.TolerantRedisCache")
        self.assertEqual(redis["CACHES"]["default"]["LOCATION"], "redis://app:pw@10.0.0.31:6379/0")
        memcached = load({**KEY, "DJDEMO_CACHE_BACKEND": "memcached", "DJDEMO_MEMCACHED_LOCATION": "10.0.0.31:11211"})
        self.assertEqual(memcached["CACHES"]["default"]["BACKEND"],
                         "djdemo.cache.TolerantPyMemcacheCache")
        self.assertEqual(memcached["CACHES"]["default"]["LOCATION"], ["10.0.0.31:11211"])
        for backend in ("redis", "memcached"):
            with self.subTest(backend=backend), self.assertRaises(ImproperlyConfigured):
                load({**KEY, "DJDEMO_CACHE_BACKEND": backend})

    def test_logging_goes_to_stderr_and_errors_to_admins(self):
        logging = load(KEY)["LOGGING"]
        self.assertEqual(logging["handlers"]["stderr"]["stream"], "ext://sys.stderr")
        self.assertEqual(logging["root"]["handlers"], ["stderr"])
        self.assertIn("mail_admins", logging["loggers"]["django"]["handlers"])
