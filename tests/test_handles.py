"""Handles: rebuilt from an id, refreshed, waited on, streamed (sync and async twins)."""

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from autotask import DONE, ERROR, RUNNING, WAITING, AsyncTaskHandle, TaskHandle
from autotask.task import CANCELLED, Status
from tests.app.tasks import add, async_add, fail, slow, unique_add

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_seed_import_path_has_the_statuses() -> None:
    assert (WAITING, RUNNING, DONE, ERROR, CANCELLED) == (
        "waiting",
        "running",
        "done",
        "error",
        "cancelled",
    )
    assert Status("done") is DONE


def test_get_rebuilds_a_handle_and_missing_ids_are_lookup_errors() -> None:
    handle = add(1, 2)
    again = TaskHandle.get(handle.id)
    assert again == handle and again.name == handle.name and again.status == WAITING
    with pytest.raises(LookupError, match="No task run with id 0"):
        TaskHandle.get(0)


def test_wait_times_out_with_a_clear_error_when_nothing_runs() -> None:
    handle = add(1, 2)
    with pytest.raises(TimeoutError, match=rf"#{handle.id} .* still waiting"):
        handle.wait(0.3)


def test_sync_updates_yield_each_status_until_final(worker: None) -> None:
    handle = slow(0.3)
    seen = list(handle.updates(timeout=10))
    assert seen == [WAITING, RUNNING, DONE]
    assert handle.result == "slept"


def test_wait_holds_the_error_of_a_failed_run(worker: None) -> None:
    handle = fail("bad input").wait(10)
    assert handle.ready and handle.status == ERROR
    assert handle.error.message == "bad input"


async def test_async_updates_stream_until_final_with_the_result(worker: None) -> None:
    handle = await slow.defer(0.3)
    seen = [status async for status in handle.updates(timeout=10)]
    assert seen == [WAITING, RUNNING, DONE]
    assert handle.result == "slept" and handle.ready


async def test_async_wait_refresh_and_get(worker: None) -> None:
    handle = await async_add.defer(5, 6)
    assert (await handle.wait(10)).result == 11
    rebuilt = await AsyncTaskHandle.get(handle.id)
    assert (rebuilt.status, rebuilt.result) == (DONE, 11)
    assert (await rebuilt.refresh()).attempts == 1
    with pytest.raises(LookupError):
        await AsyncTaskHandle.get(0)


def test_updates_of_a_finished_run_yield_only_its_final_status(worker: None) -> None:
    handle = add(1, 1).wait(10)
    assert list(handle.updates()) == [DONE]
    stale = TaskHandle.get(handle.id)
    stale.status = WAITING  # a handle that last looked before the run finished
    assert list(stale.updates()) == [WAITING, DONE]


async def test_async_wait_times_out() -> None:
    handle = await add.defer(1, 1)
    with pytest.raises(TimeoutError):
        await handle.wait(0.2)


def test_a_call_from_another_loop_is_not_cut_off_when_the_runtime_stops(worker: None) -> None:
    """Such a call uses that loop's own connections, not the runtime's pool: an enqueue in an
    ASGI request still in flight as the server shuts the runtime down completes."""
    from autotask import runtime

    async def slow_query() -> object:
        return await runtime.get().fetchone("SELECT 7 FROM pg_sleep(0.8)", [])

    stopper = threading.Timer(0.2, runtime.stop)
    stopper.start()
    try:
        row = asyncio.run(asyncio.wait_for(slow_query(), 10))
    finally:
        stopper.join()
    assert row == (7,)
    assert runtime.get().worker is None  # it did stop meanwhile


def _watched(*run_ids: int) -> list[bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT watched FROM autotask_task WHERE id = ANY(%s) ORDER BY id", [list(run_ids)]
        )
        return [row[0] for row in cursor.fetchall()]


def test_a_waiting_handle_is_told_each_change_by_notification(worker: None, settings) -> None:
    """Only runs someone waits on are announced: waiting marks the run, and with the fallback
    poll out of reach (60 s against a 10 s timeout) every status still arrives."""
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 60.0
    unwatched = add(2, 2).wait(10)  # waited on: marked too
    other = add(3, 3)
    handle = slow(0.3)
    assert list(handle.updates(timeout=10)) == [WAITING, RUNNING, DONE]
    TaskHandle.get(other.id).refresh()  # a refresh alone does not mark
    assert _watched(unwatched.id, other.id, handle.id) == [True, False, True]


async def test_an_async_handle_marks_its_run_and_is_told_by_notification(
    worker: None, settings
) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 60.0
    handle = await slow.defer(0.3)
    assert [status async for status in handle.updates(timeout=10)] == [WAITING, RUNNING, DONE]
    row = await asyncio.to_thread(_watched_in_new_connection, handle.id)
    assert row is True


def _watched_in_new_connection(run_id: int) -> bool:
    try:
        return _watched(run_id)[0]
    finally:
        connection.close()


def test_waiting_inside_atomic_does_not_lock_the_run_away_from_the_worker(
    worker: None, settings
) -> None:
    """The mark is written through the runtime's connection and committed at once: written on
    the caller's, its row lock would last until the caller's transaction ends, and the claim
    (SKIP LOCKED) would pass the run over while the caller waits for it."""
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 60.0
    handle = add.using(delay=0.5)(4, 5)
    with transaction.atomic():
        assert TaskHandle.get(handle.id).wait(10).result == 9


def test_marking_a_waiting_run_wakes_its_queue_once() -> None:
    """The mark holds the row's lock for a moment; a claim that met it skipped the run and
    backs off, so the mark wakes the run's queue when it commits (once: a second mark of the
    same run writes nothing and wakes nobody)."""
    import psycopg

    from autotask import sql
    from autotask.runtime.database import listener_kwargs

    waiting = add.using(queue="queue-1")(1, 1)

    def marked(statement_params: list[object]) -> list[str]:
        with psycopg.connect(**listener_kwargs()) as listener:
            listener.execute("LISTEN autotask")
            with psycopg.connect(**listener_kwargs()) as other:
                other.execute(sql.RUN_SET_WATCHED_MANY, statement_params)
            return [n.payload for n in listener.notifies(timeout=0.5)]

    assert marked([[waiting.id]]) == ["queue-1"]
    assert marked([[waiting.id]]) == []
    assert _watched(waiting.id) == [True]


def test_a_database_that_cannot_mark_leaves_the_handle_to_its_poll(
    worker: None, settings, monkeypatch, caplog
) -> None:
    """During a rolling deploy the new code may meet a database without 0013's column."""
    import psycopg

    from autotask import store

    def unmigrated(run_ids, timeout):
        raise psycopg.errors.UndefinedColumn('column "watched" does not exist')

    monkeypatch.setattr(store, "watch_runs", unmigrated)
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 0.2
    handle = slow(0.3)
    assert handle.wait(10).result == "slept"
    assert any("not marked watched" in r.getMessage() for r in caplog.records)


_LATER = datetime(2100, 1, 1, tzinfo=UTC)


def test_an_enqueued_runs_handle_is_its_row_read_back() -> None:
    """A plain run's record is built from what was sent and the few columns the insert
    returns; a unique one's is the row as returned."""
    handles = [
        add(1, 2),
        add.using(delay=60)(3, 4),
        add.using(run_at=_LATER, priority=7, queue="other")(5, 6),
        unique_add(7, 8),
    ]
    with transaction.atomic():
        handles.append(add(9, 10))
    assert [h.refresh() for h in handles] == handles
    assert handles[1].run_at - handles[1].enqueued_at == timedelta(seconds=60)
    assert (handles[2].run_at, handles[2].priority, handles[2].queue) == (_LATER, 7, "other")


async def test_a_deferred_runs_handle_is_its_row_read_back(worker: None) -> None:
    later = add.using(run_at=_LATER)  # none is claimed before it is read back
    handles = [await later.defer(1, 2), await later.using(priority=-3).defer(b=4, a=3)]
    assert [await h.refresh() for h in handles] == handles
    assert handles[1].priority == -3
