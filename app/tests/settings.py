"""Settings for the test suite: the app's own settings under a fixed, known environment.

    cd app && PYTHONPATH=src python -m django test --settings tests.settings

Every DJDEMO_* variable of the caller's shell is dropped first, so a developer's own
environment (a DB_HOST, say) cannot change what the tests see.
"""
import os

for _name in [name for name in os.environ if name.startswith("DJDEMO_")]:
    del os.environ[_name]
os.environ.update({
    "DJDEMO_SECRET_KEY": "tests-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "DJDEMO_RELEASE_ID": "1.0.0-testrelease0",
    "DJDEMO_APP_SERVER": "gunicorn",
    "DJDEMO_ALLOWED_HOSTS": "testserver,djdemo.example",
    "DJDEMO_CACHE_BACKEND": "locmem",
    "DJDEMO_ADMINS": "ops@djdemo.example",
    "DJDEMO_DEFAULT_FROM_EMAIL": "djdemo@djdemo.example",
    # The 4xx answers the tests provoke on purpose would otherwise fill the output.
    "DJDEMO_LOG_LEVEL": "ERROR",
})

from djdemo.settings import *  # noqa: E402,F401,F403
from djdemo.settings import STORAGES  # noqa: E402

# The deployed storage needs collectstatic's manifest; tests/test_static.py runs
# collectstatic and checks it. Every other test renders pages with plain static names.
PRODUCTION_STORAGES = STORAGES
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
# Hashing passwords at full strength only slows the tests down.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
