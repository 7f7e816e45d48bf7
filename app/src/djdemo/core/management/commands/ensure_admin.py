"""Create or update one superuser, idempotently (for Ansible).

    DJANGO_SUPERUSER_PASSWORD=... djdemo-manage --env-file ENV ensure_admin --username admin --email a@b

The password comes only from the environment (never the command line, where `ps` shows it).
Prints one word: ``created``, ``updated`` (password, email or flags changed) or ``unchanged``,
so a task can say ``changed_when: result.stdout != 'unchanged'``. Runs on the primary.
"""
import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, transaction


class Command(BaseCommand):
    help = "Create the superuser, or bring its email, flags and password in line; prints created/updated/unchanged."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("DJANGO_SUPERUSER_USERNAME"))
        parser.add_argument("--email", default=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""))
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args, username, email, database, **options):
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if not username:
            raise CommandError("give --username or set DJANGO_SUPERUSER_USERNAME")
        if not password:
            raise CommandError("set DJANGO_SUPERUSER_PASSWORD")
        User = get_user_model()
        manager = User._default_manager.db_manager(database)
        with transaction.atomic(using=database):
            user = manager.select_for_update().filter(**{User.USERNAME_FIELD: username}).first()
            if user is None:
                manager.create_superuser(**{User.USERNAME_FIELD: username}, email=email, password=password)
                result = "created"
            else:
                changed = False
                if email and user.email != email:
                    user.email, changed = email, True
                if not (user.is_staff and user.is_superuser and user.is_active):
                    user.is_staff = user.is_superuser = user.is_active = True
                    changed = True
                # check_password may itself re-save the user to upgrade an old hash: that is fine.
                if not user.check_password(password):
                    user.set_password(password)
                    changed = True
                if changed:
                    user.save(using=database)
                result = "updated" if changed else "unchanged"
        self.stdout.write(result)
