"""Database router: writes to the primary, reads to the replica when one is configured."""
from django.conf import settings

PRIMARY = "default"
REPLICA = "replica"

# Sessions are read back right after they are written (log in, then the next page): a
# replica a few milliseconds behind would log the user out. Their reads stay on the primary.
PRIMARY_ONLY_APPS = frozenset({"sessions"})


class PrimaryReplicaRouter:
    def __init__(self, aliases=None):
        # Tests pass the aliases; the app reads them from settings.DATABASES.
        self._aliases = aliases

    @property
    def aliases(self):
        return settings.DATABASES.keys() if self._aliases is None else self._aliases

    def db_for_read(self, model, **hints):
        if REPLICA in self.aliases and model._meta.app_label not in PRIMARY_ONLY_APPS:
            return REPLICA
        return PRIMARY

    def db_for_write(self, model, **hints):
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints):
        # The replica is a copy of the primary: an object read from one may relate to one
        # written to the other.
        known = {PRIMARY, REPLICA}
        if obj1._state.db in known and obj2._state.db in known:
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        # Only the primary runs migrations; the replica gets them by streaming replication.
        return db == PRIMARY
