"""The elector: one runtime among all of them is the leader, and runs the leader's services.

Leadership is a session-level ``pg_try_advisory_lock`` held on a connection of the elector's own:
never a pooled one, whose session the lock would stick to for whoever borrows it next. When the
leader's process dies, PostgreSQL ends its session and the lock with it; the next runtime to
try (every ``_RETRY`` seconds) takes over. A leader checks its connection as often, and on
losing it stops leading at once; another may lead by then, for a moment, which is harmless:
leadership is only an optimisation (every tick is enqueued once by its unique key, and a rescue
or a pruning done twice changes nothing). When the leader's host itself vanishes (power, a
network cut), its session lingers on the server until TCP keepalives end it, about 25 s.

The leader's services start when leadership is won and stop, in reverse, before the lock is
released on stop, so a successor never overlaps a leader that is still winding down here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence

import psycopg

from .. import sql
from .database import Pool, dedicated_kwargs
from .service import Service, start_all, stop_all, time_left

logger = logging.getLogger("autotask")

# Seconds between attempts to become the leader, and between checks of a leader's connection.
_RETRY = 2.0


class Elector:
    def __init__(
        self,
        pool: Pool,
        worker_id: uuid.UUID,
        leader_services: Callable[[], Sequence[Service]],
        *,
        retry: float = _RETRY,
    ) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._leader_services = leader_services
        self._retry = retry
        self._stopping = asyncio.Event()
        self._campaign: asyncio.Task[None] | None = None
        self._deadline = 0.0
        self.is_leader = False

    async def start(self) -> None:
        self._campaign = asyncio.create_task(self._run(), name="autotask elector")

    async def stop(self, deadline: float) -> None:
        """Stop leading in order: the leader's services first, then the lock is let go."""
        self._deadline = deadline
        self._stopping.set()
        if self._campaign is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._campaign), time_left(deadline))
        except TimeoutError:
            self._campaign.cancel()
            await asyncio.gather(self._campaign, return_exceptions=True)

    async def _run(self) -> None:
        failing = False  # through an outage it says so once, not every few seconds
        while not self._stopping.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(**dedicated_kwargs("leader"))
                async with conn:
                    failing = False
                    with contextlib.suppress(psycopg.Error):  # a pooler may refuse them
                        await conn.execute(sql.SESSION_KEEPALIVES)
                    await self._campaign_on(conn)
            except (psycopg.Error, TimeoutError) as exc:
                if failing:
                    logger.debug("autotask: leader election connection failed (%r)", exc)
                else:
                    logger.warning(
                        "autotask: leader election connection failed (%r); trying again every "
                        "%.0f s",
                        exc,
                        self._retry,
                    )
                failing = True
            except Exception:
                logger.exception("autotask: leader election failed")
            await self._pause()

    async def _campaign_on(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        while not self._stopping.is_set():
            row = await (await conn.execute(sql.LEADER_TRY_LOCK)).fetchone()
            if row is not None and row[0]:
                await self._lead(conn)
                return
            await self._pause()

    async def _lead(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        services = list(self._leader_services())
        await start_all(services)
        self.is_leader = True
        logger.info("autotask: this process (worker %s) is the leader", self._worker_id)
        with contextlib.suppress(psycopg.Error):
            await self._pool.execute(sql.WORKER_SET_LEADER, [True, self._worker_id])
        try:
            while not self._stopping.is_set():
                await self._pause()
                # Bounded: a leader cut off from the server must stop leading, not hang here.
                await asyncio.wait_for(conn.execute(sql.LEADER_ALIVE), self._retry * 2)
        finally:
            self.is_leader = False
            loop = asyncio.get_running_loop()
            # Stopping: the shutdown's deadline; the connection lost: a moment, as a successor
            # may be leading already.
            deadline = self._deadline if self._stopping.is_set() else loop.time() + self._retry
            await stop_all(services, deadline)
            if not conn.closed:
                with contextlib.suppress(psycopg.Error, TimeoutError):
                    await asyncio.wait_for(conn.execute(sql.LEADER_UNLOCK), self._retry)
            with contextlib.suppress(psycopg.Error, TimeoutError):
                await asyncio.wait_for(
                    self._pool.execute(sql.WORKER_SET_LEADER, [False, self._worker_id]),
                    self._retry,
                )
            logger.info("autotask: this process is no longer the leader")

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._retry)
