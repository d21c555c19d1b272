"""Background tasks for Django, stored in PostgreSQL and run inside the web process."""

from .task import (
    CANCELLED,
    DONE,
    ERROR,
    RUNNING,
    WAITING,
    AsyncTaskHandle,
    Status,
    TaskError,
    TaskHandle,
)
from .tasks import Task, task

__all__ = [
    "CANCELLED",
    "DONE",
    "ERROR",
    "RUNNING",
    "WAITING",
    "AsyncTaskHandle",
    "Status",
    "Task",
    "TaskError",
    "TaskHandle",
    "task",
]
