"""autotask's tasks of the compare, found by autodiscovery (this package is an installed app in
``autotask_settings``). No schedules here: a periodic task would add runs to the counts."""

from __future__ import annotations

from autotask import task

from .probes import calls, starts


@task
async def async_noop() -> None:
    calls.hit()


@task
def sync_noop() -> None:
    calls.hit()


@task
async def probe(i: int) -> None:
    starts.mark(i)
