"""What becomes of a run that does not simply return: retries by exception and backoff, every
attempt's error, postpones, and the failures a task (or a stray row) can cause."""

import itertools
import json
import math
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest
from django.db import connection

from autotask import DONE, ERROR, RUNNING, WAITING, TaskHandle, runtime, sql
from autotask.models import TaskRun
from autotask.runtime.database import connection_kwargs
from autotask.runtime.runs import Outcome, write_params
from autotask.status import MAX_MESSAGE
from tests.app.models import Execution
from tests.app.tasks import (
    add,
    awaits_what_it_cancelled,
    fail,
    flaky_linear,
    ignores_cancel,
    noop,
    picky,
    postponing,
    raises_huge,
    raises_unprintable,
    result_of_a_cancelled_future,
    stops_iterating,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")


def _attempt_times(key: str) -> list:
    return list(Execution.objects.filter(key=key).order_by("at").values_list("at", flat=True))


def test_only_exceptions_in_retry_on_are_retried(worker: None) -> None:
    retried = picky("retried", "KeyError").wait(10)
    failed = picky("at-once", "ValueError").wait(10)
    assert (retried.status, retried.attempts) == (ERROR, 4)  # retries=3, all spent
    assert (failed.status, failed.attempts) == (ERROR, 1)  # not in retry_on: no retry
    assert Execution.objects.filter(key="at-once").count() == 1


def test_a_stopiteration_from_a_plain_function_is_itself_to_retry_on_and_in_the_error(
    worker: None,
) -> None:
    handle = stops_iterating("dry").wait(10)
    assert (handle.status, handle.attempts) == (ERROR, 2)  # retried: StopIteration in retry_on
    assert [e.exception_class_path for e in handle.errors] == ["builtins.StopIteration"] * 2
    assert Execution.objects.filter(key="dry").count() == 2


def test_every_attempts_error_is_kept_the_last_shown_as_the_runs(worker: None) -> None:
    handle = picky("kept", "KeyError").wait(10)
    assert [e.message for e in handle.errors] == ["'KeyError in kept'"] * 4
    assert all("raise {" in e.traceback for e in handle.errors)
    assert handle.error == handle.errors[-1]
    succeeded = flaky_linear("history").wait(15)
    assert succeeded.status == DONE and succeeded.result == 3
    assert [e.message for e in succeeded.errors] == ["attempt 1 fails", "attempt 2 fails"]


def test_a_linear_backoff_waits_longer_after_each_attempt(worker: None) -> None:
    assert flaky_linear("linear").wait(15).status == DONE
    first, second, third = _attempt_times("linear")
    assert (second - first).total_seconds() >= 0.3
    assert (third - second).total_seconds() >= 0.6


def test_postpone_runs_again_later_without_spending_an_attempt(worker: None) -> None:
    handle = postponing("later", 2).wait(10)
    assert (handle.status, handle.result, handle.attempts, handle.postpones) == (DONE, 3, 1, 2)
    assert handle.errors == [] and handle.error is None
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(_attempt_times("later"))]
    assert len(gaps) == 2 and all(gap >= 0.1 for gap in gaps), gaps


def test_postponing_past_max_postpones_ends_in_error_saying_so(worker: None) -> None:
    handle = postponing("forever", 100).wait(10)
    assert (handle.status, handle.postpones) == (ERROR, 3)
    assert handle.error.exception_class_path == "autotask.exceptions.TooManyPostpones"
    assert "postponed 3 times already, and max_postpones is 3" in handle.error.message
    assert "not yet (4)" in handle.error.message


@pytest.mark.parametrize("make", [awaits_what_it_cancelled, result_of_a_cancelled_future])
def test_a_cancelled_error_the_task_raised_itself_ends_its_run_in_error(
    worker: None, make: Callable[[], TaskHandle]
) -> None:
    handle = make().wait(10)
    assert handle.status == ERROR
    assert handle.error.exception_class_path.endswith("CancelledError")


def test_an_exception_whose_str_raises_still_ends_its_run(worker: None) -> None:
    handle = raises_unprintable().wait(10)
    assert handle.status == ERROR
    assert handle.error.exception_class_path == "tests.app.tasks._Unprintable"
    assert handle.error.message == "<_Unprintable: str() of it failed>"


def test_a_huge_message_is_cut_in_the_row_and_in_the_log(worker: None, caplog) -> None:
    handle = raises_huge(20_000_000).wait(30)
    assert handle.status == ERROR
    assert len(handle.error.message) < MAX_MESSAGE + 100
    assert handle.error.message.endswith("more characters]")
    assert len(handle.error.traceback) < 200_000
    logged = [r.getMessage() for r in caplog.records if "raises_huge failed" in r.getMessage()]
    assert logged and all(len(line) < 1_000 for line in logged)


def test_a_row_whose_arguments_cannot_be_decoded_fails_alone(settings, start_worker) -> None:
    settings.AUTOTASK_WORKERS = 4
    deep = "[" * 5000 + "]" * 5000  # valid jsonb, too deep for Python's decoder
    innocent = [TaskRun.objects.create(name=add.name, args=[n, 1]) for n in range(3)]
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO autotask_task (name, args) VALUES (%s, %s::jsonb) RETURNING id",
            [add.name, deep],
        )
        poisoned = cursor.fetchone()[0]
    start_worker()
    assert TaskHandle.get(poisoned).wait(10).status == ERROR
    # (Not through the model: loading its args would fail in this process too.)
    [error] = TaskRun.objects.filter(pk=poisoned).values_list("error", flat=True)
    assert error["type"] == "builtins.RecursionError"
    assert [TaskHandle.get(r.pk).wait(10).result for r in innocent] == [1, 2, 3]


def test_shutdown_does_not_wait_for_ever_on_a_task_that_ignores_cancel(worker: None) -> None:
    handle = ignores_cancel(60)
    wait_until(lambda: handle.refresh().status == RUNNING)
    started = time.monotonic()
    runtime.stop(timeout=0.5)
    assert time.monotonic() - started < 5
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.status, row.attempts) == (WAITING, 0)


def _transactions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def test_a_due_run_locked_by_another_transaction_is_not_polled_in_a_busy_loop(
    settings, start_worker
) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 2.0
    run = TaskRun.objects.create(name=add.name, args=[1, 1])
    with psycopg.connect(**connection_kwargs()) as locker:
        locker.execute("SELECT 1 FROM autotask_task WHERE id = %s FOR UPDATE", [run.pk])
        start_worker()
        time.sleep(0.5)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
        before = _transactions()
        time.sleep(3)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")
        spent = _transactions() - before
        locker.rollback()
    # Without backing off: a claim and a due query every 50 ms, some 120 in 3 s; the rest of
    # the runtime (heartbeat, the leader's services) sends a couple of dozen.
    assert spent < 60, f"{spent} transactions in 3 s while the due run was locked"
    assert TaskHandle.get(run.pk).wait(10).result == 2  # claimed once the lock is gone


def test_one_warning_for_a_malformed_status_notification(caplog) -> None:
    from autotask.runtime.listener import Listener

    Listener()._dispatch("autotask_status", ",".join(["garbage"] * 4000))
    warnings = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 1 and "ignored 4000 malformed" in warnings[0].getMessage()


def test_a_stored_error_is_json_the_admin_can_read(worker: None) -> None:
    handle = picky("json", "ValueError").wait(10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT errors::text FROM autotask_task WHERE id = %s", [handle.id])
        [stored] = json.loads(cursor.fetchone()[0])
    assert set(stored) == {"type", "message", "traceback"}


def test_a_none_result_is_json_null_and_a_failed_run_has_none_at_all(worker: None) -> None:
    """The batched write tells a task's None (stored as JSON null) from no result (SQL NULL),
    and keeps each outcome's error, ttl and status apart within one statement."""
    returned_none = noop().wait(10)
    failed = fail("boom").wait(10)
    assert (returned_none.status, failed.status) == (DONE, ERROR)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, result IS NULL, result = 'null'::jsonb, error IS NULL,"
            " jsonb_array_length(errors), expires_at - finished_at"
            " FROM autotask_task WHERE id IN (%s, %s) ORDER BY id",
            [returned_none.id, failed.id],
        )
        rows = {row[0]: row[1:] for row in cursor.fetchall()}
    assert rows[returned_none.id][:4] == (False, True, True, 0)
    assert rows[failed.id][:4] == (True, None, False, 1)
    assert rows[returned_none.id][4] == timedelta(seconds=noop.ttl)


def test_a_non_finite_ttl_or_delay_cannot_break_the_batched_write() -> None:
    """Both are refused where they come in; if one got through all the same, ``repr`` would
    write ``inf`` into the batch's JSON and fail every outcome in it."""
    worker_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO autotask_task (name, queue, status, worker_id) VALUES"
            " ('x', 'q', 'running', %s), ('x', 'q', 'running', %s) RETURNING id",
            [worker_id, worker_id],
        )
        kept, retried = sorted(row[0] for row in cursor.fetchall())
        outcomes = [
            Outcome(run_id=kept, status=DONE, ttl=math.inf, result="1"),
            Outcome(run_id=retried, status=WAITING, ttl=1.0, delay=math.nan),
        ]
        cursor.execute(sql.RUN_SET_STATUS_IF_RUNNING_MANY, write_params(outcomes, worker_id))
        assert sorted(row[0] for row in cursor.fetchall()) == [kept, retried]
        cursor.execute(
            "SELECT status, expires_at - finished_at > interval '36500 days',"
            " run_at <= statement_timestamp() FROM autotask_task WHERE id IN (%s, %s) ORDER BY id",
            [kept, retried],
        )
        assert cursor.fetchall() == [(DONE, True, True), (WAITING, None, True)]
