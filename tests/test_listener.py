"""The shared LISTEN connection: it comes back after losing its connection, and says so."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from autotask import DONE
from autotask.runtime.listener import Listener
from autotask.task import RUNNING, Status
from tests.app.tasks import add
from tests.conftest import wait_until


def _listener_backends(select: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {select} FROM pg_stat_activity "
            "WHERE application_name LIKE 'autotask listener%%' AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def _terminate_listener() -> int:
    return _listener_backends("count(pg_terminate_backend(pid))")


def _listening() -> bool:
    return _listener_backends("count(*)") > 0


@pytest.mark.usefixtures("transactional_db")
def test_worker_keeps_running_tasks_after_its_listener_is_killed(settings, start_worker) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 60  # only a notification can wake the worker
    start_worker()
    assert add(1, 1).wait(10).status == DONE
    assert _terminate_listener() == 1
    time.sleep(0.1)
    wait_until(_listening, timeout=10)
    # With a 60 s poll, finishing within 20 s needs the reconnected listener's notification.
    assert add(2, 2).wait(20).result == 4


@pytest.mark.usefixtures("transactional_db")
def test_a_run_enqueued_while_the_listener_was_down_runs_after_reconnect(
    settings, start_worker
) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 60
    start_worker()
    assert _terminate_listener() == 1
    handle = add(3, 3)  # its NOTIFY may find nobody listening
    assert handle.wait(20).result == 6
    assert handle.finished_at is not None


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    listener = Listener()
    seen: list[Status | None] = []

    def broken(status: Status | None) -> None:
        raise RuntimeError("Event loop is closed")

    listener.watch(7, broken)
    listener.watch(7, seen.append)
    listener._dispatch("autotask_status", "7:running,8:done")
    listener._tell_everyone()
    assert seen == [RUNNING, None]


def test_malformed_status_payload_is_ignored() -> None:
    listener = Listener()
    seen: list[Status | None] = []
    listener.watch(3, seen.append)
    listener._dispatch("autotask_status", "garbage,3:nonsense,3:done")
    assert seen == [Status.DONE]
