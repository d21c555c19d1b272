"""A claimed run, and what became of it: the values passed between the runtime's services.

The claim loop makes a ``ClaimedRun``, the executor turns it into an ``Outcome``, the completer
writes outcomes. Deciding the outcome of a failure (try again, or give up) happens here, in
one place, so every way a run can end is visible side by side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..exceptions import ResultNotStored
from ..status import DONE, ERROR, WAITING, Status, TaskError

logger = logging.getLogger("autotask")


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A row the worker now owns (one ``RETURNING`` row of the claim)."""

    id: int
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one run ends, or that it waits for another attempt: a row of the batched write."""

    run_id: int
    status: Status
    ttl: float
    result: str | None = None  # JSON text, for DONE
    error: str | None = None  # TaskError JSON, for ERROR and for a retry
    delay: float = 0.0  # seconds until a retry is due


def done(run: ClaimedRun, result: str, ttl: float) -> Outcome:
    return Outcome(run_id=run.id, status=DONE, result=result, ttl=ttl)


def failed(
    run: ClaimedRun, exc: BaseException, *, ttl: float, retry_delay: float | None
) -> Outcome:
    """A raising attempt: another one after ``retry_delay`` if any are left, else ERROR.

    ``retry_delay`` is None when the run may not be tried again whatever its attempts (its task
    is not registered here).
    """
    error = TaskError.from_exception(exc).to_json()
    if retry_delay is not None and run.attempts < run.max_attempts:
        return Outcome(run_id=run.id, status=WAITING, error=error, ttl=ttl, delay=retry_delay)
    logger.error("autotask: run %s of %s failed: %r", run.id, run.name, exc)
    return Outcome(run_id=run.id, status=ERROR, error=error, ttl=ttl)


def refused(outcome: Outcome, reason: BaseException) -> Outcome:
    """PostgreSQL would not store this outcome: end the run in ERROR saying why, all the same."""
    what = "result" if outcome.status == DONE else "error"
    exc = ResultNotStored(f"PostgreSQL refused the {what}: {reason}")
    error = TaskError.from_exception(exc).to_json()
    return Outcome(run_id=outcome.run_id, status=ERROR, error=error, ttl=outcome.ttl)
