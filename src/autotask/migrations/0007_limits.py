"""Concurrency and rate limits: each run's keys, and a table of the slots and tokens they share.

A trigger frees a run's concurrency slot when the run stops running, however it stops (it
finished, failed, timed out, was put back at shutdown or rescued from a lost worker, or its row
was deleted), in the same transaction, and wakes the run's queue: the next run of that key is
claimed at once, by whichever process is free. The index of waiting rate-limited runs comes in
0008, built ``CONCURRENTLY`` (so outside this migration's transaction).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("autotask", "0006_queues"),
    ]

    operations = [
        migrations.CreateModel(
            name="LimitSlot",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "kind",
                    models.CharField(
                        choices=[("concurrency", "Concurrency"), ("rate", "Rate")], max_length=16
                    ),
                ),
                ("key", models.CharField(max_length=255)),
                ("slot", models.IntegerField()),
                (
                    "run_id",
                    models.BigIntegerField(
                        blank=True,
                        help_text="The run holding a concurrency slot (tokens have none).",
                        null=True,
                    ),
                ),
                ("taken_at", models.DateTimeField(blank=True, null=True)),
                (
                    "period",
                    models.FloatField(
                        blank=True,
                        help_text="A rate token's window when it was written, in seconds.",
                        null=True,
                    ),
                ),
            ],
            options={
                "verbose_name": "limit slot",
                "db_table": "autotask_slot",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("kind", "key", "slot"), name="autotask_slot_key_slot"
                    )
                ],
                "indexes": [
                    models.Index(
                        models.F("kind"),
                        models.F("key"),
                        models.OrderBy(models.F("taken_at"), nulls_first=True),
                        condition=models.Q(("run_id__isnull", True)),
                        name="autotask_slot_free",
                    )
                ],
            },
        ),
        migrations.AddField(
            model_name="taskrun",
            name="concurrency_key",
            field=models.CharField(
                blank=True,
                help_text="Runs with this key share its concurrency slots (the task's concurrency=).",
                max_length=255,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="rate_key",
            field=models.CharField(
                blank=True,
                help_text="Runs with this key share its rate tokens (the task's rate=).",
                max_length=255,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="concurrency_limit",
            field=models.IntegerField(
                blank=True, help_text="How many runs of its key may run at once.", null=True
            ),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="rate_limit",
            field=models.IntegerField(
                blank=True,
                help_text="How many runs of its key may start per rate_period.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="rate_period",
            field=models.FloatField(blank=True, help_text="In seconds.", null=True),
        ),
        migrations.RunSQL(
            sql=[
                """
                CREATE FUNCTION autotask_release_slot() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    UPDATE autotask_slot SET run_id = NULL
                    WHERE kind = 'concurrency' AND key = OLD.concurrency_key
                      AND run_id = OLD.id;
                    PERFORM pg_notify('autotask', OLD.queue);
                    RETURN NULL;
                END
                $$;
                """,
                # Row-level, but only for runs with a concurrency key leaving 'running': the
                # WHEN clause is all that the other runs' updates pay.
                """
                CREATE TRIGGER autotask_task_slot_released
                AFTER UPDATE OF status ON autotask_task
                FOR EACH ROW
                WHEN (OLD.status = 'running' AND NEW.status <> 'running'
                      AND OLD.concurrency_key IS NOT NULL)
                EXECUTE FUNCTION autotask_release_slot();
                """,
                """
                CREATE TRIGGER autotask_task_slot_released_deleted
                AFTER DELETE ON autotask_task
                FOR EACH ROW
                WHEN (OLD.status = 'running' AND OLD.concurrency_key IS NOT NULL)
                EXECUTE FUNCTION autotask_release_slot();
                """,
            ],
            reverse_sql=[
                "DROP TRIGGER IF EXISTS autotask_task_slot_released_deleted ON autotask_task;",
                "DROP TRIGGER IF EXISTS autotask_task_slot_released ON autotask_task;",
                "DROP FUNCTION IF EXISTS autotask_release_slot();",
            ],
        ),
    ]
