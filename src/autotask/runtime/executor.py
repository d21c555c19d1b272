"""The executor: runs claimed runs, each in a slot of its own, and hands their outcomes on.

How a function is called follows what Django's request handling would do. Plain functions run in
daemon threads (``threads.py``), each call wrapped in ``close_old_connections()`` as a request
is. ``async def`` functions
run on the runtime's loop, each in a ThreadSensitiveContext of its own, as Django runs an async
view.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections, connections, transaction
from django.db.backends.signals import connection_created
from django.dispatch import Signal

from .. import conf, registry, serialize, signals
from ..context import RunContext, enter, leave
from ..exceptions import Postpone, TaskTimeout
from ..status import TaskError
from . import runs, threads
from .completer import Completer
from .listener import Listener
from .runs import ClaimedRun, Outcome
from .threads import DaemonThreadPool

logger = logging.getLogger("autotask")

# How long cancelled async tasks get to end at shutdown before they are left behind.
_CANCEL_GRACE = 1.0

if TYPE_CHECKING:
    from ..tasks import Task


class Executor:
    """``concurrency`` slots; a run holds one from its start until its function has returned
    (for a sync task past its timeout, until its thread has really ended).

    Its outcome is written after that, by the completer, while the slot already serves the next
    claim: a claim and the write of the last runs' outcomes are then in flight together instead
    of one after the other (the round trips, not the loop, bound a drain). Runs whose outcome is
    not written yet still count in ``running_ids``, and at most ``2 x concurrency`` runs are held
    at once (running, or waiting for their write), so a stalled write holds back claiming
    instead of piling runs up. Slots are counted per asyncio task, not per run id: a run retried
    at once may be claimed again while its previous attempt's task still sends its signal.
    Signal receivers run in threads of their own, so they never take a sync task's thread.
    """

    def __init__(
        self,
        completer: Completer,
        listener: Listener,
        *,
        concurrency: int,
        retry_delay: float,
        timeout: float | None = None,
        unregistered_grace: float = 0.0,
    ) -> None:
        self._completer = completer
        self._listener = listener
        self._unsubscribe: Callable[[], None] | None = None
        self._concurrency = concurrency
        self._retry_delay = retry_delay
        self._timeout = timeout  # AUTOTASK_TIMEOUT, for tasks without a timeout of their own
        self._unregistered_grace = unregistered_grace
        self._hurry = asyncio.Event()  # a second shutdown signal: cancel now
        self._running: dict[int, asyncio.Task[None]] = {}  # until its outcome is written
        self._busy: set[asyncio.Task[None]] = set()  # holding a slot: the function runs
        self._contexts: dict[int, RunContext] = {}
        self._cancel_requested: set[int] = set()
        self._overrunning: dict[int, asyncio.Future[Any]] = {}  # sync threads past a timeout
        self._threads: DaemonThreadPool | None = None
        self._signal_threads: DaemonThreadPool | None = None
        self._slot_freed: list[Callable[[], None]] = []
        self._left_behind = False

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def free_slots(self) -> int:
        return min(self._concurrency - len(self._busy), 2 * self._concurrency - len(self._running))

    @property
    def running_ids(self) -> list[int]:
        return list(self._running)

    def on_slot_freed(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._slot_freed.append(callback)
        return lambda: self._slot_freed.remove(callback)

    async def start(self) -> None:
        self._threads = DaemonThreadPool(self._concurrency, asyncio.get_running_loop())
        self._signal_threads = DaemonThreadPool(self._concurrency, asyncio.get_running_loop())
        connection_created.connect(_note_connection_created, dispatch_uid="autotask")
        self._unsubscribe = self._listener.on_cancel(self.cancel)

    async def stop(self, deadline: float) -> None:
        """Let running tasks finish until ``deadline``, then cancel what is left.

        Sync tasks see ``should_stop()`` from the start of the shutdown; one that does not end
        in time cannot be cancelled: its thread runs on, but its run is given up here and put
        back to waiting by the heartbeat's stop.
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
        for context in self._contexts.values():
            context.request_stop()
        if self._running:
            await self._wait_for_running(deadline)
        for run_task in self._running.values():
            run_task.cancel()
        if self._running:
            # A task that swallows its cancellation could hold shutdown for ever: it is left
            # behind (its run goes back to waiting all the same) once this grace is over.
            _, stuck = await asyncio.wait(list(self._running.values()), timeout=_CANCEL_GRACE)
            if stuck:
                self._left_behind = True
                logger.warning(
                    "autotask: %d task(s) ignored being cancelled; left behind: %s",
                    len(stuck),
                    ", ".join(sorted(t.get_name() for t in stuck)),
                )
        for pool in (self._threads, self._signal_threads):
            if pool is not None:
                pool.shutdown(wait=False)

    async def _wait_for_running(self, deadline: float) -> None:
        """Until every running task has ended, the deadline has passed, or ``hurry()``."""
        loop = asyncio.get_running_loop()
        logger.info(
            "autotask: waiting up to %.1f s for %d running task(s) to finish",
            max(0.0, deadline - loop.time()),
            len(self._running),
        )
        hurry = asyncio.ensure_future(self._hurry.wait())
        pending: set[asyncio.Future[Any]] = set(self._running.values())
        try:
            while pending and not self._hurry.is_set() and loop.time() < deadline:
                _, pending = await asyncio.wait(
                    pending | {hurry},
                    timeout=deadline - loop.time(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                pending.discard(hurry)
        finally:
            hurry.cancel()

    def hurry(self) -> None:
        """Cut the shutdown's wait for running tasks short (a second Ctrl-C): cancel them now;
        their runs are still put back to waiting."""
        self._hurry.set()

    def submit(self, run: ClaimedRun) -> None:
        run_task = asyncio.create_task(self._run(run), name=f"autotask run {run.id}")
        self._running[run.id] = run_task
        self._busy.add(run_task)
        run_task.add_done_callback(lambda _: self._release(run.id, run_task))

    def cancel(self, run_id: int | None) -> None:
        """A cancel was asked for this run (through NOTIFY): an async task is cancelled, a sync
        one sees ``should_stop()``; either ends CANCELLED. Runs not here are not ours."""
        if run_id is None or self._running.get(run_id) not in self._busy:
            return  # not ours, or its function has returned: its outcome stands
        self._cancel_requested.add(run_id)
        context = self._contexts.get(run_id)
        if context is not None:
            context.request_stop()
        task = registry.get(context.name) if context is not None else None
        if task is not None and task.is_async:
            self._running[run_id].cancel()

    def _free_slot(self, run_task: asyncio.Task[None]) -> None:
        if run_task in self._busy:
            self._busy.discard(run_task)
            for callback in list(self._slot_freed):
                callback()

    def _release(self, run_id: int, run_task: asyncio.Task[None]) -> None:
        self._free_slot(run_task)
        if self._running.get(run_id) is run_task:  # else the run was claimed again meanwhile
            del self._running[run_id]
            self._contexts.pop(run_id, None)
            self._cancel_requested.discard(run_id)
        for callback in list(self._slot_freed):  # one more may wait for its write: claim
            callback()

    async def _send(self, signal: Signal, task: Task[..., Any], **kwargs: Any) -> None:
        if not signal.has_listeners(task):
            return
        assert self._signal_threads is not None
        await self._signal_threads.run(_send_in_thread, signal, task, kwargs)

    async def _run(self, run: ClaimedRun) -> None:
        outcome = await self._outcome(run)
        if self._left_behind:  # it outlived shutdown; its run went back to waiting
            return
        overrunning = self._overrunning.pop(run.id, None)
        this = asyncio.current_task()
        if overrunning is None and this is not None:  # else free once the thread really is
            self._free_slot(this)
        await self._completer.finish(outcome)
        task = registry.get(run.name)
        if task is not None and signals.task_finished.has_listeners(task):
            error = TaskError.from_json(json.loads(outcome.error) if outcome.error else None)
            await self._send(
                signals.task_finished, task, run_id=run.id, status=outcome.status, error=error
            )
        if overrunning is not None:
            await asyncio.gather(overrunning, return_exceptions=True)

    async def _outcome(self, run: ClaimedRun) -> Outcome:
        task = registry.get(run.name)
        if task is None:
            return runs.unregistered(run, self._unregistered_grace)
        try:
            args, kwargs = json.loads(run.args), json.loads(run.kwargs)
        except (ValueError, RecursionError) as exc:  # stored by something else than autotask
            return runs.given_up(run, task, exc)
        context = RunContext(run_id=run.id, name=run.name, attempt=run.attempts)
        self._contexts[run.id] = context
        timeout = task.timeout if task.timeout is not None else self._timeout
        try:
            # Inside the try: a cancel that arrives while receivers run ends the run CANCELLED.
            await self._send(signals.task_started, task, run_id=run.id, attempt=run.attempts)
            if task.is_async:
                value = await _within(timeout, _call_async(task, args, kwargs, context))
                result = serialize.dump_result(task.name, value)
            else:
                result = await self._call_in_thread(run, task, args, kwargs, context, timeout)
            if run.id in self._cancel_requested:
                return runs.cancelled(run, task)
            return runs.done(run, task, result)
        except Postpone as postpone:
            return runs.postponed(run, task, postpone)
        except _TimedOut:
            late = TaskTimeout(f"timed out after {timeout:g} s")
            return runs.failed(run, task, late, retry_delay=self._retry_delay)
        except asyncio.CancelledError as exc:
            if run.id in self._cancel_requested:
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                return runs.cancelled(run, task)
            if _cancelled_by_runtime():
                raise
            # Raised by the task itself (it awaited something cancelled, or called .result() on
            # a cancelled future): a failure like any other, not the runtime stopping it.
            return runs.given_up(run, task, exc)
        except BaseException as exc:
            if run.id in self._cancel_requested:
                return runs.cancelled(run, task)
            return runs.failed(run, task, threads.unwrapped(exc), retry_delay=self._retry_delay)

    async def _call_in_thread(
        self,
        run: ClaimedRun,
        task: Task[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        context: RunContext,
        timeout: float | None,
    ) -> str:
        """A plain function in one of the threads, and its result as JSON text. Past its
        timeout the run ends (TimedOut) while the thread runs on, told to stop; its slot stays
        taken until the thread ends."""
        assert self._threads is not None
        future = self._threads.run(_call_sync, task, args, kwargs, context)
        if timeout is None:
            return await future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if future.done():  # the task's own TimeoutError (socket.timeout is one): its error
                return future.result()
            context.request_stop()
            self._overrunning[run.id] = future
            raise _TimedOut() from None


class _TimedOut(Exception):
    """A run past its timeout (kept apart from a TimeoutError the task itself raised)."""


async def _within(timeout: float | None, call: Coroutine[Any, Any, Any]) -> Any:
    """An async task, cancelled at its timeout."""
    if timeout is None:
        return await call
    try:
        async with asyncio.timeout(timeout) as scope:
            return await call
    except TimeoutError:
        if scope.expired():
            raise _TimedOut() from None
        raise


def _cancelled_by_runtime() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


def _send_in_thread(signal: Signal, task: Task[..., Any], kwargs: dict[str, Any]) -> None:
    """Receivers run as a sync task does: in a thread, connections checked around them, and
    one that raises is logged: it cannot fail or stall the run's bookkeeping."""
    close_old_connections()
    try:
        signals.log_failures(signal.send_robust(task, **kwargs))
    finally:
        close_old_connections()


def _call_sync(
    task: Task[..., Any], args: list[Any], kwargs: dict[str, Any], context: RunContext
) -> str:
    """Run a plain task in a worker thread, as Django runs a request: connections checked around.
    Its result is encoded here too, not on the loop, which a large one would hold up; for an
    ``atomic`` task inside the transaction, so a result that cannot be stored rolls it back."""
    token = enter(context)
    close_old_connections()
    try:
        if not task.atomic:
            return serialize.dump_result(task.name, task.func(*args, **kwargs))
        with transaction.atomic(using=conf.database()):
            return serialize.dump_result(task.name, task.func(*args, **kwargs))
    finally:
        close_old_connections()
        leave(token)


# Set (in the task's context) when Django opens a connection for an ``async def`` task's ORM call.
_connected: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "autotask_connected", default=False
)


def _note_connection_created(**kwargs: Any) -> None:
    _connected.set(True)


async def _call_async(
    task: Task[..., Any], args: list[Any], kwargs: dict[str, Any], context: RunContext
) -> Any:
    """Run an ``async def`` task as Django's ASGI handler runs a request.

    In a ThreadSensitiveContext of its own, its async ORM calls get a sync thread, and so a
    connection, of their own, instead of sharing (and closing under each other) the one
    process-wide thread. The connection is closed at the end, if the task opened one: the
    thread goes away with the context.
    """
    enter(context)  # in this asyncio task's own context: nothing to reset
    async with ThreadSensitiveContext():
        try:
            return await task.func(*args, **kwargs)
        finally:
            if _connected.get():
                await sync_to_async(connections.close_all)()
