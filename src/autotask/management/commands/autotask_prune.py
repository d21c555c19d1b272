"""``manage.py autotask_prune``: delete finished runs now, instead of waiting for the leader.

The leader prunes runs whose ``ttl`` has passed every ``AUTOTASK_CLEAN_INTERVALL`` seconds;
this does the same at once, or (``--older-than``) for runs finished longer ago than given,
whatever their ttl, e.g. from a cron job that keeps failed runs a week and the rest a day.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from autotask import store
from autotask.exceptions import NotMigrated
from autotask.status import CANCELLED, DONE, ERROR

_FINISHED = (str(DONE), str(ERROR), str(CANCELLED))


class Command(BaseCommand):
    help = "Delete finished autotask runs (past their ttl, or finished before --older-than)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            help="Seconds since they finished (default: runs past their ttl).",
        )
        parser.add_argument(
            "--status",
            default=",".join(_FINISHED),
            help=f"Comma-separated statuses to prune (default: {','.join(_FINISHED)}).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only say how many would be deleted."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = [s.strip() for s in options["status"].split(",") if s.strip()]
        wrong = sorted(set(statuses) - set(_FINISHED))
        if not statuses or wrong:
            raise CommandError(
                f"--status takes finished statuses ({', '.join(_FINISHED)}), not {wrong or '-'}."
            )
        older_than = options["older_than"]
        if older_than is not None and not older_than >= 0:
            raise CommandError("--older-than must be a number of seconds, 0 or more.")
        try:
            count = store.prune_runs(statuses, older_than, dry_run=options["dry_run"])
        except NotMigrated as exc:
            raise CommandError(str(exc)) from None
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(f"autotask_prune: {verb} {count} run(s) ({', '.join(statuses)}).")
