"""Tasks declared with Django's own API (``django.tasks``, or the backport on Django 5.2), run by
autotask through ``autotask.backend.AutotaskBackend``."""

from __future__ import annotations

import time
from typing import Any

import django

from autotask.backend import task as autotask_task

if django.VERSION >= (6, 0):
    from django.tasks import TaskContext, task
else:
    from django_tasks import TaskContext, task


@task()
def noop_task(*args: Any, **kwargs: Any) -> None:
    return None


@task()
async def noop_task_async(*args: Any, **kwargs: Any) -> None:
    return None


@task()
def calculate_meaning_of_life() -> int:
    return 42


@task()
async def async_calculate_meaning_of_life() -> int:
    return 42


@task()
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task()
def failing_task_value_error() -> None:
    raise ValueError("This task failed due to ValueError")


@task()
async def async_failing_task() -> None:
    raise ValueError("This async task failed")


@task()
def failing_task_system_exit() -> None:
    raise SystemExit("This task failed due to SystemExit")


@task()
def complex_exception() -> None:
    raise ValueError(ValueError("This task failed"))


@task(takes_context=True)
def get_task_id(context: TaskContext) -> str:
    return str(context.task_result.id)


@task(takes_context=True)
def context_attempt(context: TaskContext, plus: int) -> list[Any]:
    return [context.attempt, context.task_result.status, plus]


@task(priority=10, queue_name="queue-1")
def prioritised() -> str:
    return "queue-1"


@task(backend="any-queue", queue_name="anything-goes")
def on_any_queue() -> str:
    return "ran"


# autotask's options on a Django task: on Django 6.1 Django's decorator hands them to the
# backend's task class; elsewhere autotask.backend.task takes Django's arguments and them.
_ATTEMPTS: dict[str, int] = {}


@autotask_task(retries=2, retry_on=(KeyError,))
def flaky(key: str) -> int:
    _ATTEMPTS[key] = _ATTEMPTS.get(key, 0) + 1
    if _ATTEMPTS[key] < 3:
        raise KeyError(key)
    return _ATTEMPTS[key]


def undecorated() -> None:
    """Decorated by a test, with options autotask refuses."""


@task()
def returns_what_json_cannot_hold() -> object:
    return object()


@task()
def interrupted() -> None:
    raise KeyboardInterrupt


@task()
def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@autotask_task(concurrency=1, concurrency_key=lambda key: key, rate="100/m")
def limited_per_key(key: str) -> str:
    return key
