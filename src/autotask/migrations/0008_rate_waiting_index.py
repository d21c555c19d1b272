"""The index of waiting rate-limited runs (when does the next token free for them?).

Built ``CONCURRENTLY``, so outside a transaction and in a migration of its own: the column is
new and empty, but a plain ``CREATE INDEX`` would still block enqueues for a scan of the table.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("autotask", "0007_limits"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="taskrun",
            index=models.Index(
                fields=["rate_key"],
                condition=models.Q(("rate_key__isnull", False), ("status", "waiting")),
                name="autotask_task_rate_waiting",
            ),
        ),
    ]
