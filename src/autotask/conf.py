"""Settings, read from Django's settings when needed and never at import.

Reading late matters: the test runner swaps databases and tests override settings, and the
runtime must see what is in force when it starts, not what was there when a module was imported.
Names that come from the seed API keep their spelling (``INTERVALL``) so old settings files work.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, object] = {
    "AUTOTASK_IS_ACTIVE": False,
    "AUTOTASK_EAGER": False,
    "AUTOTASK_DATABASE": "default",
    "AUTOTASK_WORKERS": 1,
    "AUTOTASK_QUEUES": None,
    "AUTOTASK_HANDLE_TASK_IDLE_TIME": 10.0,
    "AUTOTASK_RETRY_DELAY": 2.0,
    "AUTOTASK_WORKER_MONITOR_INTERVALL": 5.0,
    "AUTOTASK_WORKER_TIMEOUT": 30.0,
    "AUTOTASK_CLEAN_INTERVALL": 600.0,
    "AUTOTASK_SHUTDOWN_TIMEOUT": 10.0,
    "AUTOTASK_POOL_SIZE": 4,
    "AUTOTASK_TIMEOUT": None,
    "AUTOTASK_UNREGISTERED_GRACE": 300.0,
    "AUTOTASK_LISTEN": True,
    "AUTOTASK_DIRECT_DATABASE": None,
    "AUTOTASK_METRICS_TOKEN": None,
}

# Defaults of task options, shared by the decorator and the runtime (which needs a ttl even for
# a run whose task this process does not know).
DEFAULT_QUEUE = "default"
DEFAULT_TTL = 300.0


@dataclass(frozen=True, kw_only=True)
class Settings:
    database: str
    concurrency: int  # AUTOTASK_WORKERS: runs one runtime has going at once
    queues: tuple[str, ...] | None
    poll_interval: float  # AUTOTASK_HANDLE_TASK_IDLE_TIME: the fallback poll
    retry_delay: float
    heartbeat_interval: float
    worker_timeout: float  # a heartbeat older than this: the worker is lost, its runs rescued
    clean_interval: float  # AUTOTASK_CLEAN_INTERVALL: seconds between prunings
    timeout: float | None  # AUTOTASK_TIMEOUT: for tasks without a timeout of their own
    unregistered_grace: float  # seconds a run of a task unknown here waits for one that knows it
    shutdown_timeout: float
    pool_size: int


def _value(name: str) -> object:
    return getattr(django_settings, name, DEFAULTS[name])


def _positive_number(name: str, *, integer: bool = False) -> float:
    value = _value(name)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "a positive integer" if integer else "a positive number (seconds)"
        raise ImproperlyConfigured(f"{name} must be {kind}, not {value!r}.")
    return value


def _queues() -> tuple[str, ...] | None:
    value = _value("AUTOTASK_QUEUES")
    if value is None:
        return None
    if isinstance(value, list | tuple) and value and all(isinstance(q, str) and q for q in value):
        return tuple(value)
    raise ImproperlyConfigured(
        f"AUTOTASK_QUEUES must be None (every queue) or a non-empty list of queue names, "
        f"not {value!r}."
    )


def _optional_seconds(name: str) -> float | None:
    return None if _value(name) is None else float(_positive_number(name))


def _grace() -> float:
    value = _value("AUTOTASK_UNREGISTERED_GRACE")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImproperlyConfigured(
            f"AUTOTASK_UNREGISTERED_GRACE must be a number of seconds >= 0, not {value!r}."
        )
    return float(value)


def database() -> str:
    """The alias of the database that holds the tasks (``AUTOTASK_DATABASE``)."""
    alias = _value("AUTOTASK_DATABASE")
    if not isinstance(alias, str) or alias not in django_settings.DATABASES:
        raise ImproperlyConfigured(
            f"AUTOTASK_DATABASE must name an entry of DATABASES, not {alias!r}."
        )
    return alias


def direct_database() -> str:
    """The alias the LISTEN and leader connections use (``AUTOTASK_DIRECT_DATABASE``): the same
    database reached without a pooler in transaction mode, where sessions do not last."""
    alias = _value("AUTOTASK_DIRECT_DATABASE")
    if alias is None:
        return database()
    if not isinstance(alias, str) or alias not in django_settings.DATABASES:
        raise ImproperlyConfigured(
            f"AUTOTASK_DIRECT_DATABASE must be None or name an entry of DATABASES, not {alias!r}."
        )
    return alias


def listen() -> bool:
    """``AUTOTASK_LISTEN``: False for poll-only (no LISTEN connection at all)."""
    value = _value("AUTOTASK_LISTEN")
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"AUTOTASK_LISTEN must be True or False, not {value!r}.")
    return value


def eager() -> bool:
    """``AUTOTASK_EAGER``: run each run where and when it is enqueued (tests, scripts)."""
    value = _value("AUTOTASK_EAGER")
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"AUTOTASK_EAGER must be True or False, not {value!r}.")
    return value


def is_active() -> bool:
    """``AUTOTASK_IS_ACTIVE``: start the runtime in every process that serves requests."""
    value = _value("AUTOTASK_IS_ACTIVE")
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"AUTOTASK_IS_ACTIVE must be True or False, not {value!r}.")
    return value


def metrics_token() -> str | None:
    """``AUTOTASK_METRICS_TOKEN``: the bearer token a scraper sends to the monitor's
    ``metrics/`` instead of logging in; None: no token opens it. Its value is never echoed."""
    value = _value("AUTOTASK_METRICS_TOKEN")
    if value is None:
        return None
    if isinstance(value, str) and value and value == value.strip():
        return value
    raise ImproperlyConfigured(
        "AUTOTASK_METRICS_TOKEN must be None or a non-empty string without surrounding "
        "whitespace (the value set is not shown: it is meant to be a secret)."
    )


def get() -> Settings:
    """The settings in force now; raises ImproperlyConfigured naming the bad one."""
    heartbeat = float(_positive_number("AUTOTASK_WORKER_MONITOR_INTERVALL"))
    timeout = float(_positive_number("AUTOTASK_WORKER_TIMEOUT"))
    if timeout <= 2 * heartbeat:
        raise ImproperlyConfigured(
            f"AUTOTASK_WORKER_TIMEOUT ({timeout:g}) must be more than twice "
            f"AUTOTASK_WORKER_MONITOR_INTERVALL ({heartbeat:g}), or live workers would be taken "
            "for dead between two heartbeats."
        )
    is_active()
    listen()
    direct_database()
    metrics_token()
    return Settings(
        database=database(),
        concurrency=int(_positive_number("AUTOTASK_WORKERS", integer=True)),
        queues=_queues(),
        poll_interval=float(_positive_number("AUTOTASK_HANDLE_TASK_IDLE_TIME")),
        retry_delay=float(_positive_number("AUTOTASK_RETRY_DELAY")),
        heartbeat_interval=heartbeat,
        worker_timeout=timeout,
        clean_interval=float(_positive_number("AUTOTASK_CLEAN_INTERVALL")),
        timeout=_optional_seconds("AUTOTASK_TIMEOUT"),
        unregistered_grace=_grace(),
        shutdown_timeout=float(_positive_number("AUTOTASK_SHUTDOWN_TIMEOUT")),
        pool_size=int(_positive_number("AUTOTASK_POOL_SIZE", integer=True)),
    )
