"""What ``task.defer(...)`` returns: the enqueueing coroutine, with a better word when it is
never awaited.

``defer()`` without ``await`` enqueues nothing, and Python's own warning ("coroutine ... was
never awaited") names neither the task nor the fix. This wrapper is a coroutine in every way
that matters (``await`` it, ``asyncio.create_task()`` or ``gather()`` it) and, if it is dropped
unawaited, says which task's run was not enqueued and how to write the call.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class Deferred(Coroutine[Any, Any, T]):
    __slots__ = ("_call", "_coroutine", "_started")

    def __init__(self, coroutine: Coroutine[Any, Any, T], call: str) -> None:
        self._coroutine = coroutine
        self._call = call  # how the user wrote it, e.g. "send_receipt.defer"
        self._started = False

    def send(self, value: Any) -> Any:
        self._started = True
        return self._coroutine.send(value)

    def throw(self, *args: Any) -> Any:
        self._started = True
        return self._coroutine.throw(*args)

    def close(self) -> None:
        self._started = True
        self._coroutine.close()

    def __await__(self) -> Generator[Any, None, T]:
        self._started = True
        return self._coroutine.__await__()

    def __del__(self) -> None:
        if not self._started:
            self._coroutine.close()  # instead of Python's vaguer warning
            warnings.warn(
                f"{self._call}(...) was never awaited, so no run was enqueued: write "
                f"`await {self._call}(...)` in async code (in sync code, call the task itself).",
                RuntimeWarning,
                stacklevel=2,
            )


def refuse_in_event_loop(call: str, instead: str) -> None:
    """A sync enqueue blocks on Django's connection: inside a running event loop it would stall
    every coroutine of that loop, so it is refused, naming the async spelling to use."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{call} was called inside a running event loop, where it would block. "
        f"Use `{instead}` in async code."
    )
