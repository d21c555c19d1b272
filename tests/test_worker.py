"""The runtime's worker against a real PostgreSQL: claim, run, finish, retry, shutdown."""

import asyncio
import logging
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import psycopg.errors
import pytest
from django.core.management import call_command
from django.db import connection, transaction

from autotask import DONE, ERROR, RUNNING, WAITING, TaskHandle, registry, runtime, signals, sql
from autotask.models import TaskRun
from autotask.runtime import worker as worker_module
from autotask.runtime.database import Pool, is_transient
from autotask.runtime.worker import claim_statement
from tests.app.models import Execution
from tests.app.tasks import (
    add,
    async_add,
    async_record,
    async_stream,
    echo,
    fail,
    fail_twice,
    fail_with_surrogate,
    fails_then_sleeps,
    not_json,
    record,
    slow,
    sync_slow,
)
from tests.conftest import database_conninfo, wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture(autouse=True, params=["limited claim", "plain claim"])
def claim(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test with either claim: this test app has tasks with limits, so its processes
    take the limited claim; most apps have none, and take the plain one (the claim function)."""
    if request.param == "plain claim":
        monkeypatch.setattr(registry, "has_limits", lambda: False)
    return str(request.param)


@pytest.mark.smoke
def test_sync_task_runs_to_done_with_its_result(worker: None) -> None:
    handle = add(2, 3).wait(10)
    assert (handle.status, handle.result, handle.error, handle.attempts) == (DONE, 5, None, 1)
    assert handle.started_at is not None and handle.finished_at >= handle.started_at


@pytest.mark.smoke
def test_async_task_runs_natively_to_done(worker: None) -> None:
    handle = async_add(20, 22).wait(10)
    assert (handle.status, handle.result) == (DONE, 42)


def test_claimed_runs_begin_before_the_worker_looks_at_what_is_due_next(
    monkeypatch: pytest.MonkeyPatch, start_worker: Callable[[], None]
) -> None:
    """A claim that took fewer runs than there are free slots is followed by a look at the next
    due time: its statement is built and sent before it yields, and a run that waited for it
    started later by that much (0.15-0.3 ms of a 1.7 ms enqueue-to-start, measured)."""
    events: list[tuple[str, set[int]]] = []
    claim, look = worker_module.Worker._claim, worker_module.Worker._seconds_until_due

    async def claiming(self: worker_module.Worker, limit: int) -> list[Any]:
        claimed = await claim(self, limit)
        events.append(("claimed", {run.id for run in claimed}))
        return claimed

    async def looking(self: worker_module.Worker) -> float:
        events.append(("look", set(self._executor._contexts)))  # the runs begun so far
        return await look(self)

    monkeypatch.setattr(worker_module.Worker, "_claim", claiming)
    monkeypatch.setattr(worker_module.Worker, "_seconds_until_due", looking)
    start_worker()
    handle = slow(0.3)
    wait_until(lambda: ("claimed", {handle.id}) in events, timeout=10)
    wait_until(lambda: len(events) > events.index(("claimed", {handle.id})) + 1, timeout=10)
    kind, begun = events[events.index(("claimed", {handle.id})) + 1]
    assert kind == "look" and handle.id in begun
    assert handle.wait(10).status == DONE


def test_raising_task_ends_in_error_with_class_message_and_traceback(worker: None) -> None:
    handle = fail("boom").wait(10)
    assert handle.status == ERROR and handle.ready
    assert handle.error is not None
    assert handle.error.exception_class_path == "builtins.ValueError"
    assert handle.error.message == "boom"
    assert "raise ValueError(message)" in handle.error.traceback
    assert handle.result is None


def test_result_that_is_not_json_ends_in_error_saying_so(worker: None) -> None:
    handle = not_json().wait(10)
    assert handle.status == ERROR
    assert "return value" in handle.error.message and "JSON" in handle.error.message


def test_retries_run_again_and_keep_attempt_count(worker: None) -> None:
    handle = fail_twice("k").wait(15)
    assert (handle.status, handle.result, handle.attempts) == (DONE, "ok after 3", 3)


def test_rolled_back_enqueue_never_runs_and_committed_one_does(worker: None) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = add(1, 1)
        raise RuntimeError("roll back")
    with transaction.atomic():
        committed = add(2, 2)
        time.sleep(0.3)  # the worker cannot see the run before commit
        assert committed.refresh().status == WAITING
    assert committed.wait(10).result == 4
    assert not TaskRun.objects.filter(pk=rolled_back.id).exists()
    assert TaskRun.objects.count() == 1


def test_row_naming_an_unregistered_task_errors_without_importing_it(
    settings, start_worker: Callable
) -> None:
    settings.AUTOTASK_UNREGISTERED_GRACE = 0  # no waiting for a process that knows it
    start_worker()
    run = TaskRun.objects.create(name="tests.app.never_imported.boom")
    handle = TaskHandle.get(run.pk).wait(10)
    assert handle.status == ERROR
    assert handle.error.exception_class_path == "autotask.exceptions.TaskNotRegistered"
    assert "'tests.app.never_imported.boom' is registered" in handle.error.message
    assert "tests.app.never_imported" not in sys.modules


def test_lost_notification_is_covered_by_the_poll(settings, start_worker: Callable) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 0.5
    start_worker()
    time.sleep(0.2)  # let the worker go idle, waiting for a notification
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE autotask_task DISABLE TRIGGER autotask_task_inserted")
    try:
        handle = add(3, 4)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE autotask_task ENABLE TRIGGER autotask_task_inserted")
    assert handle.wait(10).result == 7


def test_future_run_at_runs_when_due_not_at_the_next_poll(settings, start_worker: Callable) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 30
    start_worker()
    handle = add.using(delay=1.0)(1, 2)
    time.sleep(0.3)
    assert handle.refresh().status == WAITING
    handle.wait(10)
    waited = (handle.started_at - handle.enqueued_at).total_seconds()
    assert handle.status == DONE
    assert 1.0 <= waited < 10.0, waited  # due after 1 s; the poll would have taken 30 s


def test_priority_decides_the_order_of_claims(settings, start_worker: Callable) -> None:
    settings.AUTOTASK_WORKERS = 1
    low = [add.using(priority=-5)(i, 0) for i in range(3)]
    high = [add.using(priority=50)(i, 0) for i in range(3)]
    start_worker()
    for handle in low + high:
        handle.wait(10)
    last_high = max(h.started_at for h in high)
    first_low = min(h.started_at for h in low)
    assert last_high <= first_low


def test_worker_serves_only_its_queues(settings, start_worker: Callable) -> None:
    settings.AUTOTASK_QUEUES = ["fast"]
    start_worker()
    served = add.using(queue="fast")(1, 1)
    ignored = add.using(queue="other")(1, 1)
    assert served.wait(10).status == DONE
    time.sleep(0.3)
    assert ignored.refresh().status == WAITING


def test_concurrency_runs_tasks_side_by_side(settings, start_worker: Callable) -> None:
    settings.AUTOTASK_WORKERS = 4
    start_worker()
    handles = [sync_slow(0.5) for _ in range(2)] + [slow(0.5) for _ in range(2)]
    for handle in handles:
        assert handle.wait(10).result == "slept"
    # All four were running at once: each started before any of them finished.
    assert max(h.started_at for h in handles) < min(h.finished_at for h in handles)


def test_a_slot_serves_the_next_run_while_the_last_outcome_is_written(
    settings, start_worker: Callable
) -> None:
    """The slot is free once the function returns; the write of its outcome goes on meanwhile,
    and at most AUTOTASK_WORKERS runs wait for their write."""
    settings.AUTOTASK_WORKERS = 1
    start_worker()
    first = sync_slow(0.3)
    wait_until(lambda: first.refresh().status == RUNNING)
    with psycopg.connect(database_conninfo()) as blocker:  # holds the finish of ``first`` back
        blocker.execute("SELECT 1 FROM autotask_task WHERE id = %s FOR UPDATE", [first.id])
        second = record("second")
        wait_until(lambda: Execution.objects.filter(key="second").exists() or None)
        assert second.refresh().status == RUNNING  # started while ``first`` is not written
        third = record("third")
        time.sleep(0.5)
        assert third.refresh().status == WAITING  # two outcomes unwritten: no more claims
        assert first.refresh().status == RUNNING
    for handle in (first, second, third):
        assert handle.wait(10).status == DONE


def test_a_run_claimed_again_while_its_last_attempt_still_sends_its_signal_stays_ours(
    settings, start_worker: Callable
) -> None:
    """The slot is free before task_finished is sent: a retry due at once may be claimed and
    run while the previous attempt's receiver still runs; that attempt's end must not make the
    executor forget the new one (it would then run unguarded: put back at stop, cancel lost)."""
    settings.AUTOTASK_WORKERS = 1
    receiver_done = threading.Event()

    def slow_receiver(sender, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if kwargs.get("status") != DONE and not receiver_done.is_set():
            time.sleep(0.5)
            receiver_done.set()

    signals.task_finished.connect(slow_receiver, sender=fails_then_sleeps)
    try:
        start_worker()
        handle = fails_then_sleeps(1.5)
        assert receiver_done.wait(10)
        time.sleep(0.1)  # the first attempt's task has ended by now; the second still runs
        assert handle.refresh().status == RUNNING and handle.attempts == 2
        executor = runtime.get()._executor
        assert executor is not None and handle.id in executor.running_ids
        assert handle.wait(10).result == "second"
    finally:
        signals.task_finished.disconnect(slow_receiver, sender=fails_then_sleeps)


def test_stop_puts_unfinished_runs_back_to_waiting_uncounted(worker: None) -> None:
    handle = slow(30)
    wait_until(lambda: handle.refresh().status == RUNNING)
    runtime.stop(timeout=0.2)
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.status, row.attempts, row.worker_id, row.started_at) == ("waiting", 0, None, None)
    assert not runtime.get().worker


def test_stop_lets_running_tasks_finish_within_the_timeout(worker: None) -> None:
    handle = sync_slow(0.3)
    wait_until(lambda: handle.refresh().status == RUNNING)
    runtime.stop(timeout=5)
    assert handle.refresh().status == DONE


def test_a_run_taken_from_the_worker_is_not_overwritten_by_it(worker: None) -> None:
    handle = sync_slow(0.5)
    wait_until(lambda: handle.refresh().status == RUNNING)
    # What a rescue does: the run goes back to waiting (here far in the future) for another worker.
    TaskRun.objects.filter(pk=handle.id).update(
        status="waiting", worker_id=None, run_at="2100-01-01T00:00:00Z"
    )
    time.sleep(1.0)
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.status, row.result, row.finished_at) == ("waiting", None, None)


def test_worker_registers_itself_and_leaves_at_stop(worker: None) -> None:
    me = runtime.get().worker
    assert me is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid, concurrency FROM autotask_worker WHERE id = %s", [me.id])
        assert cursor.fetchone()[0] > 0
    runtime.stop()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM autotask_worker")
        assert cursor.fetchone()[0] == 0


def test_result_postgresql_refuses_fails_alone_without_holding_up_others(
    settings, start_worker: Callable
) -> None:
    settings.AUTOTASK_WORKERS = 4
    with connection.cursor() as cursor:  # a refusal json.dumps cannot foresee
        cursor.execute(
            "ALTER TABLE autotask_task ADD CONSTRAINT test_no_poison "
            "CHECK (result IS DISTINCT FROM '\"poison\"'::jsonb)"
        )
    try:
        handles = [echo(n) for n in range(3)] + [echo("poison")] + [echo(n) for n in range(3, 6)]
        start_worker()
        finished = [handle.wait(10) for handle in handles]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE autotask_task DROP CONSTRAINT test_no_poison")
    poisoned = finished.pop(3)
    assert poisoned.status == ERROR
    assert poisoned.error.exception_class_path == "autotask.exceptions.ResultNotStored"
    assert "test_no_poison" in poisoned.error.message
    assert [(h.status, h.result) for h in finished] == [(DONE, n) for n in range(6)]


def test_concurrent_starts_make_one_worker(worker: None) -> None:
    runtime.stop()
    threads = [threading.Thread(target=runtime.start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM autotask_worker")
        assert cursor.fetchone()[0] == 1
    assert add(1, 2).wait(10).result == 3


def test_async_orm_task_recovers_from_a_lost_connection(worker: None) -> None:
    assert async_record("first").wait(10).status == DONE
    with connection.cursor() as cursor:  # every Django connection but this test's own
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name NOT LIKE 'autotask%%'"
        )
    handle = async_record("second").wait(10)
    assert (handle.status, handle.error) == (DONE, None)


def test_async_orm_tasks_running_together_keep_their_own_connections(
    settings, start_worker: Callable
) -> None:
    settings.AUTOTASK_WORKERS = 4
    for n in range(5):
        Execution.objects.create(key=f"row-{n}")
    start_worker()
    streaming = async_stream(0.1)
    wait_until(lambda: streaming.refresh().status == RUNNING)
    others = [async_record(f"other-{n}") for n in range(6)]
    assert [h.wait(10).status for h in others] == [DONE] * 6
    assert (streaming.wait(10).status, streaming.error, streaming.result) == (DONE, None, 5)


def test_an_error_postgresql_could_not_store_as_is_is_stored_escaped(worker: None) -> None:
    handle = fail_with_surrogate().wait(10)
    assert handle.status == ERROR
    assert handle.error.message == "cannot process file \\udcff.txt"


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (psycopg.OperationalError("connection lost"), True),
        (psycopg.errors.AdminShutdown(), True),
        (psycopg.errors.lookup("08006")(), True),
        (psycopg.errors.SerializationFailure(), True),
        (psycopg.errors.ProgramLimitExceeded(), False),
        (psycopg.errors.CheckViolation(), False),
        (psycopg.errors.InvalidTextRepresentation(), False),
    ],
)
def test_only_connection_trouble_is_retried(error: psycopg.Error, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_finish_is_retried_through_an_outage_longer_than_a_few_attempts(
    worker: None, monkeypatch
) -> None:
    """Fault injection on the runtime's own pool wrapper: the first 8 finishing statements
    fail as a lost connection would; the run must still end DONE, not stay 'running'."""
    from autotask import sql
    from autotask.runtime import completer
    from autotask.runtime.database import Pool

    monkeypatch.setattr(completer, "_RETRY_PAUSE", 0.05)
    failures = {"left": 8}
    real = Pool.fetchall

    async def flaky(self, statement, params):
        if statement == sql.RUN_SET_STATUS_IF_RUNNING_MANY and failures["left"] > 0:
            failures["left"] -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await real(self, statement, params)

    monkeypatch.setattr(Pool, "fetchall", flaky)
    handle = add(2, 2).wait(20)
    assert (handle.status, handle.result, failures["left"]) == (DONE, 4, 0)


def test_a_run_of_a_task_unknown_here_waits_for_the_grace_before_it_fails(
    settings, start_worker: Callable
) -> None:
    """A rolling deploy: old code meets a run of a task only the new code has."""
    settings.AUTOTASK_UNREGISTERED_GRACE = 1.5
    start_worker()
    run = TaskRun.objects.create(name="tests.app.only_in_the_new_release")
    wait_until(lambda: TaskRun.objects.get(pk=run.pk).postpones >= 1)
    put_back = TaskRun.objects.get(pk=run.pk)
    assert (put_back.status, put_back.attempts) == ("waiting", 0)  # not spent, not failed
    handle = TaskHandle.get(run.pk).wait(10)
    assert handle.status == ERROR
    assert (handle.finished_at - handle.enqueued_at).total_seconds() >= 1.5
    assert "nor in any other that claimed it in the 1.5 s" in handle.error.message


def test_runs_a_claim_took_before_its_answer_was_lost_are_put_back(
    worker: None, monkeypatch
) -> None:
    """Fault injection on the runtime's own pool wrapper: one claim commits in PostgreSQL, then
    its answer is lost as with a dropped connection. Its runs must not stay 'running' under a
    worker that never started them."""
    lost = {"claims": 0}
    claims = {
        claim_statement(any_queue=any_queue, limited=limited)
        for any_queue in (False, True)
        for limited in (False, True)
    } | {sql.RUN_CLAIM_MANY_BY_FUNCTION}

    def losing_the_first_claim(real):
        # The plain claim goes through fetchall_under, the limited one through fetchall; which
        # one the worker uses depends on whether a limited task is imported or slots exist,
        # and which queues it serves on the settings the worker fixture was started with.
        async def lossy(self, *args):
            rows = await real(self, *args)
            if args[-2] in claims and rows and not lost["claims"]:
                lost["claims"] += 1
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return rows

        return lossy

    monkeypatch.setattr(Pool, "fetchall", losing_the_first_claim(Pool.fetchall))
    monkeypatch.setattr(Pool, "fetchall_under", losing_the_first_claim(Pool.fetchall_under))
    # Due a little later: a claim already in flight as the patch went in (the worker's first)
    # must not be the one that takes it.
    handle = add.using(delay=0.3)(5, 6).wait(15)
    assert (handle.status, handle.result, handle.attempts, lost["claims"]) == (DONE, 11, 1, 1)


_BACKLOG = """
INSERT INTO autotask_task (name, queue, args, kwargs, priority, max_attempts, run_at, status)
SELECT 'tests.app.tasks.add', 'default', '[1, 2]', '{}', 0, 1, now(), %s
FROM generate_series(1, 3000)
"""


def _on_a_pool(use: Callable[[Pool], Awaitable[list[tuple[Any, ...]]]]) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        pool = Pool()
        await pool.start()
        try:
            return await use(pool)
        finally:
            await pool.stop(0.0)

    return asyncio.run(run())


def test_the_plain_claim_walks_its_index_when_statistics_see_no_waiting_runs(
    transactional_db: None,
) -> None:
    """Statistics taken over finished runs, then a burst of waiting ones below autovacuum's
    threshold (as in production, with finished runs kept for their ttl): planned as it stands,
    a claim fetches every due run and sorts them; sent as the worker sends it, it walks the
    claim index and stops after its LIMIT."""
    with connection.cursor() as cursor:
        cursor.execute(_BACKLOG, ["done"])
        cursor.execute("ANALYZE autotask_task")
        cursor.execute(_BACKLOG, ["waiting"])
    settings = sql.RUN_CLAIM_SETTINGS
    explain = f"EXPLAIN {claim_statement(any_queue=True, limited=False)}"
    params = {"limit": 10, "worker_id": uuid.uuid4(), "queues": None}
    plain = _on_a_pool(lambda pool: pool.fetchall(explain, params))
    planned = _on_a_pool(lambda pool: pool.fetchall_under(settings, explain, params))
    assert "Sort" in "\n".join(row[0] for row in plain)  # the statistics mislead the planner
    planned_text = "\n".join(row[0] for row in planned)
    assert "Sort" not in planned_text
    assert "Index Scan using autotask_task_claim_any" in planned_text
    # The same path claims, its parameters bound client-side (a list of queues included).
    in_queues = claim_statement(any_queue=False, limited=False)
    params["queues"] = ["default"]
    claimed = _on_a_pool(lambda pool: pool.fetchall_under(settings, in_queues, params))
    assert len(claimed) == 10
    assert TaskRun.objects.filter(status=RUNNING, worker_id=params["worker_id"]).count() == 10
    # The claim function (what the worker sends) plans its statements the same way.
    for queues in (None, ["default"]):
        plans = _nested_plans(sql.RUN_CLAIM_MANY_BY_FUNCTION, {**params, "queues": queues})
        [claim_plan] = [plan for plan in plans if "UPDATE autotask_task" in plan]
        assert "Sort" not in claim_plan
        assert "Index Scan using autotask_task_claim_" in claim_plan


@pytest.mark.parametrize("claim", ["plain claim"], indirect=True)  # the limited one has none
def test_a_database_without_the_claim_function_is_claimed_from_all_the_same(
    start_worker: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    claim: str,
) -> None:
    """New code before its migration (a deploy in progress): the claim is sent as it was,
    and through the function once the migration is in."""
    monkeypatch.setattr(worker_module, "_CLAIM_FUNCTION_RECHECK", 0.0)
    caplog.set_level(logging.INFO, logger="autotask")
    call_command("migrate", "autotask", "0014", verbosity=0)
    try:
        assert "autotask_claim_many" not in _function_names()
        start_worker()
        handle = add(2, 3).wait(15)
        assert (handle.status, handle.result) == (DONE, 5)
        assert caplog.text.count("no claim function (migration 0015 is not applied)") == 1
        assert add(3, 4).wait(15).result == 7  # and goes on claiming, warned once
        assert caplog.text.count("no claim function") == 1
    finally:
        call_command("migrate", "autotask", verbosity=0)
    assert "autotask_claim_many" in _function_names()
    assert "claims through the claim function now" not in caplog.text
    assert add(4, 5).wait(15).result == 9
    assert "claims through the claim function now" in caplog.text


def _function_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'autotask%%'")
        return {row[0] for row in cursor.fetchall()}


def _nested_plans(statement: str, params: dict[str, Any]) -> list[str]:
    """The plans of the statements that ``statement`` runs inside functions (auto_explain, its
    log sent to this client), in a transaction rolled back."""
    with psycopg.connect(database_conninfo()) as conn:
        plans: list[str] = []
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        conn.execute("SET auto_explain.log_min_duration = 0")
        conn.execute("SET auto_explain.log_nested_statements = on")
        conn.execute("SET client_min_messages = log")
        conn.execute(statement, params).fetchall()
        conn.rollback()
    return plans


def _function_source() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'autotask_claim_many'")
        return str(cursor.fetchone()[0])


def _words(text: str) -> str:
    return " ".join(text.split())


def test_the_claim_function_runs_the_plain_claims_statements() -> None:
    """Migration 0015 holds the claim as it was written then, and sql.py the claim a worker
    sends where the function is missing: they must not drift apart."""
    source = _words(_function_source())
    for any_queue in (True, False):
        statement = claim_statement(any_queue=any_queue, limited=False)
        for placeholder, variable in (
            ("%(limit)s", "p_limit"),
            ("%(worker_id)s", "p_worker_id"),
            ("%(queues)s", "p_queues"),
        ):
            statement = statement.replace(placeholder, variable)
        assert f"RETURN QUERY {_words(statement)};" in source


def test_the_claims_commit_is_asynchronous_for_the_claim_alone(transactional_db: None) -> None:
    """The plain claim's settings hold inside its message only: the claim commits without
    waiting for the disk, and the pooled session it ran on is left as it was (durable commits
    for the finishes and enqueues that use it next)."""
    probe = "SELECT current_setting('synchronous_commit'), current_setting('enable_sort'), "
    probe += "pg_backend_pid()"

    async def claim_then_probe(pool: Pool) -> list[tuple[Any, ...]]:
        inside = await pool.fetchall_under(sql.RUN_CLAIM_SETTINGS, probe, {})
        for _ in range(50):  # until the pool hands out the claim's connection again
            after = await pool.fetchall(probe, {})
            if after[0][2] == inside[0][2]:
                break
        return [*inside, *after]

    inside, after = _on_a_pool(claim_then_probe)
    assert inside[:2] == ("off", "off")
    assert after[2] == inside[2]  # the same connection, asked again
    assert after[:2] == ("on", "on")
    # The claim function: synchronous_commit off to the end of the claim's transaction,
    # enable_sort back as it was once it returns.
    with psycopg.connect(database_conninfo()) as conn:
        params = {"limit": 1, "worker_id": uuid.uuid4(), "queues": None}
        conn.execute(sql.RUN_CLAIM_MANY_BY_FUNCTION, params).fetchall()
        settings = "SELECT current_setting('synchronous_commit'), current_setting('enable_sort')"
        assert conn.execute(settings).fetchone() == ("off", "on")
        conn.commit()
        assert conn.execute(settings).fetchone() == ("on", "on")
