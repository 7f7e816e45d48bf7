"""Settings, read only from DJDEMO_* environment variables.

Ansible writes these into one environment file that systemd loads (EnvironmentFile=);
``djdemo-manage --env-file PATH`` reads the same file. Nothing here is host-specific and
nothing secret has a default: without DJDEMO_SECRET_KEY the app refuses to start unless
DJDEMO_DEBUG is on. See app/README.md for the full list.
"""
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from djdemo import env

PACKAGE_DIR = Path(__file__).resolve().parent

# --- Core -----------------------------------------------------------------------------------

DEBUG = env.get_bool("DEBUG", False)
SECRET_KEY = env.get("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJDEMO_SECRET_KEY is not set: refusing to start (set DJDEMO_DEBUG=1 for local development only)")
    SECRET_KEY = "django-insecure-djdemo-debug-only-key-never-use-in-production"

ALLOWED_HOSTS = env.get_list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.get_list("CSRF_TRUSTED_ORIGINS")

RELEASE_ID = env.get("RELEASE_ID", "unknown")
APP_SERVER = env.get_choice("APP_SERVER", ("gunicorn", "uvicorn", "unknown"), "unknown")

INSTALLED_APPS = [
    # First, so its templates (registration/*) win over the admin's.
    "djdemo.core",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Right after SecurityMiddleware: static files are answered before sessions or CSRF run.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "djdemo.urls"
WSGI_APPLICATION = "djdemo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Database: the primary for writes, an optional replica for reads -------------------------

APP_SERVER_IS_ASGI = APP_SERVER == "uvicorn"
# Persistent connections suit gunicorn's sync workers. Under ASGI Django closes connections
# from other threads than the ones that opened them, so keep none open between requests.
DB_CONN_MAX_AGE = env.get_int("DB_CONN_MAX_AGE", 0 if APP_SERVER_IS_ASGI else 60)
# Under ASGI a pool per worker process keeps connections open instead (djdemo/dbpool.py): at
# most this many per database alias; 0 opens one connection per request.
DB_POOL_SIZE = env.get_int("DB_POOL_SIZE", 4 if APP_SERVER_IS_ASGI else 0)
# Seconds a request waits for a pooled connection before it fails (every connection busy, or
# no database host answering).
DB_POOL_TIMEOUT = env.get_int("DB_POOL_TIMEOUT", 5)
# Seconds a read connection that fell back to the primary (no replica answered) is kept: reads
# return to a replica this soon after it is back (core/apps.py; pooled: djdemo/dbpool.py), instead
# of after CONN_MAX_AGE.
DB_FALLBACK_MAX_AGE = env.get_int("DB_FALLBACK_MAX_AGE", 5)
DB_HOST = env.get("DB_HOST")
DB_REPLICA_HOSTS = env.get_list("DB_REPLICA_HOSTS")
# Seconds libpq waits for each host of a list: a dead host costs at most this, once per
# connection (persistent connections under gunicorn keep to the host that answered).
DB_CONNECT_TIMEOUT = env.get_int("DB_CONNECT_TIMEOUT", 2)
# Seconds before a connection whose server stopped answering (a host that died, not one that
# closed the socket) is given up: TCP keepalives while idle, and the kernel's user timeout while
# a query is unanswered. Without them a thread waits out TCP's retransmissions (about 15 min).
DB_DEAD_AFTER = env.get_int("DB_DEAD_AFTER", 6)


def _postgresql(host, pool_for, **options):
    sslrootcert = env.get("DB_SSLROOTCERT")
    opts = {
        "sslmode": env.get("DB_SSLMODE", "verify-full" if sslrootcert else "require"),
        "connect_timeout": DB_CONNECT_TIMEOUT,
        "keepalives": 1,
        "keepalives_idle": max(DB_DEAD_AFTER // 2, 1),
        "keepalives_interval": 1,
        "keepalives_count": max(DB_DEAD_AFTER - DB_DEAD_AFTER // 2, 1),
        "tcp_user_timeout": DB_DEAD_AFTER * 1000,
        # Reported by PostgreSQL in pg_stat_activity: which app and which release holds a connection.
        "application_name": f"djdemo {RELEASE_ID}"[:63],
        **options,
    }
    if sslrootcert:
        opts["sslrootcert"] = sslrootcert
    if DB_POOL_SIZE and not DB_CONN_MAX_AGE:
        from djdemo.dbpool import reset_for

        opts["pool"] = {"min_size": 1, "max_size": DB_POOL_SIZE, "timeout": DB_POOL_TIMEOUT,
                        "reset": reset_for(pool_for, DB_FALLBACK_MAX_AGE)}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": host,
        "PORT": env.get("DB_PORT", "5432"),
        "NAME": env.get("DB_NAME", "djdemo"),
        "USER": env.get("DB_USER", "djdemo"),
        "PASSWORD": env.get("DB_PASSWORD"),
        "CONN_MAX_AGE": DB_CONN_MAX_AGE,
        # Also a pooled connection's check when it is taken from the pool.
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": opts,
    }


if DB_HOST:
    # Writes: every database host, the expected primary first; libpq connects to the one that
    # takes writes. After a failover the app finds the promoted host by itself, with the dead
    # one still listed, and nothing has to be re-deployed.
    DATABASES = {"default": _postgresql(",".join([DB_HOST, *DB_REPLICA_HOSTS]), "primary",
                                        target_session_attrs="read-write")}
    if DB_REPLICA_HOSTS:
        # Reads: one alias for every replica, then the primary. libpq spreads connections over
        # the replicas at random and prefers a server in recovery; when no replica answers it
        # connects to the primary within the same request, so a dead replica fails no read.
        DATABASES["replica"] = _postgresql(
            ",".join([*DB_REPLICA_HOSTS, DB_HOST]), "standby", target_session_attrs="prefer-standby",
            load_balance_hosts="random")
        # Tests create no database for the replica: it reads the test copy of the primary.
        DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
else:
    # Local development and tests only: a SQLite file outside the source and static trees.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(Path(tempfile.gettempdir()) / "djdemo-dev.sqlite3"),
        }
    }

DATABASE_ROUTERS = ["djdemo.routers.PrimaryReplicaRouter"]

# --- Cache and sessions ---------------------------------------------------------------------

CACHE_BACKEND = env.get_choice("CACHE_BACKEND", ("redis", "memcached", "locmem"), "locmem")
if CACHE_BACKEND == "redis":
    REDIS_URL = env.get("REDIS_URL")
    if not REDIS_URL:
        raise ImproperlyConfigured("DJDEMO_CACHE_BACKEND=redis needs DJDEMO_REDIS_URL")
    _cache = {
        # A failing cache answers as a miss and is skipped for a few seconds (djdemo.cache).
        "BACKEND": "djdemo.cache.TolerantRedisCache",
        "LOCATION": REDIS_URL,
        # Passed to redis-py's connection pool: a dead server fails a request in seconds.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2, "health_check_interval": 30},
    }
elif CACHE_BACKEND == "memcached":
    MEMCACHED_LOCATION = env.get_list("MEMCACHED_LOCATION")
    if not MEMCACHED_LOCATION:
        raise ImproperlyConfigured("DJDEMO_CACHE_BACKEND=memcached needs DJDEMO_MEMCACHED_LOCATION (host:port)")
    _cache = {
        "BACKEND": "djdemo.cache.TolerantPyMemcacheCache",
        "LOCATION": MEMCACHED_LOCATION,
        "OPTIONS": {"connect_timeout": 2, "timeout": 2, "use_pooling": True},
    }
else:
    _cache = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "djdemo"}
CACHES = {"default": {**_cache, "KEY_PREFIX": "djdemo", "TIMEOUT": 300}}

# Sessions: cached_db, not cache. Reads come from the cache (Redis), so a page view costs no
# database query; every write also goes to PostgreSQL, so a Redis restart, an eviction under
# maxmemory or a redeploy on fresh servers (which restores PostgreSQL, not Redis) logs nobody
# out. All user data lives in PostgreSQL; the cache only makes it fast.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- Security (behind the TLS-terminating edge) ---------------------------------------------

# nginx terminates TLS and Varnish passes X-Forwarded-Proto on; only the edge reaches the app.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_COOKIES = env.get_bool("SECURE_COOKIES", True)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# HSTS and the HTTP->HTTPS redirect are the edge's job (nginx), not the app's: the app
# servers speak plain HTTP to Varnish and its health probes.
SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]

# --- Static files ---------------------------------------------------------------------------

STATIC_URL = "/static/"
# collectstatic writes here at deploy time; WhiteNoise serves it with hashed names and
# far-future Cache-Control headers.
STATIC_ROOT = env.get("STATIC_ROOT") or None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Mail -----------------------------------------------------------------------------------

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env.get_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env.get("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env.get("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env.get_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.get("DEFAULT_FROM_EMAIL", "djdemo@localhost")
SERVER_EMAIL = env.get("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
ADMINS = [(address, address) for address in env.get_list("ADMINS")]
EMAIL_SUBJECT_PREFIX = "[djdemo] "

# --- Logging: everything to stderr (systemd puts it in the journal), errors mailed ----------

LOG_LEVEL = env.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "one_line": {"()": "djdemo.logfilters.OneLine"},
    },
    "formatters": {
        # The journal stamps time and host itself.
        "journal": {"format": "{levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "journal",
                   "level": LOG_LEVEL},
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false"],
        },
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        # Replaces Django's own handlers (console only when DEBUG): everything propagates to
        # stderr, and server errors are also mailed to ADMINS.
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        # Scanners probing with random Host headers would flood the admins' mailbox.
        # One line each in the journal, no traceback (a wrong ALLOWED_HOSTS still shows up here).
        "django.security.DisallowedHost": {"handlers": ["stderr"], "filters": ["one_line"], "propagate": False},
    },
}
