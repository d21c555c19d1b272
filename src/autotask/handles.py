"""The handles that follow one run: ``TaskHandle`` (sync) and ``AsyncTaskHandle`` (async).

Twins in the psycopg manner: the same attribute and method names, plain methods on one and
coroutines on the other, sharing their state in ``_HandleState``. Both read through ``store``:
sync handles through Django's connection, so inside ``transaction.atomic()`` they see the run
their own transaction enqueued; async handles through connections of their event loop, never
blocking the caller's loop. Status changes come from the runtime's listener.

The seed's users poll: ``while not handle.ready: time.sleep(1)``. So on the sync handle the
attributes that change when a run finishes (``status``, ``ready``, ``result``, ``error``) are
live until it has: reading one re-reads the row (one query a read); once the run is finished
they are plain values. Async code cannot read a row inside an attribute: ``AsyncTaskHandle``
holds what its last ``refresh()``, ``wait()`` or ``updates()`` read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue as _queue
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any, Self

import psycopg
from django.db import DatabaseError

from . import conf, registry, runtime, store
from .conf import DEFAULT_TTL
from .status import FINAL_STATUSES, Status, TaskError
from .store import RunRecord

logger = logging.getLogger("autotask")


class _HandleState:
    """What a handle knows of its run: the last ``RunRecord`` read, and statuses heard since."""

    id: int
    name: str
    queue: str
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    errors: list[TaskError]
    postpones: int

    def __init__(self, record: RunRecord, *, enqueued_by: int | None = None) -> None:
        # The transaction that enqueued the run, while it may still be open (sync enqueue only).
        self._enqueued_by = enqueued_by
        self._apply(record)

    def _apply(self, record: RunRecord) -> None:
        self.id = record.id
        self.name = record.name
        self.queue = record.queue
        self._status = record.status
        self.priority = record.priority
        self.attempts = record.attempts
        self.max_attempts = record.max_attempts
        self.run_at = record.run_at
        self.enqueued_at = record.enqueued_at
        self.started_at = record.started_at
        self.finished_at = record.finished_at
        self._result = record.result
        self._error = record.error
        self.errors = record.errors
        self.postpones = record.postpones

    @property
    def status(self) -> Status:
        return self._status

    @status.setter
    def status(self, value: Status) -> None:
        self._status = value

    @property
    def ready(self) -> bool:
        """True once the run is finished (DONE, ERROR or CANCELLED)."""
        return self._finished

    @property
    def result(self) -> Any:
        """The task's return value once DONE."""
        return self._result

    @property
    def error(self) -> TaskError | None:
        """Why it failed once ERROR; while retrying, the last failed attempt's error."""
        return self._error

    @property
    def _finished(self) -> bool:
        return self._status in FINAL_STATUSES

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} #{self.id} {self._status}>"

    def _still(self) -> str:
        return f"Task run #{self.id} ({self.name}) is still {self._status}."

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _HandleState) and type(other) is type(self) and other.id == self.id

    def __hash__(self) -> int:
        return hash((type(self), self.id))


def _ttl(name: str) -> float:
    """How long a cancelled run's row is kept: its task's ttl, where this process knows it."""
    task = registry.get(name)
    return DEFAULT_TTL if task is None else float(task.ttl)


def deadline_after(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds, not {timeout!r}")
    return time.monotonic() + timeout


def wait_time(deadline: float | None, still: Callable[[], str]) -> float:
    """Seconds to wait for the next notification: the poll interval, cut by the deadline (past
    it, TimeoutError saying what is ``still`` unfinished)."""
    poll = conf.get().poll_interval
    remaining = _time_left(deadline, still)
    return poll if remaining is None else min(poll, remaining)


def _time_left(deadline: float | None, still: Callable[[], str]) -> float | None:
    """Seconds until ``deadline`` (None: no deadline); past it, TimeoutError."""
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(still())
    return remaining


def mark_watched(run_ids: list[int], deadline: float | None, still: Callable[[], str]) -> None:
    """Have PostgreSQL announce these runs' status changes (``store.watch_runs``), within the
    caller's ``deadline``. A database that cannot (not migrated to 0013 yet, during a rolling
    deploy) leaves the handle to its poll, with a warning."""
    try:
        store.watch_runs(run_ids, _time_left(deadline, still))
    except TimeoutError:
        raise TimeoutError(still()) from None
    except (DatabaseError, psycopg.Error) as exc:
        logger.warning("autotask: runs %s not marked watched (%s); polling for them", run_ids, exc)


async def amark_watched(
    run_ids: list[int], deadline: float | None, still: Callable[[], str]
) -> None:
    """``mark_watched``, awaited."""
    try:
        await store.awatch_runs(run_ids, _time_left(deadline, still))
    except TimeoutError:
        raise TimeoutError(still()) from None
    except (DatabaseError, psycopg.Error) as exc:
        logger.warning("autotask: runs %s not marked watched (%s); polling for them", run_ids, exc)


def in_open_transaction(enqueued_by: int | None) -> bool:
    """Whether the run (or workflow) was enqueued by the transaction still open here (a sync
    enqueue inside ``atomic()``): no worker can see it yet."""
    return enqueued_by is not None and store.in_open_transaction(enqueued_by)


def invisible_error(what: str) -> RuntimeError:
    return RuntimeError(
        f"{what} was enqueued in the transaction that is still open, so no worker can see it "
        "yet: wait for it after the transaction.atomic() block. (In tests, use "
        "transactional_db.)"
    )


def _digest(current: Status, pending: list[Status | None]) -> tuple[list[Status], bool]:
    """Split notified statuses into those to report now and whether to re-read the row.

    A final status is never reported from a notification alone: the row is read first, so the
    handle holds the result or error when the caller sees DONE or ERROR. ``None`` stands for
    "something may have changed" (a poll timeout, or the listener reconnected).
    """
    report: list[Status] = []
    for status in pending:
        if status is None or status in FINAL_STATUSES:
            return report, True
        if status != current:
            report.append(status)
            current = status
    return report, False


class TaskHandle(_HandleState):
    """Follows one run from sync code; ``status``, ``ready``, ``result`` and ``error`` are live
    until the run is finished."""

    _warned_invisible = False

    @property
    def status(self) -> Status:
        self._refresh_unless_finished()
        return self._status

    @status.setter
    def status(self, value: Status) -> None:
        self._status = value

    @property
    def ready(self) -> bool:
        """True once DONE, ERROR or CANCELLED; read afresh until then.

        Inside the still-open transaction that enqueued the run it stays False (no worker can
        see the run before the commit), and the first such read logs a warning saying so:
        a loop polling ``ready`` there would never end.
        """
        if not self._finished and not self._warned_invisible and self._invisible():
            self._warned_invisible = True
            logger.warning(
                "autotask: run #%s was enqueued in the transaction that is still open, so it "
                "cannot be ready before that commits (ATOMIC_REQUESTS?): polling it there "
                "never ends.",
                self.id,
            )
        self._refresh_unless_finished()
        return self._finished

    @property
    def result(self) -> Any:
        self._refresh_unless_finished()
        return self._result

    @property
    def error(self) -> TaskError | None:
        self._refresh_unless_finished()
        return self._error

    def _refresh_unless_finished(self) -> None:
        if not self._finished:
            self._apply(store.fetch_run(self.id))

    @classmethod
    def get(cls, run_id: int) -> TaskHandle:
        """Rebuild a handle from a run id; RunDoesNotExist (a LookupError) if there is none."""
        return cls(store.fetch_run(run_id))

    def refresh(self) -> Self:
        self._apply(store.fetch_run(self.id))
        return self

    def updates(self, timeout: float | None = None) -> Iterator[Status]:
        """Yield each status the run takes, starting with the one this handle holds, until a
        final one.

        Driven by the process's shared LISTEN connection; a poll every
        ``AUTOTASK_HANDLE_TASK_IDLE_TIME`` seconds covers a lost notification. The row is re-read
        before a final status is yielded, so ``result`` and ``error`` are there with it; for an
        intermediate status only ``status`` is updated (call ``refresh()`` for the rest).
        Raises TimeoutError if the run is not finished after ``timeout`` seconds.
        """
        self._check_visible()
        inbox: _queue.SimpleQueue[Status | None] = _queue.SimpleQueue()
        deadline = deadline_after(timeout)
        with runtime.watch(self.id, inbox.put):
            if not self._finished:
                yield self._status
                mark_watched([self.id], deadline, self._still)
            previous = self._status
            self.refresh()
            if self._status != previous or self._finished:
                yield self._status
            while not self._finished:
                wait = wait_time(deadline, self._still)
                try:
                    pending = [inbox.get(timeout=wait)]
                except _queue.Empty:
                    pending = [None]
                while not inbox.empty():
                    pending.append(inbox.get_nowait())
                report, stale = _digest(self._status, pending)
                for status in report:
                    self._status = status
                    yield status
                if stale:
                    previous = self._status
                    self.refresh()
                    if self._status != previous:
                        yield self._status

    def _invisible(self) -> bool:
        """Whether this run was enqueued in the transaction that is still open (sync only)."""
        if self._enqueued_by is None:
            return False
        if in_open_transaction(self._enqueued_by):
            return True
        if not store.in_atomic_block():
            self._enqueued_by = None
        return False

    def _check_visible(self) -> None:
        """Waiting on a run inside the still-open transaction that enqueued it cannot end."""
        if self._invisible():
            raise invisible_error(f"Task run #{self.id}")

    def wait(self, timeout: float | None = None) -> Self:
        """Block until the run is finished; TimeoutError after ``timeout`` seconds."""
        for _ in self.updates(timeout):
            pass
        return self

    def cancel(self) -> bool:
        """Cancel the run. A waiting run becomes CANCELLED at once and never runs; a running one
        is asked to stop (an ``async def`` task is cancelled, a plain function sees
        ``autotask.current().should_stop()``) and ends CANCELLED when it has. False if the run
        had already finished."""
        record, cancelled = store.cancel_run(self.id, _ttl(self.name))
        if record is not None:
            self._apply(record)
        return cancelled


class AsyncTaskHandle(_HandleState):
    """Follows one run from async code; the I/O methods are coroutines."""

    @classmethod
    async def get(cls, run_id: int) -> AsyncTaskHandle:
        """Rebuild a handle from a run id; RunDoesNotExist (a LookupError) if there is none."""
        return cls(await store.afetch_run(run_id))

    async def refresh(self) -> Self:
        self._apply(await store.afetch_run(self.id))
        return self

    async def updates(self, timeout: float | None = None) -> AsyncIterator[Status]:
        """Yield each status the run takes, starting with the current one, until a final one.

        The same contract as ``TaskHandle.updates``, awaited.
        """
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Status | None] = asyncio.Queue()

        def deliver(status: Status | None) -> None:
            # The caller's loop may be gone while this generator still waits to be closed.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(inbox.put_nowait, status)

        deadline = deadline_after(timeout)
        with runtime.watch(self.id, deliver):
            if not self._finished:
                yield self._status
                await amark_watched([self.id], deadline, self._still)
            previous = self._status
            await self.refresh()
            if self._status != previous or self._finished:
                yield self._status
            while not self._finished:
                wait = wait_time(deadline, self._still)
                try:
                    pending = [await asyncio.wait_for(inbox.get(), wait)]
                except TimeoutError:
                    pending = [None]
                while not inbox.empty():
                    pending.append(inbox.get_nowait())
                report, stale = _digest(self._status, pending)
                for status in report:
                    self._status = status
                    yield status
                if stale:
                    previous = self._status
                    await self.refresh()
                    if self._status != previous:
                        yield self._status

    async def wait(self, timeout: float | None = None) -> Self:
        """Wait until the run is finished; TimeoutError after ``timeout`` seconds."""
        async for _ in self.updates(timeout):
            pass
        return self

    async def cancel(self) -> bool:
        """Cancel the run; the same contract as ``TaskHandle.cancel``, awaited."""
        record, cancelled = await store.acancel_run(self.id, _ttl(self.name))
        if record is not None:
            self._apply(record)
        return cancelled
