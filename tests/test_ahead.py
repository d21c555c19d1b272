"""Claiming ahead: under a backlog of short runs a worker claims the next runs before its slots
free. Those runs are held: their rows show no start until one frees, so a run given back (it
waited behind a long run), cancelled, put back at shutdown or rescued from a lost worker has
spent no attempt and ran nowhere."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from autotask import CANCELLED, DONE, RUNNING, WAITING, registry, runtime, sql
from autotask.models import TaskRun, Worker
from autotask.runtime import worker as worker_module
from autotask.runtime.database import Pool
from autotask.runtime.rescuer import Rescuer
from autotask.runtime.worker import Worker as ClaimLoop
from tests.app.tasks import add, slow
from tests.conftest import wait_until


@pytest.fixture(autouse=True)
def _no_limits_here(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """The limited claim never holds (its tokens and slots are taken at the claim), and a test
    module elsewhere registers a task with limits."""
    monkeypatch.setattr(registry, "has_limits", lambda: False)
    settings.AUTOTASK_WORKERS = 1


def _row(run_id: int) -> tuple[str, int, int, bool]:
    """Status, attempts, how many attempts the run's worker_ids show, whether it shows a start."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, attempts, jsonb_array_length(worker_ids), started_at IS NOT NULL "
            "FROM autotask_task WHERE id = %s",
            [run_id],
        )
        status, attempts, workers, started = cursor.fetchone()
    return status, attempts, workers, started


def _held_behind(long_id: int, held_id: int) -> bool:
    return _row(long_id)[0] == RUNNING and _row(held_id) == (RUNNING, 0, 0, False)


def _short_then_long_then_held(seconds: float) -> tuple[Any, Any]:
    """With one slot: a short run first (the evidence that runs are short), then a long one,
    claimed together with the next, which is held behind it."""
    add.using(priority=20)(0, 0)
    long_run = slow.using(priority=10)(seconds)
    return long_run, add(1, 2)


def test_a_backlog_of_short_runs_is_claimed_ahead_and_each_row_shows_one_attempt(
    start_worker: Callable[[], None], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.AUTOTASK_WORKERS = 2
    asked: list[tuple[int, int]] = []
    real = ClaimLoop._claim

    async def recording(self: ClaimLoop, free: int, ahead: int = 0) -> Any:
        asked.append((free, ahead))
        return await real(self, free, ahead)

    monkeypatch.setattr(ClaimLoop, "_claim", recording)
    handles = add.enqueue_many([(n, n) for n in range(300)])
    start_worker()
    assert [h.wait(20).result for h in handles] == [2 * n for n in range(300)]
    assert asked[0] == (2, 0)  # nothing is known of the runs yet: only the free slots
    assert any(ahead == 2 for _, ahead in asked)  # then up to two more than the free slots
    # Held or not, each finished row shows one attempt, one worker, a start before its end.
    assert {_row(h.id) for h in handles} == {(DONE, 1, 1, True)}
    ids = [h.id for h in handles]
    assert not TaskRun.objects.filter(id__in=ids, finished_at__lt=F("started_at")).exists()


def test_a_run_held_behind_a_long_one_goes_back_to_waiting_for_anyone(
    start_worker: Callable[[], None],
) -> None:
    long_run, short = _short_then_long_then_held(2.0)
    start_worker()
    wait_until(lambda: _held_behind(long_run.id, short.id))
    # Given back after AHEAD_HOLD, as it was; not claimed ahead again while the long run goes
    # (a run in the slot is not short).
    wait_until(lambda: _row(short.id) == (WAITING, 0, 0, False))
    assert _row(long_run.id)[0] == RUNNING
    assert short.wait(10).result == 3
    assert long_run.refresh().status == DONE
    assert _row(short.id) == (DONE, 1, 1, True)


def test_a_run_held_ahead_is_cancelled_at_once_without_running(
    start_worker: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "AHEAD_HOLD", 30.0)
    long_run, short = _short_then_long_then_held(3.0)
    start_worker()
    wait_until(lambda: _held_behind(long_run.id, short.id))
    assert short.cancel()
    assert short.wait(2).status == CANCELLED and short.result is None
    assert _row(short.id) == (CANCELLED, 0, 0, False)
    assert long_run.refresh().status == RUNNING  # no slot freed: the cancelled run never ran


def test_shutdown_gives_back_the_runs_held_ahead_uncounted(
    start_worker: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "AHEAD_HOLD", 30.0)
    long_run, short = _short_then_long_then_held(0.5)
    start_worker()
    wait_until(lambda: _held_behind(long_run.id, short.id))
    runtime.stop(timeout=5)
    assert _row(long_run.id)[:2] == (DONE, 1)
    assert _row(short.id) == (WAITING, 0, 0, False)


def test_a_give_back_is_sent_again_through_connection_trouble_and_the_run_runs_once(
    start_worker: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "AHEAD_HOLD", 0.3)
    failed = {"give-backs": 0}
    real = Pool.fetchall

    async def flaky(self: Pool, statement: str, params: Any) -> Any:
        if statement == sql.RUN_SET_WAITING_IF_HELD_MANY and not failed["give-backs"]:
            failed["give-backs"] += 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await real(self, statement, params)

    monkeypatch.setattr(Pool, "fetchall", flaky)
    long_run, short = _short_then_long_then_held(1.0)
    start_worker()
    wait_until(lambda: _held_behind(long_run.id, short.id))
    wait_until(lambda: _row(short.id) == (WAITING, 0, 0, False))
    assert failed["give-backs"] == 1
    assert short.wait(10).result == 3
    assert _row(short.id) == (DONE, 1, 1, True)  # one attempt, one claim that started it
    assert long_run.refresh().status == DONE


def _rescue(rescuer: Rescuer, me: uuid.UUID) -> None:
    Worker.objects.filter(pk=me).update(heartbeat_at=timezone.now())  # a leader that is alive

    async def step() -> None:
        pool = Pool()
        await pool.start()
        rescuer._pool = pool
        try:
            await rescuer.step()
        finally:
            await pool.stop(0.0)

    asyncio.run(step())


def test_held_runs_of_a_lost_worker_wait_again_without_spending_an_attempt(
    transactional_db: None,
) -> None:
    """A crash under a backlog: the runs the dead worker held are put back without an attempt
    spent (even with no retries left), once seen so for a whole timeout; each gets a WorkerLost
    error, so it is never held again."""
    me = Worker.objects.create(id=uuid.uuid4(), host="me", pid=2, concurrency=1)
    gone = uuid.uuid4()
    held = TaskRun.objects.create(
        name=add.name, status="running", attempts=0, max_attempts=1, worker_id=gone
    )
    alive = Worker.objects.create(id=uuid.uuid4(), host="alive", pid=3, concurrency=1)
    kept = TaskRun.objects.create(
        name=add.name, status="running", attempts=0, max_attempts=1, worker_id=alive.id
    )
    rescuer = Rescuer(None, me.id, timeout=0.5, interval=5)  # type: ignore[arg-type]
    _rescue(rescuer, me.id)
    assert _row(held.pk)[0] == RUNNING  # seen; its worker may be one only cut off
    time.sleep(0.6)
    Worker.objects.filter(pk=alive.pk).update(heartbeat_at=timezone.now())
    _rescue(rescuer, me.id)
    assert _row(held.pk) == (WAITING, 0, 0, False)
    put_back = TaskRun.objects.get(pk=held.pk)
    assert put_back.worker_id is None
    assert put_back.error["type"] == "autotask.exceptions.WorkerLost"
    assert _row(kept.pk)[0] == RUNNING  # its worker is alive: it still holds it


def test_the_claim_never_holds_a_run_that_failed_before_nor_one_being_given_back(
    transactional_db: None,
) -> None:
    """Past the runs that start now, a run with an error (a retry, or put back from a lost
    worker that may have started it) is left waiting: started at a claim, its attempt counts,
    so a run that kills its process cannot go round uncounted."""
    first, tried, fresh, skipped = (add(n, n) for n in range(4))
    TaskRun.objects.filter(pk=tried.id).update(error={"type": "x", "message": "", "traceback": ""})
    params = {"limit": 4, "start": 1, "skip": [skipped.id], "worker_id": uuid.uuid4()}
    with connection.cursor() as cursor:
        cursor.execute(sql.RUN_CLAIM_MANY_ANY_QUEUE, {**params, "queues": None})
        claimed = {row[0]: row[-1] for row in cursor.fetchall()}
    assert claimed == {first.id: False, fresh.id: True}  # started, held
    assert _row(first.id) == (RUNNING, 1, 1, True)
    assert _row(fresh.id) == (RUNNING, 0, 0, False)
    assert _row(tried.id)[0] == WAITING and _row(skipped.id)[0] == WAITING


def test_a_cancel_heard_after_a_give_back_cancels_the_run_that_went_back(
    start_worker: Callable[[], None],
) -> None:
    """NOTIFY is not ordered with the give-back's answer: a cancel of a run this worker just
    gave back is sent on (here the run is waiting again, so it is cancelled)."""
    long_run, short = _short_then_long_then_held(2.0)
    start_worker()
    wait_until(lambda: _held_behind(long_run.id, short.id))
    wait_until(lambda: _row(short.id) == (WAITING, 0, 0, False))
    loop_worker = runtime.get().worker
    assert loop_worker is not None

    async def hear() -> None:
        loop_worker._on_cancel(short.id)

    runtime.get().submit(hear()).result()
    assert short.wait(2).status == CANCELLED
    assert _row(short.id) == (CANCELLED, 0, 0, False)
