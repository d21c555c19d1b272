"""Tables, indexes and the NOTIFY triggers.

The triggers are FOR EACH STATEMENT with transition tables: one NOTIFY per distinct queue (or per
batch of status changes) per statement, never one per row, because every NOTIFY takes a
database-wide lock at commit. PostgreSQL also folds identical notifications of one transaction.
"""

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Worker",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("host", models.CharField(max_length=255)),
                ("pid", models.IntegerField()),
                (
                    "queues",
                    models.JSONField(
                        blank=True, help_text="Queues served; null: every queue.", null=True
                    ),
                ),
                ("concurrency", models.IntegerField()),
                (
                    "started_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
                (
                    "heartbeat_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
            ],
            options={
                "db_table": "autotask_worker",
            },
        ),
        migrations.CreateModel(
            name="TaskRun",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "name",
                    models.CharField(help_text="Registered name of the task.", max_length=255),
                ),
                (
                    "queue",
                    models.CharField(db_default="default", default="default", max_length=100),
                ),
                ("args", models.JSONField(db_default=[], default=list)),
                ("kwargs", models.JSONField(db_default={}, default=dict)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("waiting", "Waiting"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("error", "Error"),
                            ("cancelled", "Cancelled"),
                        ],
                        db_default="waiting",
                        default="waiting",
                        max_length=16,
                    ),
                ),
                (
                    "priority",
                    models.SmallIntegerField(
                        db_default=0, default=0, help_text="-100..100; higher runs first."
                    ),
                ),
                (
                    "run_at",
                    models.DateTimeField(
                        db_default=django.db.models.functions.datetime.Now(),
                        help_text="Not before this time.",
                    ),
                ),
                ("attempts", models.IntegerField(db_default=0, default=0)),
                ("max_attempts", models.IntegerField(db_default=1, default=1)),
                (
                    "enqueued_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "expires_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="Finished runs may be pruned after this time.",
                        null=True,
                    ),
                ),
                ("worker_id", models.UUIDField(blank=True, null=True)),
                ("result", models.JSONField(blank=True, null=True)),
                ("error", models.JSONField(blank=True, null=True)),
                ("unique_key", models.CharField(blank=True, max_length=255, null=True)),
                (
                    "schedule_key",
                    models.CharField(blank=True, max_length=255, null=True, unique=True),
                ),
            ],
            options={
                "verbose_name": "task run",
                "db_table": "autotask_task",
                "indexes": [
                    models.Index(
                        models.F("queue"),
                        models.OrderBy(models.F("priority"), descending=True),
                        models.F("run_at"),
                        models.F("id"),
                        condition=models.Q(("status", "waiting")),
                        name="autotask_task_claim_queue",
                    ),
                    models.Index(
                        models.OrderBy(models.F("priority"), descending=True),
                        models.F("run_at"),
                        models.F("id"),
                        condition=models.Q(("status", "waiting")),
                        name="autotask_task_claim_any",
                    ),
                    models.Index(
                        models.F("run_at"),
                        condition=models.Q(("status", "waiting")),
                        name="autotask_task_due",
                    ),
                    models.Index(
                        models.F("worker_id"),
                        condition=models.Q(("status", "running")),
                        name="autotask_task_running",
                    ),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("priority__gte", -100), ("priority__lte", 100)),
                        name="autotask_task_priority_range",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("status__in", ["waiting", "running", "done", "error", "cancelled"])
                        ),
                        name="autotask_task_status_valid",
                    ),
                    models.UniqueConstraint(
                        models.F("unique_key"),
                        condition=models.Q(("status__in", ["waiting", "running"])),
                        name="autotask_task_unique_pending",
                    ),
                ],
            },
        ),
        migrations.RunSQL(
            sql=[
                """
                CREATE FUNCTION autotask_notify_inserted() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify('autotask', q.queue)
                    FROM (SELECT DISTINCT queue FROM new_rows WHERE status = 'waiting') AS q;
                    RETURN NULL;
                END
                $$;
                """,
                """
                CREATE TRIGGER autotask_task_inserted
                AFTER INSERT ON autotask_task
                REFERENCING NEW TABLE AS new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION autotask_notify_inserted();
                """,
                # Status changes go out as "id:status,id:status" in batches of 200, well under
                # the 8000-byte payload limit; runs that become waiting again also wake workers.
                """
                CREATE FUNCTION autotask_notify_updated() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify('autotask_status', batch.payload)
                    FROM (
                        SELECT string_agg(changed.id || ':' || changed.status, ',') AS payload
                        FROM (
                            SELECT n.id, n.status, (row_number() OVER () - 1) / 200 AS chunk
                            FROM new_rows n JOIN old_rows o ON o.id = n.id
                            WHERE n.status IS DISTINCT FROM o.status
                        ) AS changed
                        GROUP BY changed.chunk
                    ) AS batch;
                    PERFORM pg_notify('autotask', q.queue)
                    FROM (
                        SELECT DISTINCT n.queue
                        FROM new_rows n JOIN old_rows o ON o.id = n.id
                        WHERE n.status = 'waiting'
                          AND (o.status IS DISTINCT FROM 'waiting' OR n.run_at < o.run_at)
                    ) AS q;
                    RETURN NULL;
                END
                $$;
                """,
                """
                CREATE TRIGGER autotask_task_updated
                AFTER UPDATE ON autotask_task
                REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION autotask_notify_updated();
                """,
            ],
            reverse_sql=[
                "DROP TRIGGER IF EXISTS autotask_task_updated ON autotask_task;",
                "DROP FUNCTION IF EXISTS autotask_notify_updated();",
                "DROP TRIGGER IF EXISTS autotask_task_inserted ON autotask_task;",
                "DROP FUNCTION IF EXISTS autotask_notify_inserted();",
            ],
        ),
    ]
