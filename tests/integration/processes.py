"""Worker processes (``manage.py autotask_worker`` with tests.settings) for multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from django.db import connection

from tests.conftest import database_conninfo

ROOT = Path(__file__).resolve().parents[2]


def start_worker_process(log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``manage.py autotask_worker`` against the test database; ``env`` overrides settings."""
    environ = {
        **os.environ,
        "DATABASE_URL": database_conninfo(),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "django", "autotask_worker", "--settings=tests.settings"],
        cwd=ROOT,
        env=environ,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def manage(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py <args>`` with tests.settings against the test database, run to its end."""
    environ = {
        **os.environ,
        "DATABASE_URL": database_conninfo(),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args, "--settings=tests.settings"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stop(processes: list[subprocess.Popen[bytes]]) -> list[int]:
    """SIGTERM every process still alive, and their exit codes (SIGKILLed ones: -9)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    return [process.wait(timeout=30) for process in processes]


def live_workers() -> list[tuple[int, bool]]:
    """(pid, leader) of each worker row with a fresh heartbeat."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, leader FROM autotask_worker "
            "WHERE heartbeat_at > now() - interval '5 seconds' ORDER BY pid"
        )
        return [(pid, leader) for pid, leader in cursor.fetchall()]
