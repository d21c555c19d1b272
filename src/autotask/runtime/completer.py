"""The completer: writes the outcomes of runs, many in one guarded statement.

Outcomes that arrive while a write is in flight go out together in the next one (group commit:
one statement, one commit for the lot), whatever mix of DONE, ERROR and retries they are. Each
write names the state it leaves (running, on this worker), so a run rescued from this worker is
never overwritten by it. Connection trouble is retried until the runtime stops: a finish is
never given up while the database may come back. A batch PostgreSQL refuses for its data is
split until the culprit stands alone and ends in ERROR.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Sequence

import psycopg

from .. import sql
from . import runs
from .database import Pool, is_transient
from .runs import Outcome
from .service import time_left

logger = logging.getLogger("autotask")

# A result this long (characters of JSON) is written in a statement of its own.
_LARGE = 1_000_000

# Pauses between retries of a write through an outage: 1, 2, 3... seconds, then 10 at most.
_RETRY_PAUSE = 1.0
_MAX_RETRY_PAUSE = 10.0


class Completer:
    def __init__(self, pool: Pool, worker_id: uuid.UUID) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._pending: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._writing: list[tuple[Outcome, asyncio.Future[None]]] = []  # in the write in flight
        self._writer: asyncio.Task[None] | None = None
        self._alone: set[asyncio.Task[None]] = set()  # writes of large results
        self._deadline: float | None = None  # set at stop: retries end then
        self.written = 0  # outcomes handed in and written (or given up on), since started

    async def start(self) -> None:
        pass

    async def stop(self, deadline: float) -> None:
        """Write everything already handed in: a finished run must not be requeued and rerun.

        Through an outage that outlasts the deadline, what is still unwritten stays 'running'
        (the heartbeat's stop cannot put it back either, then) and is rescued later.
        """
        self._deadline = deadline
        writes = set(self._alone) | ({self._writer} if self._writer is not None else set())
        if not writes:
            return
        _, late = await asyncio.wait(writes, timeout=time_left(deadline))
        if late:  # waiting on a lock, say: cancelled, so they never land
            unwritten = [o.run_id for o, _ in self._writing + self._pending]
            for write in late:
                write.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            logger.error(
                "autotask: gave up finishing runs %s at shutdown (the write waited too long); "
                "they stay 'running'",
                unwritten or "of large results",
            )

    async def finish(self, outcome: Outcome) -> None:
        """Hand in an outcome; returns once it is written (or given up on, and logged)."""
        if len(outcome.result or "") > _LARGE:
            # Seconds for PostgreSQL to take in: written on its own, beside the batches,
            # so that it holds up no other run's finish.
            alone = asyncio.create_task(self._write_alone(outcome), name="autotask completer")
            self._alone.add(alone)
            alone.add_done_callback(self._alone.discard)
            await asyncio.shield(alone)  # a cancelled run task does not cut its write off
            return
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="autotask completer")
        await written

    async def _write_pending(self) -> None:
        while self._pending:
            self._writing, self._pending = self._pending, []
            try:
                await self._write([outcome for outcome, _ in self._writing])
            except Exception:
                ids = [o.run_id for o, _ in self._writing]
                logger.exception("autotask: could not finish runs %s", ids)
            finally:
                self.written += len(self._writing)
                for _, written in self._writing:
                    if not written.done():
                        written.set_result(None)
                self._writing = []

    async def _write_alone(self, outcome: Outcome) -> None:
        try:
            await self._write([outcome])
        except Exception:
            logger.exception("autotask: could not finish run %s", outcome.run_id)
        finally:
            self.written += 1

    async def _write(self, outcomes: Sequence[Outcome], *, last_resort: bool = False) -> None:
        try:
            ours = await self._retrying(outcomes)
        except psycopg.Error as exc:
            # Refused for its data (PostgreSQL is pickier than json.dumps): find the culprit
            # alone, so the other runs of the batch are not held back by it.
            if len(outcomes) > 1:
                for outcome in outcomes:
                    await self._write([outcome])
            elif last_resort:
                logger.error("autotask: could not end run %s (%s)", outcomes[0].run_id, exc)
            else:
                await self._write([runs.refused(outcomes[0], exc)], last_resort=True)
            return
        if ours is None:  # gave up, and said so
            return
        for run_id in {o.run_id for o in outcomes} - ours:
            logger.warning("autotask: run %s was no longer ours to finish", run_id)

    async def _retrying(self, outcomes: Sequence[Outcome]) -> set[int] | None:
        """The guarded write, retried through outages for as long as this runtime runs (the
        run holds its slot meanwhile); None if the shutdown's deadline passed first, and then
        the run stays 'running' for the rescue.

        Only connection trouble is retried: an error about the data would fail every time.
        """
        params = runs.write_params(outcomes, self._worker_id)
        what = [o.run_id for o in outcomes]
        loop = asyncio.get_running_loop()
        for attempt in itertools.count(1):
            try:
                rows = await self._pool.fetchall(sql.RUN_SET_STATUS_IF_RUNNING_MANY, params)
                return {row[0] for row in rows}
            except psycopg.Error as exc:
                if not is_transient(exc):
                    raise
                if attempt == 1:  # once per outage, not once per retry
                    logger.warning("autotask: could not finish runs %s (%s); retrying", what, exc)
            pause = min(_RETRY_PAUSE * attempt, _MAX_RETRY_PAUSE)
            if self._deadline is not None and loop.time() + pause > self._deadline:
                break
            await asyncio.sleep(pause)
        logger.error("autotask: gave up finishing runs %s at shutdown; they stay 'running'", what)
        return None
