"""The migration creates the triggers and reverses cleanly."""

import importlib
import threading
from collections.abc import Iterator

import psycopg
import pytest
from django.core.management import call_command
from django.db import IntegrityError, OperationalError, ProgrammingError, connection

from autotask import runtime
from tests.conftest import database_conninfo

_M0014 = importlib.import_module("autotask.migrations.0014_unique_keys_skip_null")


def _autotask_objects() -> tuple[set[str], set[str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'autotask%%'")
        triggers = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'autotask%%'")
        tables = {row[0] for row in cursor.fetchall()}
    return triggers, tables


@pytest.mark.django_db(transaction=True)
def test_migrate_to_zero_and_back() -> None:
    assert _autotask_objects() == (
        {
            "autotask_task_inserted",
            "autotask_task_status_watched",
            "autotask_task_waiting",
            "autotask_task_slot_released",
            "autotask_task_slot_released_deleted",
            "autotask_task_dependency_finished",
            "autotask_task_dependency_deleted",
        },
        {
            "autotask_task",
            "autotask_worker",
            "autotask_schedule",
            "autotask_queue",
            "autotask_slot",
            "autotask_dependency",
        },
    )
    call_command("migrate", "autotask", "zero", verbosity=0)
    try:
        assert _autotask_objects() == (set(), set())
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'autotask%%'")
            assert cursor.fetchone()[0] == 0
        with pytest.raises(RuntimeError, match=r"tables are missing.*manage\.py migrate"):
            runtime.start()
    finally:
        call_command("migrate", "autotask", verbosity=0)
    assert len(_autotask_objects()[0]) == 7


@pytest.mark.django_db(transaction=True)
def test_insert_trigger_notifies_once_per_distinct_queue_per_statement() -> None:
    import psycopg

    from autotask.runtime.database import listener_kwargs

    with psycopg.connect(**listener_kwargs()) as listener:
        listener.execute("LISTEN autotask")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO autotask_task (name, queue) "
                "SELECT 'x', q FROM unnest(ARRAY['a','a','b','a','b']) AS q"
            )
        payloads = sorted(n.payload for n in listener.notifies(timeout=0.5))
    assert payloads == ["a", "b"]


def _unique_indexes() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'autotask_task'"
            " AND indexdef LIKE 'CREATE UNIQUE%%' AND indexname <> 'autotask_task_pkey'"
        )
        return dict(cursor.fetchall())


@pytest.mark.django_db
def test_the_task_table_has_no_pattern_index_and_keeps_one_tick_per_schedule_key() -> None:
    """Every index costs each insert, claim and finish a write; no query uses LIKE."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'autotask_task'")
        definitions = [row[0] for row in cursor.fetchall()]
        assert not [d for d in definitions if "pattern_ops" in d]
        assert any("UNIQUE" in d and "(schedule_key)" in d for d in definitions)
        insert = (
            "INSERT INTO autotask_task (name, queue, args, kwargs, priority, max_attempts,"
            " run_at, status, schedule_key) VALUES ('t', 'default', '[]', '{}', 0, 1, now(),"
            " 'waiting', 'tick-1') ON CONFLICT (schedule_key) WHERE schedule_key IS NOT NULL"
            " DO NOTHING RETURNING id"
        )
        cursor.execute(insert)
        assert cursor.fetchone() is not None
        cursor.execute(insert)
        assert cursor.fetchone() is None


@pytest.mark.django_db(transaction=True)
def test_the_unique_indexes_leave_out_runs_without_a_key_and_migrate_both_ways() -> None:
    """0014: a run without a unique_key or schedule_key writes no entry into either index."""
    after = _unique_indexes()
    assert set(after) == {"autotask_task_unique_pending", "autotask_task_schedule_key_key"}
    assert "WHERE (schedule_key IS NOT NULL)" in after["autotask_task_schedule_key_key"]
    assert "AND (unique_key IS NOT NULL)" in after["autotask_task_unique_pending"]
    call_command("migrate", "autotask", "0013", verbosity=0)
    try:
        before = _unique_indexes()
        assert set(before) == set(after)
        assert "WHERE" not in before["autotask_task_schedule_key_key"]
        assert "IS NOT NULL" not in before["autotask_task_unique_pending"]
        with connection.cursor() as cursor:  # a table constraint again, as 0011 left it
            cursor.execute(
                "SELECT contype FROM pg_constraint WHERE conname = 'autotask_task_schedule_key_key'"
            )
            assert cursor.fetchone() == ("u",)
    finally:
        call_command("migrate", "autotask", verbosity=0)
    assert _unique_indexes() == after


def _index_oid(name: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)::oid", [name])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_0014_run_again_after_being_cut_short_never_drops_the_last_unique_index() -> None:
    """Cut short after dropping the old pending index (its replacement, valid, is the only
    one left) and while building the schedule key's (a failed CONCURRENTLY build leaves an
    invalid index behind): running it again keeps the one and rebuilds the other."""
    after = _unique_indexes()
    call_command("migrate", "autotask", "0013", verbosity=0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY autotask_task_unique_pending_new ON "
                "autotask_task (unique_key) WHERE status IN ('waiting', 'running') "
                "AND unique_key IS NOT NULL"
            )
            cursor.execute("DROP INDEX CONCURRENTLY autotask_task_unique_pending")
            cursor.execute("INSERT INTO autotask_task (name, queue) VALUES ('x', 'q'), ('x', 'q')")
            with pytest.raises(IntegrityError):
                cursor.execute(
                    "CREATE UNIQUE INDEX CONCURRENTLY autotask_task_schedule_key_key_new ON "
                    "autotask_task (name)"
                )
        assert (
            _M0014._index_valid(connection.cursor(), "autotask_task_schedule_key_key_new") is False
        )
        kept = _index_oid("autotask_task_unique_pending_new")
        call_command("migrate", "autotask", "0014", verbosity=0)
        assert _unique_indexes() == after
        assert _index_oid("autotask_task_unique_pending") == kept
        assert _index_oid("autotask_task_schedule_key_key_new") is None
    finally:
        call_command("migrate", "autotask", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_0014_run_again_after_it_finished_builds_nothing() -> None:
    """Its record in django_migrations lost, 0014 runs again: the indexes are as it wants
    them, and it keeps them (rebuilding would cost a table scan each, for nothing)."""
    names = ("autotask_task_unique_pending", "autotask_task_schedule_key_key")
    before = {name: _index_oid(name) for name in names}
    with connection.schema_editor(atomic=False) as editor:
        _M0014._forward(None, editor)
    assert {name: _index_oid(name) for name in names} == before
    assert _index_oid("autotask_task_unique_pending_new") is None


@pytest.fixture
def probe_table() -> Iterator[str]:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE autotask_lock_probe (a int)")
    yield "autotask_lock_probe"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE autotask_lock_probe")


def _hold_lock(table: str) -> psycopg.Connection:
    locker = psycopg.connect(database_conninfo())
    locker.execute(f"SELECT * FROM {table}")  # ACCESS SHARE, held until the transaction ends
    return locker


@pytest.mark.django_db(transaction=True)
def test_0014_takes_the_exclusive_lock_a_little_at_a_time(
    probe_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALTER TABLE waiting for a long transaction would queue every enqueue and claim behind
    it: 0014 waits at most its lock_timeout a time, lets the queue move, tries again."""
    monkeypatch.setattr(_M0014, "_LOCK_TIMEOUT", "100ms")
    monkeypatch.setattr(_M0014, "_LOCK_PAUSE", 0.05)
    monkeypatch.setattr(_M0014, "_LOCK_ATTEMPTS", 3)
    locker = _hold_lock(probe_table)
    try:
        with connection.cursor() as cursor, pytest.raises(RuntimeError, match="gave up after 3"):
            _M0014._locked(cursor, f"ALTER TABLE {probe_table} ADD COLUMN b int")
        # Between the tries, others got the table: a write went through.
        with psycopg.connect(database_conninfo()) as other:
            other.execute(f"INSERT INTO {probe_table} VALUES (1)")
        monkeypatch.setattr(_M0014, "_LOCK_ATTEMPTS", 200)
        threading.Timer(0.3, locker.rollback).start()
        with connection.cursor() as cursor:
            _M0014._locked(cursor, f"ALTER TABLE {probe_table} ADD COLUMN b int")
            cursor.execute(f"SELECT b FROM {probe_table}")
            assert cursor.fetchall() == [(None,)]
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone() == ("0",)
    finally:
        locker.close()


@pytest.mark.django_db(transaction=True)
def test_0014s_locked_statement_fails_with_its_own_error_and_leaves_no_timeout(
    probe_table: str,
) -> None:
    with connection.cursor() as cursor:
        with pytest.raises(ProgrammingError, match="no_such_column"):
            _M0014._locked(cursor, f"ALTER TABLE {probe_table} DROP COLUMN no_such_column")
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone() == ("0",)


@pytest.mark.django_db(transaction=True)
def test_0014s_locked_statement_cut_off_by_a_lost_connection_raises_the_servers_error() -> None:
    """Nothing sent after the failure (a RESET once was) may hide why the try ended: here, the
    server ending the session (57P01), not a client-side 'the connection is lost'."""
    try:
        with connection.cursor() as cursor, pytest.raises(OperationalError) as raised:
            _M0014._locked(cursor, "SELECT pg_terminate_backend(pg_backend_pid())")
        assert getattr(raised.value.__cause__, "sqlstate", None) == "57P01"
    finally:
        connection.close()  # the next test gets a new session


def _status_notifications(statements: list[str]) -> list[str]:
    import psycopg

    from autotask.runtime.database import listener_kwargs

    with psycopg.connect(**listener_kwargs()) as listener:
        listener.execute("LISTEN autotask_status")
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        return sorted(n.payload for n in listener.notifies(timeout=0.5))


@pytest.mark.django_db(transaction=True)
def test_status_changes_are_notified_for_watched_runs_only() -> None:
    """A claim or a finish of runs no one watches sends nothing (no trigger function is even
    called); a watched run's changes go out one by one, and writes that leave its status alone
    send nothing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO autotask_task (name, queue) SELECT 'x', 'q' FROM generate_series(1, 4) "
            "RETURNING id"
        )
        ids = sorted(row[0] for row in cursor.fetchall())
    watched, other = ids[0], ids[1:]
    payloads = _status_notifications(
        [
            f"UPDATE autotask_task SET watched = true WHERE id = {watched}",
            "UPDATE autotask_task SET status = 'running'",
            "UPDATE autotask_task SET attempts = 1",
            "UPDATE autotask_task SET status = 'done'",
        ]
    )
    assert payloads == [f"{watched}:done", f"{watched}:running"]
    assert (
        _status_notifications([f"UPDATE autotask_task SET status = 'error' WHERE id = {other[0]}"])
        == []
    )


@pytest.mark.django_db(transaction=True)
def test_runs_waiting_again_or_due_sooner_wake_their_queues_once_per_transaction() -> None:
    import psycopg

    from autotask.runtime.database import listener_kwargs

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO autotask_task (name, queue, status, run_at) "
            "SELECT 'x', q, 'error', now() + interval '1 hour' "
            "FROM unnest(ARRAY['a', 'a', 'b', 'c']) AS q"
        )
    with psycopg.connect(**listener_kwargs()) as listener:
        listener.execute("LISTEN autotask")
        with connection.cursor() as cursor:
            # Back to waiting (a retry): once per queue, however many runs.
            cursor.execute("UPDATE autotask_task SET status = 'waiting' WHERE queue IN ('a', 'b')")
            retried = sorted(n.payload for n in listener.notifies(timeout=0.5))
            # Still waiting, due later: nothing; due sooner: its queue.
            cursor.execute("UPDATE autotask_task SET run_at = run_at + interval '1 hour'")
            later = [n.payload for n in listener.notifies(timeout=0.3)]
            cursor.execute("UPDATE autotask_task SET run_at = now() WHERE queue = 'a'")
            sooner = [n.payload for n in listener.notifies(timeout=0.5)]
    assert (retried, later, sooner) == (["a", "b"], [], ["a"])
