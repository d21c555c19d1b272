"""Where one enqueue's time goes: ``python -m tests.benchmarks.compare.breakdown [--n N]``.

The compare's single-enqueue figures say autotask is slower than the plain-psycopg floor; this
says by how much each layer between the two costs, so a change can be aimed at the layer that
pays. Each step adds one layer to the one before, and the steps run in interleaved rounds (one
series of each per round), so a machine that drifts moves them all alike:

1. the floor: its INSERT into its own two-index table (``floor_side``);
2. a bare INSERT of the same columns into a copy of ``autotask_task`` with its primary key
   only and no trigger: the cost of autotask's wider row;
3. the same bare INSERT into ``autotask_task`` itself: the cost of its other indexes and its
   insert trigger (the NOTIFY);
4. ``sql.RUN_INSERT`` with the parameters autotask sends, on a psycopg connection of its own;
5. the same statement through Django's cursor (the sync call's path, which joins the caller's
   transaction);
6. the public call: ``task()`` for sync, ``await task.defer()`` for async.

Needs DATABASE_URL (or the default local server) and creates both systems' databases as the
compare does. Figures only: medians of the rounds, in microseconds a call; nothing asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from django.db import connections
from psycopg.types.json import Jsonb

from autotask import sql
from autotask.runtime.database import connection_kwargs

from . import autotask_side, common, floor_side, tasks

# A bare INSERT with the same columns autotask fills, and no casts, COALESCE or read-back beyond
# the id: what the table costs by itself.
_BARE_INSERT = """
INSERT INTO {table} (name, queue, args, kwargs, priority, max_attempts, run_at, status)
VALUES (%s, 'default', '[]', '{{}}', 0, 1, statement_timestamp(), 'waiting') RETURNING id
"""
_COPY = "breakdown_autotask_task"
_COPY_CREATE = f"""
CREATE TABLE IF NOT EXISTS {_COPY} (LIKE autotask_task INCLUDING ALL EXCLUDING INDEXES,
                                    PRIMARY KEY (id))
"""


def _reset() -> None:
    autotask_side.reset()
    floor_side.reset()
    common.execute(autotask_side.DATABASE, f"TRUNCATE {_COPY}")


def _report(title: str, rounds: dict[str, list[float]]) -> None:
    print(title)
    before: float | None = None
    for step, seconds in rounds.items():
        median = statistics.median(seconds) * 1e6
        added = "" if before is None else f"  ({median - before:+.0f})"
        shown = " ".join(f"{s * 1e6:.0f}" for s in seconds)
        print(f"  {step:50s} {median:6.0f} us{added:9s}  rounds: {shown}")
        before = median


def sync_steps(n: int, rounds: int) -> dict[str, list[float]]:
    task = tasks.sync_noop
    for _ in range(common.WARMUP):
        task()
    run = task._new_run((), {})
    params = run.params()
    own = psycopg.Connection.connect(**{**connection_kwargs(purpose="caller"), "autocommit": True})
    floor = psycopg.connect(common.conninfo(floor_side.DATABASE), autocommit=True)
    django_connection = connections["default"]
    copy = _BARE_INSERT.format(table=_COPY)
    bare = _BARE_INSERT.format(table="autotask_task")

    def through_django() -> None:
        with django_connection.cursor() as cursor:
            cursor.execute(sql.RUN_INSERT, params)
            cursor.fetchone()

    steps: dict[str, Callable[[], Any]] = {
        "1. floor INSERT": lambda: floor.execute(floor_side.INSERT, [Jsonb({})]),
        "2. bare INSERT, autotask's row, primary key only": lambda: own.execute(copy, [run.name]),
        "3. bare INSERT into autotask_task": lambda: own.execute(bare, [run.name]),
        "4. RUN_INSERT, own psycopg connection": lambda: own.execute(
            sql.RUN_INSERT, params
        ).fetchone(),  # read back, as steps 5 and 6 do
        "5. RUN_INSERT, Django's cursor": through_django,
        "6. task()": task,
    }
    figures: dict[str, list[float]] = {step: [] for step in steps}
    try:
        for _ in range(rounds):
            _reset()
            for step, call in steps.items():
                began = time.perf_counter()
                for _ in range(n):
                    call()
                figures[step].append((time.perf_counter() - began) / n)
    finally:
        own.close()
        floor.close()
    return figures


def async_steps(n: int, rounds: int) -> dict[str, list[float]]:
    task = tasks.async_noop

    async def measure() -> dict[str, list[float]]:
        for _ in range(common.WARMUP):  # opens this loop's connections
            await task.defer()
        params = task._new_run((), {}).params()
        kwargs = {**connection_kwargs(purpose="caller"), "autocommit": True}
        own = await psycopg.AsyncConnection.connect(**kwargs)
        floor = await psycopg.AsyncConnection.connect(
            common.conninfo(floor_side.DATABASE), autocommit=True
        )

        async def statement() -> None:
            await (await own.execute(sql.RUN_INSERT, params)).fetchone()

        steps: dict[str, Callable[[], Awaitable[Any]]] = {
            "1. floor INSERT": lambda: floor.execute(floor_side.INSERT, [Jsonb({})]),
            "4. RUN_INSERT, own psycopg connection": statement,
            "6. await task.defer()": task.defer,
        }
        figures: dict[str, list[float]] = {step: [] for step in steps}
        try:
            for _ in range(rounds):
                await asyncio.to_thread(_reset)
                for step, call in steps.items():
                    began = time.perf_counter()
                    for _ in range(n):
                        await call()
                    figures[step].append((time.perf_counter() - began) / n)
        finally:
            await own.close()
            await floor.close()
        return figures

    return asyncio.run(measure())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.compare.breakdown")
    parser.add_argument("--n", type=int, default=3000, help="calls a series (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = parser.parse_args(argv)
    autotask_side.setup()
    floor_side.setup()
    common.execute(autotask_side.DATABASE, _COPY_CREATE)
    try:
        _report("sync enqueue, a call:", sync_steps(args.n, args.rounds))
        _report("async enqueue, a call:", async_steps(args.n, args.rounds))
        _reset()
    finally:
        common.execute(autotask_side.DATABASE, f"DROP TABLE IF EXISTS {_COPY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
