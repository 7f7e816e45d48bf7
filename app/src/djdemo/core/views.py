"""The demo's endpoints: each one exercises a tier of the stack.

/          anonymous, cacheable HTML (Varnish keeps it 60 s)
/healthz   database(s) and cache, for Varnish probes and the deploy's health check
/status    JSON about the release, the host and which database served a read
/notes     JSON: POST writes through the primary, GET reads through the router (replica)
/slow      answers after ?seconds=N (at most 30): a request in flight while a deploy drains a host
"""
import asyncio
import json
import logging
import platform
import socket
import uuid

import django
from django.conf import settings
from django.core.cache import cache
from django.db import connections, router
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from djdemo.cache import CacheUnavailable
from djdemo.core.models import Note

log = logging.getLogger(__name__)

COUNTER_KEY = "status:counter"
NOTE_MAX_LENGTH = Note._meta.get_field("text").max_length

# On a replica: 0 when it has replayed everything it received, else the age of the last
# replayed transaction. (now() - pg_last_xact_replay_timestamp() alone keeps growing on an
# idle primary although the replica is fully caught up.) NULL on a primary.
REPLICA_LAG_SQL = """
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN NULL
        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
        ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())
    END
"""


def _scalar(alias, sql):
    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def server_addr(alias):
    """The address of the PostgreSQL server behind an alias; None on SQLite or a Unix socket."""
    if connections[alias].vendor != "postgresql":
        return None
    value = _scalar(alias, "SELECT inet_server_addr()")
    return None if value is None else str(value)


def replica_lag(alias):
    if connections[alias].vendor != "postgresql":
        return None
    value = _scalar(alias, REPLICA_LAG_SQL)
    return None if value is None else float(value)


def read_alias():
    """The alias the router picks for reads (the replica when there is one)."""
    return router.db_for_read(Note)


def _failure(check, exc):
    # The reason goes to the journal; the public answer names only the kind of failure.
    log.warning("healthz: %s check failed: %s: %s", check, type(exc).__name__, exc)
    return f"fail: {type(exc).__name__}"


def _checks():
    """Every database alias and the cache: "ok" or "fail: <kind>" each."""
    checks = {}
    for alias in connections:
        name = "database" if alias == "default" else alias
        try:
            _scalar(alias, "SELECT 1")
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            checks[name] = _failure(name, exc)
    try:
        key, token = f"healthz:{uuid.uuid4().hex}", uuid.uuid4().hex
        cache.set(key, token, timeout=30)
        got = cache.get(key)
        cache.delete(key)
        # A failing cache answers as a miss (djdemo.cache): the value is simply not there.
        checks["cache"] = "ok" if got == token else _failure("cache", CacheUnavailable("value not read back"))
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = _failure("cache", exc)
    return checks


def _health_answer(checks, healthy):
    everything = all(value == "ok" for value in checks.values())
    state = "ok" if everything else ("degraded" if healthy else "fail")
    response = JsonResponse({"status": state, "release": settings.RELEASE_ID, "checks": checks},
                            status=200 if healthy else 503)
    # A failure is logged above as a warning. Django would also log the 503 as an error,
    # and errors are mailed to ADMINS: one mail per probe, every few seconds, while something
    # is down. Mark it as logged already.
    response._has_been_logged = True
    return response


@require_safe
@never_cache
def healthz(request):
    """Liveness, the load balancer's probe: can this host serve? Yes while any database alias
    answers (reads fall back to the primary, writes find it). A degraded optional part (the
    cache, one of the databases) answers 200 with status "degraded": taking every host out of
    the pool for it would turn a slower site into a failed one."""
    checks = _checks()
    databases = [value for name, value in checks.items() if name != "cache"]
    return _health_answer(checks, any(value == "ok" for value in databases))


@require_safe
@never_cache
def readyz(request):
    """Readiness, the deploy gate: everything this host uses answers."""
    checks = _checks()
    return _health_answer(checks, all(value == "ok" for value in checks.values()))


@require_safe
@cache_control(public=True, max_age=60)
def home(request):
    # Touches neither the session nor the CSRF token (nor request.user), so the response has
    # no Set-Cookie and no Vary: Cookie, and Varnish can share it between visitors.
    return render(request, "core/home.html", {"release": settings.RELEASE_ID})


def bump_counter():
    """A counter shared by every app server through the cache (atomic incr on Redis and memcached)."""
    try:
        return cache.incr(COUNTER_KEY)
    except ValueError:  # missing: the first request, or evicted
        cache.add(COUNTER_KEY, 0, timeout=None)
        return cache.incr(COUNTER_KEY)


@require_safe
@never_cache
def status(request):
    body = {
        "release": settings.RELEASE_ID,
        "app_server": settings.APP_SERVER,
        "host": socket.gethostname(),
        "read_db_alias": read_alias(),
        "read_db_host": None,
        "replica_lag_seconds": None,
        "counter": None,
        "cache_backend": settings.CACHE_BACKEND,
        "python": platform.python_version(),
        "django": django.get_version(),
    }
    errors = {}
    try:
        body["read_db_host"] = server_addr(body["read_db_alias"])
    except Exception as exc:  # noqa: BLE001 - /status reports what it can
        errors["read_db"] = _failure("read_db", exc)
    if "replica" in connections:
        try:
            body["replica_lag_seconds"] = replica_lag("replica")
        except Exception as exc:  # noqa: BLE001
            errors["replica"] = _failure("replica", exc)
    try:
        body["counter"] = bump_counter()
    except Exception as exc:  # noqa: BLE001
        errors["cache"] = _failure("cache", exc)
    if errors:
        body["errors"] = errors
    return JsonResponse(body)


def _create_note(request):
    if request.content_type != "application/json":
        return JsonResponse({"error": 'send JSON: Content-Type: application/json, body {"text": "..."}'}, status=415)
    try:
        data = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "the body is not valid JSON"}, status=400)
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip() or len(text) > NOTE_MAX_LENGTH:
        return JsonResponse({"error": f"text must be a non-empty string of at most {NOTE_MAX_LENGTH} characters"},
                            status=400)
    note = Note.objects.create(text=text.strip())  # the router sends writes to the primary
    return JsonResponse({**note.as_dict(), "write_db_alias": router.db_for_write(Note),
                         "write_db_host": server_addr(router.db_for_write(Note))}, status=201)


# CSRF: exempt, because the endpoint is safe without a token. It accepts only
# Content-Type: application/json, which a cross-site page cannot send without a CORS
# preflight that this app never grants; and it uses no cookie or session, so a forged
# request would carry no authority the attacker lacks anyway.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
def notes(request):
    if request.method == "POST":
        return _create_note(request)
    try:
        limit = min(max(int(request.GET.get("limit", 20)), 1), 100)
    except ValueError:
        limit = 20
    alias = read_alias()
    latest = [note.as_dict() for note in Note.objects.using(alias)[:limit]]
    return JsonResponse({"notes": latest, "read_db_alias": alias, "read_db_host": server_addr(alias)})


@require_safe
@never_cache
def note_detail(request, pk):
    """One note read through the router: 404 until the replica has it (stack tests poll this)."""
    alias = read_alias()
    note = Note.objects.using(alias).filter(pk=pk).first()
    body = {"read_db_alias": alias, "read_db_host": server_addr(alias)}
    if note is None:
        return JsonResponse({**body, "error": "no such note (yet)"}, status=404)
    return JsonResponse({**body, **note.as_dict()})


SLOW_MAX_SECONDS = 30


@never_cache
async def slow(request):
    """Sleeps ?seconds=N (0 to SLOW_MAX_SECONDS, default 1), then answers like /status does.

    Async, so that under uvicorn a sleeping request holds no thread that other views need.
    """
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    try:
        seconds = float(request.GET.get("seconds", 1))
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= SLOW_MAX_SECONDS:
        return JsonResponse({"error": f"seconds must be a number from 0 to {SLOW_MAX_SECONDS}"}, status=400)
    await asyncio.sleep(seconds)
    return JsonResponse({"slept": seconds, "release": settings.RELEASE_ID, "host": socket.gethostname()})
