"""``autotask.current()``: what a running task can ask about its own run.

The executor sets it around every call (in the task's thread for a plain function, in its
asyncio task for an ``async def``). ``should_stop()`` is how a sync task learns that it should
end early: Python cannot stop a thread from outside, so a run that timed out or was cancelled
only sets this flag, and the task checks it where it can stop safely.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunContext:
    run_id: int
    name: str
    attempt: int  # 1 for the first attempt
    _stop: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def should_stop(self) -> bool:
        """True once the run timed out, was cancelled, or the runtime is shutting down."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()


_current: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "autotask_current_run", default=None
)


def current() -> RunContext:
    """The run this code is running for; RuntimeError outside a task run by the runtime."""
    context = _current.get()
    if context is None:
        raise RuntimeError(
            "autotask.current() is only available inside a task run by autotask's runtime "
            "(not in task.call() or code outside a task)."
        )
    return context


def enter(context: RunContext) -> contextvars.Token[RunContext | None]:
    return _current.set(context)


def leave(token: contextvars.Token[RunContext | None]) -> None:
    _current.reset(token)
