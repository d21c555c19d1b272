"""Claiming ahead: under a backlog of short runs a worker holds the next batch before its slots
free; a run held behind a long one goes back to waiting, and one cancelled or held at
shutdown never runs and costs no attempt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from autotask import CANCELLED, DONE, RUNNING, WAITING, registry, runtime
from autotask.runtime import executor
from autotask.runtime.worker import Worker
from tests.app.tasks import add, slow
from tests.conftest import wait_until


@pytest.fixture(autouse=True)
def _no_limits_here(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """The limited claim never claims ahead (its tokens and slots are taken at the claim), and
    a test module elsewhere registers a task with limits."""
    monkeypatch.setattr(registry, "has_limits", lambda: False)
    settings.AUTOTASK_WORKERS = 1


def _row(run_id: int) -> tuple[str, int, int]:
    """Status, attempts, and how many claims the run has seen."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, attempts, jsonb_array_length(worker_ids) FROM autotask_task "
            "WHERE id = %s",
            [run_id],
        )
        status, attempts, claims = cursor.fetchone()
    return status, attempts, claims


def _held_behind(long_id: int, held_id: int) -> bool:
    """With one slot, a run 'running' beside another running one is held ahead."""
    return _row(long_id)[0] == RUNNING and _row(held_id)[0] == RUNNING


def test_a_backlog_of_short_runs_is_claimed_ahead_of_free_slots(
    start_worker: Callable[[], None], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.AUTOTASK_WORKERS = 2
    asked: list[int] = []
    real = Worker._claim

    async def recording(self: Worker, limit: int) -> Any:
        asked.append(limit)
        return await real(self, limit)

    monkeypatch.setattr(Worker, "_claim", recording)
    handles = add.enqueue_many([(n, n) for n in range(200)])
    start_worker()
    assert [h.wait(20).result for h in handles] == [2 * n for n in range(200)]
    assert max(asked) == 4  # two free slots and two ahead
    assert {_row(h.id)[1:] for h in handles} == {(1, 1)}  # one attempt, one claim each


def test_a_run_held_behind_a_long_one_goes_back_to_waiting_for_anyone(
    start_worker: Callable[[], None],
) -> None:
    long_run = slow.using(priority=10)(1.5)
    short = add(1, 2)
    start_worker()
    # Claimed ahead with the long run (the worker had no run going), then given back after
    # AHEAD_HOLD, its attempt not counted; not claimed ahead again while the long run goes.
    wait_until(lambda: _row(short.id) == (WAITING, 0, 1) and _row(long_run.id)[0] == RUNNING)
    assert short.wait(10).result == 3
    assert long_run.refresh().status == DONE
    assert _row(short.id) == (DONE, 1, 2)


def test_a_run_held_ahead_is_cancelled_at_once_without_running(
    start_worker: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "AHEAD_HOLD", 30.0)
    long_run = slow.using(priority=10)(3.0)
    short = add(2, 3)
    start_worker()
    wait_until(lambda: _held_behind(long_run.id, short.id))
    assert short.cancel()
    assert short.wait(2).status == CANCELLED and short.result is None
    assert long_run.refresh().status == RUNNING  # no slot had freed: it never ran


def test_shutdown_gives_back_the_runs_held_ahead_uncounted(
    start_worker: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "AHEAD_HOLD", 30.0)
    long_run = slow.using(priority=10)(0.5)
    short = add(3, 4)
    start_worker()
    wait_until(lambda: _held_behind(long_run.id, short.id))
    runtime.stop(timeout=5)
    assert _row(long_run.id)[:2] == (DONE, 1)
    assert _row(short.id) == (WAITING, 0, 1)
