"""``python -m tests.benchmarks [--quick] [--workers N] [--json PATH]``: figures, not asserts.

Run from the repository root with DATABASE_URL set (default
postgresql://postgres@127.0.0.1:5432/test). The benchmarks create the database
``autotask_bench`` on that server if it is missing, migrate it and work only there:

1. enqueue -> start latency of sequential runs on an idle, listening runtime;
2. throughput of one runtime on a backlog of no-op runs (sync and async), and of no-ops with
   limits that never bind (what a limited claim costs against an unlimited one);
3. enqueue rate: autocommit calls, calls in one transaction, ``await defer()``, the bulk
   ``enqueue_many()`` / ``defer_many()``;
4. duplicates and losses when several processes with a runtime each race for the same runs;
5. (opt-in: ``--only admin``) the admin's run list over 1,000,000 runs (admin_changelist.py);
6. (opt-in: ``--only memory``) this process's RSS while one runtime runs 100,000 runs;
7. (opt-in: ``--only monitor``) the monitor's pages over 1,000,000 runs (monitor_pages.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .database import BENCH_DATABASE, BenchDB, ensure_bench_database, server_url
from .report import ms, rate, secs, table

MEASUREMENTS = ("latency", "throughput", "enqueue", "duplicates")
OPT_IN = ("admin", "memory", "monitor")  # run only when named in --only


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (well under a minute)")
    parser.add_argument("--workers", type=int, default=4, help="AUTOTASK_WORKERS (default 4)")
    parser.add_argument(
        "--processes",
        type=int,
        default=3,
        help="worker processes of the duplicates measurement (default 3)",
    )
    parser.add_argument(
        "--idle-time",
        type=float,
        default=10.0,
        help="AUTOTASK_HANDLE_TASK_IDLE_TIME, the fallback poll (default 10 s, "
        "autotask's default: a latency near it means a lost wake-up)",
    )
    parser.add_argument(
        "--pool-size", type=int, default=None, help="AUTOTASK_POOL_SIZE (default: autotask's)"
    )
    parser.add_argument(
        "--conn-max-age",
        type=float,
        default=0.0,
        help="CONN_MAX_AGE of Django's connection, used by sync tasks such as "
        "record() (default 0, Django's: a new connection per task)",
    )
    parser.add_argument(
        "--only",
        default=",".join(MEASUREMENTS),
        help=f"comma-separated subset of {','.join(MEASUREMENTS + OPT_IN)}",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write the figures as JSON to PATH ('-': stdout, and the tables go to stderr)",
    )
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(MEASUREMENTS + OPT_IN))
    if unknown:
        parser.error(f"unknown measurement(s) {', '.join(unknown)}")
    if args.workers < 1 or args.processes < 1:
        parser.error("--workers and --processes must be at least 1")
    return args


def configure(args: argparse.Namespace) -> None:
    """Environment for the settings module (read by this process and the worker processes)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.benchmarks.settings"
    os.environ["AUTOTASK_BENCH_WORKERS"] = str(args.workers)
    os.environ["AUTOTASK_BENCH_IDLE_TIME"] = str(args.idle_time)
    os.environ["AUTOTASK_BENCH_CONN_MAX_AGE"] = str(args.conn_max_age)
    if args.pool_size is not None:
        os.environ["AUTOTASK_BENCH_POOL_SIZE"] = str(args.pool_size)
    else:
        os.environ.pop("AUTOTASK_BENCH_POOL_SIZE", None)


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def dist_cells(d: dict[str, float]) -> list[str]:
    return [ms(d["p50"]), ms(d["p95"]), ms(d["p99"]), ms(d["max"])]


def latency_table(results: list[dict[str, Any]], n: int) -> str:
    rows = []
    for r in results:
        count = f"{r['measured']}/{r['requested']}" + (" (out of time)" if r["timed_out"] else "")
        trip = r["round_trip"]
        rows.append(
            [
                r["label"],
                count,
                *dist_cells(r["start_latency"]),
                f"{ms(trip['p50'])} / {ms(trip['p95'])}",
                ms(r["run_to_finish"]["p50"]),
            ]
        )
    return table(
        f"1. enqueue -> start latency: {n} sequential runs, runtime idle and listening "
        "(started_at - enqueued_at, DB clock)",
        [
            "task, enqueued by",
            "runs",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "round trip p50/p95 ms",
            "run p50 ms",
        ],
        rows,
    )


def throughput_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        seconds = r["seconds"]
        busy = r["busy_seconds"] / seconds if seconds and r["busy_seconds"] else None
        rows.append(
            [
                r["label"],
                f"{r['done']}/{r['n']}",
                rate(r["done"], seconds),
                secs(seconds),
                rate(r["done"], r["wall_seconds"]),
                secs(r["wall_seconds"]),
                f"{r['n'] / r['claims']:.1f}" if r["claims"] else "-",
                "-" if busy is None else f"{busy:.2f}",
            ]
        )
    return table(
        "2. throughput of one runtime: backlog bulk-inserted while stopped, then start()",
        [
            "task",
            "done",
            "jobs/s",
            "first start->last finish s",
            "jobs/s wall",
            "wall s",
            "runs/claim",
            "avg busy slots",
        ],
        rows,
    )


def enqueue_table(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["label"],
            r["n"],
            r["rows"],
            rate(r["n"], r["seconds"]),
            secs(r["seconds"]),
            f"{r['seconds'] / r['n'] * 1e6:.0f}",
        ]
        for r in results
    ]
    return table(
        "3. enqueue rate of noop, runtime stopped (the cost of enqueueing alone)",
        ["how", "calls", "rows", "enqueues/s", "seconds", "us/enqueue"],
        rows,
    )


def duplicates_table(r: dict[str, Any]) -> str:
    distinct = r["distinct"]
    rows = [
        ["runs enqueued (one INSERT)", r["n"]],
        [
            "processes x AUTOTASK_WORKERS",
            f"{r['processes']} x {os.environ['AUTOTASK_BENCH_WORKERS']}",
        ],
        ["runs by status", ", ".join(f"{k} {v}" for k, v in r["statuses"].items()) or "-"],
        [
            "runs per process (pid: runs)",
            ", ".join(f"{k}: {v}" for k, v in r["per_process"].items()) or "-",
        ],
        ["runs claimed more than once (attempts > 1)", r["retried"]],
        ["executions (rows in Execution)", r["executions"]],
        ["duplicates (executions - distinct keys)", r["executions"] - distinct],
        ["keys executed more than once", r["keys_twice"]],
        ["lost (keys without execution)", r["lost"]],
        ["wall s (insert -> all finished)", secs(r["wall_seconds"])],
        ["first start -> last finish s", secs(r["seconds"])],
        ["jobs/s, all processes", rate(r["done"], r["seconds"])],
    ]
    if r["unfinished"]:
        rows.append(["NOT FINISHED when the time limit hit", r["unfinished"]])
    return table(
        f"4. duplicates under {r['processes']} processes: record(key) x {r['n']}",
        ["", "value"],
        rows,
    )


def memory_table(results: list[dict[str, Any]]) -> str:
    def mib(value: int | None) -> str:
        return "-" if value is None else f"{value / 2**20:.1f}"

    rows = [
        [
            r["task"],
            f"{r['done']:,}/{r['n']:,}",
            mib(r["rss_after_first_batch"]),
            mib(r["rss_at_end"]),
            mib(r["rss_max"]),
            secs(r["seconds"]),
        ]
        for r in results
    ]
    return table(
        "6. memory: RSS of this process while one runtime runs batches of 10,000 runs",
        ["task", "runs", "RSS after 10,000 MiB", "RSS at the end MiB", "max MiB", "seconds"],
        rows,
    )


def notes(figures: dict[str, Any], idle_time: float) -> list[str]:
    """Plain warnings for figures that point at a bug rather than at the machine."""
    found = []
    for r in figures.get("latency", []):
        p50 = r["start_latency"]["p50"]
        if r["timed_out"] or r["measured"] < r["requested"]:
            found.append(
                f"latency '{r['label']}': only {r['measured']} of {r['requested']} runs "
                "within the time budget"
            )
        if p50 == p50 and p50 > min(0.1, idle_time / 4):
            found.append(
                f"latency '{r['label']}': p50 {ms(p50)} ms, a wake-up is being missed "
                f"(fallback poll {idle_time:g} s)"
            )
        trip = r["round_trip"]["p50"]
        if trip == trip and p50 == p50 and trip > 10 * max(p50, 0.001):
            found.append(
                f"latency '{r['label']}': round trip p50 {ms(trip)} ms >> start latency: "
                "the handle is slow to see the end"
            )
    for r in figures.get("throughput", []):
        if r["unfinished"]:
            found.append(
                f"throughput '{r['label']}': {r['unfinished']} runs unfinished at the limit"
            )
    dup = figures.get("duplicates")
    if dup:
        if dup["executions"] > dup["distinct"]:
            found.append(f"duplicates: {dup['executions'] - dup['distinct']} extra executions")
        if dup["lost"]:
            found.append(f"duplicates: {dup['lost']} keys never executed")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure(args)
    out = sys.stderr if args.json == "-" else sys.stdout
    sizes = {
        "latency": 100 if args.quick else 200,
        "throughput": 500 if args.quick else 2000,
        "enqueue": 500 if args.quick else 2000,
        "duplicates": 500 if args.quick else 2000,
        "admin": 200_000 if args.quick else 1_000_000,
        "monitor": 200_000 if args.quick else 1_000_000,
        "memory": 20_000 if args.quick else 100_000,
    }
    budget = 8.0 if args.quick else 20.0  # per latency series
    limit = 20.0 if args.quick else 45.0  # per batch (throughput, duplicates)

    began = time.perf_counter()
    progress(f"database {BENCH_DATABASE} on the server of {server_url()}")
    if ensure_bench_database():
        progress(f"created database {BENCH_DATABASE}")

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)

    import psycopg
    from django.conf import settings

    from autotask import conf, runtime
    from tests.app import tasks as app_tasks

    from . import measurements as m

    bench = BenchDB()
    bench.clear_workers()
    pool_size = conf.get().pool_size
    header = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "postgresql": bench.server_version(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "cpus": os.cpu_count(),
        "workers": settings.AUTOTASK_WORKERS,
        "pool_size": pool_size,
        "idle_time": settings.AUTOTASK_HANDLE_TASK_IDLE_TIME,
        "conn_max_age": args.conn_max_age,
        "quick": args.quick,
        "sizes": sizes,
        "load_before": os.getloadavg(),
    }
    figures: dict[str, Any] = {"header": header}
    tables: list[str] = []
    try:
        if "latency" in args.only:
            n = sizes["latency"]
            results = []
            for task, label in (
                (app_tasks.noop, "noop (def), task()"),
                (app_tasks.async_noop, "async_noop (async def), task()"),
            ):
                progress(f"latency: {label}")
                results.append(m.latency_sync(bench, task, label, n, budget))
            label = "async_noop (async def), await defer()"
            progress(f"latency: {label}")
            results.append(m.latency_defer(bench, app_tasks.async_noop, label, n, budget))
            figures["latency"] = results
            tables.append(latency_table(results, n))
        if "throughput" in args.only:
            n = sizes["throughput"]
            results = []
            for task, label in (
                (app_tasks.noop, "noop (def, thread pool)"),
                (app_tasks.async_noop, "async_noop (async def, on the loop)"),
            ):
                progress(f"throughput: {n} x {label}")
                results.append(m.throughput(bench, task, label, n, limit))
            # From here on this process has limited tasks, so its claims pay for limits.
            from . import limited_tasks as limited

            for task, label in (
                (app_tasks.noop, "noop, claimed by a process with limited tasks"),
                (app_tasks.async_noop, "async_noop, claimed by a process with limited tasks"),
                (limited.noop_limited, "noop, concurrency=4 (never binds)"),
                (limited.async_noop_limited, "async_noop, concurrency=4 (never binds)"),
                (limited.async_noop_keyed, "async_noop, concurrency=1 per key, n keys"),
                (limited.async_noop_rated, "async_noop, rate=10000/s (never binds)"),
            ):
                progress(f"throughput: {n} x {label}")
                results.append(m.throughput(bench, task, label, n, limit))
            figures["throughput"] = results
            tables.append(throughput_table(results))
        if "enqueue" in args.only:
            n = sizes["enqueue"]
            progress(f"enqueue rate: {n} enqueues each way")
            figures["enqueue"] = m.enqueue_rates(bench, n, width=16)
            tables.append(enqueue_table(figures["enqueue"]))
        if "duplicates" in args.only:
            n = sizes["duplicates"]
            progress(f"duplicates: {args.processes} processes, {n} x record(key)")
            figures["duplicates"] = m.duplicates(bench, n, args.processes, limit)
            tables.append(duplicates_table(figures["duplicates"]))
        if "memory" in args.only:
            n = sizes["memory"]
            results = []
            for task in (app_tasks.async_noop, app_tasks.noop):
                progress(f"memory: {n:,} x {task.name}")
                results.append(m.memory(bench, task, n, batch=10_000, limit=limit))
            figures["memory"] = results
            tables.append(memory_table(results))
        if "admin" in args.only:
            from . import admin_changelist

            n = sizes["admin"]
            progress(f"admin: {n:,} runs, then the run list")
            figures["admin"] = admin_changelist.measure(bench, n)
            tables.append(admin_changelist.admin_table(figures["admin"]))
        if "monitor" in args.only:
            from . import monitor_pages

            n = sizes["monitor"]
            progress(f"monitor: {n:,} runs, then the monitor's pages")
            figures["monitor"] = monitor_pages.measure(bench, n)
            tables.append(monitor_pages.monitor_table(figures["monitor"]))
    finally:
        runtime.stop()
        bench.close()
    figures["seconds"] = time.perf_counter() - began
    figures["load_after"] = os.getloadavg()

    print(
        f"autotask benchmarks, {header['when']}: PostgreSQL {header['postgresql']} "
        f"(database {BENCH_DATABASE}), Python {header['python']}, Django {header['django']}, "
        f"psycopg {header['psycopg']}, {header['cpus']} CPUs\n"
        f"one runtime: AUTOTASK_WORKERS={header['workers']}, AUTOTASK_POOL_SIZE={pool_size}, "
        f"fallback poll {header['idle_time']:g} s, CONN_MAX_AGE {args.conn_max_age:g}"
        f"{' (--quick)' if args.quick else ''}\n"
        f"load average (1 min) {header['load_before'][0]:.2f} before, "
        f"{figures['load_after'][0]:.2f} after: other work on the machine skews every figure\n",
        file=out,
    )
    print("\n\n".join(tables), file=out)
    found = notes(figures, float(header["idle_time"]))
    figures["notes"] = found
    if found:
        print("\nworth a look:", file=out)
        for note in found:
            print(f"  - {note}", file=out)
    print(f"\nbenchmarks took {figures['seconds']:.1f} s", file=out)
    if args.json:
        text = json.dumps(figures, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
