"""``manage.py autotask_queue pause|resume NAME`` and ``autotask_queue list``.

Pausing a queue stops every process from claiming its runs (those running finish; new ones
are enqueued and wait) until it is resumed; it is kept in the database, so restarts keep it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from autotask import store
from autotask.exceptions import InvalidTaskOptions, NotMigrated


class Command(BaseCommand):
    help = "Pause or resume an autotask queue, or list the queues."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["pause", "resume", "list"])
        parser.add_argument("queue", nargs="?", help="The queue to pause or resume.")

    def handle(self, *args: Any, **options: Any) -> None:
        action, name = options["action"], options["queue"]
        try:
            if action == "list":
                if name is not None:
                    raise CommandError("list takes no queue name.")
                self._list()
                return
            if name is None:
                raise CommandError(f"{action} needs a queue name.")
            record = store.pause_queue(name) if action == "pause" else store.resume_queue(name)
        except (NotMigrated, InvalidTaskOptions) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"queue {record.name!r} {'paused' if record.paused else 'resumed'}")

    def _list(self) -> None:
        queues = store.queues()
        if not queues:
            self.stdout.write("no queues: nothing waiting or running, and none paused")
            return
        width = max(len(q.name) for q in queues)
        for q in queues:
            state = "paused" if q.paused else "running"
            self.stdout.write(
                f"{q.name.ljust(width)}  {state:<7}  {q.waiting} waiting  {q.running} running"
            )
