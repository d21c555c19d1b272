"""System checks: autotask needs PostgreSQL and sane settings, and says so at startup."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from . import conf


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    try:
        alias = conf.get().database
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="autotask.E001")]
    if connections[alias].vendor != "postgresql":  # PostGIS and other wrappers are fine
        engine = settings.DATABASES[alias].get("ENGINE", "")
        return [
            checks.Error(
                f"autotask stores tasks in PostgreSQL, but DATABASES[{alias!r}] uses {engine!r}.",
                hint="Point AUTOTASK_DATABASE at a PostgreSQL database.",
                id="autotask.E002",
            )
        ]
    return []


def register() -> None:
    checks.register(check_settings)
