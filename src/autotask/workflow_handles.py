"""The handles that follow a whole workflow: ``WorkflowHandle`` (sync), ``AsyncWorkflowHandle``.

Twins, as the run handles are, and with the same names (``status``, ``ready``, ``result``,
``error``, ``refresh``, ``wait``, ``updates``, ``cancel``, ``get``). A workflow has no row of its
own: its state is its steps' rows, read in one statement, and its status is derived from them
(``workflow_status``), so it can never disagree with what the steps say. Streaming listens to
every step's status notifications and re-reads the steps when one comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue as _queue
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Self

from . import registry, runtime, store
from .conf import DEFAULT_TTL
from .handles import (
    AsyncTaskHandle,
    TaskHandle,
    amark_watched,
    deadline_after,
    in_open_transaction,
    invisible_error,
    mark_watched,
    wait_time,
)
from .status import (
    CANCELLED,
    DONE,
    ERROR,
    FINAL_STATUSES,
    RUNNING,
    WAITING,
    Status,
    TaskError,
)
from .store import RunRecord

Steps = Sequence[tuple[RunRecord, bool]]  # each step's record, and whether it ends the workflow


def workflow_status(steps: Steps) -> Status:
    """WAITING until a step has started; RUNNING until every step has finished; then DONE if
    the steps that end it did, ERROR if any step failed (the others were then cancelled or
    ran anyway), else CANCELLED."""
    if all(record.status in FINAL_STATUSES for record, _ in steps):
        if all(record.status == DONE for record, last in steps if last):
            return DONE
        if any(record.status == ERROR for record, _ in steps):
            return ERROR
        return CANCELLED
    if any(record.status != WAITING or record.attempts > 0 for record, _ in steps):
        return RUNNING
    return WAITING


class _WorkflowState:
    """What a workflow handle knows: its steps as last read."""

    id: int

    def __init__(self, workflow_id: int, steps: Steps, *, enqueued_by: int | None = None) -> None:
        self.id = workflow_id
        self._enqueued_by = enqueued_by
        self._apply(steps)

    def _apply(self, steps: Steps) -> None:
        self._steps = list(steps)
        self._status = workflow_status(self._steps)

    @property
    def _finished(self) -> bool:
        return self._status in FINAL_STATUSES

    @property
    def run_ids(self) -> list[int]:
        """Its steps' run ids, in the order they were given (each step after those it needs)."""
        return [record.id for record, _ in self._steps]

    @property
    def last_run_ids(self) -> list[int]:
        """The steps that end it (that no step of it waits for): its result is theirs."""
        return [record.id for record, last in self._steps if last]

    def _result(self) -> Any:
        if self._status != DONE:
            return None
        results = [record.result for record, last in self._steps if last]
        return results[0] if len(results) == 1 else results

    def _error(self) -> TaskError | None:
        """The first failed step's error, once the workflow has ended ERROR."""
        if self._status != ERROR:
            return None
        return next(record.error for record, _ in self._steps if record.status == ERROR)

    def _ttls(self) -> dict[str, float]:
        ttls = {}
        for name in {record.name for record, _ in self._steps}:
            task = registry.get(name)
            ttls[name] = DEFAULT_TTL if task is None else float(task.ttl)
        return ttls

    def _still(self) -> str:
        return f"Workflow #{self.id} is still {self._status}."

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} {self._status} ({len(self._steps)} runs)>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _WorkflowState) or type(other) is not type(self):
            return False
        return other.id == self.id

    def __hash__(self) -> int:
        return hash((type(self), self.id))


class WorkflowHandle(_WorkflowState):
    """Follows a workflow from sync code; ``status``, ``ready``, ``result`` and ``error`` are
    read afresh (one query) until it has finished, as a run handle's are."""

    @property
    def status(self) -> Status:
        self._refresh_unless_finished()
        return self._status

    @property
    def ready(self) -> bool:
        """True once every step has finished (DONE, ERROR or CANCELLED)."""
        self._refresh_unless_finished()
        return self._finished

    @property
    def result(self) -> Any:
        """Once DONE: the last step's result (a list of them when several steps end it)."""
        self._refresh_unless_finished()
        return self._result()

    @property
    def error(self) -> TaskError | None:
        """Once ERROR: the error of the first step that failed."""
        self._refresh_unless_finished()
        return self._error()

    @property
    def runs(self) -> list[TaskHandle]:
        """A handle for each step, as last read."""
        return [TaskHandle(record) for record, _ in self._steps]

    def _refresh_unless_finished(self) -> None:
        if not self._finished:
            self._apply(store.fetch_workflow(self.id))

    @classmethod
    def get(cls, workflow_id: int) -> WorkflowHandle:
        """Rebuild a handle from a workflow id (``handle.id``); RunDoesNotExist if it has no
        steps (never had, or all were pruned)."""
        return cls(workflow_id, store.fetch_workflow(workflow_id))

    def refresh(self) -> Self:
        self._apply(store.fetch_workflow(self.id))
        return self

    def updates(self, timeout: float | None = None) -> Iterator[Status]:
        """Yield each status the workflow takes, starting with the one this handle holds, until
        a final one; TimeoutError if it has not finished after ``timeout`` seconds."""
        if in_open_transaction(self._enqueued_by):
            raise invisible_error(f"Workflow #{self.id}")
        inbox: _queue.SimpleQueue[Status | None] = _queue.SimpleQueue()
        deadline = deadline_after(timeout)
        with contextlib.ExitStack() as watching:
            for run_id in self.run_ids:
                watching.enter_context(runtime.watch(run_id, inbox.put))
            if not self._finished:
                yield self._status
                mark_watched(self.run_ids, deadline, self._still)
            while True:
                previous = self._status
                self.refresh()
                if self._status != previous or self._finished:
                    yield self._status
                if self._finished:
                    return
                with contextlib.suppress(_queue.Empty):  # a poll: a notification may be lost
                    inbox.get(timeout=wait_time(deadline, self._still))
                while not inbox.empty():
                    inbox.get_nowait()

    def wait(self, timeout: float | None = None) -> Self:
        """Block until every step has finished; TimeoutError after ``timeout`` seconds."""
        for _ in self.updates(timeout):
            pass
        return self

    def cancel(self) -> bool:
        """Cancel every waiting step and ask the running ones to stop (as ``TaskHandle.cancel``
        does); False if every step had finished."""
        return store.cancel_workflow(self.id, self._ttls()) > 0


class AsyncWorkflowHandle(_WorkflowState):
    """Follows a workflow from async code; it holds what its last ``refresh()``, ``wait()`` or
    ``updates()`` read."""

    @property
    def status(self) -> Status:
        return self._status

    @property
    def ready(self) -> bool:
        return self._finished

    @property
    def result(self) -> Any:
        return self._result()

    @property
    def error(self) -> TaskError | None:
        return self._error()

    @property
    def runs(self) -> list[AsyncTaskHandle]:
        return [AsyncTaskHandle(record) for record, _ in self._steps]

    @classmethod
    async def get(cls, workflow_id: int) -> AsyncWorkflowHandle:
        return cls(workflow_id, await store.afetch_workflow(workflow_id))

    async def refresh(self) -> Self:
        self._apply(await store.afetch_workflow(self.id))
        return self

    async def updates(self, timeout: float | None = None) -> AsyncIterator[Status]:
        """The same contract as ``WorkflowHandle.updates``, awaited."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Status | None] = asyncio.Queue()

        def deliver(status: Status | None) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop may be gone
                loop.call_soon_threadsafe(inbox.put_nowait, status)

        deadline = deadline_after(timeout)
        with contextlib.ExitStack() as watching:
            for run_id in self.run_ids:
                watching.enter_context(runtime.watch(run_id, deliver))
            if not self._finished:
                yield self._status
                await amark_watched(self.run_ids, deadline, self._still)
            while True:
                previous = self._status
                await self.refresh()
                if self._status != previous or self._finished:
                    yield self._status
                if self._finished:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(inbox.get(), wait_time(deadline, self._still))
                while not inbox.empty():
                    inbox.get_nowait()

    async def wait(self, timeout: float | None = None) -> Self:
        async for _ in self.updates(timeout):
            pass
        return self

    async def cancel(self) -> bool:
        return await store.acancel_workflow(self.id, self._ttls()) > 0


__all__ = ["AsyncWorkflowHandle", "WorkflowHandle", "workflow_status"]
