"""The decorators (``task``, and the seed's ``delayed_task``, ``periodic_task``, ``cron_task``)
and the Task object they return.

A Task is a frozen dataclass in the manner of ``django.tasks.Task``: options are fields,
``using()`` returns a changed copy, and the enqueueing methods come in a sync and an async form
on the same object (calling it, and ``await task.defer()``). A periodic or cron task is a task
with a ``schedule``: the leader enqueues its ticks, and calling it enqueues a one-off run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.conf import settings

from . import bulk, conf, options, registry, serialize, signals, store, testing, wsgi
from .backoff import Backoff, constant
from .conf import DEFAULT_QUEUE, DEFAULT_TTL
from .deferred import Deferred, refuse_in_event_loop
from .exceptions import InvalidTaskOptions, TaskNotRegistered
from .handles import AsyncTaskHandle, TaskHandle
from .schedule import Cron, Every, Schedule, seed_cron, zone
from .workflow_handles import AsyncWorkflowHandle, WorkflowHandle
from .workflows import Signature

P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task(Generic[P, R]):
    """A function registered to run in the background; call it to enqueue a run."""

    func: Callable[P, R]
    name: str
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    retries: int = 0
    ttl: float = DEFAULT_TTL
    delay_seconds: float = 0  # the delay= option (the name delay is Celery's method)
    run_at: datetime | None = None
    schedule: Schedule | None = None  # periodic or cron: the leader enqueues its ticks
    retry_on: tuple[type[BaseException], ...] = ()  # only these are retried; () retries all
    backoff: Backoff | None = None  # None: exponential, from AUTOTASK_RETRY_DELAY
    max_postpones: int = options.DEFAULT_MAX_POSTPONES
    unique: bool = False  # one waiting or running run per name and arguments at a time
    timeout: float | None = None  # seconds; None: AUTOTASK_TIMEOUT
    unique_key: str | None = None  # per call (using()): one run per key at a time
    atomic: bool = False  # a plain function runs inside transaction.atomic() (django-async's rule)
    concurrency: int | None = None  # at most this many runs running at once, in all processes
    concurrency_key: Callable[..., object] | None = None  # per key of the call's arguments
    rate: str | None = None  # at most this many starts per window ("10/m"), in all processes
    rate_key: Callable[..., object] | None = None  # per key of the call's arguments
    depends_on: tuple[int, ...] = ()  # per call (using()): run ids it is not due before

    def __post_init__(self) -> None:
        options.check(self)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def using(
        self,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        unique_key: str | None = None,
        depends_on: _Dependency | Iterable[_Dependency] | None = None,
    ) -> Task[P, R]:
        """A copy with per-call options; enqueue it the same way (call it, or ``defer``).

        ``unique_key``: while a run with this key waits or runs, enqueueing returns that run's
        handle instead of a new one. ``depends_on``: a run's handle (or id), a workflow's, or
        a list of them: the run is not due before they have all finished, and is CANCELLED
        instead of run if one of them does not end DONE.
        """
        changes: dict[str, Any] = {}
        if depends_on is not None:
            changes["depends_on"] = _run_ids(depends_on)
        if unique_key is not None:
            changes["unique_key"] = unique_key
        if delay is not None and run_at is not None:
            raise InvalidTaskOptions("Give either delay or run_at, not both.")
        if delay is not None:
            changes.update(delay_seconds=options.seconds(delay, "delay"), run_at=None)
        if run_at is not None:
            changes.update(run_at=run_at, delay_seconds=0)
        if priority is not None:
            changes["priority"] = priority
        if queue is not None:
            changes["queue"] = queue
        return dataclasses.replace(self, **changes)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Enqueue a run through Django's connection (joining any open transaction)."""
        refuse_in_event_loop(f"{self.name}()", f"await {self.func.__name__}.defer(...)")
        record, transaction = store.insert_run(self._new_run(args, kwargs))
        if conf.eager():  # run here and now, in the caller's transaction
            testing.run_eagerly(record.id)
            handle = TaskHandle(store.fetch_run(record.id))
        else:
            wsgi.enqueued()
            handle = TaskHandle(record, enqueued_by=transaction)
        signals.log_failures(signals.task_enqueued.send_robust(sender=self, handle=handle))
        return handle

    def defer(self, *args: P.args, **kwargs: P.kwargs) -> Deferred[AsyncTaskHandle]:
        """Enqueue a run without blocking the event loop (the runtime's psycopg pool; it
        commits on its own, outside any transaction of the caller). Await it; one never
        awaited enqueues nothing, and warns saying so."""
        new_run = self._new_run(args, kwargs)  # bad arguments fail here, awaited or not
        return Deferred(self._defer(new_run), f"{self.func.__name__}.defer")

    async def _defer(self, new_run: store.NewRun) -> AsyncTaskHandle:
        record = await store.ainsert_run(new_run)
        if conf.eager():  # committed already: run it in a thread, through Django's connection
            await sync_to_async(testing.run_eagerly_in_thread, thread_sensitive=False)(record.id)
            record = await store.afetch_run(record.id)
        handle = AsyncTaskHandle(record)
        signals.log_failures(await signals.task_enqueued.asend_robust(sender=self, handle=handle))
        return handle

    def enqueue_many(self, calls: Iterable[bulk.Call]) -> list[TaskHandle]:
        """Enqueue many runs of this task in one statement through Django's connection
        (joining any open transaction): a handle per call, in order.

        Each call is a tuple of positional arguments, a dict of keyword arguments, or
        ``task.s(...)`` / ``task.using(priority=...).s(...)`` for a call with its own options.
        """
        return bulk.enqueue_many(bulk.signatures_of(self, calls))

    def defer_many(self, calls: Iterable[bulk.Call]) -> Deferred[list[AsyncTaskHandle]]:
        """``enqueue_many`` without blocking the event loop (async connections, committing on
        its own). Await it."""
        signatures = bulk.signatures_of(self, calls)
        return bulk.deferred_calls(signatures, f"{self.func.__name__}.defer_many")

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Celery's spelling of calling the task (enqueue a run), so Celery callers need no edit."""
        return self(*args, **kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        **celery_options: Any,
    ) -> TaskHandle:
        """Celery's ``apply_async``, mapped onto ``using(delay=countdown, run_at=eta, queue=,
        priority=)`` and a call. ``priority`` is ours (-100..100, higher first), not remapped.

        Any other Celery option is refused, naming what to do instead: silently dropping
        ``expires`` or ``link`` would change what the caller's code means.
        """
        for option in celery_options:
            if option not in _CELERY_REFUSED:
                raise TypeError(f"apply_async() got an unexpected keyword argument {option!r}")
            raise InvalidTaskOptions(
                f"{self.name}.apply_async(): Celery's {option}= is not supported here: "
                f"{_CELERY_REFUSED[option]}."
            )
        if not isinstance(args, list | tuple | None):
            raise TypeError(f"apply_async() args must be a list or tuple, not {args!r:.100}.")
        configured = self.using(delay=countdown, run_at=eta, queue=queue, priority=priority)
        return configured(*(args or ()), **(kwargs or {}))

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A step of a workflow (``chain``, ``group``): this call, not made yet. In a chain or
        after a group it is given the result(s) of the step before as its first argument,
        ahead of ``args``."""
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """A step that is given no result from the step before: called with ``args`` only."""
        return Signature(self, args, kwargs, takes_result=False)

    def call(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function itself, now, in this process (an async task's: await the result)."""
        return self.func(*args, **kwargs)

    def _new_run(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, given: bool = False
    ) -> store.NewRun:
        """The row of a call; ``given``: a workflow's step that will be given a result as its
        first argument, ahead of ``args`` (checked, and seen by key functions, as None)."""
        call_args = (None, *args) if given else args
        names = _positional_names(self, call_args, kwargs)[1 if given else 0 :]
        args_json, kwargs_json = serialize.dump_call(self.name, args, kwargs, names)
        return store.NewRun(
            name=self.name,
            queue=self.queue,
            args=args_json,
            kwargs=kwargs_json,
            priority=self.priority,
            max_attempts=self.retries + 1,
            run_at=self.run_at,
            delay=self.delay_seconds,
            unique_key=self._unique_key(args_json, kwargs_json),
            depends_on=self.depends_on,
            ttl=float(self.ttl),
            **self._limits(call_args, kwargs),
        )

    def _limits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The run's limit keys, from the call's arguments: the task's name, and the key
        function's answer after it (so each task's keys are its own)."""
        limits: dict[str, Any] = {}
        if self.concurrency is not None:
            limits.update(
                concurrency=self.concurrency,
                concurrency_key=self._limit_key("concurrency_key", args, kwargs),
            )
        if self.rate is not None:
            limits["rate"], limits["rate_period"] = options.rate(self.rate)
            limits["rate_key"] = self._limit_key("rate_key", args, kwargs)
        return limits

    def _limit_key(self, field: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        key_of: Callable[..., object] | None = getattr(self, field)
        if key_of is None:
            return self.name
        key = key_of(*args, **kwargs)
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise InvalidTaskOptions(
                f"{self.name}: {field} must return a str or an int (the same for calls that "
                f"share a limit), not {key!r:.100}."
            )
        return options.text(f"{self.name}:{key}", field, options.MAX_NAME)

    def _unique_key(self, args_json: str, kwargs_json: str) -> str | None:
        if self.unique_key is not None:
            return self.unique_key
        if not self.unique:
            return None
        call = json.dumps(
            [self.name, json.loads(args_json), json.loads(kwargs_json)],
            sort_keys=True,
            separators=(",", ":"),
        )
        return f"{self.name[:180]}:{hashlib.sha256(call.encode()).hexdigest()}"


_Dependency = int | TaskHandle | AsyncTaskHandle | WorkflowHandle | AsyncWorkflowHandle


def _run_ids(depends_on: _Dependency | Iterable[_Dependency]) -> tuple[int, ...]:
    """The run ids a ``depends_on=`` names: a workflow stands for the steps that end it."""
    items = [depends_on] if isinstance(depends_on, _Dependency) else list(depends_on)
    ids: list[int] = []
    for item in items:
        if isinstance(item, WorkflowHandle | AsyncWorkflowHandle):
            ids.extend(item.last_run_ids)
        elif isinstance(item, TaskHandle | AsyncTaskHandle):
            ids.append(item.id)
        elif isinstance(item, int) and not isinstance(item, bool):
            ids.append(item)
        else:
            raise InvalidTaskOptions(
                f"depends_on takes handles (or run ids) of runs or workflows, not {item!r:.100}."
            )
    if not ids:
        raise InvalidTaskOptions("depends_on needs at least one run.")
    return tuple(dict.fromkeys(ids))


# Celery's apply_async options that have no counterpart here, and what to do instead.
_CELERY_REFUSED = {
    "expires": "runs do not expire; cancel one with handle.cancel() or autotask.deschedule()",
    "retry": "enqueueing is one INSERT, in the caller's transaction: there is no broker to retry",
    "retry_policy": "enqueueing is one INSERT, in the caller's transaction: nothing to retry",
    "link": "there are no callbacks: use autotask.chain(this.s(...), next_task.s())",
    "link_error": "there are no callbacks: read handle.error, or catch the error in the task",
    "serializer": "arguments and results are always JSON",
    "compression": "arguments and results are always JSON, stored as jsonb",
    "task_id": "a run's id comes from the database (handle.id)",
    "time_limit": "give the task @task(timeout=seconds)",
    "soft_time_limit": "give the task @task(timeout=seconds); sync tasks check should_stop()",
    "ignore_result": "results are always kept, for the task's ttl",
    "exchange": "there is no broker: use queue=",
    "routing_key": "there is no broker: use queue=",
    "headers": "a run stores only its arguments",
    "shadow": "a run is named by its task (@task(name=...))",
}


def _positional_names(
    task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[str]:
    """The parameter name of each positional argument, so errors can name it.

    Binding also fails the call at enqueue, not in the worker, when it could never bind.
    """
    try:
        return list(_names_of_shape(task.func, len(args), frozenset(kwargs)))
    except TypeError as exc:
        raise TypeError(f"{task.name}(): {exc}") from None


@functools.lru_cache(maxsize=4096)
def _names_of_shape(
    func: Callable[..., Any], count: int, keywords: frozenset[str]
) -> tuple[str, ...]:
    """``_positional_names`` for calls of this shape: whether a call binds depends only on how
    many positional arguments it has and which keywords, so a bulk enqueue of many calls of one
    shape binds once (binding each call cost about a fifth of enqueue_many's time in Python)."""
    signature = options.signature(func)
    signature.bind(*[None] * count, **dict.fromkeys(keywords))
    names: list[str] = []
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            names.extend(f"{name}[{i}]" for i in range(count - len(names)))
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(name)
        if len(names) >= count:
            break
    return tuple(names[:count])


def _name_of(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def schedule_for(
    *,
    every: float | timedelta | None = None,
    cron: str | None = None,
    tz: str | ZoneInfo | None = None,
    start_now: bool = False,
) -> Schedule | None:
    """The schedule of ``every=`` or ``cron=`` options (None for neither); also for the
    ``django.tasks`` backend's tasks."""
    if every is not None and cron is not None:
        raise InvalidTaskOptions("Give either every or cron, not both.")
    if tz is not None and cron is None:
        raise InvalidTaskOptions("tz applies to cron schedules only.")
    if start_now and every is None:
        raise InvalidTaskOptions("start_now applies to every= schedules only.")
    if every is not None:
        seconds = every.total_seconds() if isinstance(every, timedelta) else every
        return Every(seconds, start_now=start_now)
    if cron is not None:
        return Cron(cron, zone(tz, settings.TIME_ZONE))
    return None


def _decorator(*, name: str | None, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    def decorate(f: Callable[P, R]) -> Task[P, R]:
        if not callable(f) or isinstance(f, Task):
            raise TypeError(f"@task decorates a function, not {f!r}.")
        new = Task(func=f, name=name or _name_of(f), **options)
        registry.register(new)
        return new

    return decorate


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
    backoff: Backoff | None = None,
    max_postpones: int = options.DEFAULT_MAX_POSTPONES,
    unique: bool = False,
    timeout: float | None = None,
    ttl: float = DEFAULT_TTL,
    delay: float | timedelta = 0,
    every: float | timedelta | None = None,
    cron: str | None = None,
    tz: str | ZoneInfo | None = None,
    start_now: bool = False,
    atomic: bool = False,
    concurrency: int | None = None,
    concurrency_key: Callable[..., object] | None = None,
    rate: str | None = None,
    rate_key: Callable[..., object] | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
    backoff: Backoff | None = None,
    max_postpones: int = options.DEFAULT_MAX_POSTPONES,
    unique: bool = False,
    timeout: float | None = None,
    ttl: float = DEFAULT_TTL,
    delay: float | timedelta = 0,
    every: float | timedelta | None = None,
    cron: str | None = None,
    tz: str | ZoneInfo | None = None,
    start_now: bool = False,
    atomic: bool = False,
    concurrency: int | None = None,
    concurrency_key: Callable[..., object] | None = None,
    rate: str | None = None,
    rate_key: Callable[..., object] | None = None,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Register a function (``def`` or ``async def``) as a task.

    Usable bare (``@task``) or with options (``@task(queue="mail", retries=3)``). The task's name
    is the function's dotted path unless ``name`` is given; it is how rows refer to it.
    A raising run is tried again up to ``retries`` times (only for the ``retry_on`` exception
    types, when given), waiting as ``backoff`` says (default: exponential from
    ``AUTOTASK_RETRY_DELAY``). ``every`` (seconds or a timedelta) or ``cron`` (standard five
    fields, in ``tz`` or settings.TIME_ZONE) makes it a periodic task, whose ticks the leader
    enqueues. ``atomic=True`` runs a plain function inside ``transaction.atomic()`` on
    autotask's database, so a failing run leaves none of its ORM writes behind.

    ``concurrency=N`` lets at most N runs of the task run at once across every process, and
    ``rate="N/m"`` (``/s``, ``/h``, or ``/5m``) start at most N in any minute; with
    ``concurrency_key`` or ``rate_key`` (a function of the call's arguments, computed at
    enqueue) each key has its own limit. Runs over a limit wait; they are not failed.
    """
    decorate: Callable[[Callable[P, R]], Task[P, R]] = _decorator(
        name=name,
        queue=queue,
        priority=priority,
        retries=retries,
        retry_on=retry_on if isinstance(retry_on, tuple) else (retry_on,),
        backoff=backoff,
        max_postpones=max_postpones,
        unique=unique,
        timeout=timeout,
        ttl=ttl,
        delay_seconds=options.seconds(delay, "delay"),
        schedule=schedule_for(every=every, cron=cron, tz=tz, start_now=start_now),
        atomic=atomic,
        concurrency=concurrency,
        concurrency_key=concurrency_key,
        rate=rate,
        rate_key=rate_key,
    )
    if func is not None:
        return decorate(func)
    return decorate


# --- by name, and de-scheduling (django-async's schedule() and deschedule()) ---


def _registered(name: str) -> Task[..., Any]:
    task = registry.get(name)
    if task is None:
        raise TaskNotRegistered(
            f"No task named {name!r} is registered in this process (nothing is imported from a "
            "name: the module defining it must have been imported, e.g. an app's tasks.py)."
        )
    return task


def enqueue(name: str, /, *args: Any, **kwargs: Any) -> TaskHandle:
    """Enqueue a run of the registered task called ``name``, as calling it would."""
    return _registered(name)(*args, **kwargs)


async def aenqueue(name: str, /, *args: Any, **kwargs: Any) -> AsyncTaskHandle:
    """Enqueue a run of the registered task called ``name``, as ``await task.defer()`` would."""
    return await _registered(name).defer(*args, **kwargs)


def deschedule(task: Task[..., Any] | str, /, *args: Any, **kwargs: Any) -> int:
    """Cancel every waiting run of ``task`` (or its name) with exactly these arguments; how many
    were cancelled. Running and finished runs are left as they are. Joins the caller's
    transaction, as enqueueing does."""
    found, args_json, kwargs_json = _matching(task, args, kwargs)
    return store.cancel_waiting_runs(found.name, args_json, kwargs_json, float(found.ttl))


async def adeschedule(task: Task[..., Any] | str, /, *args: Any, **kwargs: Any) -> int:
    """``deschedule`` for async code, through async connections (in no transaction)."""
    found, args_json, kwargs_json = _matching(task, args, kwargs)
    return await store.acancel_waiting_runs(found.name, args_json, kwargs_json, float(found.ttl))


def _matching(
    task: Task[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Task[..., Any], str, str]:
    found = _registered(task) if isinstance(task, str) else task
    return (found, *serialize.dump_call(found.name, args, kwargs))


# --- the original autotask's decorators: same names, arguments and defaults ---


def delayed_task(
    delay: float = 0, retries: int = 0, ttl: float = DEFAULT_TTL
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The seed's ``@delayed_task()``: runs no earlier than ``delay`` seconds after a call,
    tried again up to ``retries`` times ``AUTOTASK_RETRY_DELAY`` seconds apart, its row kept at
    least ``ttl`` seconds after it finished."""
    if callable(delay):
        raise TypeError("Use @delayed_task() with parentheses (or @task).")
    return _decorator(
        name=None,
        retries=retries,
        backoff=constant(),  # the seed's fixed AUTOTASK_RETRY_DELAY
        ttl=ttl,
        delay_seconds=options.seconds(delay, "delay"),
    )


def periodic_task(
    seconds: float = 3600, start_now: bool = False
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The seed's ``@periodic_task()``: runs every ``seconds``; the first run at once if
    ``start_now``, else after ``seconds``. Registered at import; not meant to be called (a
    call enqueues one extra run)."""
    if callable(seconds):
        raise TypeError("Use @periodic_task() with parentheses.")
    return _decorator(name=None, schedule=Every(seconds, start_now=start_now, option="seconds"))


def cron_task(
    minutes: Iterable[int] | int | None = None,
    hours: Iterable[int] | int | None = None,
    dow: Iterable[int] | int | None = None,
    months: Iterable[int] | int | None = None,
    dom: Iterable[int] | int | None = None,
    crontab: str | None = None,
    *,
    tz: str | ZoneInfo | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The seed's ``@cron_task()``: lists of minutes, hours, dow (0-6, Monday = 0), months and
    dom, or a ``crontab`` string in the seed's field order *minutes hours dow months dom*
    (which then overrides the lists). With both dom and dow a day matches if either does.
    Evaluated in ``tz`` or settings.TIME_ZONE."""
    if callable(minutes):
        raise TypeError("Use @cron_task() with parentheses.")
    schedule = seed_cron(
        minutes=minutes,
        hours=hours,
        dow=dow,
        months=months,
        dom=dom,
        crontab=crontab,
        tz=zone(tz, settings.TIME_ZONE),
    )
    return _decorator(name=None, schedule=schedule)
