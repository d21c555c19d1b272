"""What the overview shows, as plain JSON values: the same dict renders the page, answers the
poll (WSGI) and is sent down the stream (ASGI), so the three never disagree.

Built from ``health()`` (counts per queue, live workers, the leader) and the minutes of the
chart. A stream compares successive snapshots and sends one only when it changed; snapshots are
shared between the streams of one process for ``_SHARED_FOR`` seconds, so ten open pages cost
the database what one does.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from .. import store
from ..health import Health, ahealth, health
from ..status import CANCELLED, DONE, ERROR, RUNNING, WAITING
from ..store import MinuteCount

CHART_MINUTES = 60
_SHARED_FOR = 0.2
_EVERY = re.compile(r"^every (\d+(?:\.\d+)?)s( from start)?$")
_CRON = re.compile(r"^cron (.+) \((.+)\)$")


def build(report: Health, minutes: list[MinuteCount], now: float) -> dict[str, Any]:
    """``report`` without done runs counted: a queue's done figure is the last hour's."""
    first = (int(now) // 60 - CHART_MINUTES + 1) * 60
    done = [0] * CHART_MINUTES
    failed = [0] * CHART_MINUTES
    done_in_the_hour: dict[str, int] = {}
    for entry in minutes:
        index = (int(entry.minute) - first) // 60
        if 0 <= index < CHART_MINUTES:
            (done if entry.status == DONE else failed)[index] += entry.count
            if entry.status == DONE:
                done_in_the_hour[entry.queue] = done_in_the_hour.get(entry.queue, 0) + entry.count
    queues = {queue.name: queue for queue in report.queues}
    names = sorted(queues.keys() | done_in_the_hour.keys())
    return {
        "queues": [
            {
                "name": name,
                "waiting": queue.counts.get(WAITING, 0) if queue else 0,
                "due": queue.due if queue else 0,
                "running": queue.counts.get(RUNNING, 0) if queue else 0,
                "done_last_hour": done_in_the_hour.get(name, 0),
                "error": queue.counts.get(ERROR, 0) if queue else 0,
                "cancelled": queue.counts.get(CANCELLED, 0) if queue else 0,
                "oldest_due_seconds": _tenths(queue.oldest_due_seconds) if queue else None,
                "paused": queue.paused if queue else False,
                "served": queue.served if queue else _served(report, name),
            }
            for name, queue in ((name, queues.get(name)) for name in names)
        ],
        "workers": [
            {
                "id": str(worker.id),
                "host": worker.host,
                "pid": worker.pid,
                "queues": worker.queues,
                "concurrency": worker.concurrency,
                "running": worker.running,
                "heartbeat_age": round(worker.heartbeat_age, 1),
                "leader": worker.leader,
            }
            for worker in report.workers
        ],
        "chart": {"first_minute": first, "done": done, "error": failed},
        "problems": report.problems,
    }


def _tenths(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def _served(report: Health, queue: str) -> bool:
    return any(w.queues is None or queue in w.queues for w in report.workers)


def snapshot() -> dict[str, Any]:
    report = health(count_done=False)
    return build(report, store.finished_per_minute(CHART_MINUTES), time.time())


async def asnapshot() -> dict[str, Any]:
    report, minutes = await asyncio.gather(
        ahealth(count_done=False), store.afinished_per_minute(CHART_MINUTES)
    )
    return build(report, minutes, time.time())


class SharedSnapshot:
    """The latest snapshot of this process, taken again when older than ``_SHARED_FOR``, and
    how long taking it took (a stream waits at least twice that between two, so that a big
    table costs the database at most a third of a connection)."""

    def __init__(self) -> None:
        self._taken_at = -1.0
        self._value: dict[str, Any] | None = None
        self.took = 0.0

    async def get(self) -> dict[str, Any]:
        if self._value is None or time.monotonic() - self._taken_at > _SHARED_FOR:
            began = time.monotonic()
            self._value = await asnapshot()
            self._taken_at = time.monotonic()
            self.took = self._taken_at - began
        return self._value


def spec_in_words(spec: str) -> str:
    """``every 3600s`` -> ``every hour``; ``cron 0 3 * * 1 (UTC)`` -> ``at 03:00 on Monday
    (UTC)``; anything else as it is."""
    every = _EVERY.match(spec)
    if every:
        words = "every " + _duration(float(every.group(1)))
        return words + (", starting at once" if every.group(2) else "")
    cron = _CRON.match(spec)
    if cron:
        return f"{_cron_in_words(cron.group(1))} ({cron.group(2)})"
    return spec


_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _duration(seconds: float) -> str:
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"


def _cron_in_words(expression: str) -> str:
    fields = expression.split()
    if len(fields) != 5:
        return f"cron {expression}"
    minute, hour, day, month, weekday = fields
    if minute.startswith("*/") and (hour, day, month, weekday) == ("*", "*", "*", "*"):
        return f"every {minute[2:]} minutes"
    if minute == "*" and (hour, day, month, weekday) == ("*", "*", "*", "*"):
        return "every minute"
    if not (minute.isdigit() and hour.isdigit()):
        if minute.isdigit() and (hour, day, month, weekday) == ("*", "*", "*", "*"):
            return f"every hour at minute {int(minute)}"
        return f"cron {expression}"
    words = f"at {int(hour):02d}:{int(minute):02d}"
    if day == "*" and month == "*" and weekday == "*":
        return words + " every day"
    if day == "*" and month == "*" and weekday.isdigit() and int(weekday) <= 7:
        return words + f" on {_DAYS[int(weekday) % 7]}"
    if day.isdigit() and month == "*" and weekday == "*":
        return words + f" on day {int(day)} of the month"
    return f"cron {expression}"
