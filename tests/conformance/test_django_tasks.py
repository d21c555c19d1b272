"""Django's expectations of a task backend, run against autotask with a real worker.

The scenarios are those of Django's ``tests/tasks/`` for its immediate backend that apply to a
backend with a worker, and of django-tasks-db's backend tests (a database backend, the closest
peer): same inputs, same expected results, except that here a result is READY when enqueued
and is read back once the worker has run it. Where autotask differs, the README says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import django
import pytest
from django.db import transaction
from django.utils import timezone

from autotask.backend import AutotaskBackend
from autotask.models import TaskRun
from tests.app import django_tasks as t

if django.VERSION >= (6, 0):
    from django.tasks import TaskResultStatus, default_task_backend, task_backends
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
    from django.tasks.signals import task_enqueued, task_finished, task_started

    LOGGER = "django.tasks"
else:  # the backport
    from django_tasks import TaskResultStatus, default_task_backend, task_backends
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
    from django_tasks.signals import task_enqueued, task_finished, task_started

    LOGGER = "django_tasks"

pytestmark = pytest.mark.usefixtures("transactional_db")


def _finished(result: Any, timeout: float = 15.0) -> Any:
    """Refresh ``result`` until the worker has finished it (Django's results do not wait)."""
    deadline = time.monotonic() + timeout
    while not result.is_finished:
        assert time.monotonic() < deadline, f"{result.id} still {result.status}"
        time.sleep(0.02)
        result.refresh()
    return result


def test_the_backend_declares_what_it_supports() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, AutotaskBackend)
    assert backend is default_task_backend or default_task_backend.alias == "default"
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority


def test_enqueue_returns_a_ready_result_stored_in_autotask_s_table() -> None:
    result = t.calculate_meaning_of_life.enqueue()
    assert result.status == TaskResultStatus.READY
    assert not result.is_finished
    assert result.started_at is None and result.finished_at is None
    assert result.enqueued_at is not None
    assert result.worker_ids == [] and result.attempts == 0
    assert result.errors == []
    assert result.task is t.calculate_meaning_of_life
    assert result.backend == "default"
    with pytest.raises(ValueError, match="Task has not finished yet"):
        _ = result.return_value
    run = TaskRun.objects.get(pk=int(result.id))
    assert (run.name, run.status) == ("tests.app.django_tasks.calculate_meaning_of_life", "waiting")


@pytest.mark.parametrize("task", [t.calculate_meaning_of_life, t.async_calculate_meaning_of_life])
def test_a_successful_run_has_its_return_value_and_timestamps(worker: None, task: Any) -> None:
    result = _finished(task.enqueue())
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    assert result.errors == []
    assert len(result.worker_ids) == 1 and result.attempts == 1
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at


def test_args_and_kwargs_round_trip_as_json_and_reach_the_function(worker: None) -> None:
    result = t.echo.enqueue(1, (2, 3), "four", five={"six": [7]})
    assert result.args == [1, [2, 3], "four"]  # a tuple is a list, as Django normalises it
    assert result.kwargs == {"five": {"six": [7]}}
    fetched = t.echo.get_result(result.id)
    assert (fetched.args, fetched.kwargs) == (result.args, result.kwargs)
    _finished(result)
    assert result.return_value == {"args": [1, [2, 3], "four"], "kwargs": {"five": {"six": [7]}}}


def test_arguments_that_are_not_json_are_refused_at_enqueue() -> None:
    with pytest.raises(TypeError):
        t.echo.enqueue(object())
    assert not TaskRun.objects.exists()


@pytest.mark.parametrize(
    ("task", "path", "message"),
    [
        (t.failing_task_value_error, "builtins.ValueError", "This task failed due to ValueError"),
        (t.async_failing_task, "builtins.ValueError", "This async task failed"),
        (t.failing_task_system_exit, "builtins.SystemExit", "This task failed due to SystemExit"),
        (t.complex_exception, "builtins.ValueError", "This task failed"),
    ],
)
def test_a_failing_run_is_failed_with_its_error(
    worker: None, task: Any, path: str, message: str
) -> None:
    result = _finished(task.enqueue())
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    [error] = result.errors
    assert error.exception_class_path == path
    assert error.exception_class is (SystemExit if "SystemExit" in path else ValueError)
    assert error.traceback.startswith("Traceback (most recent call last)")
    assert message in error.traceback
    assert len(result.worker_ids) == 1
    assert result.finished_at is not None


def test_get_result_and_refresh_follow_the_run(worker: None) -> None:
    result = t.calculate_meaning_of_life.enqueue()
    fetched = default_task_backend.get_result(result.id)
    assert fetched.id == result.id and fetched.task == result.task
    _finished(result)
    assert default_task_backend.get_result(result.id).return_value == 42
    assert t.calculate_meaning_of_life.get_result(result.id).status == TaskResultStatus.SUCCESSFUL


def test_async_enqueue_get_result_and_refresh(worker: None) -> None:
    async def scenario() -> tuple[Any, Any]:
        result = await t.calculate_meaning_of_life.aenqueue()
        assert result.status == TaskResultStatus.READY
        for _ in range(500):
            await result.arefresh()
            if result.is_finished:
                break
            await asyncio.sleep(0.02)
        return result, await t.calculate_meaning_of_life.aget_result(result.id)

    result, fetched = asyncio.run(scenario())
    assert result.status == fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 42


@pytest.mark.parametrize("result_id", ["123456789", "not-a-number", "0", "-1", "1.5", ""])
def test_an_unknown_result_id_does_not_exist(result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result_id)
    with pytest.raises(TaskResultDoesNotExist):
        asyncio.run(default_task_backend.aget_result(result_id))


def test_a_result_of_another_task_is_a_mismatch() -> None:
    result = t.noop_task.enqueue()
    with pytest.raises(TaskResultMismatch):
        t.calculate_meaning_of_life.get_result(result.id)
    with pytest.raises(TaskResultMismatch):
        asyncio.run(t.calculate_meaning_of_life.aget_result(result.id))


def test_a_run_of_a_native_autotask_task_is_no_django_result() -> None:
    from tests.app.tasks import add

    handle = add(1, 2)
    with pytest.raises(TaskResultDoesNotExist, match=r"no django\.tasks task"):
        default_task_backend.get_result(str(handle.id))


def test_takes_context_gets_the_result_and_the_attempt(worker: None) -> None:
    result = _finished(t.get_task_id.enqueue())
    assert result.return_value == result.id
    result = _finished(t.context_attempt.enqueue(5))
    assert result.return_value == [1, "RUNNING", 5]


def test_priority_and_queue_are_stored_and_the_higher_priority_runs_first(start_worker) -> None:
    low = t.noop_task.using(priority=-10).enqueue()
    high = t.noop_task.using(priority=50).enqueue()
    default = t.prioritised.enqueue()  # priority 10, queue-1 from the decorator
    runs = {r.pk: r for r in TaskRun.objects.all()}
    assert (runs[int(low.id)].priority, runs[int(high.id)].priority) == (-10, 50)
    assert (runs[int(default.id)].priority, runs[int(default.id)].queue) == (10, "queue-1")
    start_worker()
    for result in (low, high, default):
        _finished(result)
    assert high.started_at <= default.started_at <= low.started_at
    assert t.prioritised.get_result(default.id).task.queue_name == "queue-1"


def test_run_after_defers_the_run(worker: None) -> None:
    later = timezone.now() + timedelta(seconds=1.5)
    result = t.noop_task.using(run_after=later).enqueue()
    assert TaskRun.objects.get(pk=int(result.id)).run_at == later
    time.sleep(0.5)
    result.refresh()
    assert result.status == TaskResultStatus.READY
    _finished(result)
    assert result.started_at >= later


def test_validation_is_django_s() -> None:
    with pytest.raises(InvalidTask, match="Queue 'nowhere' is not valid for backend"):
        t.noop_task.using(queue_name="nowhere")
    with pytest.raises(InvalidTask, match="priority must be a whole number"):
        t.noop_task.using(priority=101)
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        t.noop_task.using(run_after=timezone.now().replace(tzinfo=None))
    assert t.on_any_queue.queue_name == "anything-goes"  # QUEUES = []: any queue goes


def test_an_inner_function_is_refused_and_so_is_a_context_task_without_context() -> None:
    from autotask.backend import task

    def inner() -> None:
        pass

    with pytest.raises(InvalidTask, match="module level"):
        task()(inner)
    with pytest.raises(InvalidTask, match="first argument of 'context'"):
        task(takes_context=True)(t.noop_task.func)


def test_autotask_s_options_on_a_django_task(worker: None) -> None:
    assert t.flaky.retries == 2 and t.flaky.retry_on == (KeyError,)
    result = _finished(t.flaky.enqueue("k"))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3
    assert len(result.worker_ids) == 3  # one per attempt
    assert [e.exception_class_path for e in result.errors] == ["builtins.KeyError"] * 2
    from autotask.backend import task

    with pytest.raises(InvalidTask, match="retries"):
        task(retries=-1)(t.undecorated)


def test_enqueue_inside_a_rolled_back_transaction_leaves_nothing() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        t.noop_task.enqueue()
        raise RuntimeError("roll back")
    assert not TaskRun.objects.exists()


def test_the_signals_are_sent_as_django_s_backends_send_them(worker: None, caplog) -> None:
    seen: list[tuple[str, Any, str]] = []

    def receiver(signal_name: str):
        def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append((signal_name, sender, str(task_result.status)))

        return receive

    receivers = {
        "enqueued": receiver("enqueued"),
        "started": receiver("started"),
        "finished": receiver("finished"),
    }
    task_enqueued.connect(receivers["enqueued"])
    task_started.connect(receivers["started"])
    task_finished.connect(receivers["finished"])
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    try:
        _finished(t.calculate_meaning_of_life.enqueue())
        failed = _finished(t.failing_task_value_error.enqueue())
        time.sleep(0.1)  # the finish signal is sent in the worker as the run ends
    finally:
        task_enqueued.disconnect(receivers["enqueued"])
        task_started.disconnect(receivers["started"])
        task_finished.disconnect(receivers["finished"])
    assert seen == [
        ("enqueued", AutotaskBackend, "READY"),
        ("started", AutotaskBackend, "RUNNING"),
        ("finished", AutotaskBackend, "SUCCESSFUL"),
        ("enqueued", AutotaskBackend, "READY"),
        ("started", AutotaskBackend, "RUNNING"),
        ("finished", AutotaskBackend, "FAILED"),
    ]
    # Django's own receiver logs a failure with its traceback: sent from the except block.
    failures = [r for r in caplog.records if failed.id in r.getMessage() and r.exc_info]
    assert failures and failures[0].exc_info[0] is ValueError
