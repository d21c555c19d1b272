"""Cancel, deschedule, unique runs, enqueue by name, and timeouts, against a real runtime."""

import asyncio
import time

import pytest

import autotask
from autotask import CANCELLED, DONE, ERROR, RUNNING, WAITING, TaskNotRegistered, store
from autotask.models import TaskRun
from autotask.store import NewRun
from tests.app.models import Execution
from tests.app.tasks import (
    add,
    async_oversleeps,
    slow,
    sync_oversleeps,
    sync_until_stopped,
    times_out_itself,
    unique_add,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_a_waiting_run_cancelled_never_runs() -> None:
    handle = add(1, 2)
    assert handle.cancel() is True
    assert (handle.status, handle.ready) == (CANCELLED, True)
    assert handle.cancel() is False  # finished: nothing to cancel
    row = TaskRun.objects.get(pk=handle.id)
    assert row.status == "cancelled" and row.expires_at is not None


def test_cancelled_runs_are_not_claimed(worker: None) -> None:
    later = add.using(delay=0.5)(1, 1)
    assert later.cancel()
    time.sleep(1.0)
    assert TaskRun.objects.get(pk=later.id).status == "cancelled"


def test_a_running_async_run_is_cancelled_through_its_runtime(worker: None) -> None:
    handle = slow(30)
    wait_until(lambda: handle.refresh().status == RUNNING)
    assert handle.cancel() is True
    assert handle.wait(10).status == CANCELLED


async def test_the_async_twin_cancels_too(worker: None) -> None:
    handle = await slow.defer(30)
    for _ in range(200):
        if (await handle.refresh()).status == RUNNING:
            break
        await asyncio.sleep(0.02)
    assert await handle.cancel() is True
    assert (await handle.wait(10)).status == CANCELLED


def test_a_running_sync_run_sees_should_stop_and_ends_cancelled(worker: None) -> None:
    handle = sync_until_stopped("cancel-me")
    wait_until(lambda: handle.refresh().status == RUNNING)
    assert handle.cancel()
    assert handle.wait(10).status == CANCELLED
    assert Execution.objects.filter(key="cancel-me: told to stop").exists()


def test_deschedule_cancels_the_waiting_runs_with_those_arguments() -> None:
    doomed = [add(1, 2), add(1, 2), add.using(delay=60)(1, 2)]
    spared = [add(2, 1), add(1, b=2)]
    assert autotask.deschedule(add, 1, 2) == 3
    assert autotask.deschedule("tests.app.tasks.add", 1, 2) == 0
    assert {TaskRun.objects.get(pk=h.id).status for h in doomed} == {"cancelled"}
    assert {TaskRun.objects.get(pk=h.id).status for h in spared} == {"waiting"}


def test_a_unique_task_returns_the_waiting_run_instead_of_a_second() -> None:
    first = unique_add(1, 2)
    again = unique_add(1, 2)
    other = unique_add(2, 1)
    assert again.id == first.id and other.id != first.id
    assert asyncio.run(unique_add.defer(1, 2)).id == first.id
    keyed = add.using(unique_key="nightly")(5, 5)
    assert add.using(unique_key="nightly")(6, 6).id == keyed.id
    assert TaskRun.objects.count() == 3


def test_a_unique_run_may_be_enqueued_again_once_it_finished(worker: None) -> None:
    first = unique_add(3, 4).wait(10)
    assert first.status == DONE
    assert unique_add(3, 4).id != first.id


def test_bulk_inserts_honour_unique_keys_and_keep_the_input_order() -> None:
    existing = add.using(unique_key="k1")(0, 0)

    def new(key: str | None, n: int) -> NewRun:
        return NewRun(
            name=add.name,
            queue="default",
            args=f"[{n}, 0]",
            kwargs="{}",
            priority=0,
            max_attempts=1,
            run_at=None,
            delay=0.0,
            unique_key=key,
        )

    records, _ = store.insert_runs(
        [new(None, 1), new("k1", 2), new("k2", 3), new("k2", 4), new(None, 5)]
    )
    assert records[1].id == existing.id
    assert records[2].id == records[3].id
    assert len({r.id for r in records}) == 4
    args = {row.pk: row.args for row in TaskRun.objects.all()}
    assert [args[r.id] for r in records] == [[1, 0], [0, 0], [3, 0], [3, 0], [5, 0]]


def test_enqueue_by_name_for_registered_tasks_only() -> None:
    handle = autotask.enqueue("tests.app.tasks.add", 2, b=3)
    assert TaskRun.objects.get(pk=handle.id).kwargs == {"b": 3}
    assert asyncio.run(autotask.aenqueue("tests.app.tasks.add", 1, 1)).status == WAITING
    with pytest.raises(TaskNotRegistered, match=r"No task named 'os.system' is registered"):
        autotask.enqueue("os.system", "true")


def test_an_async_task_past_its_timeout_is_cancelled_and_retried(worker: None) -> None:
    handle = async_oversleeps(5).wait(10)
    assert (handle.status, handle.attempts) == (ERROR, 2)
    assert handle.error.exception_class_path == "autotask.exceptions.TaskTimeout"
    assert handle.error.message == "timed out after 0.3 s"


def test_a_sync_task_past_its_timeout_ends_in_error_and_holds_its_slot(
    settings, start_worker
) -> None:
    settings.AUTOTASK_WORKERS = 1
    start_worker()
    handle = sync_oversleeps("polite", 5.0)
    timed_out = handle.wait(10)
    assert timed_out.status == ERROR and timed_out.error.message == "timed out after 0.3 s"
    assert wait_until(lambda: Execution.objects.filter(key="polite: told to stop").exists())
    follower = add(1, 1)
    assert follower.wait(10).result == 2
    stopped_at = Execution.objects.get(key="polite: told to stop").at
    assert follower.started_at >= stopped_at  # the one slot was free only once the thread was


def test_a_sync_tasks_own_timeouterror_is_its_error_not_a_timeout(worker: None) -> None:
    handle = times_out_itself("the mail server").wait(10)
    assert handle.status == ERROR
    assert handle.error.exception_class_path == "builtins.TimeoutError"
    assert handle.error.message == "the mail server did not answer"


def test_current_is_only_for_running_tasks() -> None:
    with pytest.raises(RuntimeError, match="only available inside a task"):
        autotask.current()


def test_adeschedule_cancels_the_same_runs_from_async_code(worker: None) -> None:
    doomed = [add.using(delay=60)(5, 6) for _ in range(2)]
    spared = add.using(delay=60)(6, 5)
    assert asyncio.run(autotask.adeschedule(add, 5, 6)) == 2
    assert asyncio.run(autotask.adeschedule("tests.app.tasks.add", 5, 6)) == 0
    assert {TaskRun.objects.get(pk=h.id).status for h in doomed} == {"cancelled"}
    assert TaskRun.objects.get(pk=spared.id).status == "waiting"
    with pytest.raises(autotask.TaskNotRegistered):
        asyncio.run(autotask.adeschedule("tests.app.tasks.nothing_by_this_name"))
