"""The worker of each attempt of a run, for django.tasks' ``TaskResult.worker_ids``."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("autotask", "0003_attempt_errors_postpones"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="worker_ids",
            field=models.JSONField(
                blank=True,
                db_default=[],
                default=list,
                help_text="The worker of each attempt, in order (django.tasks' worker_ids).",
            ),
        ),
    ]
