"""More of Django's and django-tasks-db's scenarios: snapshots and equality, refresh, pickling,
the worker's failure paths, ordering, transactions and logging (see test_django_tasks.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import threading
import time
from datetime import timedelta
from typing import Any

import django
import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from autotask.backend import AutotaskBackend
from autotask.models import TaskRun
from tests.app import django_tasks as t
from tests.conformance.test_django_tasks import LOGGER, _finished
from tests.conftest import database_conninfo

if django.VERSION >= (6, 0):
    from django.tasks import TaskResultStatus, default_task_backend
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
else:  # the backport
    from django_tasks import TaskResultStatus, default_task_backend
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started

pytestmark = pytest.mark.usefixtures("transactional_db")


def _in_another_connection(sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_conninfo(), autocommit=True) as other:
        return other.execute(sql).fetchall()


# --- A. what enqueue returns ---


def test_the_enqueued_snapshot_equals_the_stored_result() -> None:
    result = t.noop_task.enqueue(1, two=3)
    assert (result.args, result.kwargs, result.attempts) == ([1], {"two": 3}, 0)
    assert default_task_backend.get_result(result.id) == result
    assert t.noop_task.get_result(result.id) == result
    again = asyncio.run(t.noop_task.aenqueue())
    assert (again.status, again.args, again.kwargs) == (TaskResultStatus.READY, [], {})
    assert asyncio.run(t.noop_task.aget_result(again.id)) == again


def test_arguments_the_function_cannot_take_fail_at_enqueue_not_in_the_worker() -> None:
    """A difference from Django's backends (they fail the run): autotask binds at enqueue."""
    with pytest.raises(TypeError, match="too many positional arguments"):
        t.calculate_meaning_of_life.enqueue(1)
    assert not TaskRun.objects.exists()


def test_the_backend_enqueues_directly_with_a_tuple_of_args() -> None:
    result = default_task_backend.enqueue(t.echo, (1, (2,)), {"b": b"bytes"})
    assert (result.args, result.kwargs) == ([1, [2]], {"b": "bytes"})
    assert asyncio.run(default_task_backend.aenqueue(t.echo, [], {})).args == []


@pytest.mark.parametrize("enqueue", ["sync", "async"])
def test_an_argument_django_cannot_normalise_is_a_type_error_and_stores_nothing(
    enqueue: str,
) -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        if enqueue == "sync":
            t.noop_task.enqueue(timezone.now())
        else:
            asyncio.run(t.noop_task.aenqueue(timezone.now()))
    assert not TaskRun.objects.exists()


def test_enqueue_sends_task_enqueued_with_the_class_and_the_result() -> None:
    seen: list[tuple[Any, Any]] = []

    def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append((sender, task_result))

    task_enqueued.connect(receive)
    try:
        result = t.noop_task.enqueue()
        later = asyncio.run(t.noop_task.aenqueue())
    finally:
        task_enqueued.disconnect(receive)
    assert seen == [(AutotaskBackend, result), (AutotaskBackend, later)]


def test_enqueue_logs_one_line(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    result = t.noop_task.enqueue()
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert "enqueued" in record.getMessage() and result.id in record.getMessage()


def test_the_backend_has_its_alias_and_options_and_no_check_errors() -> None:
    assert default_task_backend.alias == "default"
    assert default_task_backend.options == {}
    assert list(default_task_backend.check()) == []


def test_a_context_task_s_snapshot_is_ready() -> None:
    assert t.get_task_id.enqueue().status == TaskResultStatus.READY


# --- B. results read back ---


def test_refresh_reads_what_the_row_says_now() -> None:
    result = t.calculate_meaning_of_life.enqueue()
    TaskRun.objects.filter(pk=int(result.id)).update(
        status="done",
        result=42,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        attempts=1,
        worker_ids=["a-worker"],
    )
    assert result.status == TaskResultStatus.READY and not result.is_finished
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.is_finished
    assert result.return_value == 42 and result.attempts == 1
    assert result.started_at is not None and result.finished_at is not None


def test_refresh_is_idempotent() -> None:
    result = asyncio.run(t.noop_task.aenqueue())
    before = dataclasses.asdict(result)
    result.refresh()
    assert dataclasses.asdict(result) == before
    asyncio.run(result.arefresh())
    assert dataclasses.asdict(result) == before


def test_refresh_after_the_row_is_gone_does_not_exist() -> None:
    result = t.noop_task.enqueue()
    TaskRun.objects.filter(pk=int(result.id)).delete()
    with pytest.raises(TaskResultDoesNotExist):
        result.refresh()


@pytest.mark.skipif(django.VERSION < (6, 0), reason="the backport's Task does not pickle")
def test_a_result_and_its_task_pickle() -> None:
    result = t.calculate_meaning_of_life.enqueue()
    assert pickle.loads(pickle.dumps(result)) == result
    assert pickle.loads(pickle.dumps(t.flaky)) == t.flaky


def test_other_connections_see_what_was_enqueued() -> None:
    t.noop_task.enqueue()
    t.noop_task.enqueue()
    assert _in_another_connection("SELECT count(*) FROM autotask_task") == [(2,)]


# --- C. validation ---


def test_enqueue_validates_again(settings) -> None:
    settings.TASKS = {
        "default": {"BACKEND": "autotask.backend.AutotaskBackend", "QUEUES": []},
    }
    elsewhere = t.noop_task.using(queue_name="unknown_queue")
    settings.TASKS = {
        "default": {"BACKEND": "autotask.backend.AutotaskBackend", "QUEUES": ["queue-1"]},
    }
    with pytest.raises(InvalidTask, match="Queue 'unknown_queue' is not valid for backend"):
        elsewhere.enqueue()
    with pytest.raises(InvalidTask, match="Queue 'unknown_queue' is not valid for backend"):
        asyncio.run(elsewhere.aenqueue())


@pytest.mark.parametrize("priority", [-101, 101, 3.1])
def test_a_priority_out_of_django_s_range_is_refused(priority: float) -> None:
    with pytest.raises(InvalidTask, match="priority must be a whole number between -100 and 100"):
        t.noop_task.using(priority=priority)  # type: ignore[arg-type]


@pytest.mark.parametrize("priority", [-100, 0, 100])
def test_the_ends_of_django_s_priority_range_are_stored(priority: int) -> None:
    result = t.noop_task.using(priority=priority).enqueue()
    assert TaskRun.objects.get(pk=int(result.id)).priority == priority


def test_run_after_round_trips_and_none_stays_none() -> None:
    assert t.noop_task.get_result(t.noop_task.enqueue().id).task.run_after is None
    later = timezone.now() + timedelta(hours=1)
    result = t.noop_task.using(run_after=later).enqueue()
    assert t.noop_task.get_result(result.id).task.run_after == later


@pytest.mark.skipif(django.VERSION < (6, 0), reason="the backport's decorator has no such guard")
def test_run_after_on_the_decorator_is_refused() -> None:
    from django.tasks import task

    with pytest.raises(TypeError, match="run_after cannot be defined statically"):
        task(run_after=timezone.now())(t.undecorated)


def test_an_async_task_is_refused_by_a_backend_that_says_it_cannot(monkeypatch) -> None:
    monkeypatch.setattr(default_task_backend, "supports_async_task", False)
    with pytest.raises(InvalidTask, match=r"(?i)Backend does not support async tasks"):
        default_task_backend.validate_task(t.noop_task_async)


def test_the_decorator_s_options_survive_using() -> None:
    copy = t.flaky.using(priority=5)
    assert (copy.retries, copy.retry_on, copy.priority) == (2, (KeyError,), 5)


# --- D, E. the worker ---


def test_a_batch_of_successes_and_a_failure(worker: None) -> None:
    results = [t.noop_task.enqueue() for _ in range(3)] + [t.failing_task_value_error.enqueue()]
    statuses = sorted(str(_finished(r).status) for r in results)
    assert statuses == ["FAILED", "SUCCESSFUL", "SUCCESSFUL", "SUCCESSFUL"]


def test_concurrent_runs_run_once_each(worker: None) -> None:
    results = [t.sleep_for.enqueue(0.1) for _ in range(10)]
    for result in results:
        _finished(result)
    assert {str(r.status) for r in results} == {"SUCCESSFUL"}
    assert all(len(r.worker_ids) == 1 for r in results)


def test_a_row_locked_elsewhere_is_skipped_and_the_next_runs(start_worker) -> None:
    locked, free = t.noop_task.enqueue(), t.noop_task.enqueue()
    with psycopg.connect(database_conninfo()) as other:
        other.execute("SELECT 1 FROM autotask_task WHERE id = %s FOR UPDATE", [int(locked.id)])
        start_worker()
        _finished(free)
        locked.refresh()
        assert locked.status == TaskResultStatus.READY
    _finished(locked)


@pytest.mark.parametrize(
    ("task", "kind"),
    [(t.failing_task_system_exit, SystemExit), (t.interrupted, KeyboardInterrupt)],
)
def test_system_exit_and_keyboard_interrupt_fail_the_run_not_the_worker(
    worker: None, task: Any, kind: type[BaseException]
) -> None:
    result = _finished(task.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is kind
    assert _finished(t.calculate_meaning_of_life.enqueue()).return_value == 42


def test_a_return_value_that_is_not_json_fails_the_run(worker: None) -> None:
    result = _finished(t.returns_what_json_cannot_hold.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is TypeError
    assert "Unsupported type" in result.errors[0].traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value


def test_a_failed_result_s_task_error_resolves_its_class_safely(worker: None) -> None:
    result = _finished(t.failing_task_value_error.enqueue())
    [error] = result.errors
    assert error.traceback.endswith("ValueError: This task failed due to ValueError\n")
    object.__setattr__(error, "exception_class_path", "subprocess.run")
    with pytest.raises(ValueError, match=r"'subprocess\.run' does not reference a valid exception"):
        _ = error.exception_class
    object.__setattr__(error, "exception_class_path", "does.not.exist")
    with pytest.raises(ImportError):
        _ = error.exception_class


def test_a_row_naming_a_function_that_is_no_task_never_calls_it(settings, worker: None) -> None:
    """A row written by anyone: nothing is imported from it. Unlike django-tasks-db (FAILED at
    once) it waits out AUTOTASK_UNREGISTERED_GRACE first, for a rolling deploy's sake."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO autotask_task (name, args) VALUES ('subprocess.check_output', %s) "
            "RETURNING id",
            ['[["touch", "/tmp/autotask-conformance-must-not-exist"]]'],
        )
        run_id = cursor.fetchone()[0]
    with pytest.raises(TaskResultDoesNotExist, match=r"no django\.tasks task"):
        default_task_backend.get_result(str(run_id))
    time.sleep(1.0)  # the worker has seen it by now
    assert TaskRun.objects.get(pk=run_id).status == "waiting"
    import os

    assert not os.path.exists("/tmp/autotask-conformance-must-not-exist")


# --- G. signals and logs from the worker ---


def test_the_worker_s_signals_carry_the_run_as_it_is(worker: None) -> None:
    seen: list[tuple[str, Any, str, bool, int]] = []

    def receiver(name: str):
        def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append(
                (
                    name,
                    sender,
                    task_result.id,
                    task_result.finished_at is not None,
                    len(task_result.worker_ids),
                )
            )

        return receive

    started, finished = receiver("started"), receiver("finished")
    task_started.connect(started)
    task_finished.connect(finished)
    try:
        result = _finished(t.noop_task.enqueue())
        time.sleep(0.1)
    finally:
        task_started.disconnect(started)
        task_finished.disconnect(finished)
    assert seen == [
        ("started", AutotaskBackend, result.id, False, 1),
        ("finished", AutotaskBackend, result.id, True, 1),
    ]


def test_the_log_says_enqueued_running_and_successful_and_never_nonetype(
    worker: None, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    result = _finished(t.noop_task.enqueue())
    failed = _finished(t.failing_task_value_error.enqueue())
    time.sleep(0.1)
    mine = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and result.id in r.getMessage()
    ]
    assert len(mine) == 3
    assert "enqueued" in mine[0] and "state=RUNNING" in mine[1] and "state=SUCCESSFUL" in mine[2]
    assert not any(
        "NoneType" in r.getMessage() or r.exc_info
        for r in caplog.records
        if result.id in r.getMessage()
    )
    lines = [r for r in caplog.records if r.name == LOGGER and failed.id in r.getMessage()]
    assert "state=FAILED" in lines[-1].getMessage() and lines[-1].levelno == logging.ERROR


# --- H. run_after, priority, queues ---


def test_a_future_run_after_is_not_run_until_then(worker: None) -> None:
    result = t.noop_task.using(run_after=timezone.now() + timedelta(hours=10)).enqueue()
    time.sleep(1.0)
    result.refresh()
    assert result.status == TaskResultStatus.READY
    TaskRun.objects.filter(pk=int(result.id)).update(run_at=timezone.now())
    _finished(result, timeout=20)  # the fallback poll finds it (no NOTIFY for an UPDATE)


def test_priority_then_run_after_then_enqueue_order(settings, start_worker) -> None:
    settings.AUTOTASK_WORKERS = 1
    now = timezone.now()
    order = {
        "old": t.echo.using(priority=20, run_after=now - timedelta(hours=2)).enqueue("old"),
        "very_old": t.echo.using(priority=20, run_after=now - timedelta(hours=10)).enqueue("v"),
        "future0": t.echo.using(priority=0, run_after=now + timedelta(hours=10)).enqueue("f0"),
        "future10": t.echo.using(priority=10, run_after=now + timedelta(hours=10)).enqueue("f"),
        "p10": t.echo.using(priority=10).enqueue("p10"),
        "p2": t.echo.using(priority=2).enqueue("p2"),
        "first_p0": t.echo.enqueue("a"),
        "second_p0": t.echo.enqueue("b"),
        "p-2": t.echo.using(priority=-2).enqueue("p-2"),
    }
    start_worker()
    due = ["very_old", "old", "p10", "p2", "first_p0", "second_p0", "p-2"]
    for name in due:
        _finished(order[name])
    started = sorted(due, key=lambda name: order[name].started_at)
    assert started == due
    for name in ("future0", "future10"):
        order[name].refresh()
        assert order[name].status == TaskResultStatus.READY


def test_a_worker_serves_only_its_queues(settings, start_worker) -> None:
    settings.AUTOTASK_QUEUES = ["default"]
    start_worker()
    elsewhere = t.noop_task.using(queue_name="queue-1").enqueue()
    here = t.noop_task.enqueue()
    _finished(here)
    time.sleep(0.5)
    elsewhere.refresh()
    assert elsewhere.status == TaskResultStatus.READY
    assert t.noop_task.get_result(elsewhere.id).task.queue_name == "queue-1"


# --- I. transactions ---


def test_enqueue_in_atomic_is_seen_by_others_only_after_commit(worker: None) -> None:
    with transaction.atomic():
        result = t.noop_task.enqueue()
        assert result.enqueued_at is not None
        assert TaskRun.objects.count() == 1
        assert _in_another_connection("SELECT count(*) FROM autotask_task") == [(0,)]
        time.sleep(0.5)  # the worker cannot see it either
        assert TaskRun.objects.get(pk=int(result.id)).status == "waiting"
    _finished(result)


def test_a_rolled_back_enqueue_never_runs_and_its_result_does_not_exist(worker: None) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        result = t.noop_task.enqueue()
        raise RuntimeError
    time.sleep(0.3)
    with pytest.raises(TaskResultDoesNotExist):
        result.refresh()


# --- J. stopping ---


def test_stop_waits_for_a_running_task_and_it_succeeds(start_worker) -> None:
    from autotask import runtime

    start_worker()
    result = t.sleep_for.enqueue(1.0)
    deadline = time.monotonic() + 10
    while not result.worker_ids:
        assert time.monotonic() < deadline
        time.sleep(0.02)
        result.refresh()
    stopping = threading.Thread(target=runtime.stop, kwargs={"timeout": 10})
    stopping.start()
    stopping.join(timeout=15)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 1.0


def test_a_receiver_that_raises_fails_neither_the_enqueue_nor_the_run(worker: None) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(broken)
    try:
        result = _finished(t.calculate_meaning_of_life.enqueue())
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(broken)
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)
    assert len(result.worker_ids) == 1  # one attempt: the raising receiver caused no retry
