"""Background tasks for Django, stored in PostgreSQL and run inside the web process."""

from . import backoff
from .context import RunContext, current
from .exceptions import (
    InvalidTaskOptions,
    NotMigrated,
    Postpone,
    ResultNotStored,
    RunDoesNotExist,
    RuntimeStopped,
    ScheduleDoesNotExist,
    TaskNotRegistered,
    TaskTimeout,
    TooManyPostpones,
    WorkerLost,
)
from .health import Health, ahealth, health
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
from .tasks import (
    Task,
    adeschedule,
    aenqueue,
    cron_task,
    delayed_task,
    deschedule,
    enqueue,
    periodic_task,
    task,
)

__all__ = [
    "CANCELLED",
    "DONE",
    "ERROR",
    "RUNNING",
    "WAITING",
    "AsyncTaskHandle",
    "Health",
    "InvalidTaskOptions",
    "NotMigrated",
    "Postpone",
    "ResultNotStored",
    "RunContext",
    "RunDoesNotExist",
    "RuntimeStopped",
    "ScheduleDoesNotExist",
    "ScheduleRecord",
    "Status",
    "Task",
    "TaskError",
    "TaskHandle",
    "TaskNotRegistered",
    "TaskTimeout",
    "TooManyPostpones",
    "WorkerLost",
    "adeschedule",
    "aenqueue",
    "ahealth",
    "apause_schedule",
    "aresume_schedule",
    "aschedules",
    "backoff",
    "cron_task",
    "current",
    "delayed_task",
    "deschedule",
    "enqueue",
    "health",
    "pause_schedule",
    "periodic_task",
    "resume_schedule",
    "schedules",
    "task",
]
