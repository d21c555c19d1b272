"""The tables: a row per enqueued call of a task (a *run*), per live runtime, per schedule.

The models exist for migrations and the admin; the runtime itself reads and writes these
tables through ``sql.py`` with its own psycopg connections.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

from .status import Status


class TaskRun(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=255, help_text="Registered name of the task.")
    queue = models.CharField(max_length=100, default="default", db_default="default")
    args = models.JSONField(default=list, db_default=[])
    kwargs = models.JSONField(default=dict, db_default={})
    status = models.CharField(
        max_length=16, choices=Status.choices(), default="waiting", db_default="waiting"
    )
    priority = models.SmallIntegerField(
        default=0, db_default=0, help_text="-100..100; higher runs first."
    )
    run_at = models.DateTimeField(db_default=Now(), help_text="Not before this time.")
    attempts = models.IntegerField(default=0, db_default=0)
    max_attempts = models.IntegerField(default=1, db_default=1)
    enqueued_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Finished runs may be pruned after this time."
    )
    worker_id = models.UUIDField(null=True, blank=True)
    worker_ids = models.JSONField(
        default=list,
        db_default=[],
        blank=True,
        help_text="The worker of each attempt, in order (django.tasks' worker_ids).",
    )
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True, help_text="The last failed attempt's error.")
    errors = models.JSONField(
        default=list, db_default=[], blank=True, help_text="Every failed attempt's error, in order."
    )
    postpones = models.IntegerField(
        default=0, db_default=0, help_text="Times the task postponed this run (autotask.Postpone)."
    )
    unique_key = models.CharField(max_length=255, null=True, blank=True)
    schedule_key = models.CharField(max_length=255, null=True, blank=True)  # unique: see Meta
    concurrency_key = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="Runs with this key share its concurrency slots (the task's concurrency=).",
    )
    rate_key = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        help_text="Runs with this key share its rate tokens (the task's rate=).",
    )
    concurrency_limit = models.IntegerField(
        null=True, blank=True, help_text="How many runs of its key may run at once."
    )
    rate_limit = models.IntegerField(
        null=True, blank=True, help_text="How many runs of its key may start per rate_period."
    )
    rate_period = models.FloatField(null=True, blank=True, help_text="In seconds.")
    workflow_id = models.BigIntegerField(
        null=True, blank=True, help_text="The workflow (chain or group) it is a step of."
    )
    waiting_for = models.IntegerField(
        null=True,
        blank=True,
        help_text="How many of the runs it depends on have not finished: it is not due before "
        "none has (its run_at is the far future until then).",
    )
    has_dependents = models.BooleanField(
        default=False, db_default=False, help_text="Other runs wait for it to finish."
    )
    watched = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="Someone waits on its status: its changes are NOTIFYed.",
    )
    result_arg = models.CharField(
        max_length=8,
        null=True,
        blank=True,
        choices=[("one", "one"), ("list", "list")],
        help_text="What it is given, as its first argument, when its dependencies finish: "
        "its one dependency's result, or the list of their results; empty: nothing.",
    )

    class Meta:
        db_table = "autotask_task"
        verbose_name = "task run"
        indexes = [
            # Claiming within named queues, and claiming from every queue.
            models.Index(
                "queue",
                models.F("priority").desc(),
                "run_at",
                "id",
                name="autotask_task_claim_queue",
                condition=models.Q(status="waiting"),
            ),
            models.Index(
                models.F("priority").desc(),
                "run_at",
                "id",
                name="autotask_task_claim_any",
                condition=models.Q(status="waiting"),
            ),
            # The earliest run_at still to come, for the worker's next wake-up.
            models.Index("run_at", name="autotask_task_due", condition=models.Q(status="waiting")),
            models.Index(
                "worker_id", name="autotask_task_running", condition=models.Q(status="running")
            ),
            # A schedule's tick still waiting (the scheduler enqueues no second one behind it).
            models.Index(
                "name",
                name="autotask_task_tick_waiting",
                condition=models.Q(status="waiting", schedule_key__isnull=False),
            ),
            # The rate-limited keys that have runs waiting (when does the next token free?).
            models.Index(
                fields=["rate_key"],
                name="autotask_task_rate_waiting",
                condition=models.Q(status="waiting", rate_key__isnull=False),
            ),
            # A workflow's steps (its handle, the admin's filter).
            models.Index(
                fields=["workflow_id"],
                name="autotask_task_workflow",
                condition=models.Q(workflow_id__isnull=False),
            ),
            # Pruning: finished runs in the order they expire.
            # The monitor's chart and tasks page: runs that ended within a window.
            models.Index(
                "finished_at",
                name="autotask_task_finished",
                condition=models.Q(status__in=["done", "error", "cancelled"]),
            ),
            models.Index(
                "expires_at",
                name="autotask_task_expiring",
                condition=models.Q(status__in=["done", "error", "cancelled"]),
            ),
            # The admin's filters, each in its newest-first order (ORDER BY id DESC LIMIT n
            # reads one page of the index, not every matching row). name and queue also give
            # their distinct values one index probe each (admin._distinct_values).
            models.Index(fields=["status", "id"], name="autotask_task_admin_status"),
            models.Index(fields=["queue", "id"], name="autotask_task_admin_queue"),
            models.Index(fields=["name", "id"], name="autotask_task_admin_name"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(priority__gte=-100, priority__lte=100),
                name="autotask_task_priority_range",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[str(s) for s in Status]),
                name="autotask_task_status_valid",
            ),
            # Both unique indexes leave out the runs without a key (most runs): each row version
            # of those would write an entry for nothing (0014). The ON CONFLICT clauses name the
            # same predicates (sql._RUN_UNIQUE, sql.SCHEDULE_TICK).
            models.UniqueConstraint(
                "unique_key",
                name="autotask_task_unique_pending",
                condition=models.Q(status__in=["waiting", "running"], unique_key__isnull=False),
            ),
            # A tick is enqueued once (ON CONFLICT (schedule_key)). A constraint rather than
            # unique=True, which would add a second, varchar_pattern_ops index that no query
            # uses and that every insert and status change of a run would write to.
            models.UniqueConstraint(
                fields=["schedule_key"],
                name="autotask_task_schedule_key_key",
                condition=models.Q(schedule_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.id} ({self.status})"


class Dependency(models.Model):
    """One edge of a workflow: ``run`` is not due before ``depends_on`` has finished.

    A row trigger on the run that finishes follows its edges in the same transaction: each
    dependent's ``waiting_for`` drops by one (its row lock makes two runs finishing at once in two
    processes take turns, so exactly one of them brings it to zero), and the one that reaches zero
    is made due, given its dependencies' results; a dependent that needed the run to succeed
    (``required``) is cancelled instead, with the runs that need it. ``depends_on`` has no foreign
    key: a finished dependency may be pruned once nothing waits for it; a dependent's edges go
    with it (ON DELETE CASCADE, in the migration).
    """

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(
        TaskRun,
        on_delete=models.DO_NOTHING,  # the database cascades (migration 0009)
        db_constraint=False,
        db_index=False,  # the unique constraint's index serves
        related_name="dependencies",
    )
    depends_on = models.ForeignKey(
        TaskRun,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="dependents",
    )
    position = models.IntegerField(help_text="Its result's place in the list the run is given.")
    required = models.BooleanField(
        help_text="If it does not end DONE, the run is cancelled instead of run."
    )
    finished = models.BooleanField(
        default=False, db_default=False, help_text="It has finished and the run was told."
    )

    class Meta:
        db_table = "autotask_dependency"
        verbose_name_plural = "dependencies"
        constraints = [
            models.UniqueConstraint(fields=["run", "depends_on"], name="autotask_dependency_edge"),
        ]

    def __str__(self) -> str:
        return f"#{self.run_id} after #{self.depends_on_id}"


class Worker(models.Model):
    id = models.UUIDField(primary_key=True)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(null=True, blank=True, help_text="Queues served; null: every queue.")
    concurrency = models.IntegerField()
    started_at = models.DateTimeField(db_default=Now())
    heartbeat_at = models.DateTimeField(db_default=Now())
    leader = models.BooleanField(
        default=False, db_default=False, help_text="Runs the schedules, rescue and pruning."
    )

    class Meta:
        db_table = "autotask_worker"

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


class Schedule(models.Model):
    """The clock of one periodic or cron task, kept here so that restarts do not reset it."""

    name = models.CharField(max_length=255, primary_key=True, help_text="The task's name.")
    spec = models.CharField(max_length=255, help_text="When it runs, in words.")
    next_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(default=False, db_default=False)
    orphaned = models.BooleanField(
        default=False, db_default=False, help_text="Its task is not in the leader's code: not run."
    )

    class Meta:
        db_table = "autotask_schedule"

    def __str__(self) -> str:
        return f"{self.name} ({self.spec})"


class LimitSlot(models.Model):
    """One of the places a limit has: a concurrency slot, or a rate token.

    A key limited to N has at least N rows, written at the first enqueue with that key (more
    when a larger N comes; none is ever deleted, as a held one may be in use); each run carries
    its own N and window, and a claim uses only the key's first N rows. A claim takes a run only
    together with a free row of each of its keys, locked with SKIP LOCKED in the claim's own
    statement: N processes claiming at once never take more rows than there are. A concurrency
    slot is free while ``run_id`` is empty; a trigger empties it when its run stops running,
    whatever stopped it. A rate token is free once the run's window has passed since
    ``taken_at``.
    """

    class Kind(models.TextChoices):
        CONCURRENCY = "concurrency"
        RATE = "rate"

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=255)
    slot = models.IntegerField()
    run_id = models.BigIntegerField(
        null=True, blank=True, help_text="The run holding a concurrency slot (tokens have none)."
    )
    taken_at = models.DateTimeField(null=True, blank=True)
    period = models.FloatField(
        null=True, blank=True, help_text="A rate token's window when it was written, in seconds."
    )

    class Meta:
        db_table = "autotask_slot"
        verbose_name = "limit slot"
        constraints = [
            models.UniqueConstraint(fields=["kind", "key", "slot"], name="autotask_slot_key_slot"),
        ]
        indexes = [
            # The claim's search for free rows: free slots only, and tokens oldest first (the
            # free ones, taken a window ago or never, come first), never stepping over rows
            # in use however many a key has.
            models.Index(
                "kind",
                "key",
                models.F("taken_at").asc(nulls_first=True),
                name="autotask_slot_free",
                condition=models.Q(run_id__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} #{self.slot}"


class Queue(models.Model):
    """A queue that was paused (or resumed) by hand; queues need no row to exist."""

    name = models.CharField(max_length=100, primary_key=True)
    paused = models.BooleanField(
        default=False, db_default=False, help_text="Paused: its runs wait, none is claimed."
    )
    changed_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "autotask_queue"

    def __str__(self) -> str:
        return f"{self.name} ({'paused' if self.paused else 'running'})"
