"""System checks: autotask needs PostgreSQL and sane settings, and says so at startup."""

from __future__ import annotations

import difflib
import logging
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.postgresql.psycopg_any import is_psycopg3
from django.db.migrations.loader import MigrationLoader

from . import conf, sql


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


# The triggers that NOTIFY: new runs (0001), runs waiting again and watched runs' changes (0013).
_NOTIFY_TRIGGERS = {
    "autotask_task_inserted",
    "autotask_task_status_watched",
    "autotask_task_waiting",
}
# Prefixes a hurried hand gives autotask's settings (longest first); such a name is ignored
# without a word otherwise.
_NEAR_PREFIXES = ("AUTO_TASKS_", "AUTOTASKS_", "AUTO_TASK_", "AUTOTASK")


def check_setting_prefixes(**kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    for name in sorted(n for n in dir(settings) if not n.startswith("AUTOTASK_")):
        prefix = next((p for p in _NEAR_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            continue
        meant = "AUTOTASK_" + name.removeprefix(prefix)
        close = difflib.get_close_matches(meant, list(conf.DEFAULTS), n=1)
        messages.append(
            checks.Warning(
                f"{name} is not an autotask setting (they begin with AUTOTASK_) and is ignored.",
                hint=f"Did you mean {close[0]}?" if close else "See the settings in the README.",
                id="autotask.W001",
            )
        )
    return messages


def check_driver(**kwargs: Any) -> list[checks.CheckMessage]:
    """Django falls back to psycopg2 when psycopg 3 is missing; autotask's runtime needs 3."""
    if not is_psycopg3:
        return [
            checks.Error(
                "Django is using psycopg2; autotask needs psycopg 3.",
                hint='pip install "psycopg[binary,pool]" (autotask depends on it).',
                id="autotask.E003",
            )
        ]
    return []


def check_connections(**kwargs: Any) -> list[checks.CheckMessage]:
    """Several sync tasks at once, each opening and closing a connection per run."""
    try:
        current = conf.get()
    except ImproperlyConfigured:
        return []  # check_settings says why
    if current.concurrency > 1 and not settings.DATABASES[current.database].get("CONN_MAX_AGE"):
        return [
            checks.Warning(
                f"AUTOTASK_WORKERS is {current.concurrency} and CONN_MAX_AGE is 0: every run of a "
                "plain task that uses the ORM opens a new database connection and closes it.",
                hint=(
                    f"Set DATABASES[{current.database!r}]['CONN_MAX_AGE'] (e.g. 600) and "
                    "CONN_HEALTH_CHECKS = True, unless a pooler in front of PostgreSQL does it."
                ),
                id="autotask.W003",
            )
        ]
    return []


def check_task_queues(**kwargs: Any) -> list[checks.CheckMessage]:
    """A django.tasks queue that no autotask worker of this project serves: its runs wait for
    ever (health() shows them as due and unserved)."""
    try:
        served = conf.get().queues
    except ImproperlyConfigured:
        return []
    if served is None:
        return []
    messages: list[checks.CheckMessage] = []
    for alias, backend in getattr(settings, "TASKS", {}).items():
        if backend.get("BACKEND") != "autotask.backend.AutotaskBackend":
            continue
        for queue in backend.get("QUEUES", ["default"]):
            if queue not in served:
                messages.append(
                    checks.Warning(
                        f"TASKS[{alias!r}] has the queue {queue!r}, which AUTOTASK_QUEUES "
                        f"({', '.join(served)}) does not serve.",
                        hint="Add it to AUTOTASK_QUEUES, or run an autotask_worker --queues "
                        "that serves it.",
                        id="autotask.W004",
                    )
                )
    return messages


def check_tables(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Migrations not applied, or the wake-up trigger missing (dropped by hand, a restore that
    left it out): runs are then never claimed, or claimed only at the slow poll. Run when the
    databases are checked (``check --database``, ``migrate``)."""
    try:
        alias = conf.get().database
    except ImproperlyConfigured:
        return []
    if not databases or alias not in databases:
        return []
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return []
    loader = MigrationLoader(connection)
    unapplied = [
        key
        for key in loader.graph.nodes
        if key[0] == "autotask" and key not in loader.applied_migrations
    ]
    if unapplied:
        return [
            checks.Warning(
                f"autotask has {len(unapplied)} migration(s) not applied to {alias!r}.",
                hint="Run manage.py migrate.",
                id="autotask.W005",
            )
        ]
    with connection.cursor() as cursor:
        cursor.execute(sql.TRIGGER_NAMES_ON_RUNS)
        triggers = {row[0] for row in cursor.fetchall()}
    missing = sorted(_NOTIFY_TRIGGERS - triggers)
    if missing:
        return [
            checks.Error(
                f"The trigger(s) {', '.join(missing)} on autotask_task are missing: new runs "
                "wake no worker and status changes reach no handle until the slow poll.",
                hint="Recreate them from autotask/migrations/0001_initial.py (on inserts) "
                "and 0013_watched_runs.py (on updates).",
                id="autotask.E004",
            )
        ]
    return []


_SETTINGS_CHECKS = (
    check_settings,
    check_setting_names,
    check_setting_prefixes,
    check_driver,
    check_connections,
    check_task_queues,
)


def log_problems(logger: logging.Logger) -> None:
    """Log what the settings checks find: a server (uvicorn, gunicorn) runs no ``manage.py``
    checks, so without this a misspelt setting there would go unnoticed."""
    for check in _SETTINGS_CHECKS:
        for message in check():
            level = logging.ERROR if message.is_serious() else logging.WARNING
            hint = f" ({message.hint})" if message.hint else ""
            logger.log(level, "autotask: %s: %s%s", message.id, message.msg, hint)


def register() -> None:
    for check in _SETTINGS_CHECKS:
        checks.register(check)
    checks.register(check_tables, checks.Tags.database)
