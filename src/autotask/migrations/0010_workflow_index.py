"""The index of a workflow's steps, built ``CONCURRENTLY`` (see 0008 for why its own migration)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("autotask", "0009_workflows"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="taskrun",
            index=models.Index(
                fields=["workflow_id"],
                condition=models.Q(("workflow_id__isnull", False)),
                name="autotask_task_workflow",
            ),
        ),
    ]
