"""Every failed attempt's error, and how often a run was postponed."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("autotask", "0002_schedules_leader_pruning"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="errors",
            field=models.JSONField(
                blank=True,
                db_default=[],
                default=list,
                help_text="Every failed attempt's error, in order.",
            ),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="postpones",
            field=models.IntegerField(
                db_default=0,
                default=0,
                help_text="Times the task postponed this run (autotask.Postpone).",
            ),
        ),
        migrations.AlterField(
            model_name="taskrun",
            name="error",
            field=models.JSONField(
                blank=True, help_text="The last failed attempt's error.", null=True
            ),
        ),
    ]
