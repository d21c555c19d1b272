"""Many runs in one statement: ``task.enqueue_many()``, ``await task.defer_many()`` and the
module's ``autotask.enqueue_many()`` / ``defer_many()`` for calls of several tasks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import autotask
from autotask import DONE, WAITING, signals, store
from autotask.exceptions import InvalidTaskOptions
from autotask.handles import AsyncTaskHandle, TaskHandle
from autotask.models import LimitSlot, TaskRun
from autotask.runtime.database import listener_kwargs
from autotask.testing import run_pending
from tests.app.models import Execution
from tests.app.tasks import add, async_add, echo, fail_twice, noop, record, unique_add
from tests.limited.tasks import one_per_account

pytestmark = pytest.mark.django_db

LATER = datetime(2100, 1, 1, tzinfo=UTC)


def _args(handles: list[TaskHandle]) -> list[Any]:
    rows = {row.pk: row for row in TaskRun.objects.all()}
    return [(rows[h.id].args, rows[h.id].kwargs) for h in handles]


@pytest.mark.django_db(transaction=True)  # committed, so that the NOTIFY is sent
def test_calls_go_in_as_one_statement_in_order_waking_each_queue_once() -> None:
    calls = [(1, 2), {"a": 3, "b": 4}, add.s(5, b=6), add.using(queue="other").s(7, 8)]
    with psycopg.connect(**listener_kwargs()) as listener:
        listener.execute("LISTEN autotask")
        with CaptureQueriesContext(connection) as queries:
            handles = add.enqueue_many(calls)
        payloads = sorted(n.payload for n in listener.notifies(timeout=0.5))
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"]]
    assert len(inserts) == 1
    assert payloads == ["default", "other"]
    assert all(isinstance(h, TaskHandle) and h.status == WAITING for h in handles)
    assert [h.id for h in handles] == sorted(h.id for h in handles)
    assert _args(handles) == [([1, 2], {}), ([], {"a": 3, "b": 4}), ([5], {"b": 6}), ([7, 8], {})]
    assert run_pending() == 4
    assert [h.refresh().result for h in handles] == [3, 7, 11, 15]


def test_a_handle_is_the_same_as_the_row_read_back() -> None:
    [plain] = noop.enqueue_many([()])
    [delayed] = noop.using(delay=60).enqueue_many([()])
    assert plain.refresh() == plain  # nothing the insert returned differs from the row
    assert (delayed.refresh().run_at - delayed.enqueued_at) == timedelta(seconds=60)


_MIXED = [
    echo.using(priority=9).s("first"),
    echo.using(run_at=LATER).s({"nested": [1, "two", None]}),
    echo.using(delay=60).s('a quote " a backslash \\ a comma, a brace }'),
    echo.using(queue="mail").s([]),
    ("plain",),
]


def test_every_handle_of_a_batch_is_the_row_read_back() -> None:
    """A column that varies goes as an array, one that does not as its value (and the
    arguments as one JSON array): either way each handle is its row."""
    handles = echo.enqueue_many(_MIXED)
    assert [h.refresh() for h in handles] == handles
    assert [row.args for row in TaskRun.objects.order_by("id")] == [
        ["first"],
        [{"nested": [1, "two", None]}],
        ['a quote " a backslash \\ a comma, a brace }'],
        [[]],
        ["plain"],
    ]
    alike = echo.using(run_at=LATER, priority=3).enqueue_many([("x",), ("x",), ("x",)])
    assert [h.refresh() for h in alike] == alike
    assert {(h.run_at, h.priority) for h in alike} == {(LATER, 3)}
    several = autotask.enqueue_many([echo.s(1), fail_twice.s("k"), noop.s()])  # max_attempts
    assert [h.refresh() for h in several] == several
    assert [h.max_attempts for h in several] == [1, 3, 1]


def test_arguments_too_big_for_one_jsonb_go_one_text_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain insert sends every run's arguments in one jsonb, which PostgreSQL caps at
    256 MB; a batch whose arguments add up to more is sent the other way, each run's alone."""
    size = sum(len(json.dumps(call)) for call in [["first"], ["plain"]]) + 2 * len("{}")
    monkeypatch.setattr(store, "_PLAIN_ARGUMENTS_MAX", size)
    for calls, plain in (([("first",), ("plain",)], True), ([("first",), ("plains",)], False)):
        with CaptureQueriesContext(connection) as queries:
            handles = echo.enqueue_many(calls)
        [insert] = [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"]]
        assert ("ROWS FROM" in insert) is plain
        assert [h.refresh() for h in handles] == handles
    assert [row.args for row in TaskRun.objects.order_by("id")] == [
        ["first"],
        ["plain"],
        ["first"],
        ["plains"],
    ]


async def test_every_handle_of_a_deferred_batch_is_the_row_read_back(worker: None) -> None:
    later = echo.using(run_at=LATER)  # none is claimed before it is read back
    calls = [later.s("a"), echo.using(delay=3600).s({"k": "v"}), later.using(priority=5).s([])]
    handles = await echo.defer_many(calls)
    assert [await h.refresh() for h in handles] == handles
    alike = await later.defer_many([("x",), ("x",)])
    assert [await h.refresh() for h in alike] == alike


def test_each_call_keeps_its_own_options() -> None:
    handles = echo.enqueue_many(
        [
            echo.using(priority=9).s("first"),
            echo.using(run_at=LATER).s("later"),
            echo.using(delay=3600).s("delayed"),
            echo.using(queue="mail").s("mail"),
            ("plain",),
        ]
    )
    rows = [TaskRun.objects.get(pk=h.id) for h in handles]
    assert [r.priority for r in rows] == [9, 0, 0, 0, 0]
    assert rows[1].run_at == LATER
    assert 3590 < (rows[2].run_at - rows[2].enqueued_at).total_seconds() <= 3600
    assert [r.queue for r in rows] == ["default", "default", "default", "mail", "default"]
    assert run_pending() == 3  # the two not yet due stay waiting


def test_unique_calls_get_the_run_that_has_their_key() -> None:
    existing = unique_add(1, 1)
    handles = unique_add.enqueue_many([(1, 1), (2, 2), (2, 2), (3, 3)])
    assert handles[0].id == existing.id
    assert handles[1].id == handles[2].id
    assert len({h.id for h in handles}) == 3
    assert TaskRun.objects.count() == 3
    keyed = add.enqueue_many([add.using(unique_key="k").s(1, 1), add.using(unique_key="k").s(2, 2)])
    assert keyed[0].id == keyed[1].id  # the first call with a key wins, as one at a time would
    assert TaskRun.objects.get(pk=keyed[0].id).args == [1, 1]


def test_limited_calls_get_their_keys_slots() -> None:
    handles = one_per_account.enqueue_many([(1, "a", 0), (2, "b", 0), (2, "c", 0)])
    assert [h.status for h in handles] == [WAITING] * 3
    keys = set(LimitSlot.objects.values_list("key", flat=True))
    assert keys == {f"tests.limited.tasks.one_per_account:{n}" for n in (1, 2)}


def test_enqueue_many_joins_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError, match="roll back"), transaction.atomic():
        handles = record.enqueue_many([("a",), ("b",)])
        assert TaskRun.objects.count() == 2
        with pytest.raises(RuntimeError, match="still open"):
            handles[0].wait(1)  # nobody else can see it yet
        raise RuntimeError("roll back")
    assert not TaskRun.objects.exists()


def test_a_bad_call_fails_before_anything_is_written() -> None:
    with pytest.raises(TypeError, match=r"call 1 is 5; .*\(one argument x: \(x,\)\)"):
        echo.enqueue_many([("fine",), 5])
    with pytest.raises(TypeError, match=r"tests\.app\.tasks\.add\(\): too many"):
        add.enqueue_many([(1, 2), (1, 2, 3)])  # cannot bind: caught at enqueue
    # Calls are checked by shape (how many positional arguments, which keywords), once each.
    with pytest.raises(TypeError, match=r"add\(\): missing a required argument: 'b'"):
        add.enqueue_many([{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 1}])
    with pytest.raises(TypeError, match=r"add\(\): got an unexpected keyword argument 'c'"):
        add.enqueue_many([(1, 2), {"a": 1, "b": 2, "c": 2}])
    with pytest.raises(TypeError, match=r"echo\(\): argument .value. "):
        echo.enqueue_many([("fine",), (object(),)])
    with pytest.raises(InvalidTaskOptions, match=r"call 0 is one of tests\.app\.tasks\.echo"):
        add.enqueue_many([echo.s(1)])
    first = noop()
    with pytest.raises(InvalidTaskOptions, match="depends_on="):
        autotask.enqueue_many([noop.s(), record.using(depends_on=first).s("x")])
    with pytest.raises(TypeError, match=r"call 0 is 'noop', not a call of a task"):
        autotask.enqueue_many(["noop"])  # type: ignore[list-item]
    assert TaskRun.objects.count() == 1  # only ``first``


def test_no_calls_enqueue_nothing() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert noop.enqueue_many([]) == []
        assert autotask.enqueue_many(iter([])) == []
    assert not queries.captured_queries


def test_calls_of_several_tasks_in_one_statement() -> None:
    handles = autotask.enqueue_many([add.s(1, 2), record.s("x"), async_add.s(3, 4)])
    assert [h.name for h in handles] == [add.name, record.name, async_add.name]
    assert run_pending() == 3
    assert [h.refresh().result for h in handles[::2]] == [3, 7]
    assert Execution.objects.filter(key="x").count() == 1


def test_task_enqueued_is_sent_for_each_run() -> None:
    seen: list[tuple[str, int]] = []

    def enqueued(sender: Any, handle: TaskHandle, **kwargs: Any) -> None:
        seen.append((sender.name, handle.id))

    signals.task_enqueued.connect(enqueued)
    try:
        handles = autotask.enqueue_many([add.s(1, 2), noop.s()])
    finally:
        signals.task_enqueued.disconnect(enqueued)
    assert seen == [(add.name, handles[0].id), (noop.name, handles[1].id)]


def test_eager_mode_runs_each_call_in_order(settings: Any) -> None:
    settings.AUTOTASK_EAGER = True
    handles = record.enqueue_many([("one",), ("two",)])
    assert [h.status for h in handles] == [DONE, DONE]
    assert list(Execution.objects.order_by("id").values_list("key", flat=True)) == ["one", "two"]


async def test_the_sync_enqueue_many_is_refused_inside_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match=r"await defer_many\(\.\.\.\)"):
        noop.enqueue_many([()])


async def test_defer_many_runs_through_the_runtime(worker: None) -> None:
    handles = await async_add.defer_many([(1, 2), {"a": 3, "b": 4}])
    assert all(isinstance(h, AsyncTaskHandle) for h in handles)
    assert [(await h.wait(20)).result for h in handles] == [3, 7]
    mixed = await autotask.defer_many([add.s(1, 1), async_add.s(2, 2)])
    assert [(await h.wait(20)).result for h in mixed] == [2, 4]


def test_defer_many_never_awaited_enqueues_nothing_and_says_so() -> None:
    with pytest.warns(RuntimeWarning, match=r"noop\.defer_many\(\.\.\.\) was never awaited"):
        noop.defer_many([()])
    assert not TaskRun.objects.exists()
