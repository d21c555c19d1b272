"""The heartbeat: a runtime's row in autotask_worker, refreshed while it runs, gone at stop."""

import os
import socket
import time
from collections.abc import Callable

import pytest

from autotask import runtime
from autotask.models import Worker
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_the_worker_row_says_who_serves_what_and_its_heartbeat_advances(
    settings, start_worker: Callable[[], None]
) -> None:
    settings.AUTOTASK_WORKER_MONITOR_INTERVALL = 0.2
    settings.AUTOTASK_QUEUES = ["mail", "reports"]
    settings.AUTOTASK_WORKERS = 3
    start_worker()
    me = runtime.get().worker
    assert me is not None
    row = Worker.objects.get(pk=me.id)
    assert (row.host, row.pid, row.concurrency, row.queues) == (
        socket.gethostname(),
        os.getpid(),
        3,
        ["mail", "reports"],
    )
    first = row.heartbeat_at
    beats = wait_until(lambda: Worker.objects.get(pk=me.id).heartbeat_at > first, timeout=5)
    assert beats
    runtime.stop(timeout=1)
    assert not Worker.objects.filter(pk=me.id).exists()


def test_the_interval_setting_paces_the_beats(settings, start_worker: Callable[[], None]) -> None:
    settings.AUTOTASK_WORKER_MONITOR_INTERVALL = 60
    settings.AUTOTASK_WORKER_TIMEOUT = 300
    start_worker()
    me = runtime.get().worker
    assert me is not None
    row = Worker.objects.get(pk=me.id)
    time.sleep(0.6)  # three beats, had the interval been the other test's
    assert Worker.objects.get(pk=me.id).heartbeat_at == row.heartbeat_at == row.started_at
