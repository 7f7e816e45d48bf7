"""WSGI entry point for gunicorn: ``gunicorn djdemo.wsgi:application``."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djdemo.settings")

application = get_wsgi_application()
