"""The migration creates the triggers and reverses cleanly."""

import pytest
from django.core.management import call_command
from django.db import connection

from autotask import runtime


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
            "autotask_task_updated",
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
    assert len(_autotask_objects()[0]) == 6


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
