"""Old systems' spellings, kept only so a team can migrate module by module.

Each exists because the old call site would otherwise need rewriting by hand, or would still
run but mean something else. New code should use autotask's own API (``@task``, calling a task,
``using()``, ``autotask.deschedule``). The README's "Coming from another system" guides say what
each maps onto. As everywhere in autotask, nothing here imports a task from a string: a name
must be that of a task registered in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar, overload

from . import options, registry
from .backoff import Backoff, background_tasks
from .conf import DEFAULT_QUEUE
from .exceptions import TaskNotRegistered
from .handles import TaskHandle
from .tasks import Task
from .tasks import deschedule as _deschedule

P = ParamSpec("P")
R = TypeVar("R")

# django-background-tasks' MAX_ATTEMPTS default (25 attempts in all).
BACKGROUND_TASKS_RETRIES = 24


# --- django-async: schedule() and deschedule() with args and kwargs as two arguments ---


def schedule(
    function: Task[..., Any] | str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    run_after: datetime | None = None,
    priority: int | None = None,
) -> TaskHandle:
    """django-async's ``schedule()``: enqueue a run of a task (or a registered task's name).

    ``run_after`` is the earliest time it runs (timezone-aware under ``USE_TZ``); ``priority``
    is autotask's (-100..100, higher first, as django-async's); None keeps the task's own.
    """
    configured = _task(function).using(run_at=run_after, priority=priority)
    return configured(*(args or ()), **(kwargs or {}))


def deschedule(
    function: Task[..., Any] | str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> int:
    """django-async's ``deschedule()``: cancel the waiting runs with exactly these arguments.

    Here because ``autotask.deschedule(name, args)`` would take a list of arguments for one
    argument and quietly cancel nothing (a tuple is a TypeError). Returns how many were
    cancelled.
    """
    return _deschedule(_task(function), *(args or ()), **(kwargs or {}))


def _task(function: Task[..., Any] | str) -> Task[..., Any]:
    if isinstance(function, Task):
        return function
    if not isinstance(function, str):
        raise TypeError(
            f"Expected a task or the name of one, not {function!r:.100}: decorate the function "
            "with @autotask.task (nothing is run that is not registered as a task)."
        )
    found = registry.get(function)
    if found is None:
        raise TaskNotRegistered(
            f"No task named {function!r} is registered in this process (nothing is imported "
            "from a name: the module defining it must have been imported, e.g. an app's tasks.py)."
        )
    return found


# --- django-background-tasks: @background(schedule=...) and the schedule= call keyword ---


class BackgroundTask(Task[..., R]):
    """A task called as django-background-tasks' are: ``notify(user_id, schedule=90)``."""

    def __call__(
        self,
        *args: Any,
        schedule: float | timedelta | datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        **kwargs: Any,
    ) -> TaskHandle:
        """Enqueue a run; ``schedule`` is seconds, a timedelta, or the datetime to run at, and
        ``priority`` and ``queue`` override the task's for this run (as django-background-tasks'
        call keywords do). A function's own parameters cannot take these names."""
        if isinstance(schedule, datetime):
            configured = self.using(run_at=schedule, priority=priority, queue=queue)
        else:
            configured = self.using(delay=schedule, priority=priority, queue=queue)
        return Task.__call__(configured, *args, **kwargs)


@overload
def background(func: Callable[P, R], /) -> BackgroundTask[R]: ...


@overload
def background(
    *,
    schedule: float | timedelta = 0,
    queue: str = DEFAULT_QUEUE,
    name: str | None = None,
    retries: int = BACKGROUND_TASKS_RETRIES,
    backoff: Backoff | None = None,
) -> Callable[[Callable[P, R]], BackgroundTask[R]]: ...


def background(
    func: Callable[P, R] | None = None,
    /,
    *,
    schedule: float | timedelta = 0,
    queue: str = DEFAULT_QUEUE,
    name: str | None = None,
    retries: int = BACKGROUND_TASKS_RETRIES,
    backoff: Backoff | None = None,
) -> BackgroundTask[R] | Callable[[Callable[P, R]], BackgroundTask[R]]:
    """django-background-tasks' ``@background``: a task whose runs wait ``schedule`` seconds,
    with that library's retries (25 attempts in all) and wait (``attempts ** 4 + 5`` seconds)
    unless told otherwise. Its settings (``MAX_ATTEMPTS``) are not read: pass ``retries``."""

    def decorate(f: Callable[P, R]) -> BackgroundTask[R]:
        if not callable(f) or isinstance(f, Task):
            raise TypeError(f"@background decorates a function, not {f!r}.")
        new = BackgroundTask(
            func=f,
            name=name or f"{f.__module__}.{f.__qualname__}",
            queue=queue,
            retries=retries,
            backoff=backoff if backoff is not None else background_tasks(),
            delay_seconds=options.seconds(schedule, "schedule"),
        )
        registry.register(new)
        return new

    if func is not None:
        return decorate(func)
    return decorate
