"""The runtime's connections: sessions ended under the pool, poll-only mode, a direct DSN."""

import asyncio
import logging
import threading
import time
from typing import Any

import psycopg
import pytest
from django.db import connection

from autotask import DONE, RUNNING, WAITING, runtime, store
from tests.app.tasks import add, slow
from tests.conftest import database_conninfo, wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")


def _backends(where: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT application_name FROM pg_stat_activity "
            f"WHERE datname = current_database() AND {where}"
        )
        return sorted(row[0] for row in cursor.fetchall())


def _terminate(where: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = current_database() AND {where}"
        )
        return int(cursor.fetchone()[0])


async def _off_the_loop(call: Any, *args: Any) -> Any:
    """A Django query from async code: in a thread, its connection closed after it."""

    def run() -> Any:
        try:
            return call(*args)
        finally:
            connection.close()

    return await asyncio.to_thread(run)


def _ended(where: str) -> None:
    """End the sessions ``where`` selects, as a failover would, and wait until they are gone
    (pg_terminate_backend only signals)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pid FROM pg_stat_activity WHERE {where}")
        pids = [row[0] for row in cursor.fetchall()]
    assert pids and _terminate(where) >= 1
    gone = f"pid = ANY(ARRAY{pids})"
    wait_until(lambda: not _backends(gone))


def test_a_session_ended_under_the_pool_does_not_fail_the_next_caller(worker: None) -> None:
    async def defer_many() -> list[int]:
        return [(await add.defer(n, 1)).id for n in range(8)]

    async def scenario() -> list[int]:
        await asyncio.gather(defer_many(), defer_many())  # this loop's connections: several
        await _off_the_loop(_ended, "application_name LIKE 'autotask caller%%'")
        return await defer_many()  # each first use of a dead connection is sent again

    assert len(asyncio.run(scenario())) == 8
    _ended("application_name LIKE 'autotask pool%%'")  # the runtime's own, the worker's
    assert add(2, 2).wait(10).result == 4


def test_a_callers_loop_has_connections_of_its_own_closed_with_it() -> None:
    async def scenario() -> list[str]:
        await asyncio.gather(*(add.defer(n, 1) for n in range(6)))
        return await _off_the_loop(_backends, "application_name LIKE 'autotask caller%%'")

    callers = asyncio.run(scenario())
    assert 1 <= len(callers) <= 4  # AUTOTASK_POOL_SIZE at most
    assert _backends("application_name LIKE 'autotask pool%%'") == []  # no hop to the runtime
    wait_until(lambda: not _backends("application_name LIKE 'autotask caller%%'"))


def test_a_loop_closed_without_shutting_down_leaves_no_session_behind() -> None:
    for n in range(3):
        asyncio.run(add.defer(n, 1))
    loop = asyncio.new_event_loop()  # run by hand, closed without shutdown_asyncgens()
    loop.run_until_complete(add.defer(9, 1))
    loop.close()
    assert _backends("application_name LIKE 'autotask caller%%'")  # still open: nobody closed it
    asyncio.run(add.defer(10, 1))  # the next call forgets closed loops, closing what they kept
    wait_until(lambda: not _backends("application_name LIKE 'autotask caller%%'"))
    assert len(runtime.get()._loop_connections) == 1  # only the last loop's, itself closed


def test_poll_only_mode_runs_without_a_listening_connection(settings, start_worker) -> None:
    settings.AUTOTASK_LISTEN = False
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 0.3
    start_worker()
    handle = add(1, 2).wait(10)
    assert (handle.status, handle.result) == (DONE, 3)
    assert _backends("application_name LIKE 'autotask listener%%'") == []


def test_the_listener_and_the_leader_use_the_direct_database(settings, start_worker) -> None:
    settings.AUTOTASK_DIRECT_DATABASE = "direct"
    start_worker()
    wait_until(lambda: runtime.get().is_leader, timeout=10)
    direct = _backends("application_name = 'autotask-direct-test'")
    assert len(direct) == 2, direct  # the LISTEN connection and the leader's
    assert _backends("application_name LIKE 'autotask listener%%'") == []
    assert add(3, 3).wait(10).result == 6


def test_a_listener_outage_is_logged_once_and_its_end_too(settings, start_worker, caplog) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 60
    start_worker()
    caplog.set_level(logging.DEBUG, logger="autotask")

    def said(text: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if text in r.getMessage()]

    for outage in range(1, 4):  # three losses in a row, each followed by a reconnect
        wait_until(lambda: _backends("application_name LIKE 'autotask listener%%'"), timeout=15)
        assert _terminate("application_name LIKE 'autotask listener%%'") == 1
        wait_until(lambda o=outage: len(said("LISTEN connection back after")) == o, timeout=15)
    failed, back = said("LISTEN connection failed"), said("LISTEN connection back after")
    assert len(failed) == len(back) == 3
    assert all(r.levelno == logging.WARNING for r in failed + back)
    assert add(1, 1).wait(20).result == 2


def _stop_in_background(timeout: float) -> threading.Thread:
    stopping = threading.Thread(target=runtime.stop, kwargs={"timeout": timeout}, daemon=True)
    stopping.start()
    return stopping


def test_shutdown_is_not_held_up_by_a_locked_table_and_loses_nothing(
    settings, start_worker
) -> None:
    """A migration holding the task table during a deploy: stop() ends in about its timeout
    (not when the lock goes), and the run it could not put back is rescued afterwards."""
    settings.AUTOTASK_WORKER_TIMEOUT = 1
    settings.AUTOTASK_WORKER_MONITOR_INTERVALL = 0.2
    start_worker()
    handle = slow(30)
    wait_until(lambda: handle.status == RUNNING)
    with psycopg.connect(database_conninfo()) as locker:
        locker.execute("LOCK TABLE autotask_task IN ACCESS EXCLUSIVE MODE")
        stopping = _stop_in_background(timeout=1)
        stopping.join(timeout=12)
        assert not stopping.is_alive(), "stop() waited on the lock"
        [(workers,)] = locker.execute("SELECT count(*) FROM autotask_worker").fetchall()
        assert workers == 0  # its row went, so the leader can tell its runs were abandoned
    assert store.fetch_run(handle.id).status == RUNNING  # the put-back could not be written
    runtime.start()  # the next process (here, this one again) leads and rescues it
    wait_until(lambda: store.fetch_run(handle.id).status != RUNNING, timeout=20)
    error = store.fetch_run(handle.id).error  # its one attempt was spent: ERROR, and why
    assert error is not None and error.exception_class_path == "autotask.exceptions.WorkerLost"


def test_shutdown_puts_runs_back_while_pooled_sessions_keep_being_ended(start_worker) -> None:
    """The pool's sessions ended again and again for most of a second as the stop begins (a
    flapping failover): the put-back and the worker row's removal are tried again, on fresh
    connections, until written, and the stop still ends in about its time."""
    start_worker()
    handle = slow(30)
    wait_until(lambda: handle.status == RUNNING)

    def kill_for_a_second() -> None:
        with psycopg.connect(database_conninfo(), autocommit=True) as killer:
            until = time.monotonic() + 0.8
            while time.monotonic() < until:
                killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'autotask pool%%'"
                )
                time.sleep(0.01)

    killer = threading.Thread(target=kill_for_a_second, daemon=True)
    killer.start()
    stopping = _stop_in_background(timeout=0.2)
    stopping.join(timeout=6)  # not the pool's seconds of reconnect backoff on top
    killer.join()
    assert not stopping.is_alive()
    run = store.fetch_run(handle.id)
    assert (run.status, run.attempts) == (WAITING, 0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM autotask_worker")
        assert cursor.fetchone()[0] == 0
