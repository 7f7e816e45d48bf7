from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "djdemo.core"
    label = "core"
    verbose_name = "djdemo"
