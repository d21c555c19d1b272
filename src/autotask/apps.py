from __future__ import annotations

from django.apps import AppConfig


class AutotaskConfig(AppConfig):
    name = "autotask"
    verbose_name = "Background tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, registry

        checks.register()
        registry.autodiscover()
