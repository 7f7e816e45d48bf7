"""The database router: reads to the replica when there is one, writes and migrations to the primary."""
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import SimpleTestCase

from djdemo.core.models import Note
from djdemo.routers import PrimaryReplicaRouter


class Router(SimpleTestCase):
    with_replica = PrimaryReplicaRouter(aliases={"default", "replica"})
    without_replica = PrimaryReplicaRouter(aliases={"default"})

    def test_reads_go_to_the_replica(self):
        self.assertEqual(self.with_replica.db_for_read(Note), "replica")
        self.assertEqual(self.with_replica.db_for_read(User), "replica")

    def test_reads_stay_on_the_primary_without_a_replica(self):
        self.assertEqual(self.without_replica.db_for_read(Note), "default")

    def test_sessions_are_read_from_the_primary(self):
        self.assertEqual(self.with_replica.db_for_read(Session), "default")

    def test_writes_go_to_the_primary(self):
        for router in (self.with_replica, self.without_replica):
            self.assertEqual(router.db_for_write(Note), "default")
            self.assertEqual(router.db_for_write(User), "default")

    def test_migrations_run_only_on_the_primary(self):
        self.assertTrue(self.with_replica.allow_migrate("default", "core", "note"))
        self.assertFalse(self.with_replica.allow_migrate("replica", "core", "note"))
        self.assertFalse(self.with_replica.allow_migrate("replica", "auth"))

    def test_relations_between_primary_and_replica_objects(self):
        read, written = Note(text="a"), Note(text="b")
        read._state.db, written._state.db = "replica", "default"
        self.assertTrue(self.with_replica.allow_relation(read, written))
        elsewhere = Note(text="c")
        elsewhere._state.db = "archive"
        self.assertIsNone(self.with_replica.allow_relation(read, elsewhere))

    def test_the_app_uses_this_router(self):
        from django.conf import settings

        self.assertEqual(settings.DATABASE_ROUTERS, ["djdemo.routers.PrimaryReplicaRouter"])
        self.assertEqual(PrimaryReplicaRouter().db_for_read(Note), "default")  # the tests have no replica
