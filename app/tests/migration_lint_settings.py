"""Settings for the migration linter (django-migration-linter), which flags migrations the
running release could not live with during a rolling deploy (a dropped or renamed column, a
NOT NULL column without a default...):

    cd app && PYTHONPATH=src python -m django lintmigrations --settings tests.migration_lint_settings

It lints this project's own apps only: Django's contrib migrations are not ours to change.
"""
from tests.settings import *  # noqa: F401,F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_migration_linter"]
MIGRATION_LINTER_OPTIONS = {"include_apps": ["core"], "no_cache": True}
