"""The worker: the claim loop. Wake, claim as many due runs as there are free slots, hand them on.

It only orchestrates: SQL comes from ``sql.py``, connections from the pool, wake-ups from the
shared listener, free slots from the executor, which runs what is claimed. It sleeps until a
notification, a freed slot, the earliest future ``run_at``, or the fallback poll.

Claiming ahead: a drain of short runs is bound by round trips (a claim, then the runs, then the
next claim, while the slots wait). So while the evidence says runs are short (the executor's
``runs_are_short``) and the last claim took all it asked for (a backlog), a claim also takes up
to ``concurrency`` runs more than there are free slots. Those are *held*: their rows show no
start (no attempt counted, see sql._RUN_CLAIM_HOLDING_SET), and each starts the moment a slot
frees, with no round trip between. A held run still waiting for a slot after ``AHEAD_HOLD``
(the runs in the slots turned out long) goes back to waiting for any worker, as do those held
at shutdown; one cancelled while held ends CANCELLED without running. A crash leaves held runs
to the rescue, which puts them back uncounted. Limited claims never hold: their slots and
tokens are taken at the claim.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from .. import registry, sql
from ..conf import DEFAULT_TTL
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
# How long a run claimed ahead may wait for a slot before it is given back to the others.
AHEAD_HOLD = 0.25
# How long a given-back run is remembered: a cancel of it heard meanwhile is sent on.
_GIVEN_BACK_MEMORY = 10.0


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
        self._stopping = False
        self._serving: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._held: collections.deque[tuple[ClaimedRun, float]] = collections.deque()
        self._last_claim_full = False  # it took all it asked for: a backlog
        self._hold_timer: asyncio.TimerHandle | None = None
        self._giving_back: dict[int, str] = {}  # held runs in a give-back not answered yet
        self._cancel_when_back: set[int] = set()  # of those, runs a cancel was asked for
        self._given_back: dict[int, tuple[float, str]] = {}  # given back lately: when, task
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._unsubscribe = [
            self._listener.on_wake(self._on_wake),
            self._listener.on_cancel(self._on_cancel),
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
        if self._serving is not None:
            ended, _ = await asyncio.wait({self._serving}, timeout=time_left(deadline))
            if not ended:
                logger.warning("autotask: a claim was still waiting at shutdown; cancelled")
                self._serving.cancel()
                await asyncio.gather(self._serving, return_exceptions=True)
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        held = [run.id for run, _ in self._held]
        self._held.clear()
        if held:  # others may run them while this process finishes its own
            with contextlib.suppress(psycopg.Error, TimeoutError):  # the heartbeat's stop then
                await self._pool.execute_by(
                    deadline, sql.RUN_SET_WAITING_IF_HELD_MANY, [held, self.id]
                )
        if self._background:
            await asyncio.wait(self._background, timeout=time_left(deadline))

    def _on_slot_freed(self) -> None:
        self._start_held()
        # A loop that is not full claimed all that was due and sleeps until the next wake-up:
        # waking it for every finished run would cost an empty claim each time.
        if self._full:
            self._wake.set()

    def _start_held(self) -> None:
        """Held runs into the free slots, the oldest first; one held too long is given back
        instead (its claim is older than any a worker taken for lost could still start)."""
        stale: list[ClaimedRun] = []
        now = time.monotonic()
        while self._held and self._executor.free_slots > 0:
            run, claimed_at = self._held.popleft()
            if now - claimed_at >= AHEAD_HOLD:
                stale.append(run)
            else:
                self._executor.submit(dataclasses.replace(run, attempts=run.attempts + 1))
        if stale:
            self._give_back(stale)

    def _check_held(self) -> None:
        """AHEAD_HOLD after a claim that held runs: those still held go back to waiting."""
        self._hold_timer = None
        now = time.monotonic()
        stale: list[ClaimedRun] = []
        while self._held and now - self._held[0][1] >= AHEAD_HOLD:
            stale.append(self._held.popleft()[0])
        if stale:
            self._give_back(stale)
        if self._held:
            self._arm_hold_timer()

    def _arm_hold_timer(self) -> None:
        if self._hold_timer is None and self._held:
            wait = max(0.0, self._held[0][1] + AHEAD_HOLD - time.monotonic())
            self._hold_timer = asyncio.get_running_loop().call_later(wait, self._check_held)

    def _give_back(self, held: list[ClaimedRun]) -> None:
        self._executor.forget_short_runs()  # or it would claim ahead again at once
        self._last_claim_full = False
        self._giving_back.update((run.id, run.name) for run in held)
        ids = [run.id for run in held]
        giving = asyncio.create_task(self._giving_back_until_answered(ids), name="autotask give")
        self._background.add(giving)
        giving.add_done_callback(self._background.discard)
        self._wake.set()  # nothing was started: the slots want runs from the next claim

    async def _giving_back_until_answered(self, ids: list[int]) -> None:
        """Sent again through connection trouble (it matches only rows this worker still
        holds, so a second time is harmless) until it is answered or the runtime stops: till
        then none of these runs is started here, nor claimed again by this worker (the claim
        skips them). Unanswered at shutdown, the heartbeat's stop puts them back with the
        rest."""
        statement, pause = sql.RUN_SET_WAITING_IF_HELD_MANY, _LOCKED_PAUSE
        names = {run_id: self._giving_back[run_id] for run_id in ids}
        try:
            while True:
                try:
                    await self._pool.fetchall(statement, [ids, self.id])
                    break
                except psycopg.Error as exc:
                    logger.warning("autotask: giving back held runs failed (%s); retrying", exc)
                if self._stopping:
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, _ERROR_PAUSE)
            now = time.monotonic()
            self._given_back = {
                run_id: (at, name)
                for run_id, (at, name) in self._given_back.items()
                if now - at < _GIVEN_BACK_MEMORY
            }
            self._given_back.update((run_id, (now, names[run_id])) for run_id in ids)
            cancel = self._cancel_when_back.intersection(ids)
        finally:
            for run_id in ids:
                self._giving_back.pop(run_id, None)
            self._cancel_when_back.difference_update(ids)
        for run_id in cancel:  # a cancel heard while it went back
            self._cancel_elsewhere(run_id)

    def _cancel_elsewhere(self, run_id: int) -> None:
        """A cancel heard for a run this worker gave back: it may be waiting again, or running
        on another worker that missed the first word (NOTIFY order is not the give-back's); so
        it is cancelled if waiting, else asked again, once."""
        _, name = self._given_back.pop(run_id)
        task = registry.get(name)
        ttl = DEFAULT_TTL if task is None else float(task.ttl)
        cancelling = asyncio.create_task(self._cancel_again(run_id, ttl), name="autotask cancel")
        self._background.add(cancelling)
        cancelling.add_done_callback(self._background.discard)

    async def _cancel_again(self, run_id: int, ttl: float) -> None:
        for attempt in range(5):
            try:
                if not await self._pool.fetchall(sql.RUN_SET_CANCELLED_IF_WAITING, [ttl, run_id]):
                    await self._pool.fetchall(sql.RUN_REQUEST_CANCEL_IF_RUNNING, [run_id])
                return
            except psycopg.Error as exc:
                logger.warning("autotask: cancelling run %s failed (%s); retrying", run_id, exc)
                await asyncio.sleep(_LOCKED_PAUSE * 2**attempt)
        logger.error("autotask: could not cancel run %s, which this worker gave back", run_id)

    def _on_cancel(self, run_id: int | None) -> None:
        """A cancel of a running run: if it is one held here, it ends without running."""
        if run_id is None:
            return
        if run_id in self._giving_back:
            self._cancel_when_back.add(run_id)
            return
        if run_id in self._given_back:
            self._cancel_elsewhere(run_id)
            return
        for entry in self._held:
            if entry[0].id == run_id:
                self._held.remove(entry)
                self._executor.cancel_held(entry[0])
                return

    def _on_wake(self, queue_name: str | None) -> None:
        if queue_name is None or self._queues is None or queue_name in self._queues:
            self._wake.set()

    async def _serve(self) -> None:
        while not self._stopping:
            free = self._executor.free_slots
            ahead = self._ahead()
            self._wake.clear()
            if free + ahead <= 0:
                self._full = True
                await self._wake.wait()
                self._full = False
                continue
            try:
                if self._claim_lost:
                    await self._put_back_what_no_one_runs()
                claimed = await self._claim(free, ahead)
                if claimed:
                    self._locked_pause = _LOCKED_PAUSE
                self._last_claim_full = len(claimed) == free + ahead
                if not self._last_claim_full:  # no backlog: what it knew of runs gets old
                    self._executor.forget_short_runs()
                self._hand_on(claimed)
                if self._last_claim_full:
                    continue
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

    def _ahead(self) -> int:
        """How many runs to claim beyond the free slots (see the module's docstring)."""
        self._limited = self._limited or registry.has_limits()
        if self._limited or not self._last_claim_full or not self._executor.runs_are_short:
            return 0
        return max(0, self._executor.concurrency - len(self._held))

    def _hand_on(self, claimed: list[ClaimedRun]) -> None:
        now = time.monotonic()
        for run in claimed:
            if run.held:
                self._held.append((run, now))
            else:
                self._executor.submit(run)
        if self._held:
            self._start_held()  # slots may have freed while the claim was out
            self._arm_hold_timer()

    async def _put_back_what_no_one_runs(self) -> None:
        statement = sql.RUN_SET_WAITING_IF_RUNNING_ON_WORKER_EXCEPT
        ours = [*self._executor.running_ids, *(run.id for run, _ in self._held), *self._giving_back]
        count = await self._pool.execute(statement, [self.id, ours])
        self._claim_lost = False
        if count:
            logger.warning("autotask: put back %d run(s) a lost claim had taken", count)

    async def _claim(self, free: int, ahead: int = 0) -> list[ClaimedRun]:
        """Up to ``free + ahead`` runs; with the plain claim, those past ``free`` are held."""
        params: dict[str, Any] = {
            "limit": free + ahead,
            "start": free,
            "skip": list(self._giving_back),
            "worker_id": self.id,
            "queues": self._queues,
        }
        statement = claim_statement(any_queue=self._queues is None, limited=self._limited)
        if self._limited:
            rows = await self._pool.fetchall(statement, params)
        else:
            rows = await self._pool.fetchall_under(sql.RUN_CLAIM_SETTINGS, statement, params)
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
