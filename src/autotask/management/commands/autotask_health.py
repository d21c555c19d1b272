"""``manage.py autotask_health``: is anything running the tasks? For people and for probes.

Prints ``autotask.health()`` as a table (or ``--json``) and exits 1 when it finds a problem: a
queue with due runs and no live worker serving it, or a due run waiting longer than
``--max-due-age`` seconds. Usable as a container's liveness or readiness command.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from autotask.exceptions import NotMigrated
from autotask.health import DEFAULT_MAX_DUE_AGE, Health, health
from autotask.status import Status


class Command(BaseCommand):
    help = "Show autotask's queues, workers and schedules; exit 1 if something is wrong."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        parser.add_argument(
            "--max-due-age",
            type=float,
            default=DEFAULT_MAX_DUE_AGE,
            help=f"Seconds a due run may wait before that is a problem ({DEFAULT_MAX_DUE_AGE:g}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["max_due_age"] > 0:
            raise CommandError("--max-due-age must be a number of seconds above 0.")
        try:
            state = health(max_due_age=options["max_due_age"])
        except NotMigrated as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(state.as_dict(), indent=2))
        else:
            self.stdout.write(_table(state))
        if not state.healthy:
            sys.exit(1)


def _table(state: Health) -> str:
    statuses = list(Status)
    lines = [
        "queue".ljust(20) + "".join(str(s).rjust(11) for s in statuses) + "due".rjust(8)
        + "oldest due".rjust(12) + "  served",
    ]  # fmt: skip
    for q in state.queues:
        oldest = f"{q.oldest_due_seconds:.0f} s" if q.oldest_due_seconds is not None else "-"
        lines.append(
            q.name[:19].ljust(20)
            + "".join(str(q.counts[s]).rjust(11) for s in statuses)
            + str(q.due).rjust(8)
            + oldest.rjust(12)
            + ("  yes" if q.served else "  NO")
        )
    if not state.queues:
        lines.append("(no runs)")
    lines.append("")
    lines.append(f"{len(state.workers)} live worker(s):")
    for w in state.workers:
        queues = ",".join(w.queues) if w.queues else "every queue"
        lines.append(
            f"  {w.host}:{w.pid}  {w.running}/{w.concurrency} running  heartbeat "
            f"{w.heartbeat_age:.1f} s ago  {queues}{'  LEADER' if w.leader else ''}"
        )
    if state.lost_workers:
        lines.append(f"{len(state.lost_workers)} lost worker(s) (no heartbeat), to be rescued:")
        lines.extend(f"  {w.host}:{w.pid}" for w in state.lost_workers)
    lines.append(f"leader: {f'{state.leader.host}:{state.leader.pid}' if state.leader else 'none'}")
    if state.schedules:
        lines.append("")
        lines.append("next schedule runs:")
        for s in state.schedules[:10]:
            flags = " (paused)" if s.paused else " (orphaned)" if s.orphaned else ""
            lines.append(f"  {s.next_run_at.isoformat()}  {s.name}  {s.spec}{flags}")
    if state.limits:
        lines.append("")
        lines.append("limits in use or waited on (their waiting runs are not counted as due):")
        for limit in state.limits[:20]:
            what = (
                f"{limit.in_use}/{limit.size} running"
                if limit.kind == "concurrency"
                else f"{limit.in_use}/{limit.size} started in the last {limit.period:g} s"
            )
            lines.append(f"  {limit.kind} {limit.key}: {what}, {limit.waiting} waiting")
        if len(state.limits) > 20:
            lines.append(f"  ... and {len(state.limits) - 20} more (--json lists all)")
    if state.workflows.unfinished or state.workflows.waiting_for_others:
        lines.append("")
        lines.append(
            f"workflows: {state.workflows.unfinished} unfinished, "
            f"{state.workflows.waiting_for_others} run(s) waiting for others to finish"
        )
    lines.append("")
    lines.append("healthy" if state.healthy else "UNHEALTHY: " + "; ".join(state.problems))
    return "\n".join(lines)
