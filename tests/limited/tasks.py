"""The test suite's limited tasks; found by autodiscovery like any app's tasks.py."""

import asyncio
import os
import time

from autotask import task


def _span(key: str, seconds: float) -> None:
    """Record the run's start and end in Span, by the database's clock, sleeping between."""
    from django.db.models.functions import Now

    from tests.app.models import Span

    span = Span.objects.create(key=key, pid=os.getpid(), started_at=Now())
    time.sleep(seconds)
    Span.objects.filter(pk=span.pk).update(ended_at=Now())


@task(concurrency=2)
def two_at_a_time(key: str, seconds: float) -> None:
    _span(key, seconds)


@task(concurrency=1, concurrency_key=lambda account, key, seconds: account)
def one_per_account(account: int, key: str, seconds: float) -> None:
    _span(f"{account}:{key}", seconds)


@task(rate="20/s")
def twenty_per_second(key: str) -> int:
    from tests.app.models import Execution

    return Execution.objects.create(key=key, pid=os.getpid()).pk


@task(rate="2/s", rate_key=lambda account: account)
def two_per_second_per_account(account: str) -> None:
    pass


@task(concurrency=1)
async def async_one_at_a_time(seconds: float) -> None:
    await asyncio.sleep(seconds)


@task(concurrency=1, retries=1)
def one_at_a_time_slow_first(key: str) -> None:
    """The first attempt of key "slow" sleeps long (to be killed in); the rest are quick."""
    from tests.app.models import Span

    first = not Span.objects.filter(key=key).exists()
    _span(key, 60 if key == "slow" and first else 0.1)
