"""The chaos test: many short runs through 4 worker processes, while a killer SIGKILLs one every
few seconds (and starts a replacement), PostgreSQL terminates the LISTEN connections once, and
PostgreSQL itself restarts once. Nothing may be lost, and only runs that were running in a
killed process may run twice. Half the processes have tasks with limits and take the limited
claim, the others the plain one (the claim function), as apps without limits do.

``nox -s chaos`` runs it against a throwaway PostgreSQL it can restart; AUTOTASK_CHAOS_RUNS
sets the size (default 100,000; CI runs 10,000). Against a server given by DATABASE_URL the
restart is left out.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from autotask import store
from autotask.store import NewRun
from tests.app.models import Execution
from tests.app.tasks import chaos_record
from tests.conftest import database_conninfo
from tests.integration import postgresql
from tests.integration.processes import start_worker_process, stop

RUNS = int(os.environ.get("AUTOTASK_CHAOS_RUNS", "100000"))
SECONDS = 60 + RUNS * 0.02  # for the runs to end: about four times what they take here

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(SECONDS + 120),  # and for enqueueing and the checks
]
PROCESSES = 4
ENV = {
    "AUTOTASK_WORKERS": "4",
    "AUTOTASK_WORKER_MONITOR_INTERVALL": "0.5",
    "AUTOTASK_WORKER_TIMEOUT": "3",
    "AUTOTASK_HANDLE_TASK_IDLE_TIME": "1",
    "AUTOTASK_SHUTDOWN_TIMEOUT": "2",
}


def _query(sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    """Through a connection of its own: Django's does not survive the restart."""
    for _ in range(60):
        try:
            with psycopg.connect(database_conninfo(), autocommit=True) as conn:
                return conn.execute(sql, params).fetchall()
        except psycopg.OperationalError:
            time.sleep(0.5)
    raise AssertionError("the database did not come back")


def _await_backends_gone(pid: int) -> None:
    """A statement the killed process sent just before it died (a COMMIT of finished runs) still
    completes on the server; only once its sessions have ended is what it held final."""
    for _ in range(200):
        [(count,)] = _query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            [f"autotask %:{pid}"],
        )
        if not count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the sessions of the killed process {pid} did not end")


def _enqueue() -> None:
    batch = 5000
    for start in range(0, RUNS, batch):
        runs = [
            NewRun(
                name=chaos_record.name,
                queue="default",
                args=json.dumps([n]),
                kwargs="{}",
                priority=0,
                max_attempts=chaos_record.retries + 1,
                run_at=None,
                delay=0.0,
            )
            for n in range(start, min(start + batch, RUNS))
        ]
        store.insert_runs(runs)


def _unfinished() -> int:
    [(count,)] = _query("SELECT count(*) FROM autotask_task WHERE status <> 'done'")
    return int(count)  # type: ignore[call-overload]


def test_nothing_is_lost_and_only_killed_runs_run_twice(tmp_path: Path) -> None:
    _enqueue()
    connection.close()
    logs: list[Path] = []

    def spawn() -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(logs)}.log"
        # Every other process without the limited tasks' app, so both claims are exercised:
        # the limited one, and the plain one most apps take (the claim function).
        plain = {"AUTOTASK_TEST_NO_LIMITS": "1"} if len(logs) % 2 else {}
        logs.append(log)
        return start_worker_process(log, **ENV, **plain)

    processes = [spawn() for _ in range(PROCESSES)]
    everyone = list(processes)
    killed: list[dict[str, object]] = []
    listener_killed = restart_due = False
    restarted_postgresql = False
    started = time.monotonic()
    deadline = started + SECONDS
    try:
        while (left := _unfinished()) and time.monotonic() < deadline:
            time.sleep(random.uniform(1.5, 3.0))
            done = RUNS - left
            if not listener_killed and done > RUNS / 4:
                _query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'autotask listener%%'"
                )
                listener_killed = True
            if not restart_due and done > RUNS / 2:
                restart_due = True
                if postgresql.available():
                    postgresql.restart()
                    restarted_postgresql = True
                continue
            victim = random.choice(processes)
            rows = _query("SELECT id FROM autotask_worker WHERE pid = %s", [victim.pid])
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            _await_backends_gone(victim.pid)
            if rows:
                worker_id = rows[0][0]
                held = _query(
                    "SELECT id FROM autotask_task WHERE worker_id = %s AND status = 'running'",
                    [worker_id],
                )
                killed.append(
                    {"pid": victim.pid, "worker": worker_id, "runs": {r[0] for r in held}}
                )
            processes.remove(victim)
            replacement = spawn()
            processes.append(replacement)
            everyone.append(replacement)
        seconds = time.monotonic() - started
    finally:
        stop(everyone)
    for log in logs:
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            sys.stdout.write(f"--- {log.name}\n{text[-3000:]}")

    statuses = dict(_query("SELECT status, count(*) FROM autotask_task GROUP BY status"))
    table = Execution._meta.db_table
    executions = dict(_query(f"SELECT key, count(*) FROM {table} GROUP BY key"))
    killed_runs = set().union(*(k["runs"] for k in killed)) if killed else set()
    twice = {int(key) for key, count in executions.items() if count > 1}
    ids = dict(_query("SELECT (args->>0)::int, id FROM autotask_task"))
    twice_ids = {ids[n] for n in twice}
    # A run held by a killed worker was rescued: its final state must be another worker's.
    finisher = {
        run_id: worker for run_id, worker in _query("SELECT id, worker_id FROM autotask_task")
    }
    written_by_the_dead = [
        run_id for k in killed for run_id in k["runs"] if finisher[run_id] == k["worker"]
    ]
    print(
        f"\nchaos: {RUNS} runs, {PROCESSES} processes, {len(killed)} SIGKILLs, listener "
        f"killed {listener_killed}, PostgreSQL restarted {restarted_postgresql}; "
        f"{seconds:.0f} s; statuses "
        f"{statuses}; executions {sum(executions.values())}; runs executed twice {len(twice)} "
        f"(all among the {len(killed_runs)} running in a killed process: "
        f"{twice_ids <= killed_runs})"
    )
    assert statuses == {"done": RUNS}
    assert len(executions) == RUNS  # every run executed at least once
    assert twice_ids <= killed_runs, sorted(twice_ids - killed_runs)[:20]
    assert written_by_the_dead == []  # no rescued run finished by its old owner
    assert killed, "the killer never struck"
