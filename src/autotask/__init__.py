"""Background tasks for Django, stored in PostgreSQL and run inside the web process."""

from .exceptions import (
    InvalidTaskOptions,
    NotMigrated,
    ResultNotStored,
    RunDoesNotExist,
    RuntimeStopped,
    TaskNotRegistered,
)

# Through the seed's module ``autotask.task``, and before ``task`` the decorator: importing the
# module later would rebind the package's ``task`` attribute to it.
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
    "InvalidTaskOptions",
    "NotMigrated",
    "ResultNotStored",
    "RunDoesNotExist",
    "RuntimeStopped",
    "Status",
    "Task",
    "TaskError",
    "TaskHandle",
    "TaskNotRegistered",
    "task",
]
