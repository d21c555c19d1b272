from __future__ import annotations

from django.apps import AppConfig

from . import checks, registry, wsgi


class AutotaskConfig(AppConfig):
    name = "autotask"
    verbose_name = "Background tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        checks.register()
        registry.autodiscover()
        wsgi.connect()
