"""The worker: the claim loop. Wake, claim as many due runs as there are free slots, hand them on.

It only orchestrates: SQL comes from ``sql.py``, connections from the pool, wake-ups from the
shared listener, free slots from the executor, which runs what is claimed. It sleeps until a
notification, a freed slot, the earliest future ``run_at``, or the fallback poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from .. import registry, sql
from .database import Pool
from .executor import Executor
from .listener import Listener
from .runs import ClaimedRun
from .service import time_left

logger = logging.getLogger("autotask")

# Pause after an error in the claim loop, so an outage is not a busy loop.
_ERROR_PAUSE = 1.0
# Wait when something is due but locked by another transaction: it may change hands soon, or be
# held for long (a migration, a transaction left open), so each time in a row twice as long.
_LOCKED_PAUSE = 0.05
# How long a worker whose database had no claim function (new code, migration 0015 not yet
# applied: a deploy in progress) claims without it before it looks again.
_CLAIM_FUNCTION_RECHECK = 60.0


class Worker:
    """Claims due runs while started; one per runtime, identified by ``id`` in autotask_worker."""

    def __init__(
        self,
        pool: Pool,
        listener: Listener,
        executor: Executor,
        worker_id: uuid.UUID,
        *,
        queues: tuple[str, ...] | None,
        poll_interval: float,
    ) -> None:
        self.id = worker_id
        self._pool = pool
        self._listener = listener
        self._executor = executor
        self._queues = list(queues) if queues is not None else None
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._full = False  # waiting for a free slot: only then does a freed slot wake it
        self._locked_pause = _LOCKED_PAUSE
        self._claim_lost = False  # a claim failed: it may have committed all the same
        # Claim with the limits' part once a task here has a limit, or limits are in use in the
        # database (checked when idle); for good, either way.
        self._limited = False
        self._slots_checked_at = -math.inf  # when the table was last asked (once per poll)
        # The plain claim goes through its function (migration 0015); until this moment, when
        # the database had none, as the statement itself.
        self._no_function_until = -math.inf
        self._stopping = False
        self._serving: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    async def start(self) -> None:
        self._unsubscribe = [
            self._listener.on_wake(self._on_wake),
            self._executor.on_slot_freed(self._on_slot_freed),
        ]
        self._serving = asyncio.create_task(self._serve(), name="autotask worker")
        logger.info(
            "autotask: worker %s started: %d at once, serving %s",
            self.id,
            self._executor.concurrency,
            ", ".join(self._queues) if self._queues else "every queue",
        )

    async def stop(self, deadline: float) -> None:
        """Stop claiming. An in-flight claim is waited for (what it claimed is started), but
        not without bound: one waiting on a locked table is cancelled. If it committed all the
        same, the heartbeat's stop puts back what it took."""
        self._stopping = True
        self._wake.set()
        logger.info("autotask: worker %s stopping", self.id)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._serving is None:
            return
        ended, _ = await asyncio.wait({self._serving}, timeout=time_left(deadline))
        if not ended:
            logger.warning("autotask: a claim was still waiting at shutdown; cancelled")
            self._serving.cancel()
            await asyncio.gather(self._serving, return_exceptions=True)

    def _on_slot_freed(self) -> None:
        # A loop that is not full claimed all that was due and sleeps until the next wake-up:
        # waking it for every finished run would cost an empty claim each time.
        if self._full:
            self._wake.set()

    def _on_wake(self, queue_name: str | None) -> None:
        if queue_name is None or self._queues is None or queue_name in self._queues:
            self._wake.set()

    async def _serve(self) -> None:
        while not self._stopping:
            free = self._executor.free_slots
            self._wake.clear()
            if free <= 0:
                self._full = True
                await self._wake.wait()
                self._full = False
                continue
            try:
                if self._claim_lost:
                    await self._put_back_what_no_one_runs()
                claimed = await self._claim(free)
                if claimed:
                    self._locked_pause = _LOCKED_PAUSE
                for run in claimed:
                    self._executor.submit(run)
                if len(claimed) == free:
                    continue
                if claimed:
                    # Let the runs begin before the look at what is due next: its statement is
                    # built and sent before it first yields, time a run would wait to start.
                    await asyncio.sleep(0)
                pause = await self._seconds_until_due()
            except psycopg.Error as exc:
                logger.warning("autotask: claim failed (%s); retrying", exc)
                self._claim_lost = True
                pause = _ERROR_PAUSE
            except Exception:
                # Never let the claim loop die quietly while the heartbeat says all is well.
                logger.exception("autotask: unexpected error in the claim loop; retrying")
                pause = _ERROR_PAUSE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _put_back_what_no_one_runs(self) -> None:
        statement = sql.RUN_SET_WAITING_IF_RUNNING_ON_WORKER_EXCEPT
        count = await self._pool.execute(statement, [self.id, self._executor.running_ids])
        self._claim_lost = False
        if count:
            logger.warning("autotask: put back %d run(s) a lost claim had taken", count)

    async def _claim(self, limit: int) -> list[ClaimedRun]:
        params: dict[str, Any] = {"limit": limit, "worker_id": self.id, "queues": self._queues}
        self._limited = self._limited or registry.has_limits()
        statement = claim_statement(any_queue=self._queues is None, limited=self._limited)
        if self._limited:
            rows = await self._pool.fetchall(statement, params)
        elif time.monotonic() < self._no_function_until:
            rows = await self._pool.fetchall_under(sql.RUN_CLAIM_SETTINGS, statement, params)
        else:
            try:
                rows = await self._pool.fetchall(sql.RUN_CLAIM_MANY_BY_FUNCTION, params)
            except psycopg.errors.UndefinedFunction:
                if self._no_function_until == -math.inf:
                    logger.warning(
                        "autotask: the database has no claim function (migration 0015 is not "
                        "applied): worker %s claims without it, about a third slower",
                        self.id,
                    )
                self._no_function_until = time.monotonic() + _CLAIM_FUNCTION_RECHECK
                rows = await self._pool.fetchall_under(sql.RUN_CLAIM_SETTINGS, statement, params)
            else:
                if self._no_function_until != -math.inf:
                    self._no_function_until = -math.inf
                    logger.info(
                        "autotask: worker %s claims through the claim function now", self.id
                    )
        return [ClaimedRun(*row) for row in rows]

    async def _seconds_until_due(self) -> float:
        """The fallback poll, cut short by the earliest waiting run's ``run_at``."""
        if not self._limited and time.monotonic() - self._slots_checked_at >= self._poll_interval:
            self._slots_checked_at = time.monotonic()
            row = await self._pool.fetchone(sql.SLOT_EXISTS, [])
            if row is not None and row[0]:
                self._limited = True
                logger.info("autotask: limits are in use: worker %s claims with them", self.id)
                return 0.0
        if self._limited:
            statement = sql.RUN_SECONDS_UNTIL_DUE_LIMITED_IN_QUEUES
            if self._queues is None:
                statement = sql.RUN_SECONDS_UNTIL_DUE_LIMITED_ANY_QUEUE
        elif self._queues is None:
            statement = sql.RUN_SECONDS_UNTIL_DUE_ANY_QUEUE
        else:
            statement = sql.RUN_SECONDS_UNTIL_DUE_IN_QUEUES
        row = await self._pool.fetchone(statement, {"queues": self._queues})
        seconds = None if row is None or row[0] is None else float(row[0])
        if seconds is None:
            return self._poll_interval
        if seconds <= 0:  # due, yet the claim got nothing: locked by someone else
            pause, self._locked_pause = self._locked_pause, self._locked_pause * 2
            return min(pause, self._poll_interval)
        self._locked_pause = _LOCKED_PAUSE
        return min(seconds, self._poll_interval)


def claim_statement(*, any_queue: bool, limited: bool) -> str:
    """The limited claim, or the plain one, which costs 40 % less (see sql.py) and leaves
    limited runs alone."""
    if limited:
        return (
            sql.RUN_CLAIM_MANY_LIMITED_ANY_QUEUE
            if any_queue
            else sql.RUN_CLAIM_MANY_LIMITED_IN_QUEUES
        )
    return sql.RUN_CLAIM_MANY_ANY_QUEUE if any_queue else sql.RUN_CLAIM_MANY_IN_QUEUES
