"""A claimed run, and what became of it: the values passed between the runtime's services.

The claim loop makes a ``ClaimedRun``, the executor turns it into an ``Outcome``, the completer
writes outcomes. Deciding the outcome (done; another attempt, and when; postponed; given up)
happens here, in one place, so every way a run can end is visible side by side.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import options
from ..backoff import exponential
from ..conf import DEFAULT_TTL
from ..exceptions import (
    InvalidTaskOptions,
    Postpone,
    ResultNotStored,
    TaskNotRegistered,
    TooManyPostpones,
)
from ..status import CANCELLED, DONE, ERROR, WAITING, Status, TaskError

if TYPE_CHECKING:
    from ..tasks import Task

logger = logging.getLogger("autotask")

# The backoff of a task that names none: AUTOTASK_RETRY_DELAY, then twice as long each time.
DEFAULT_BACKOFF = exponential()


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A row the worker now owns (one ``RETURNING`` row of the claim), its arguments still
    JSON text: decoding them is part of running it, and may fail for this run alone."""

    id: int
    name: str
    args: str
    kwargs: str
    attempts: int
    max_attempts: int
    postpones: int
    age: float  # seconds since it was enqueued


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one run ends, or that it waits for another attempt: a row of the batched write."""

    run_id: int
    status: Status
    ttl: float
    result: str | None = None  # JSON text, for DONE
    error: str | None = None  # TaskError JSON, for ERROR and for a retry
    delay: float = 0.0  # seconds until it is due again, when WAITING
    postponed: bool = False  # WAITING without the attempt counting against it


def write_params(outcomes: Sequence[Outcome], worker_id: uuid.UUID) -> dict[str, Any]:
    """The parameters of ``sql.RUN_SET_STATUS_IF_RUNNING_MANY`` for these outcomes: one JSON
    array of rows, the result and the error (JSON text already) each set in as it is."""
    rows = ",".join(
        f'[{int(o.run_id)},"{o.status}",{_wrapped(o.result)},{_wrapped(o.error)},'
        f"{_seconds(o.ttl)},{_seconds(o.delay)},{'true' if o.postponed else 'false'}]"
        for o in outcomes
    )
    return {"outcomes": f"[{rows}]", "worker_id": worker_id}


def _seconds(value: float) -> str:
    """A float as JSON: ``repr`` would write ``inf`` or ``nan``, which no JSON parser takes,
    failing the whole batch. Both are refused where ttls and delays come in; this makes sure."""
    seconds = float(value)
    if not math.isfinite(seconds):
        seconds = options.MAX_SECONDS if seconds > 0 else 0.0
    return repr(seconds)


def _wrapped(json_text: str | None) -> str:
    return "[]" if json_text is None else f"[{json_text}]"


def _ttl(task: Task[..., Any] | None) -> float:
    return DEFAULT_TTL if task is None else task.ttl


def done(run: ClaimedRun, task: Task[..., Any], result: str) -> Outcome:
    return Outcome(run_id=run.id, status=DONE, result=result, ttl=task.ttl)


def failed(
    run: ClaimedRun, task: Task[..., Any] | None, exc: BaseException, *, retry_delay: float
) -> Outcome:
    """A raising attempt: another one after the task's backoff if it may, else ERROR.

    No other attempt for a task this process does not know, for an exception outside the
    task's ``retry_on``, or once ``retries`` are spent.
    """
    if task is not None and run.attempts < run.max_attempts and _retryable(task, exc):
        wait = (task.backoff or DEFAULT_BACKOFF).seconds(run.attempts, retry_delay)
        return Outcome(
            run_id=run.id,
            status=WAITING,
            error=TaskError.from_exception(exc).to_json(),
            ttl=task.ttl,
            delay=max(0.0, min(float(wait), options.MAX_SECONDS)),
        )
    return given_up(run, task, exc)


def given_up(run: ClaimedRun, task: Task[..., Any] | None, exc: BaseException) -> Outcome:
    """ERROR, whatever attempts are left: for failures another attempt would not mend."""
    error = TaskError.from_exception(exc)
    logger.error(
        "autotask: run %s of %s failed: %s: %.500s",
        run.id,
        run.name,
        error.exception_class_path,
        error.message,
    )
    return Outcome(run_id=run.id, status=ERROR, error=error.to_json(), ttl=_ttl(task))


def _retryable(task: Task[..., Any], exc: BaseException) -> bool:
    return not task.retry_on or isinstance(exc, task.retry_on)


def postponed(run: ClaimedRun, task: Task[..., Any], postpone: Postpone) -> Outcome:
    """The task asked to run later: WAITING again, its attempt not spent, up to max_postpones."""
    if run.postpones >= task.max_postpones:
        exc = TooManyPostpones(
            f"postponed {run.postpones} times already, and max_postpones is "
            f"{task.max_postpones} (a task option); the last said: {postpone}"
        )
        return given_up(run, task, exc)
    try:
        wait = options.seconds(postpone.seconds, "Postpone(seconds)")
    except InvalidTaskOptions as exc:
        return given_up(run, task, exc)
    return Outcome(run_id=run.id, status=WAITING, ttl=task.ttl, delay=wait, postponed=True)


# How long a run of a task this process does not know waits before another claim looks at it.
UNREGISTERED_PAUSE = 10.0


def unregistered(run: ClaimedRun, grace: float) -> Outcome:
    """A run of a task this process does not know: during a rolling deploy (or in a database
    shared with another project) some other process may, so it waits for one that does, its
    attempt not spent, and ends in ERROR only once ``grace`` seconds have passed since it was
    enqueued."""
    if run.age >= grace:
        exc = TaskNotRegistered(
            f"No task named {run.name!r} is registered in this process (nor in any other that "
            f"claimed it in the {grace:g} s since it was enqueued); is its module imported (an "
            "app's tasks.py is found automatically)?"
        )
        return given_up(run, None, exc)
    wait = min(UNREGISTERED_PAUSE, grace - run.age)
    return Outcome(run_id=run.id, status=WAITING, ttl=DEFAULT_TTL, delay=wait, postponed=True)


def cancelled(run: ClaimedRun, task: Task[..., Any]) -> Outcome:
    """A cancel was asked for while it ran, and it has stopped."""
    return Outcome(run_id=run.id, status=CANCELLED, ttl=task.ttl)


def refused(outcome: Outcome, reason: BaseException) -> Outcome:
    """PostgreSQL would not store this outcome: end the run in ERROR saying why, all the same."""
    what = "result" if outcome.status == DONE else "error"
    exc = ResultNotStored(f"PostgreSQL refused the {what}: {reason}")
    error = TaskError.from_exception(exc).to_json()
    return Outcome(run_id=outcome.run_id, status=ERROR, error=error, ttl=outcome.ttl)
