import time

from django.apps import AppConfig
from django.conf import settings
from django.db.backends.signals import connection_created


def keep_a_fallback_read_connection_briefly(sender, connection, **kwargs):
    """A read connection that landed on the primary because no replica answered is kept
    DB_FALLBACK_MAX_AGE seconds instead of CONN_MAX_AGE: Django closes it at the first request
    boundary after that, and the next read connects to a replica again if one is back.
    PostgreSQL reports in_hot_standby on every connection (14 and later)."""
    if connection.alias != "replica" or connection.vendor != "postgresql" or connection.close_at is None:
        return
    if connection.connection.info.parameter_status("in_hot_standby") == "off":
        connection.close_at = min(connection.close_at, time.monotonic() + settings.DB_FALLBACK_MAX_AGE)


class CoreConfig(AppConfig):
    name = "djdemo.core"
    label = "core"
    verbose_name = "djdemo"

    def ready(self):
        connection_created.connect(keep_a_fallback_read_connection_briefly, dispatch_uid="djdemo-fallback-max-age")
