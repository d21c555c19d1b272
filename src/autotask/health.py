"""``autotask.health()``: what a person or a probe needs to tell whether tasks are being run.

Counts per queue and status, the oldest due run's wait, the workers and their heartbeats, the
leader, the next schedule runs, the paused queues, the limited keys and the workflows, in six
statements; and the problems found in them, so that ``manage.py autotask_health`` (a container
probe) and the future monitor judge alike.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from . import conf, store
from .status import WAITING, Status
from .store import LimitCount, QueueCount, ScheduleRecord, WorkerRecord, WorkflowCount

# A due run waiting longer than this (seconds) makes the system unhealthy, by default.
DEFAULT_MAX_DUE_AGE = 300.0


@dataclass(frozen=True, slots=True)
class QueueHealth:
    name: str
    counts: dict[Status, int]  # every status, 0 when none
    due: int  # waiting runs whose time has come
    oldest_due_seconds: float | None  # how long the oldest of those has waited
    served: bool  # by at least one live worker
    paused: bool  # by pause_queue(): its runs wait on purpose


@dataclass(frozen=True, slots=True)
class Health:
    queues: list[QueueHealth]
    workers: list[WorkerRecord]  # live ones: heartbeat within AUTOTASK_WORKER_TIMEOUT
    lost_workers: list[WorkerRecord]  # silent ones the leader has not removed yet
    leader: WorkerRecord | None
    schedules: list[ScheduleRecord]  # by next run
    max_due_age: float
    problems: list[str] = field(default_factory=list)
    # Limited keys in use or waited on; their waiting runs are not counted as due in queues.
    limits: list[LimitCount] = field(default_factory=list)
    # Workflows not finished, and runs waiting for others (not due, so not counted as due).
    workflows: WorkflowCount = field(default_factory=lambda: WorkflowCount(0, 0))

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        """Plain JSON values (for ``autotask_health --json``)."""
        return {
            "healthy": self.healthy,
            "problems": self.problems,
            "max_due_age": self.max_due_age,
            "queues": [
                {
                    "name": q.name,
                    "counts": {str(status): n for status, n in q.counts.items()},
                    "due": q.due,
                    "oldest_due_seconds": q.oldest_due_seconds,
                    "served": q.served,
                    "paused": q.paused,
                }
                for q in self.queues
            ],
            "workers": [_worker(w) for w in self.workers],
            "lost_workers": [_worker(w) for w in self.lost_workers],
            "leader": _worker(self.leader) if self.leader is not None else None,
            "schedules": [
                {
                    "name": s.name,
                    "spec": s.spec,
                    "next_run_at": s.next_run_at.isoformat(),
                    "last_run_at": s.last_run_at.isoformat() if s.last_run_at else None,
                    "paused": s.paused,
                    "orphaned": s.orphaned,
                }
                for s in self.schedules
            ],
            "limits": [
                {
                    "kind": limit.kind,
                    "key": limit.key,
                    "size": limit.size,
                    "in_use": limit.in_use,
                    "period": limit.period,
                    "waiting": limit.waiting,
                }
                for limit in self.limits
            ],
            "workflows": {
                "unfinished": self.workflows.unfinished,
                "waiting_for_others": self.workflows.waiting_for_others,
            },
        }


def health(max_due_age: float = DEFAULT_MAX_DUE_AGE, *, count_done: bool = True) -> Health:
    """The state of autotask as the database tells it, read through Django's connection.

    ``count_done=False`` leaves done runs uncounted (0 in every queue's counts): on a table that
    has run a while they are most of the rows, and counting them most of the time it takes.
    """
    paused = {q.name for q in store.queues() if q.paused}
    return _judge(
        store.run_counts(done=count_done),
        store.workers(),
        store.schedules(),
        paused,
        store.limits(),
        store.workflow_counts(),
        max_due_age,
    )


async def ahealth(max_due_age: float = DEFAULT_MAX_DUE_AGE, *, count_done: bool = True) -> Health:
    counts, workers, schedules, queues, limits, workflows = await asyncio.gather(
        store.arun_counts(done=count_done),
        store.aworkers(),
        store.aschedules(),
        store.aqueues(),
        store.alimits(),
        store.aworkflow_counts(),
    )
    paused = {q.name for q in queues if q.paused}
    return _judge(counts, workers, schedules, paused, limits, workflows, max_due_age)


def _judge(
    counts: list[QueueCount],
    workers: list[WorkerRecord],
    schedules: list[ScheduleRecord],
    paused: set[str],
    limits: list[LimitCount],
    workflows: WorkflowCount,
    max_due_age: float,
) -> Health:
    timeout = conf.get().worker_timeout
    live = [w for w in workers if w.heartbeat_age <= timeout]
    by_status: dict[str, dict[Status, int]] = {name: dict.fromkeys(Status, 0) for name in paused}
    waiting: dict[str, QueueCount] = {}
    for count in counts:
        by_status.setdefault(count.queue, dict.fromkeys(Status, 0))[count.status] = count.count
        if count.status == WAITING:
            waiting[count.queue] = count
    queues = [
        QueueHealth(
            name=name,
            counts=statuses,
            due=waiting[name].due if name in waiting else 0,
            oldest_due_seconds=waiting[name].oldest_due_seconds if name in waiting else None,
            served=any(w.queues is None or name in w.queues for w in live),
            paused=name in paused,
        )
        for name, statuses in sorted(by_status.items())
    ]
    return Health(
        queues=queues,
        workers=live,
        lost_workers=[w for w in workers if w.heartbeat_age > timeout],
        leader=next((w for w in live if w.leader), None),
        schedules=sorted(schedules, key=lambda s: s.next_run_at),
        max_due_age=max_due_age,
        problems=_problems(queues, max_due_age),
        limits=limits,
        workflows=workflows,
    )


def _problems(queues: list[QueueHealth], max_due_age: float) -> list[str]:
    problems = []
    for queue in queues:
        if queue.paused:  # its runs wait on purpose
            continue
        if queue.due and not queue.served:
            problems.append(f"queue {queue.name!r} has {queue.due} due run(s) and no live worker")
        elif queue.oldest_due_seconds is not None and queue.oldest_due_seconds > max_due_age:
            problems.append(
                f"queue {queue.name!r}: its oldest due run has waited "
                f"{queue.oldest_due_seconds:.0f} s (more than {max_due_age:g} s)"
            )
    return problems


def _worker(worker: WorkerRecord) -> dict[str, object]:
    return {
        "id": str(worker.id),
        "host": worker.host,
        "pid": worker.pid,
        "queues": worker.queues,
        "concurrency": worker.concurrency,
        "running": worker.running,
        "heartbeat_age": worker.heartbeat_age,
        "leader": worker.leader,
    }
