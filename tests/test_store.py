"""The one door to the tables: many runs in one statement, records, missing runs (both twins)."""

import asyncio
import datetime
import json

import psycopg
import pytest
from django.db import transaction

from autotask import DONE, ERROR, WAITING, RunDoesNotExist, store
from autotask.models import TaskRun
from autotask.runtime.database import listener_kwargs
from autotask.store import NewRun
from tests.app.tasks import add, fail
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")

LATER = datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)


def _new(n: int, queue: str, **options: object) -> NewRun:
    values: dict = {
        "name": "tests.app.tasks.add",
        "queue": queue,
        "args": json.dumps([n, 1]),
        "kwargs": "{}",
        "priority": 0,
        "max_attempts": 1,
        "run_at": None,
        "delay": 0.0,
        **options,
    }
    return NewRun(**values)


def test_insert_runs_is_one_statement_in_input_order_waking_each_queue_once() -> None:
    runs = [
        _new(0, "a"),
        _new(1, "b", priority=7),
        _new(2, "a", run_at=LATER),
        _new(3, "b", delay=3600.0, max_attempts=3),
    ]
    with psycopg.connect(**listener_kwargs()) as listener:
        listener.execute("LISTEN autotask")
        records, enqueued_by = store.insert_runs(runs)
        payloads = sorted(n.payload for n in listener.notifies(timeout=0.5))
    assert payloads == ["a", "b"]
    assert enqueued_by is None  # autocommit: no transaction of the caller's to name
    assert [r.queue for r in records] == ["a", "b", "a", "b"]
    assert [r.status for r in records] == [WAITING] * 4
    assert [r.id for r in records] == sorted(r.id for r in records)
    rows = {row.pk: row for row in TaskRun.objects.all()}
    assert [rows[r.id].args for r in records] == [[0, 1], [1, 1], [2, 1], [3, 1]]
    assert (rows[records[1].id].priority, rows[records[2].id].run_at) == (7, LATER)
    delayed = rows[records[3].id]
    assert delayed.max_attempts == 3
    assert 3590 < (delayed.run_at - delayed.enqueued_at).total_seconds() <= 3600


def test_insert_runs_joins_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        records, enqueued_by = store.insert_runs([_new(0, "a"), _new(1, "a")])
        assert len(records) == 2
        assert store.in_open_transaction(enqueued_by)
        raise RuntimeError("roll back")
    assert not TaskRun.objects.exists()
    assert store.insert_runs([]) == ([], None)


def test_async_twins_insert_many_and_fetch() -> None:
    async def scenario() -> tuple[list[store.RunRecord], store.RunRecord]:
        records = await store.ainsert_runs([_new(5, "a"), _new(6, "b")])
        return records, await store.afetch_run(records[1].id)

    records, fetched = asyncio.run(scenario())
    assert [r.queue for r in records] == ["a", "b"]
    assert fetched == records[1]
    assert store.fetch_run(records[0].id) == records[0]


def test_a_missing_run_is_run_does_not_exist_a_lookup_error() -> None:
    with pytest.raises(RunDoesNotExist, match="No task run with id 0"):
        store.fetch_run(0)
    with pytest.raises(LookupError):
        asyncio.run(store.afetch_run(0))


def test_retry_and_run_now_change_only_runs_in_the_state_they_name(settings, start_worker) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 60  # only a NOTIFY wakes the worker in time
    start_worker()
    failed = fail("boom").wait(10)
    done = add(1, 1).wait(10)
    later = add.using(delay=3600)(2, 2)
    assert store.retry_runs([failed.id, done.id, later.id]) == [failed.id]
    # It runs again with a fresh attempt and fails again: two errors kept, ERROR once more.
    wait_until(lambda: len(store.fetch_run(failed.id).errors) == 2, timeout=10)
    again = store.fetch_run(failed.id)
    assert (again.status, again.attempts) == (ERROR, 1)
    assert store.fetch_run(done.id).status == DONE
    assert store.run_now([later.id, done.id]) == [later.id]
    assert later.wait(10).result == 4  # woken by the NOTIFY, not by the 60 s poll
    assert store.estimated_run_count() >= -1


@pytest.mark.django_db
def test_retry_keeps_one_pending_run_per_unique_key() -> None:
    from autotask.models import TaskRun as Run

    def failed_run(key: str) -> int:
        run = add.using(unique_key=key)(1, 1)
        Run.objects.filter(pk=run.id).update(status="error")
        return run.id

    first, second = failed_run("k"), failed_run("k")  # both failed: no conflict while failed
    assert store.retry_runs([first, second]) == [first]  # one per key, not a refused statement
    assert store.retry_runs([second]) == []  # the first waits again with that key
    third = failed_run("other")
    add.using(unique_key="other")(2, 2)  # a pending run holds the key
    assert store.retry_runs([third]) == []
