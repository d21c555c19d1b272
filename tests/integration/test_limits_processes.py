"""Concurrency and rate limits hold across three worker processes claiming at once: measured
from what the runs themselves recorded, by the database's one clock."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from django.db import transaction

from autotask.models import LimitSlot, TaskRun
from tests.app.models import Execution, Span
from tests.conftest import wait_until
from tests.integration.processes import live_workers, start_worker_process, stop
from tests.limited.tasks import (
    one_at_a_time_slow_first,
    one_per_account,
    twenty_per_second,
    two_at_a_time,
)

RUNS = 200


def _max_overlap(spans: Iterable[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (a span ending as another starts does not overlap)."""
    events = sorted(
        [(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans],
        key=lambda event: (event[0], event[1]),  # at one instant, ends before starts
    )
    open_now = most = 0
    for _, change in events:
        open_now += change
        most = max(most, open_now)
    return most


@pytest.fixture
def three_workers(tmp_path: Path) -> Iterator[list[int]]:
    logs = [tmp_path / f"worker{n}.log" for n in range(3)]
    processes = [start_worker_process(log) for log in logs]
    try:
        wait_until(lambda: len(live_workers()) == 3, timeout=30)
        yield [process.pid for process in processes]
    finally:
        codes = stop(processes)
        for log in logs:
            sys.stdout.write(log.read_text())
    assert codes == [0, 0, 0]


def _wait_until_all_done(timeout: float) -> None:
    wait_until(
        lambda: not TaskRun.objects.exclude(status="done").exists(),
        timeout=timeout,
        interval=0.2,
    )


@pytest.mark.django_db(transaction=True)
def test_a_concurrency_limit_of_two_holds_across_three_processes(three_workers: list[int]) -> None:
    with transaction.atomic():
        for n in range(RUNS):
            two_at_a_time(f"run-{n}", 0.02)
    _wait_until_all_done(timeout=120)
    spans = list(Span.objects.values_list("started_at", "ended_at"))
    assert len(spans) == RUNS and all(end is not None for _, end in spans)
    assert Span.objects.values("key").distinct().count() == RUNS
    # At most two at once, and two at once did happen: the limit was reached, not avoided.
    assert _max_overlap(spans) == 2
    assert set(Span.objects.values_list("pid", flat=True)) - set(three_workers) == set()
    assert len(set(Span.objects.values_list("pid", flat=True))) > 1
    assert list(LimitSlot.objects.values_list("run_id", flat=True).filter(run_id=None)) == [
        None,
        None,
    ]


@pytest.mark.django_db(transaction=True)
def test_a_keyed_limit_of_one_holds_per_key_while_keys_run_side_by_side(
    three_workers: list[int],
) -> None:
    with transaction.atomic():
        for n in range(RUNS):
            one_per_account(n % 5, f"run-{n}", 0.02)
    _wait_until_all_done(timeout=120)
    rows = list(Span.objects.values_list("key", "started_at", "ended_at"))
    assert len(rows) == RUNS and all(end is not None for _, _, end in rows)
    for account in range(5):
        spans = [(start, end) for key, start, end in rows if key.startswith(f"{account}:")]
        assert len(spans) == RUNS // 5
        assert _max_overlap(spans) == 1, account
    assert _max_overlap([(start, end) for _, start, end in rows]) > 1


@pytest.mark.django_db(transaction=True)
def test_a_rate_of_twenty_per_second_holds_across_three_processes(
    three_workers: list[int],
) -> None:
    with transaction.atomic():
        for n in range(RUNS):
            twenty_per_second(f"run-{n}")
    _wait_until_all_done(timeout=120)
    assert Execution.objects.count() == RUNS
    assert len(set(Execution.objects.values_list("pid", flat=True))) > 1
    starts = sorted(TaskRun.objects.values_list("started_at", flat=True))
    assert len(starts) == RUNS
    # No second (any second, not only from the top of one) holds more than 20 starts: the 21st
    # start after any start is at least a second later.
    later_by_20 = zip(starts, starts[20:], strict=False)
    gaps = [(later - earlier).total_seconds() for earlier, later in later_by_20]
    assert min(gaps) >= 1.0, min(gaps)
    # 200 starts at 20 a second: 20 at once, then 20 more each second, the last after 9 s;
    # waiting for each next window costs at most 10 % more.
    took = (starts[-1] - starts[0]).total_seconds()
    print(f"200 starts at 20/s over 3 processes: {took:.3f} s, closest 21: {min(gaps):.3f} s")
    assert 9.0 <= took <= 9.9, took


@pytest.mark.django_db(transaction=True)
def test_the_slot_of_a_run_in_a_killed_process_is_freed_by_its_rescue(tmp_path: Path) -> None:
    env = {"AUTOTASK_WORKER_MONITOR_INTERVALL": "0.5", "AUTOTASK_WORKER_TIMEOUT": "3"}
    logs = [tmp_path / "doomed.log", tmp_path / "survivor.log"]
    doomed = start_worker_process(logs[0], **env)
    processes = [doomed]
    try:
        wait_until(lambda: len(live_workers()) == 1, timeout=30)
        held = one_at_a_time_slow_first("slow")
        wait_until(lambda: Span.objects.filter(key="slow").exists())
        behind = one_at_a_time_slow_first("quick")  # waits: the one slot is held
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
        processes.append(start_worker_process(logs[1], **env))
        # The survivor leads, rescues the killed run (its slot freed by the trigger), and runs
        # both, one at a time.
        assert held.wait(60).status == "done" and behind.wait(60).status == "done"
    finally:
        stop(processes)
        for log in logs:
            sys.stdout.write(log.read_text(errors="replace"))
    assert TaskRun.objects.get(pk=held.id).attempts == 2
    finished = list(Span.objects.exclude(ended_at=None).values_list("started_at", "ended_at"))
    assert len(finished) == 2 and _max_overlap(finished) == 1
    [(_, run_id)] = LimitSlot.objects.filter(kind="concurrency").values_list("key", "run_id")
    assert run_id is None
