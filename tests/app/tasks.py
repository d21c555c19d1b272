"""Tasks the test suite runs; found by autodiscovery like any app's tasks.py."""

import asyncio
import os
import time

from autotask import task
from autotask.tasks import cron_task, delayed_task, periodic_task


@task
def add(a: int, b: int) -> int:
    return a + b


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task(retries=2)
def fail_twice(key: str) -> str:
    from tests.app.models import Counter

    counter, _ = Counter.objects.get_or_create(key=key)
    counter.value += 1
    counter.save()
    if counter.value < 3:
        raise RuntimeError(f"attempt {counter.value} fails")
    return f"ok after {counter.value}"


@task
def not_json() -> object:
    return {1, 2, 3}


@task
def noop() -> None:
    return None


@task
async def async_noop() -> None:
    return None


@task
def record(key: str) -> int:
    """Count each execution in a table: exactly-once checks read it."""
    from tests.app.models import Execution

    return Execution.objects.create(key=key, pid=os.getpid()).pk


@task
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@task
def sync_slow(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@task
def echo(value: object) -> object:
    return value


@task
async def async_record(key: str) -> int:
    """An async task that uses Django's async ORM (through asgiref's sync thread)."""
    from tests.app.models import Execution

    execution = await Execution.objects.acreate(key=key, pid=os.getpid())
    return execution.pk


@task
async def async_stream(pause: float) -> int:
    """Streams rows through the async ORM slowly, while other async tasks come and go."""
    from tests.app.models import Execution

    seen = 0
    async for _ in Execution.objects.all().aiterator(chunk_size=1):
        seen += 1
        await asyncio.sleep(pause)
    return seen


@task
def fail_with_surrogate() -> None:
    raise ValueError("cannot process file \udcff.txt")


@delayed_task(delay=1, retries=2, ttl=60)
def flaky_later(key: str) -> str:
    """The seed's decorator: fails its first two attempts, each recorded with its time."""
    from tests.app.models import Execution

    Execution.objects.create(key=key, pid=os.getpid())
    attempts = Execution.objects.filter(key=key).count()
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} fails")
    return f"ok after {attempts}"


# Schedules far enough apart never to come due while the suite runs, unless a test makes them:
# every worker a test starts records them (and the leader would tick them).
@periodic_task(seconds=3600)
def hourly() -> str:
    from tests.app.models import Execution

    return str(Execution.objects.create(key="hourly", pid=os.getpid()).pk)


@cron_task(crontab="0 0 * 1 1")  # the seed's order: midnight on 1 January
def new_year() -> None:
    return None


@task(retries=1)
def record_slowly(key: str, seconds: float) -> int:
    """Sleeps, then records its execution: one killed while sleeping has left no record.
    (A run lost with its process counts as an attempt: the retry is what runs it again.)"""
    from tests.app.models import Execution

    time.sleep(seconds)
    return Execution.objects.create(key=key, pid=os.getpid()).pk


@periodic_task(seconds=3600)
def failing_hourly() -> None:
    raise RuntimeError("this tick fails")
