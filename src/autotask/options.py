"""What each task option may be, checked in one place before anything reaches the database.

A value PostgreSQL would refuse later (a name too long for its column, a NUL in text, a delay
past the year 9999, an attempt count past int4) fails here instead, as ``InvalidTaskOptions``
naming the option and the value: at decoration for a task's options, in ``using()`` for a
call's, never as a database error that also breaks the caller's ``transaction.atomic()``.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from .exceptions import InvalidTaskOptions
from .serialize import storable

if TYPE_CHECKING:
    from .tasks import Task

MIN_PRIORITY, MAX_PRIORITY = -100, 100
MAX_NAME = 255  # autotask_task.name
MAX_QUEUE = 100  # autotask_task.queue
MAX_RETRIES = 10_000
DEFAULT_MAX_POSTPONES = 20
MAX_POSTPONES = 1_000_000
# Delays and ttls past a century are mistakes, and far enough past it PostgreSQL refuses the
# timestamp (after the year 294276) or Python the datetime (after 9999).
MAX_SECONDS = 100 * 365.25 * 86400
# A limit of N is N rows in autotask_slot per key: ten thousand is far past any sane limit.
MAX_LIMIT = 10_000

_RATE = re.compile(
    r"\s*(?P<count>\d+)\s*/\s*(?P<amount>\d+(?:\.\d+)?)?\s*"
    r"(?P<unit>s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)\s*",
    re.IGNORECASE | re.ASCII,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@functools.cache
def signature(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def seconds(value: float | timedelta, field: str) -> float:
    """A number of seconds (or a timedelta) from 0 to a century."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_SECONDS
    ):
        raise InvalidTaskOptions(
            f"{field} must be a number of seconds >= 0 and at most {MAX_SECONDS:,.0f} (a "
            f"century), or a timedelta, not {value!r}."
        )
    return float(value)


def limit_count(value: object, field: str) -> int:
    """A number of slots or tokens: 1 to MAX_LIMIT."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidTaskOptions(
            f"{field} must be an integer from 1 to {MAX_LIMIT:,}, not {value!r}."
        )
    return value


def rate(value: object) -> tuple[int, float]:
    """``"10/m"`` as (10, 60.0): how many starts, per how many seconds. A window of several
    units is written with its number (``"100/5m"``)."""
    if not isinstance(value, str):
        raise InvalidTaskOptions(f"rate must be a string like '10/s', not {value!r}.")
    return _parsed_rate(value)


@functools.cache  # parsed at every enqueue
def _parsed_rate(value: str) -> tuple[int, float]:
    match = _RATE.fullmatch(value)
    if match is None:
        raise InvalidTaskOptions(
            f"rate must be a string like '10/s', '100/m', '1000/h' or '5/10m' (starts per "
            f"window), not {value!r}."
        )
    count = limit_count(int(match["count"]), "rate's count")
    period = float(match["amount"] or 1) * _UNIT_SECONDS[match["unit"][0].lower()]
    if not 0 < period <= MAX_SECONDS:
        raise InvalidTaskOptions(f"rate's window must be more than 0 s, not {value!r}.")
    return count, period


def text(value: object, field: str, limit: int) -> str:
    """A name PostgreSQL can store in a column of ``limit`` characters."""
    if not isinstance(value, str) or not value or len(value) > limit or not storable(value):
        raise InvalidTaskOptions(
            f"{field} must be a non-empty name of at most {limit} characters without NUL "
            f"characters or lone surrogates, not {value!r:.300}."
        )
    return value


def check(task: Task[..., Any]) -> None:
    """Every option of a task; InvalidTaskOptions naming the first that is wrong."""
    text(task.name, "name", MAX_NAME)
    text(task.queue, "queue", MAX_QUEUE)
    if (
        isinstance(task.priority, bool)
        or not isinstance(task.priority, int)
        or not MIN_PRIORITY <= task.priority <= MAX_PRIORITY
    ):
        raise InvalidTaskOptions(
            f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY} "
            f"(higher runs first), not {task.priority!r}."
        )
    if task.schedule is not None:
        try:
            signature(task.func).bind()
        except TypeError as exc:
            raise InvalidTaskOptions(
                f"{task.name}: a periodic or cron task runs with no arguments, but {exc}."
            ) from None
    if (
        isinstance(task.retries, bool)
        or not isinstance(task.retries, int)
        or not 0 <= task.retries <= MAX_RETRIES
    ):
        raise InvalidTaskOptions(
            f"retries must be an integer from 0 to {MAX_RETRIES:,}, not {task.retries!r}."
        )
    if not all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in task.retry_on
    ):
        raise InvalidTaskOptions(
            f"retry_on must be an exception class or a tuple of them, not {task.retry_on!r}."
        )
    stops = [kind.__name__ for kind in task.retry_on if issubclass(kind, StopIteration)]
    if stops and task.is_async:
        # It would never match: refused here rather than found out when no retry happens.
        raise InvalidTaskOptions(
            f"{task.name}: retry_on names {stops[0]}, which an async def task never raises: "
            "Python turns a StopIteration leaving a coroutine into a RuntimeError (PEP 479). "
            "Catch it in the task, or retry on RuntimeError."
        )
    if task.backoff is not None and not callable(getattr(task.backoff, "seconds", None)):
        raise InvalidTaskOptions(
            "backoff must be one of autotask.backoff's strategies (constant, linear, "
            f"exponential, background_tasks) or have their seconds() method, not {task.backoff!r}."
        )
    if (
        isinstance(task.max_postpones, bool)
        or not isinstance(task.max_postpones, int)
        or not 0 <= task.max_postpones <= MAX_POSTPONES
    ):
        raise InvalidTaskOptions(
            f"max_postpones must be an integer from 0 to {MAX_POSTPONES:,}, "
            f"not {task.max_postpones!r}."
        )
    if task.timeout is not None:
        seconds(task.timeout, "timeout")
        if task.timeout <= 0:
            raise InvalidTaskOptions(f"timeout must be more than 0 seconds, not {task.timeout!r}.")
    if not isinstance(task.unique, bool):
        raise InvalidTaskOptions(f"unique must be True or False, not {task.unique!r}.")
    if not isinstance(task.atomic, bool):
        raise InvalidTaskOptions(f"atomic must be True or False, not {task.atomic!r}.")
    if task.atomic and task.is_async:
        raise InvalidTaskOptions(
            f"{task.name}: atomic=True is for plain def tasks only; an async def task cannot run "
            "inside transaction.atomic() (Django's transactions are per thread). Make it a "
            "plain function, or open transaction.atomic() in a function it runs through "
            "sync_to_async."
        )
    if task.unique_key is not None:
        text(task.unique_key, "unique_key", MAX_NAME)
    if task.depends_on and (task.unique or task.unique_key is not None):
        raise InvalidTaskOptions(
            f"{task.name}: depends_on cannot be combined with unique (an enqueue that found "
            "the key taken would return a run that does not wait)."
        )
    if task.concurrency is not None:
        limit_count(task.concurrency, "concurrency")
    if task.rate is not None:
        rate(task.rate)
    for field, key, given in (
        ("concurrency_key", task.concurrency_key, task.concurrency),
        ("rate_key", task.rate_key, task.rate),
    ):
        if key is not None and not callable(key):
            raise InvalidTaskOptions(
                f"{field} must be a function of the task's arguments returning the key (a str "
                f"or an int), not {key!r}."
            )
        if key is not None and given is None:
            limited = field.removesuffix("_key")
            raise InvalidTaskOptions(f"{field} needs {limited}= (the limit each key has).")
    seconds(task.ttl, "ttl")
    seconds(task.delay_seconds, "delay")
    if task.run_at is not None:
        if not isinstance(task.run_at, datetime):
            raise InvalidTaskOptions(f"run_at must be a datetime, not {task.run_at!r}.")
        if settings.USE_TZ and timezone.is_naive(task.run_at):
            raise InvalidTaskOptions(
                f"run_at must be timezone-aware ({task.run_at!r} is naive): "
                "use django.utils.timezone.make_aware() or a datetime with tzinfo."
            )
