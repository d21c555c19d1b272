"""The schedules table, the leader flag on workers, and an index for pruning expired runs."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("autotask", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="Schedule",
            fields=[
                (
                    "name",
                    models.CharField(
                        help_text="The task's name.",
                        max_length=255,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("spec", models.CharField(help_text="When it runs, in words.", max_length=255)),
                ("next_run_at", models.DateTimeField()),
                ("last_run_at", models.DateTimeField(blank=True, null=True)),
                ("paused", models.BooleanField(db_default=False, default=False)),
                (
                    "orphaned",
                    models.BooleanField(
                        db_default=False,
                        default=False,
                        help_text="Its task is not in the leader's code: not run.",
                    ),
                ),
            ],
            options={
                "db_table": "autotask_schedule",
            },
        ),
        migrations.AddField(
            model_name="worker",
            name="leader",
            field=models.BooleanField(
                db_default=False, default=False, help_text="Runs the schedules, rescue and pruning."
            ),
        ),
        migrations.AddIndex(
            model_name="taskrun",
            index=models.Index(
                models.F("name"),
                condition=models.Q(("schedule_key__isnull", False), ("status", "waiting")),
                name="autotask_task_tick_waiting",
            ),
        ),
        migrations.AddIndex(
            model_name="taskrun",
            index=models.Index(
                models.F("expires_at"),
                condition=models.Q(("status__in", ["done", "error", "cancelled"])),
                name="autotask_task_expiring",
            ),
        ),
    ]
