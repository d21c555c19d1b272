"""Background tasks for Django, stored in PostgreSQL and run inside the web process."""

from . import backoff
from .exceptions import (
    InvalidTaskOptions,
    NotMigrated,
    Postpone,
    ResultNotStored,
    RunDoesNotExist,
    RuntimeStopped,
    ScheduleDoesNotExist,
    TaskNotRegistered,
    TooManyPostpones,
    WorkerLost,
)
from .store import (
    ScheduleRecord,
    apause_schedule,
    aresume_schedule,
    aschedules,
    pause_schedule,
    resume_schedule,
    schedules,
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
from .tasks import Task, cron_task, delayed_task, periodic_task, task

__all__ = [
    "CANCELLED",
    "DONE",
    "ERROR",
    "RUNNING",
    "WAITING",
    "AsyncTaskHandle",
    "InvalidTaskOptions",
    "NotMigrated",
    "Postpone",
    "ResultNotStored",
    "RunDoesNotExist",
    "RuntimeStopped",
    "ScheduleDoesNotExist",
    "ScheduleRecord",
    "Status",
    "Task",
    "TaskError",
    "TaskHandle",
    "TaskNotRegistered",
    "TooManyPostpones",
    "WorkerLost",
    "apause_schedule",
    "aresume_schedule",
    "aschedules",
    "backoff",
    "cron_task",
    "delayed_task",
    "pause_schedule",
    "periodic_task",
    "resume_schedule",
    "schedules",
    "task",
]
