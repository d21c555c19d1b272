"""The test suite's workflow steps; found by autodiscovery like any app's tasks.py."""

import asyncio
import os
import time

from autotask import task
from tests.app.models import Execution


def _record(key: str) -> None:
    Execution.objects.create(key=key, pid=os.getpid())


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def double(x: int) -> int:
    return 2 * x


@task
async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@task
def fail(*args: object) -> None:
    raise ValueError(f"failed on purpose with {args!r}")


@task
def record(key: str) -> str:
    _record(key)
    return key


@task
def gather(results: list[object], key: str) -> list[object]:
    """A group's final step: records that it ran, and hands back what it was given."""
    _record(key)
    return results


@task(retries=3)
def member(i: int, seconds: float) -> int:
    """A group member across processes: sleeps, then records that it ran (tried again if its
    process is killed meanwhile)."""
    time.sleep(seconds)
    _record(f"member-{i}")
    return i


@task(retries=3)
def link(previous: object, key: str, seconds: float) -> str:
    """A chain step across processes: records that it ran, given the step before's result."""
    time.sleep(seconds)
    _record(f"{key}<-{previous}")
    return key


@task
def final(results: list[int]) -> int:
    """A group's final step across processes: records each time it runs."""
    _record("final")
    return sum(results)
