"""URL map. No trailing slashes on the machine endpoints (probes and curl call them as is)."""
from django.contrib import admin
from django.urls import include, path

from djdemo.core import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("status", views.status, name="status"),
    path("notes", views.notes, name="notes"),
    path("notes/<int:pk>", views.note_detail, name="note-detail"),
    path("slow", views.slow, name="slow"),
    # login, logout, password_change*, password_reset* (templates in core/templates/registration)
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
