"""A task every second, installed only in the processes of the test that counts its ticks."""

import os

from autotask.tasks import periodic_task


@periodic_task(seconds=1, start_now=True)
def tick() -> int:
    from tests.app.models import Execution

    return Execution.objects.create(key="tick", pid=os.getpid()).pk
