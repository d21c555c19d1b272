"""An index behind each of the admin's filters (status, queue, name), newest run first.

Built ``CONCURRENTLY`` (so outside a transaction): on a table of millions of runs a plain
``CREATE INDEX`` would block every enqueue and claim for as long as the build takes.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("autotask", "0004_worker_ids"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="taskrun",
            index=models.Index(fields=["status", "id"], name="autotask_task_admin_status"),
        ),
        AddIndexConcurrently(
            model_name="taskrun",
            index=models.Index(fields=["queue", "id"], name="autotask_task_admin_queue"),
        ),
        AddIndexConcurrently(
            model_name="taskrun",
            index=models.Index(fields=["name", "id"], name="autotask_task_admin_name"),
        ),
    ]
