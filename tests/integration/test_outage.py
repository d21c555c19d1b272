"""A PostgreSQL outage under a real uvicorn serving the example project: the web process stays
up and idle, a view that enqueues gets the database error (never a silent drop), and once the
server is back everything resumes by itself. Needs a server it can stop: ``nox -s chaos``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.integration import postgresql
from tests.integration.conftest import Server

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

OUTAGE = 8.0  # seconds the server stays down once the process has noticed


def _cpu_seconds(pid: int) -> float:
    """User plus system time the process has used (``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _order(server: Server, order_id: int) -> tuple[int, str]:
    with server.client() as client:
        response = client.post("/orders/", data={"order_id": order_id})
    return response.status_code, response.text


def _wait_done(server: Server, text: str, timeout: float) -> None:
    run_id = int(text.split('"id": ')[1].split(",")[0])
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while True:
            response = client.get(f"/runs/{run_id}/")
            if response.status_code == 200 and response.json()["status"] == "done":
                return
            assert time.monotonic() < deadline, server.output()[-5000:]
            time.sleep(0.2)


def test_the_web_process_rides_out_a_postgresql_outage(start_server) -> None:
    server = start_server(
        AUTOTASK_HANDLE_TASK_IDLE_TIME="0.5", AUTOTASK_WORKER_MONITOR_INTERVALL="0.5"
    )
    status, text = _order(server, 1)
    assert status == 202, text
    _wait_done(server, text, timeout=20)
    connection.close()  # the test's own: it does not survive the outage

    with postgresql.down():
        status, text = _order(server, 2)
        # The enqueue raised the database's error to the view (DEBUG shows it), so the
        # request failed instead of answering 202 for a run that was never stored.
        assert status == 500, text
        assert "OperationalError" in text
        time.sleep(1.0)  # the runtime has met the outage by now
        cpu, started = _cpu_seconds(server.pid), time.monotonic()
        lines = server.output().count("\n")
        time.sleep(OUTAGE)
        used, wall = _cpu_seconds(server.pid) - cpu, time.monotonic() - started
        logged = server.output().splitlines()[lines:]
        assert server.process.poll() is None, server.output()[-5000:]
        print(f"\noutage: {used:.2f} s of CPU and {len(logged)} log lines in {wall:.1f} s down")
        assert used < 0.25 * wall, f"{used:.2f} s of CPU in {wall:.1f} s: a busy loop"
        assert len(logged) < 20, "\n".join(logged[-50:])  # no flood of warnings

    # Back: the same process enqueues and runs again, without a restart.
    status, text = _order(server, 3)
    assert status == 202, text
    _wait_done(server, text, timeout=30)
    assert server.process.poll() is None
    connection.close()
