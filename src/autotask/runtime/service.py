"""What the runtime asks of each of its parts: ``start()``, and ``stop()`` by a deadline.

The runtime starts its services in order and stops them in reverse, so each may rely on those
started before it for as long as it runs (the claim loop on the executor, the executor on the
completer, everything on the pool). ``deadline`` is a ``loop.time()``: how long the whole
shutdown may take, for a service with something to wait for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

logger = logging.getLogger("autotask")


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
