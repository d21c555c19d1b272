"""What the runtime asks of each of its parts: ``start()``, and ``stop()`` by a deadline.

The runtime starts its services in order and stops them in reverse, so each may rely on those
started before it for as long as it runs (the claim loop on the executor, the executor on the
completer, everything on the pool). ``deadline`` is a ``loop.time()``: how long the whole
shutdown may take, for a service with something to wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

logger = logging.getLogger("autotask")

# What a step of a stop gets at least, even past the deadline: writing what has finished matters
# more than the deadline, but waiting without bound (on a table a migration has locked, on a
# server that went away) does not.
STOP_GRACE = 2.0


def time_left(deadline: float, *, least: float = STOP_GRACE) -> float:
    """Seconds until ``deadline`` (a ``loop.time()``), but never less than ``least``."""
    return max(deadline - asyncio.get_running_loop().time(), least)


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self, deadline: float) -> None: ...


async def start_all(services: Sequence[Service]) -> None:
    """Start each in order; if one fails, stop those already started and raise its error."""
    started: list[Service] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
    except BaseException:
        await stop_all(started, deadline=0.0)
        raise


async def stop_all(services: Sequence[Service], deadline: float) -> None:
    """Stop each in reverse order, every one even if another fails; then raise the first error."""
    first: BaseException | None = None
    for service in reversed(services):
        try:
            await service.stop(deadline)
        except Exception as exc:
            logger.exception("autotask: %s failed to stop", type(service).__name__)
            first = first or exc
    if first is not None:
        raise first


class Periodic:
    """A service that calls ``step()`` until stopped; ``step`` returns seconds until the next.

    Stopping waits for a step in progress (until the deadline), instead of cancelling it in the
    middle of a statement; a step that raises is logged and tried again after ``error_pause``.
    """

    error_pause = 1.0
    first_pause = 0.0  # seconds before the first step

    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._looping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._looping = asyncio.create_task(self._loop(), name=f"autotask {type(self).__name__}")

    async def stop(self, deadline: float) -> None:
        self._stopping.set()
        if self._looping is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._looping), time_left(deadline))
        except TimeoutError:
            self._looping.cancel()
            await asyncio.gather(self._looping, return_exceptions=True)

    async def step(self) -> float:
        raise NotImplementedError

    async def _loop(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.first_pause)
        while not self._stopping.is_set():
            try:
                pause = await self.step()
            except Exception:
                logger.exception("autotask: %s failed; trying again", type(self).__name__)
                pause = self.error_pause
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(pause, 0.0))
