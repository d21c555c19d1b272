"""The rescuer (a leader service): runs of workers that stopped heartbeating run again.

A worker whose heartbeat is older than ``AUTOTASK_WORKER_TIMEOUT`` is taken for dead: its row
is deleted, and every run still ``running`` without a live worker row goes back to waiting (the
lost attempt counts) or, with no attempts left, ends in ERROR with a ``WorkerLost`` error. If
that worker was only cut off and comes back, its guarded writes find the runs no longer its own,
and its heartbeat puts its row back.
"""

from __future__ import annotations

import logging

from .. import sql
from ..conf import DEFAULT_TTL
from .database import Pool
from .service import Periodic

logger = logging.getLogger("autotask")


class Rescuer(Periodic):
    def __init__(self, pool: Pool, *, timeout: float, interval: float) -> None:
        super().__init__()
        self._pool = pool
        self._timeout = timeout
        self._interval = interval

    async def step(self) -> float:
        for worker_id, host, pid in await self._pool.fetchall(
            sql.WORKER_DELETE_STALE, [self._timeout]
        ):
            logger.warning(
                "autotask: worker %s (%s, pid %s) sent no heartbeat for %g s: taken for lost",
                worker_id,
                host,
                pid,
                self._timeout,
            )
        rescued = await self._pool.fetchall(
            sql.RUN_RESCUE_IF_WORKER_GONE, {"timeout": f"{self._timeout:g}", "ttl": DEFAULT_TTL}
        )
        if rescued:
            again = sum(1 for _, status in rescued if status == "waiting")
            logger.warning(
                "autotask: rescued %d run(s) of lost workers: %d waiting again, %d ended in error",
                len(rescued),
                again,
                len(rescued) - again,
            )
        return self._interval
