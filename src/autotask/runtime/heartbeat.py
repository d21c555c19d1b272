"""The heartbeat: this runtime's row in ``autotask_worker``, from joining to leaving.

Starting inserts the row (the first service of a worker: no run is claimed under an id nobody
can see); running refreshes ``heartbeat_at`` every ``AUTOTASK_WORKER_MONITOR_INTERVALL``
seconds, which is how the others know this process is alive; stopping (the last) puts back to
waiting whatever this worker still holds and deletes the row, trying again through connection
trouble until the shutdown's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid

import psycopg
import psycopg.errors

from .. import sql
from ..exceptions import NotMigrated
from .database import Pool

logger = logging.getLogger("autotask")


class Heartbeat:
    def __init__(
        self,
        pool: Pool,
        worker_id: uuid.UUID,
        *,
        queues: tuple[str, ...] | None,
        concurrency: int,
        interval: float,
    ) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._queues = queues
        self._concurrency = concurrency
        self._interval = interval
        self._beating: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._join()
        except psycopg.errors.UndefinedTable as exc:
            raise NotMigrated() from exc
        self._beating = asyncio.create_task(self._beat(), name="autotask heartbeat")

    async def stop(self, deadline: float) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        try:
            requeued = await self._pool.execute_by(
                deadline, sql.RUN_SET_WAITING_IF_RUNNING_ON_WORKER, [self._worker_id]
            )
            if requeued:
                logger.warning("autotask: put %d unfinished run(s) back to waiting", requeued)
        except (psycopg.Error, TimeoutError) as exc:
            logger.error(
                "autotask: could not put back the runs of worker %s at shutdown (%r); the "
                "leader rescues them once this worker is missed",
                self._worker_id,
                exc,
            )
        finally:
            await self._pool.execute_by(deadline, sql.WORKER_DELETE, [self._worker_id])

    async def _join(self) -> None:
        queues = json.dumps(list(self._queues) if self._queues is not None else None)
        params = [self._worker_id, socket.gethostname(), os.getpid(), queues, self._concurrency]
        await self._pool.execute(sql.WORKER_INSERT, params)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if not await self._pool.execute(sql.WORKER_HEARTBEAT, [self._worker_id]):
                    # Taken for lost (a heartbeat came too late) and rescued: its runs went to
                    # others; this worker comes back, or everything it claims would be rescued.
                    logger.warning(
                        "autotask: worker %s was taken for lost; rejoining", self._worker_id
                    )
                    await self._join()
            except psycopg.Error as exc:
                logger.warning("autotask: heartbeat failed (%s)", exc)
