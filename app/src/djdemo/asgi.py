"""ASGI entry point for uvicorn: ``uvicorn djdemo.asgi:application --lifespan off``."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djdemo.settings")

application = get_asgi_application()
