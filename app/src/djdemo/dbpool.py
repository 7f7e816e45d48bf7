"""Connection pools for the ASGI app server (Django's "pool" option, psycopg_pool).

Under uvicorn Django keeps no connection between requests, so without a pool every request
opens its own: a TLS handshake, SCRAM authentication and a new server process on the database
host, which under load costs more CPU than the request itself and, on a busy host, outlasts
the connect timeout. A pool per worker process keeps a few connections open instead.

A pooled connection is checked when it is taken from the pool (CONN_HEALTH_CHECKS: a broken
one is replaced) and when it is given back (``reset``, below): one on the wrong kind of server
is dropped then, so that the pool follows the database tier as per-request connections did:
- writes (``default``): a connection to a server that is now a standby (the old primary
  after a failover and a rejoin) is dropped; the next one finds the primary by
  target_session_attrs;
- reads (``replica``): a connection that fell back to the primary because no replica
  answered is dropped after DB_FALLBACK_MAX_AGE seconds, so that reads return to a replica
  that soon after it is back.
"""
import time
import weakref


def _standby(conn):
    # PostgreSQL 14 and later report in_hot_standby on every connection and again when it changes.
    return conn.info.parameter_status("in_hot_standby") == "on"


def reset_for(alias_kind, fallback_max_age):
    """The ``reset`` callable of a pool for writes (``primary``) or reads (``standby``): the pool
    discards a connection given back when this raises. (Django sets the pool's ``check``.)"""
    first_seen = weakref.WeakKeyDictionary()

    def reset(conn):
        if alias_kind == "primary":
            if _standby(conn):
                raise ConnectionError("pooled write connection is on a standby")
            return
        if _standby(conn):
            return
        # On the primary: counted from the first time it is given back.
        if time.monotonic() - first_seen.setdefault(conn, time.monotonic()) > fallback_max_age:
            raise ConnectionError("pooled read connection fell back to the primary: look for a replica again")

    return reset
