"""Which tasks exist: name -> task, filled as modules are imported.

The worker runs only what is here. A row names a task by string, and that string is looked up,
never imported: a row can't make a process run code nobody registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils.module_loading import autodiscover_modules

if TYPE_CHECKING:
    from .tasks import Task

_tasks: dict[str, Task[..., Any]] = {}
_limited: set[str] = set()  # the names of tasks with a concurrency or rate limit


def register(task: Task[..., Any]) -> None:
    """Add a task; a second, different function under the same name is an error."""
    existing = _tasks.get(task.name)
    if existing is not None and existing.func is not task.func:
        raise ValueError(
            f"A task named {task.name!r} is already registered (from "
            f"{existing.func.__module__}). Give one of them another name with @task(name=...)."
        )
    _tasks[task.name] = task
    if task.concurrency is not None or task.rate is not None:
        _limited.add(task.name)


def has_limits() -> bool:
    """Whether a task here has a limit: only then do this process's claims pay for limits."""
    return bool(_limited)


def get(name: str) -> Task[..., Any] | None:
    return _tasks.get(name)


def tasks() -> list[Task[..., Any]]:
    return list(_tasks.values())


def autodiscover() -> None:
    """Import ``tasks.py`` of every installed app, as the admin does with ``admin.py``."""
    autodiscover_modules("tasks")
