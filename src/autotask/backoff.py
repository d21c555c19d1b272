"""How long a failed run waits before its next attempt: the strategies a task can choose.

Each is a small frozen object with ``seconds(attempt, retry_delay)``: the wait after the
``attempt``-th attempt failed (1 for the first), given ``AUTOTASK_RETRY_DELAY`` for those that
start from it. ``@task(retries=N)`` uses ``exponential()`` unless told otherwise; the original
autotask's ``delayed_task`` keeps its fixed ``AUTOTASK_RETRY_DELAY`` (``constant()``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

from .exceptions import InvalidTaskOptions


class Backoff(Protocol):
    def seconds(self, attempt: int, retry_delay: float) -> float: ...


def _check(value: float | None, field: str, *, low: float = 0.0) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidTaskOptions(f"{field} must be a number, not {value!r}.")
    if value < low:
        raise InvalidTaskOptions(f"{field} must be at least {low:g}, not {value!r}.")


@dataclass(frozen=True)
class constant:
    """The same wait every time: ``seconds``, or ``AUTOTASK_RETRY_DELAY`` when None."""

    wait: float | None = None

    def __post_init__(self) -> None:
        _check(self.wait, "constant(seconds)")

    def seconds(self, attempt: int, retry_delay: float) -> float:
        return retry_delay if self.wait is None else float(self.wait)


@dataclass(frozen=True)
class linear:
    """``step`` seconds more after each failed attempt: step, 2 * step, 3 * step..."""

    step: float

    def __post_init__(self) -> None:
        _check(self.step, "linear(seconds)")

    def seconds(self, attempt: int, retry_delay: float) -> float:
        return float(self.step) * attempt


@dataclass(frozen=True)
class exponential:
    """``first`` (default ``AUTOTASK_RETRY_DELAY``), then ``base`` times longer each time, up
    to ``cap``; with ``jitter`` each wait is drawn between half and all of it, so that runs
    that failed together do not all come back together."""

    base: float = 2.0
    cap: float = 3600.0
    jitter: bool = True
    first: float | None = None

    def __post_init__(self) -> None:
        _check(self.base, "exponential(base)", low=1.0)
        _check(self.cap, "exponential(cap)")
        _check(self.first, "exponential(first)")

    def seconds(self, attempt: int, retry_delay: float) -> float:
        first = retry_delay if self.first is None else float(self.first)
        growth = self.base ** min(attempt - 1, 1000)  # no overflow however many attempts
        wait = min(float(self.cap), first * growth)
        return random.uniform(wait / 2, wait) if self.jitter else wait


@dataclass(frozen=True)
class background_tasks:
    """django-background-tasks' wait: ``attempts ** 4 + 5`` seconds (6, 21, 86, 261...)."""

    def seconds(self, attempt: int, retry_delay: float) -> float:
        return float(min(attempt, 1000) ** 4 + 5)
