"""Tasks the test suite runs; found by autodiscovery like any app's tasks.py."""

import asyncio
import concurrent.futures
import contextlib
import os
import time

from autotask import Postpone, task
from autotask.backoff import constant, linear
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


@task(retries=3, retry_on=(KeyError,), backoff=constant(0.05))
def picky(key: str, error: str) -> None:
    """Retried only for KeyError: raises ``error`` ('KeyError' or 'ValueError') every time."""
    from tests.app.models import Execution

    Execution.objects.create(key=key, pid=os.getpid())
    raise {"KeyError": KeyError, "ValueError": ValueError}[error](f"{error} in {key}")


@task(retries=1, retry_on=(StopIteration,), backoff=constant(0.05))
def stops_iterating(key: str) -> None:
    """A plain function whose next() ran dry: retried, as its retry_on asks, though a thread's
    StopIteration reaches the loop wrapped."""
    from tests.app.models import Execution

    Execution.objects.create(key=key, pid=os.getpid())
    next(iter(()))


@task(retries=2, backoff=linear(0.3))
def flaky_linear(key: str) -> int:
    from tests.app.models import Execution

    Execution.objects.create(key=key, pid=os.getpid())
    attempts = Execution.objects.filter(key=key).count()
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


@task(max_postpones=3)
def postponing(key: str, times: int) -> int:
    """Postpones itself ``times`` times (0.1 s each), then returns how often it ran."""
    from tests.app.models import Execution

    Execution.objects.create(key=key, pid=os.getpid())
    ran = Execution.objects.filter(key=key).count()
    if ran <= times:
        raise Postpone(0.1, reason=f"not yet ({ran})")
    return ran


@task
async def awaits_what_it_cancelled() -> None:
    inner = asyncio.ensure_future(asyncio.sleep(10))
    inner.cancel()
    await inner  # raises CancelledError: the task's own doing, not the runtime's


@task
def result_of_a_cancelled_future() -> None:
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    future.cancel()
    future.result()


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@task
def raises_unprintable() -> None:
    raise _Unprintable()


@task
def raises_huge(size: int) -> None:
    raise ValueError("x" * size)


@task
async def ignores_cancel(seconds: float) -> str:
    """Swallows every cancellation for ``seconds``: shutdown must not wait for it for ever."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(end - loop.time())
    return "outlived"


@task(unique=True)
def unique_add(a: int, b: int) -> int:
    return a + b


@task(timeout=0.3, retries=1, backoff=constant(0.05))
async def async_oversleeps(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "woke"


@task(timeout=30)
def times_out_itself(what: str) -> None:
    """A plain function whose own call timed out (socket.timeout is a TimeoutError) long
    before its task's timeout."""
    raise TimeoutError(f"{what} did not answer")


@task(timeout=0.3)
def sync_oversleeps(key: str, seconds: float) -> str:
    """Sleeps in small steps until told to stop (or ``seconds`` pass); records how it ended."""
    from autotask import current
    from tests.app.models import Execution

    end = time.monotonic() + seconds
    while time.monotonic() < end and not current().should_stop():
        time.sleep(0.02)
    how = "told to stop" if current().should_stop() else "ran out"
    Execution.objects.create(key=f"{key}: {how}", pid=os.getpid())
    return how


@task
def sync_until_stopped(key: str) -> str:
    return sync_oversleeps.call(key, 10.0)


@task(retries=50, backoff=constant(0.2), ttl=86400)
def chaos_record(n: int) -> int:
    """The chaos test's run: records its own execution (so executions can be counted). Kept a
    day: the full-size run outlasts the default ttl, and pruned rows could not be checked."""
    from tests.app.models import Execution

    return Execution.objects.create(key=str(n), pid=os.getpid()).pk


@task(atomic=True)
def atomic_record(key: str, fail: bool) -> int:
    """Records its execution inside transaction.atomic(); a failure rolls the record back."""
    from tests.app.models import Execution

    pk = Execution.objects.create(key=key, pid=os.getpid()).pk
    if fail:
        raise RuntimeError(f"{key} fails after writing")
    return pk


@task
def record_then_fail(key: str) -> None:
    """The same without atomic=True: the record stays although the run fails."""
    from tests.app.models import Execution

    Execution.objects.create(key=key, pid=os.getpid())
    raise RuntimeError(f"{key} fails after writing")


@task(atomic=True)
def atomic_not_json(key: str) -> object:
    """Writes, then returns what cannot be stored: the run fails, so the write goes too."""
    from tests.app.models import Execution

    Execution.objects.create(key=key, pid=os.getpid())
    return {1, 2}


@task(retries=1, backoff=constant(0))
def fails_then_sleeps(seconds: float) -> str:
    """The first attempt fails (and is due again at once); the second takes ``seconds``."""
    from autotask import current

    if current().attempt == 1:
        raise RuntimeError("first attempt")
    time.sleep(seconds)
    return "second"
