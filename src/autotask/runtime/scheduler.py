"""Schedules: every runtime records its periodic and cron tasks; the leader enqueues their ticks.

``ScheduleSync`` (a worker service, in every runtime) writes this process's schedules into
``autotask_schedule`` when it starts: a new one gets its first run time, a changed spec starts
its clock again, an unchanged one keeps its next run, so a restart resets nothing.

``Scheduler`` (a leader service) enqueues each due tick as a run, in one statement that moves
the schedule on only from the tick it saw and inserts the run keyed by that tick: a tick is
enqueued once, however many leaders overlap for a moment. Ticks missed while nothing ran are
coalesced: one run, and the schedule moves on to the first time after now. A tick whose run
fails does not stop the next.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import registry, sql
from ..schedule import Schedule
from .database import Pool
from .service import Periodic

if TYPE_CHECKING:
    from ..tasks import Task

logger = logging.getLogger("autotask")


def _scheduled() -> dict[str, tuple[Task[..., Any], Schedule]]:
    """This process's periodic and cron tasks, by name."""
    return {
        task.name: (task, task.schedule) for task in registry.tasks() if task.schedule is not None
    }


class ScheduleSync:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def start(self) -> None:
        scheduled = _scheduled()
        if not scheduled:
            return
        now = datetime.now(UTC)
        names = list(scheduled)
        specs = [schedule.spec for _, schedule in scheduled.values()]
        firsts = [schedule.first(now) for _, schedule in scheduled.values()]
        await self._pool.execute(sql.SCHEDULE_UPSERT_MANY, [names, specs, firsts])

    async def stop(self, deadline: float) -> None:
        pass


class Scheduler(Periodic):
    def __init__(self, pool: Pool, *, poll_interval: float) -> None:
        super().__init__()
        self._pool = pool
        self._poll_interval = poll_interval

    async def start(self) -> None:
        await self._pool.execute(sql.SCHEDULE_SET_ORPHANED, {"names": list(_scheduled())})
        await super().start()

    async def step(self) -> float:
        scheduled = _scheduled()
        if not scheduled:
            return self._poll_interval
        names = list(scheduled)
        for name, tick, now in await self._pool.fetchall(sql.SCHEDULE_SELECT_DUE, [names]):
            task, schedule = scheduled[name]
            # In UTC: times come back in the session's zone, whose DST would skew arithmetic.
            await self._tick(task, schedule, tick.astimezone(UTC), now.astimezone(UTC))
        row = await self._pool.fetchone(sql.SCHEDULE_SECONDS_UNTIL_DUE, [names])
        until_due = None if row is None or row[0] is None else float(row[0])
        if until_due is None:
            return self._poll_interval
        return min(max(until_due, 0.0), self._poll_interval)

    async def _tick(
        self, task: Task[..., Any], schedule: Schedule, tick: datetime, now: datetime
    ) -> None:
        next_run_at = schedule.next_after(tick)
        if next_run_at <= now:  # ticks were missed: one run for all of them
            next_run_at = schedule.next_after(now)
        inserted = await self._pool.fetchall(
            sql.SCHEDULE_TICK,
            {
                "name": task.name,
                "tick": tick,
                "next_run_at": next_run_at,
                "queue": task.queue,
                "priority": task.priority,
                "max_attempts": task.retries + 1,
                "schedule_key": schedule_key(task.name, tick),
            },
        )
        if inserted:
            logger.debug("autotask: enqueued %s for its tick at %s", task.name, tick)


def schedule_key(name: str, tick: datetime) -> str:
    """The run of one tick: unique, and at most 255 characters whatever the task's name."""
    key = f"{name}@{tick.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"
    if len(key) <= 255:
        return key
    return f"{hashlib.sha256(name.encode()).hexdigest()}@{tick.astimezone(UTC).isoformat()}"
