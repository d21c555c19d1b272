"""System checks: autotask needs PostgreSQL and sane settings, and says so at startup."""

from __future__ import annotations

import difflib
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


# Settings of the original autotask that this version has no use for, and why.
_SEED_ONLY = {
    "AUTOTASK_WORKER_EXECUTABLE": (
        "tasks run inside the server's own processes (AUTOTASK_IS_ACTIVE) or in "
        "`manage.py autotask_worker`; no executable is started"
    ),
}


def check_setting_names(**kwargs: Any) -> list[checks.CheckMessage]:
    """A misspelt setting is silently ignored otherwise (the seed's INTERVALL has two Ls)."""
    messages: list[checks.CheckMessage] = []
    for name in sorted(n for n in dir(settings) if n.startswith("AUTOTASK_")):
        if name in conf.DEFAULTS:
            continue
        if name in _SEED_ONLY:
            messages.append(
                checks.Warning(
                    f"{name} is a setting of the original autotask that this version does not "
                    "use, and is ignored.",
                    hint=f"Remove it: {_SEED_ONLY[name]}.",
                    id="autotask.W002",
                )
            )
            continue
        close = difflib.get_close_matches(name, list(conf.DEFAULTS), n=1)
        messages.append(
            checks.Warning(
                f"{name} is not an autotask setting and is ignored.",
                hint=f"Did you mean {close[0]}?" if close else "See the settings in the README.",
                id="autotask.W001",
            )
        )
    return messages


def register() -> None:
    checks.register(check_settings)
    checks.register(check_setting_names)
