from django.contrib import admin

from djdemo.core.models import Note


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ("id", "text", "created")
    search_fields = ("text",)
    date_hierarchy = "created"
