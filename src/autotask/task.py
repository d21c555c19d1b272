"""The seed's import path: ``from autotask.task import WAITING, RUNNING, DONE, ERROR``.

The original autotask exported its statuses and handle from here; code written against it keeps
working. The things themselves live in ``status`` and ``handles``.
"""

from .handles import AsyncTaskHandle, TaskHandle
from .status import CANCELLED, DONE, ERROR, FINAL_STATUSES, RUNNING, WAITING, Status, TaskError

__all__ = [
    "CANCELLED",
    "DONE",
    "ERROR",
    "FINAL_STATUSES",
    "RUNNING",
    "WAITING",
    "AsyncTaskHandle",
    "Status",
    "TaskError",
    "TaskHandle",
]
