"""autotask's own signals: enqueued at the call, started and finished in the worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from autotask import DONE, ERROR, WAITING, signals
from tests.app.tasks import add, async_add, fail, fail_twice
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture
def heard() -> Any:
    events: list[tuple[Any, ...]] = []

    def enqueued(sender: Any, handle: Any, **kwargs: Any) -> None:
        events.append(("enqueued", sender.name, handle.id))

    def started(sender: Any, run_id: int, attempt: int, **kwargs: Any) -> None:
        events.append(("started", sender.name, run_id, attempt))

    def finished(sender: Any, run_id: int, status: Any, error: Any, **kwargs: Any) -> None:
        events.append(("finished", sender.name, run_id, str(status), error))

    signals.task_enqueued.connect(enqueued)
    signals.task_started.connect(started)
    signals.task_finished.connect(finished)
    yield events
    signals.task_enqueued.disconnect(enqueued)
    signals.task_started.disconnect(started)
    signals.task_finished.disconnect(finished)


def test_a_run_is_heard_enqueued_started_and_finished(worker: None, heard: Any) -> None:
    handle = add(1, 2)
    handle.wait(10)
    wait_until(lambda: len(heard) == 3)
    name = "tests.app.tasks.add"
    assert heard[0] == ("enqueued", name, handle.id)
    assert heard[1] == ("started", name, handle.id, 1)
    assert heard[2] == ("finished", name, handle.id, str(DONE), None)


def test_a_retried_failure_finishes_each_attempt_with_the_status_it_left(
    worker: None, heard: Any
) -> None:
    handle = fail_twice("signals")  # retries=2: fails twice, then succeeds
    handle.wait(20)
    wait_until(lambda: len([e for e in heard if e[0] == "finished"]) == 3, timeout=20)
    finished = [e for e in heard if e[0] == "finished"]
    assert [e[3] for e in finished] == [str(WAITING), str(WAITING), str(DONE)]
    assert finished[0][4] is not None and finished[0][4].message
    assert [e[3] for e in heard if e[0] == "started"] == [1, 2, 3]


def test_a_final_failure_carries_its_error(worker: None, heard: Any) -> None:
    handle = fail("heard")
    handle.wait(10)
    wait_until(lambda: any(e[0] == "finished" for e in heard))
    [finished] = [e for e in heard if e[0] == "finished"]
    assert finished[3] == str(ERROR) and finished[4].message == "heard"


def test_defer_sends_enqueued_too(worker: None, heard: Any) -> None:
    async def defer() -> Any:
        return await async_add.defer(2, 2)

    handle = asyncio.run(defer())
    assert heard[0] == ("enqueued", "tests.app.tasks.async_add", handle.id)


def test_a_receiver_that_raises_does_not_disturb_the_run(worker: None, caplog: Any) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    signals.task_started.connect(broken)
    signals.task_finished.connect(broken)
    try:
        assert add(3, 4).wait(10).result == 7
    finally:
        signals.task_started.disconnect(broken)
        signals.task_finished.disconnect(broken)
    wait_until(lambda: "a signal receiver failed" in caplog.text)


def test_a_receiver_of_enqueued_that_raises_does_not_fail_the_enqueue(caplog: Any) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver broke")

    signals.task_enqueued.connect(broken)
    try:
        handle = add(1, 1)
    finally:
        signals.task_enqueued.disconnect(broken)
    assert handle.id and "a signal receiver failed" in caplog.text
