"""Many runs in one statement: ``task.enqueue_many(...)`` and ``await task.defer_many(...)``.

Enqueueing 10,000 runs one call at a time costs 10,000 round trips (and, outside ``atomic()``,
10,000 commits); one INSERT of all their rows costs one, is all or nothing, and wakes idle
workers with one NOTIFY per queue instead of one per run. Each call keeps what a single enqueue
would give it: its task's options (or a ``using()`` copy's, given as ``task.using(...).s()``),
its unique key (a call whose key a waiting or running run has gets that run's handle, as a
single enqueue would) and its limits' keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from . import conf, signals, store, testing, wsgi
from .deferred import Deferred, refuse_in_event_loop
from .exceptions import InvalidTaskOptions
from .handles import AsyncTaskHandle, TaskHandle
from .store import NewRun, RunRecord
from .workflows import Signature

if TYPE_CHECKING:
    from .tasks import Task

# What a task's enqueue_many() takes for each call: its positional arguments (a tuple or a
# list), its keyword arguments (a dict), or the call itself, ``task.s(...)``.
Call = Signature | Sequence[Any] | Mapping[str, Any]


def enqueue_many(calls: Iterable[Signature]) -> list[TaskHandle]:
    """Enqueue every call (``some_task.s(...)``, of any tasks) through Django's connection, in
    one statement joining any open transaction; a handle per call, in order."""
    refuse_in_event_loop("enqueue_many()", "await defer_many(...)")
    signatures, runs = _runs(calls)
    records, transaction = store.insert_runs(runs)
    if conf.eager():  # run here and now, in the caller's transaction, in the given order
        for record in records:
            testing.run_eagerly(record.id)
        handles = [TaskHandle(store.fetch_run(record.id)) for record in records]
    else:
        if records:
            wsgi.enqueued()
        handles = [TaskHandle(record, enqueued_by=transaction) for record in records]
    for signature, handle in zip(signatures, handles, strict=True):
        sent = signals.task_enqueued.send_robust(sender=signature.task, handle=handle)
        signals.log_failures(sent)
    return handles


def defer_many(calls: Iterable[Signature]) -> Deferred[list[AsyncTaskHandle]]:
    """Enqueue every call in one statement without blocking the event loop (the runtime's
    pool; it commits on its own). Await it."""
    return deferred_calls(calls, "defer_many")


def deferred_calls(calls: Iterable[Signature], call: str) -> Deferred[list[AsyncTaskHandle]]:
    """``defer_many``, its warning if never awaited naming ``call`` as the caller wrote it."""
    signatures, runs = _runs(calls)  # a bad call fails here, awaited or not
    return Deferred(_defer_many(signatures, runs), call)


async def _defer_many(signatures: list[Signature], runs: list[NewRun]) -> list[AsyncTaskHandle]:
    records: list[RunRecord] = await store.ainsert_runs(runs)
    if conf.eager():  # committed already: run them in a thread, through Django's connection
        run_eagerly = sync_to_async(testing.run_eagerly_in_thread, thread_sensitive=False)
        for record in records:
            await run_eagerly(record.id)
        records = [await store.afetch_run(record.id) for record in records]
    handles = [AsyncTaskHandle(record) for record in records]
    for signature, handle in zip(signatures, handles, strict=True):
        sent = await signals.task_enqueued.asend_robust(sender=signature.task, handle=handle)
        signals.log_failures(sent)
    return handles


def signatures_of(task: Task[..., Any], calls: Iterable[Call]) -> list[Signature]:
    """A task's calls, each given as its arguments or as a call of that task, as calls."""
    signatures = []
    for index, call in enumerate(calls):
        if isinstance(call, Signature):
            if call.task.name != task.name:
                raise InvalidTaskOptions(
                    f"{task.name}.enqueue_many(): call {index} is one of {call.task.name}: "
                    "give calls of this task only (autotask.enqueue_many() takes any)."
                )
            signatures.append(call)
        elif isinstance(call, tuple | list):  # before Mapping: an ABC's check costs more
            signatures.append(Signature(task, tuple(call), {}))
        elif isinstance(call, Mapping):
            signatures.append(Signature(task, (), dict(call)))
        else:
            raise TypeError(
                f"{task.name}.enqueue_many(): call {index} is {call!r:.100}; give each call "
                "as a tuple of positional arguments, a dict of keyword arguments or "
                f"{task.func.__name__}.s(...) (one argument x: (x,))."
            )
    return signatures


def _runs(calls: Iterable[Signature]) -> tuple[list[Signature], list[NewRun]]:
    """The calls and their rows; every call is checked before anything is written."""
    signatures = list(calls)
    runs = []
    for index, signature in enumerate(signatures):
        if not isinstance(signature, Signature):
            raise TypeError(
                f"enqueue_many(): call {index} is {signature!r:.100}, not a call of a task: "
                "write some_task.s(...)."
            )
        if signature.task.depends_on:
            raise InvalidTaskOptions(
                f"enqueue_many(): call {index} ({signature.task.name}) has depends_on=, which "
                "many runs in one statement cannot have: enqueue it on its own, or make the "
                "calls a group()."
            )
        runs.append(signature.task._new_run(signature.args, signature.kwargs))
    return signatures, runs
