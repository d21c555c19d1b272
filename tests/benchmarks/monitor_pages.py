"""7. The monitor's pages over 1,000,000 runs: ``python -m tests.benchmarks --only monitor``.

Opt-in, like ``--only admin``, and on the same table (admin_changelist.fill: mostly done,
8 % waiting, a few failed; finished times one second apart back from now, so the last hour
holds 3,600 of them and the last 7 days 604,800). Each page is fetched through Django's test
client as a superuser, once to warm up and then ``REPEAT`` times; the figures are the median
and slowest, the number of queries and their total time. No asserts: figures only.
"""

from __future__ import annotations

from typing import Any

from django.test import Client

from autotask import runtime

from . import admin_changelist
from .database import BenchDB
from .report import ms, table

MONITOR = "/autotask/"


def _cases(oldest_id: int) -> list[tuple[str, str, dict[str, str]]]:
    return [
        ("overview (HTML)", MONITOR, {}),
        ("overview.json (what the poll and the stream send)", f"{MONITOR}overview.json", {}),
        ("runs, page 1", f"{MONITOR}runs/", {}),
        ("runs, the oldest page (?before=)", f"{MONITOR}runs/", {"before": str(oldest_id + 60)}),
        ("runs, status = error (0.1 %)", f"{MONITOR}runs/", {"status": "error"}),
        ("runs, name = rare (0.01 %)", f"{MONITOR}runs/", {"name": admin_changelist.RARE}),
        ("runs, queue = mail and status = waiting", f"{MONITOR}runs/",
         {"queue": "mail", "status": "waiting"}),
        ("tasks, last hour (3,600 finished)", f"{MONITOR}tasks/", {"window": "1h"}),
        ("tasks, last 24 h (86,400 finished)", f"{MONITOR}tasks/", {"window": "24h"}),
        ("a failed run's page", f"{MONITOR}runs/{oldest_id + 999}/", {}),
        ("schedules", f"{MONITOR}schedules/", {}),
    ]  # fmt: skip


def _get(client: Client, url: str, params: dict[str, str]) -> dict[str, Any]:
    figures = admin_changelist.timed_page(client, url, params)
    figures.pop("count", None)
    return figures


def measure(bench: BenchDB, n: int) -> dict[str, Any]:
    runtime.stop()
    setup = admin_changelist.fill(bench, n)
    row = bench.conn.execute("SELECT min(id) FROM autotask_task").fetchone()
    oldest_id = row[0]  # type: ignore[index]
    with admin_changelist.superuser_client() as client:
        pages = [
            {"label": label, **_get(client, url, params)}
            for label, url, params in _cases(oldest_id)
        ]
    return {"n": n, **setup, "pages": pages}


def monitor_table(figures: dict[str, Any]) -> str:
    rows = [
        [p["label"], ms(p["p50"]), ms(p["max"]), p["queries"], ms(p["sql"]), ms(p["slowest_query"])]
        for p in figures["pages"]
    ]
    title = f"monitor pages over {figures['n']:,} runs (ms; median and slowest of the repeats)"
    headers = ["page", "p50", "max", "queries", "sql", "slowest query"]
    return table(title, headers, rows)
