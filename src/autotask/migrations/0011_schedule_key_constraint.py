"""The unique schedule_key as a constraint, without the LIKE index ``unique=True`` came with.

The constraint already exists under this name (``unique=True`` created it), so only the state
changes; the database loses the ``varchar_pattern_ops`` index, which no query of autotask uses
and which every insert, claim and finish wrote to (status changes are not HOT updates: each
writes an entry into every index). Dropped CONCURRENTLY, so not in a transaction.
"""

from django.db import migrations, models

_LIKE_INDEX = "autotask_task_schedule_key_ad163731_like"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("autotask", "0010_workflow_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="taskrun",
                    name="schedule_key",
                    field=models.CharField(blank=True, max_length=255, null=True),
                ),
                migrations.AddConstraint(
                    model_name="taskrun",
                    constraint=models.UniqueConstraint(
                        fields=("schedule_key",), name="autotask_task_schedule_key_key"
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX CONCURRENTLY IF EXISTS "{_LIKE_INDEX}"',
                    reverse_sql=(
                        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{_LIKE_INDEX}" '
                        "ON autotask_task (schedule_key varchar_pattern_ops)"
                    ),
                ),
            ],
        ),
    ]
