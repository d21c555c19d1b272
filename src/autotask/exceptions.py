"""Every exception autotask raises on purpose, in one place.

Class paths of some of these are stored in rows (``error.type``) when a run fails because of
them, so they live here for good: moving one would change what old rows say.
"""

from __future__ import annotations

import psycopg.errors

MISSING_TABLES = "autotask's tables are missing from the database: run `manage.py migrate`."


class InvalidTaskOptions(ValueError):
    """A task's options (at decoration or in ``using()``) are out of range or of the wrong kind."""


class RunDoesNotExist(LookupError):
    """No run has this id: it never existed, or it was pruned."""


class ScheduleDoesNotExist(LookupError):
    """No schedule has this name (no runtime with its task has started yet, or a typo)."""


class NotMigrated(RuntimeError):
    """autotask's tables are not in the database yet."""

    def __init__(self, message: str = MISSING_TABLES) -> None:
        super().__init__(message)


class RuntimeStopped(RuntimeError):
    """The runtime's own pool was used after the runtime stopped (calls from other event loops
    use connections of those loops instead)."""


class Postpone(Exception):
    """Raise it in a task to run it again ``seconds`` from now without spending an attempt
    (django-partisan's PostponeTask): the resource it needs is busy, the data is not there yet.

    A task may postpone itself ``max_postpones`` times (a task option); once more ends its run
    in ERROR saying so.
    """

    def __init__(self, seconds: float = 60.0, reason: str = "") -> None:
        super().__init__(seconds, reason)
        self.seconds = seconds
        self.reason = reason

    def __str__(self) -> str:
        return f"postponed by {self.seconds!r} s" + (f": {self.reason}" if self.reason else "")


class TaskTimeout(TimeoutError):
    """A run went past its task's ``timeout`` (or ``AUTOTASK_TIMEOUT``)."""


class TooManyPostpones(RuntimeError):
    """A run postponed itself more often than its task's ``max_postpones`` allows."""


class TaskNotRegistered(LookupError):
    """A row names a task this process does not know; nothing is imported to find it."""


class ResultNotStored(ValueError):
    """PostgreSQL refused to store a task's result (or error); the run ends in ERROR instead."""


class WorkerLost(RuntimeError):
    """The process running a run stopped heartbeating (killed, or cut off) with it unfinished."""


class DependencyFailed(RuntimeError):
    """A run it needed to succeed (an earlier step of its chain, a group before an
    ``only_on_success`` step, a ``depends_on`` run) did not: it was CANCELLED, never run. The
    type named in such a run's error; never raised."""


def is_missing_table(exc: BaseException) -> bool:
    """Whether ``exc`` (psycopg's, or Django's wrapping it) says an autotask table is missing."""
    cause = exc if isinstance(exc, psycopg.errors.UndefinedTable) else exc.__cause__
    return isinstance(cause, psycopg.errors.UndefinedTable) and "autotask_" in str(cause)
