"""Django settings of autotask's side: the benchmarks' settings (database ``autotask_bench``,
AUTOTASK_BENCH_* variables), with this package as the only app besides autotask.

``tests.app`` is left out on purpose: its periodic tasks would be recorded as schedules and
their ticks would land in the task table being drained.
"""

from tests.benchmarks.settings import (
    AUTOTASK_HANDLE_TASK_IDLE_TIME,
    AUTOTASK_WORKERS,
    DATABASES,
    DEFAULT_AUTO_FIELD,
    LOGGING,
    SECRET_KEY,
    USE_TZ,
)

__all__ = [
    "AUTOTASK_HANDLE_TASK_IDLE_TIME",
    "AUTOTASK_WORKERS",
    "DATABASES",
    "DEFAULT_AUTO_FIELD",
    "INSTALLED_APPS",
    "LOGGING",
    "SECRET_KEY",
    "USE_TZ",
]

INSTALLED_APPS = ["autotask", "tests.benchmarks.compare"]
