"""The rescuer (a leader service): runs of workers that stopped heartbeating run again.

A worker whose heartbeat is older than ``AUTOTASK_WORKER_TIMEOUT`` is taken for dead: its row
is deleted, and every run still ``running`` without a live worker row goes back to waiting (the
lost attempt counts) or, with no attempts left, ends in ERROR with a ``WorkerLost`` error. If
that worker was only cut off and comes back, its guarded writes find the runs no longer its own,
and its heartbeat puts its row back. A rescued run's concurrency slot is freed by the trigger
that frees every slot; the rescuer also frees slots left held by runs that are not running,
and writes the slots of waiting runs whose key has none (a truncated or restored table).

Three guards keep it from taking runs away from workers that are alive:

- a new leader waits one whole timeout before its first rescue: after a database outage every
  heartbeat is stale, and the workers need a moment to send the next one;
- it rescues nothing while its own heartbeat is stale (it is the one cut off, then);
- it rescues only runs started longer ago than the timeout, so a worker taken for lost that
  claims before it has rejoined does not lose what it just started.
"""

from __future__ import annotations

import logging
import uuid

from .. import registry, sql
from ..conf import DEFAULT_TTL
from .database import Pool
from .service import Periodic

logger = logging.getLogger("autotask")


class Rescuer(Periodic):
    def __init__(
        self, pool: Pool, worker_id: uuid.UUID, *, timeout: float, interval: float
    ) -> None:
        super().__init__()
        self._pool = pool
        self._worker_id = worker_id
        self._timeout = timeout
        self._interval = interval
        self.first_pause = timeout

    async def step(self) -> float:
        row = await self._pool.fetchone(sql.WORKER_HEARTBEAT_AGE, [self._worker_id])
        if row is None or row[0] is None or row[0] > self._timeout / 2:
            logger.warning("autotask: this leader's own heartbeat is late; no rescue this time")
            return self._interval
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
        ttls = {task.name: float(task.ttl) for task in registry.tasks()}
        rescued = await self._pool.fetchall(
            sql.RUN_RESCUE_IF_WORKER_GONE,
            {
                "timeout": self._timeout,
                "names": list(ttls),
                "ttls": list(ttls.values()),
                "ttl": DEFAULT_TTL,
            },
        )
        if rescued:
            again = sum(1 for _, status in rescued if status == "waiting")
            logger.warning(
                "autotask: rescued %d run(s) of lost workers: %d waiting again, %d ended in error",
                len(rescued),
                again,
                len(rescued) - again,
            )
        restored = await self._pool.fetchall(sql.SLOT_INSERT_MISSING, [])
        if restored:
            logger.warning(
                "autotask: wrote the missing slots of %s, whose runs were waiting for them",
                ", ".join(sorted({key for (key,) in restored})),
            )
        released = await self._pool.fetchall(sql.SLOT_RELEASE_IF_RUN_NOT_RUNNING, [self._timeout])
        if released:
            logger.warning(
                "autotask: freed %d concurrency slot(s) held by runs no longer running (of %s)",
                len(released),
                ", ".join(sorted({key for (key,) in released})),
            )
        return self._interval
