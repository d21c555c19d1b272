"""Several worker processes on one queue, coordinated by PostgreSQL alone."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.db.models import Count

from autotask.models import TaskRun
from tests.app.models import Execution
from tests.app.tasks import record, slow
from tests.conftest import wait_until
from tests.integration.processes import start_worker_process

JOBS = 2000


@pytest.mark.django_db(transaction=True)
def test_two_runtimes_in_two_processes_run_every_job_exactly_once(tmp_path: Path) -> None:
    logs = [tmp_path / f"worker{n}.log" for n in range(2)]
    workers = [start_worker_process(log) for log in logs]
    try:
        wait_until(lambda: _live_workers() == 2, timeout=30)
        with transaction.atomic():
            for n in range(JOBS):
                record(f"job-{n}")
        wait_until(
            lambda: not TaskRun.objects.exclude(status="done").exists(), timeout=120, interval=0.2
        )
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        exit_codes = [process.wait(timeout=30) for process in workers]
        for log in logs:
            sys.stdout.write(log.read_text())
    assert exit_codes == [0, 0]
    assert TaskRun.objects.filter(status="done", attempts=1).count() == JOBS
    assert Execution.objects.count() == JOBS
    assert Execution.objects.values("key").distinct().count() == JOBS
    per_process = dict(Execution.objects.values_list("pid").annotate(Count("id")))
    assert set(per_process) == {process.pid for process in workers}, per_process
    assert _live_workers() == 0


def _live_workers() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM autotask_worker")
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_a_second_signal_cuts_the_wait_short_and_still_puts_runs_back(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    process = start_worker_process(
        log, AUTOTASK_SHUTDOWN_TIMEOUT="60", AUTOTASK_TEST_LOG_LEVEL="INFO"
    )
    try:
        wait_until(lambda: _live_workers() == 1, timeout=30)
        handle = slow(60)
        wait_until(lambda: TaskRun.objects.get(pk=handle.id).status == "running")
        process.send_signal(signal.SIGINT)  # a terminal's Ctrl-C...
        time.sleep(0.5)
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)  # ...and the one a process manager forwards
        code = process.wait(timeout=20)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
        output = log.read_text()
        sys.stdout.write(output)
    assert code == 0 and took < 10, (code, took)
    assert "waiting up to 60.0 s for 1 running task(s)" in output
    assert "cancelling running tasks now" in output
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.status, row.attempts) == ("waiting", 0)
