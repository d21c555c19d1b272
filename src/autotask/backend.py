"""autotask as a ``django.tasks`` backend: ``TASKS = {"default": {"BACKEND":
"autotask.backend.AutotaskBackend"}}``.

Django's ``Task`` objects become autotask tasks when Django validates them (at decoration): each
is registered under its ``module_path`` with a function that calls it the way Django's own
backends do (a ``TaskContext`` first when it ``takes_context``, the task signals around it), so
the worker runs Django's tasks and autotask's from the same table, and still runs only what was
registered in its process: nothing is imported from a row. A result is the run's row, read
back as Django's ``TaskResult``.

Django 6.x provides ``django.tasks``; on Django 5.2 the ``django-tasks`` backport does
(``pip install autotask[django-tasks]``), and this module uses whichever exists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import django
from django.utils import timezone

from . import options, registry, store
from .backoff import Backoff
from .conf import DEFAULT_TTL
from .context import current
from .exceptions import InvalidTaskOptions, Postpone, RunDoesNotExist
from .handles import AsyncTaskHandle, TaskHandle
from .signals import log_failures
from .status import CANCELLED, DONE, ERROR, RUNNING, WAITING, Status
from .status import TaskError as AutotaskError
from .tasks import Task as AutotaskTask
from .tasks import schedule_for

if TYPE_CHECKING or django.VERSION >= (6, 0):
    from django.tasks import task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_PRIORITY,
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django.tasks.base import Task as DjangoTask
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:  # Django 5.2: the backport, the same API under another name
    from django_tasks import task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_PRIORITY,
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django_tasks.base import Task as DjangoTask
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

__all__ = ["AutotaskBackend", "Task", "task"]

# autotask's statuses as Django's. A cancelled run never ran to its end: FAILED, with no error.
_STATUSES: dict[Status, Any] = {
    WAITING: TaskResultStatus.READY,
    RUNNING: TaskResultStatus.RUNNING,
    DONE: TaskResultStatus.SUCCESSFUL,
    ERROR: TaskResultStatus.FAILED,
    CANCELLED: TaskResultStatus.FAILED,
}


if TYPE_CHECKING:
    _DjangoTaskBase = DjangoTask[..., Any]  # generic in django-stubs only
else:
    _DjangoTaskBase = DjangoTask


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Task(_DjangoTaskBase):
    """Django's ``Task`` with autotask's options; the backend's ``task_class``.

    On Django 6.1 ``@django.tasks.task(retries=3)`` hands these to it; on 6.0 and the backport,
    ``@autotask.backend.task(...)`` takes Django's arguments and these.
    """

    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = ()
    backoff: Backoff | None = None
    max_postpones: int = options.DEFAULT_MAX_POSTPONES
    unique: bool = False
    timeout: float | None = None
    ttl: float = DEFAULT_TTL
    every: float | None = None
    cron: str | None = None
    concurrency: int | None = None
    concurrency_key: Callable[..., object] | None = None
    rate: str | None = None
    rate_key: Callable[..., object] | None = None


def task(
    function: Callable[..., Any] | None = None,
    *,
    priority: int = DEFAULT_TASK_PRIORITY,
    queue_name: str = DEFAULT_TASK_QUEUE_NAME,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    takes_context: bool = False,
    **autotask_options: Any,
) -> Any:
    """``django.tasks.task`` with autotask's options, for Django versions whose decorator does
    not pass extra keyword arguments on (6.0, the backport)."""

    def wrap(func: Callable[..., Any]) -> Any:
        task_class = task_backends[backend].task_class
        return task_class(
            func=func,
            priority=priority,
            queue_name=queue_name,
            backend=backend,
            takes_context=takes_context,
            **autotask_options,
        )

    return wrap(function) if function is not None else wrap


class AutotaskBackend(BaseTaskBackend):
    task_class = Task

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: DjangoTask[..., Any]) -> None:
        super().validate_task(task)
        try:
            _register(task)
        except (InvalidTaskOptions, ValueError, TypeError) as exc:
            raise InvalidTask(str(exc)) from exc

    def enqueue(
        self, task: DjangoTask[..., Any], args: Iterable[Any], kwargs: dict[str, Any]
    ) -> Any:
        """Store a run through Django's connection: inside ``transaction.atomic()`` it is
        enqueued only if the transaction commits."""
        self.validate_task(task)
        call_args, call_kwargs = _normalized(args, kwargs)
        handle = _for_call(task)(*call_args, **call_kwargs)
        result = _result_of_handle(task, handle, call_args, call_kwargs)
        log_failures(task_enqueued.send_robust(type(self), task_result=result))
        return result

    async def aenqueue(
        self, task: DjangoTask[..., Any], args: Iterable[Any], kwargs: dict[str, Any]
    ) -> Any:
        """Store a run through async connections, without blocking the loop (it commits on
        its own, outside any transaction of the caller)."""
        self.validate_task(task)
        call_args, call_kwargs = _normalized(args, kwargs)
        handle = await _for_call(task).defer(*call_args, **call_kwargs)
        result = _result_of_handle(task, handle, call_args, call_kwargs)
        log_failures(await task_enqueued.asend_robust(type(self), task_result=result))
        return result

    def get_result(self, result_id: str) -> Any:
        try:
            return _result(*store.fetch_run_call(_run_id(result_id)))
        except RunDoesNotExist:
            raise TaskResultDoesNotExist(result_id) from None

    async def aget_result(self, result_id: str) -> Any:
        try:
            return _result(*await store.afetch_run_call(_run_id(result_id)))
        except RunDoesNotExist:
            raise TaskResultDoesNotExist(result_id) from None


# --- Django tasks as autotask tasks ---

# Django's Task of each registered name (the first one validated: ``using()`` copies differ
# only in per-call options, which the row holds).
_django_tasks: dict[str, DjangoTask[..., Any]] = {}


def _register(task: DjangoTask[..., Any]) -> None:
    name = task.module_path
    known = _django_tasks.get(name)
    if known is not None and known.func is task.func:
        return
    extra: dict[str, Any] = {}
    if isinstance(task, Task):
        extra = {
            "retries": task.retries,
            "retry_on": task.retry_on if isinstance(task.retry_on, tuple) else (task.retry_on,),
            "backoff": task.backoff,
            "max_postpones": task.max_postpones,
            "unique": task.unique,
            "timeout": task.timeout,
            "ttl": task.ttl,
            "schedule": schedule_for(every=task.every, cron=task.cron),
            "concurrency": task.concurrency,
            "concurrency_key": task.concurrency_key,
            "rate": task.rate,
            "rate_key": task.rate_key,
        }
    runnable = AutotaskTask(
        func=_caller(task),
        name=name,
        queue=task.queue_name,
        priority=task.priority,
        **extra,
    )
    registry.register(runnable)
    _django_tasks[name] = task


def _for_call(task: DjangoTask[..., Any]) -> AutotaskTask[..., Any]:
    """The registered autotask task, with this Django task's per-call options."""
    runnable = registry.get(task.module_path)
    if runnable is None:  # validated above, so registered
        raise InvalidTask(f"{task.module_path} is not registered")
    return runnable.using(
        queue=task.queue_name,
        priority=task.priority,
        run_at=task.run_after,
    )


def _caller(task: DjangoTask[..., Any]) -> Callable[..., Any]:
    """What the worker calls for a run of ``task``: the function, as Django's backends call
    it. It carries the function's signature (less ``context``), so a call that could never
    bind fails at enqueue."""
    name = task.module_path
    parameters = list(inspect.signature(task.func).parameters.values())
    if task.takes_context:
        parameters = parameters[1:]

    if inspect.iscoroutinefunction(task.func):

        async def call_async(*args: Any, **kwargs: Any) -> Any:
            attempt = _Attempt(*await store.afetch_run_call(current().run_id))
            # asend: a plain receiver runs in a thread, not on the runtime's loop.
            log_failures(
                await task_started.asend_robust(attempt.sender, task_result=attempt.result)
            )
            try:
                value = normalize_json(await attempt.function(*args, **kwargs))
            except BaseException as exc:
                if attempt.finished(exc):  # sent from the except block, for sys.exc_info()
                    log_failures(await task_finished.asend_robust(attempt.sender, **attempt.sent))
                raise
            attempt.finished(None)
            log_failures(await task_finished.asend_robust(attempt.sender, **attempt.sent))
            return value

        caller: Callable[..., Any] = call_async
    else:

        def call_sync(*args: Any, **kwargs: Any) -> Any:
            attempt = _Attempt(*store.fetch_run_call(current().run_id))
            log_failures(task_started.send_robust(attempt.sender, **attempt.sent))
            try:
                value = normalize_json(attempt.function(*args, **kwargs))
            except BaseException as exc:
                if attempt.finished(exc):  # sent from the except block, for sys.exc_info()
                    log_failures(task_finished.send_robust(attempt.sender, **attempt.sent))
                raise
            attempt.finished(None)
            log_failures(task_finished.send_robust(attempt.sender, **attempt.sent))
            return value

        caller = call_sync
    functools.update_wrapper(caller, task.func)
    caller.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    caller.__name__ = f"{name} (django.tasks)"
    return caller


class _Attempt:
    """One attempt of a Django task, as its signals tell it: ``task_started`` before it,
    ``task_finished`` after the last one (a failure that will be tried again is no finish, and
    one the runtime ends, by a timeout, cancel or shutdown, is the runtime's to tell). Receivers
    are sent to robustly: one that raises is logged, and cannot fail a run that succeeded."""

    def __init__(self, record: store.RunRecord, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.result = _running(record, args, kwargs)
        self._max_attempts = record.max_attempts  # the row's: a manual retry starts afresh
        task = self.result.task
        self.sender = type(task_backends[task.backend])
        self.function: Callable[..., Any] = task.func
        if task.takes_context:
            self.function = functools.partial(task.func, TaskContext(task_result=self.result))

    @property
    def sent(self) -> dict[str, Any]:
        return {"task_result": self.result}

    def finished(self, exc: BaseException | None) -> bool:
        """Record how the attempt ended; whether that is the run's finish."""
        now = timezone.now()
        if exc is None:
            _set(self.result, status=TaskResultStatus.SUCCESSFUL, finished_at=now)
            return True
        if isinstance(exc, asyncio.CancelledError) or not self._is_last(exc):
            return False
        errors = [*self.result.errors, _django_error(AutotaskError.from_exception(exc))]
        _set(self.result, status=TaskResultStatus.FAILED, finished_at=now, errors=errors)
        return True

    def _is_last(self, exc: BaseException) -> bool:
        if isinstance(exc, Postpone):
            return False
        runnable = registry.get(self.result.task.module_path)
        if runnable is not None and runnable.retry_on and not isinstance(exc, runnable.retry_on):
            return True
        return current().attempt >= self._max_attempts


# --- rows as Django's TaskResult ---


def _normalized(args: Iterable[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """As Django's TaskResult keeps them (tuples as lists...), and so as JSON stores them."""
    normal_args: list[Any] = normalize_json(list(args))  # type: ignore[assignment]
    normal_kwargs: dict[str, Any] = normalize_json(dict(kwargs))  # type: ignore[assignment]
    return normal_args, normal_kwargs


def _run_id(result_id: Any) -> int:
    try:
        run_id = int(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(result_id) from None
    if run_id <= 0 or str(run_id) != str(result_id):
        raise TaskResultDoesNotExist(result_id)
    return run_id


def _result(record: store.RunRecord, args: list[Any], kwargs: dict[str, Any]) -> Any:
    task = _django_tasks.get(record.name)
    if task is None:
        raise TaskResultDoesNotExist(
            f"{record.id}: a run of {record.name!r}, which is no django.tasks task of this process"
        )
    # A run enqueued without run_after has run_at = enqueued_at (one now()); one that waits
    # (deferred, or a retry's backoff) shows until when.
    run_after = None if record.run_at == record.enqueued_at else record.run_at
    if (task.queue_name, task.priority, task.run_after) != (
        record.queue,
        record.priority,
        run_after,
    ):
        task = dataclasses.replace(
            task, queue_name=record.queue, priority=record.priority, run_after=run_after
        )
    result = TaskResult(
        task=task,
        id=str(record.id),
        status=_STATUSES[record.status],
        enqueued_at=record.enqueued_at,
        started_at=record.started_at,
        last_attempted_at=record.started_at,
        finished_at=record.finished_at,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=[_django_error(e) for e in record.errors],
        worker_ids=list(record.worker_ids),
    )
    if record.status == DONE:
        object.__setattr__(result, "_return_value", record.result)
    return result


def _result_of_handle(
    task: DjangoTask[..., Any],
    handle: TaskHandle | AsyncTaskHandle,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    """The result ``enqueue`` returns: READY, as Django's contract has it (the handle's own
    status is live, and the worker may have claimed the run already)."""
    return TaskResult(
        task=task,
        id=str(handle.id),
        status=TaskResultStatus.READY,
        enqueued_at=handle.enqueued_at,
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=[],
        worker_ids=[],
    )


def _running(record: store.RunRecord, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """The result a running attempt sees (its ``TaskContext``, the signals)."""
    result = _result(record, args, kwargs)
    _set(result, status=TaskResultStatus.RUNNING)
    return result


def _django_error(error: AutotaskError) -> Any:
    return TaskError(exception_class_path=error.exception_class_path, traceback=error.traceback)


def _set(result: Any, **changes: Any) -> None:
    for field, value in changes.items():
        object.__setattr__(result, field, value)
