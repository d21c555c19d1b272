"""The pruner (a leader service): finished runs past their ``expires_at`` are deleted.

Every ``AUTOTASK_CLEAN_INTERVALL`` seconds, in batches, so that no single DELETE holds locks on
(or writes WAL for) a million rows at once, and claims go on between batches.
"""

from __future__ import annotations

import logging

from .. import sql
from .database import Pool
from .service import Periodic

logger = logging.getLogger("autotask")

BATCH = 1000


class Pruner(Periodic):
    def __init__(self, pool: Pool, *, interval: float, batch: int = BATCH) -> None:
        super().__init__()
        self._pool = pool
        self._interval = interval
        self._batch = batch

    async def step(self) -> float:
        total = 0
        while not self._stopping.is_set():
            deleted = await self._pool.execute(sql.RUN_DELETE_EXPIRED_BATCH, [self._batch])
            total += deleted
            if deleted < self._batch:
                break
        if total:
            logger.info("autotask: pruned %d expired run(s)", total)
        return self._interval
