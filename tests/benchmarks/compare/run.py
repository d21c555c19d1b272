"""One (system, workload) in this process: ``python -m tests.benchmarks.compare.run SYSTEM
WORKLOAD [--n N] [--timeout S]``; prints one ``compare-result {json}`` line.

Only ``<system>_side`` is imported, so a run pays for (and is disturbed by) nothing but the
system under test. Two more "workloads" are internal: ``setup`` (create the database and the
system's schema) and ``serve`` (one consumer of ``drain_async_2proc``, started by that run).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from types import ModuleType
from typing import Any

from . import common
from .systems import SYSTEMS, WORKLOADS, capable


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.compare.run")
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("workload", choices=(*WORKLOADS, "setup", "serve"))
    parser.add_argument("--n", type=int, default=5000, help="jobs or enqueues (default 5000)")
    parser.add_argument("--latency-n", type=int, default=300, help="latency probes (300)")
    parser.add_argument(
        "--budget",
        type=float,
        default=5.0,
        help="seconds a timed series may take: a drain, an enqueue series or a latency "
        "series still going then is cut, its figure the rate of what was done (default 5)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds for the whole run (default 120)"
    )
    parser.add_argument("--kind", choices=("async", "sync"), default="async", help="for serve")
    return parser.parse_args(argv)


def wait_for(child: Any, word: str, deadline: float) -> str:
    """The next line of ``child`` that starts with ``word`` (libraries may print others)."""
    while True:
        line = common.read_line(child, deadline)
        if line.startswith(word):
            return line


def two_processes(system: str, side: ModuleType, n: int, budget: float, deadline: float) -> Any:
    """A backlog of ``n`` drained by two consumer processes started together: both are ready
    (imported, connected) before ``go``, so the clock runs from the start of the consumers."""
    side.insert_backlog(n, "async")
    unfinished = common.Counter(side.DATABASE, side.UNFINISHED)
    children = []
    try:
        command = common.run_command(system, "serve", "--kind", "async")
        children = [common.spawn(command) for _ in range(2)]
        for child in children:
            wait_for(child, "ready", deadline)
        cpu = common.CpuMeter()
        began = time.perf_counter()
        for child in children:
            common.tell(child, "go")
        left = common.wait_drained(unfinished, began + budget)
        finished = time.perf_counter()
        cpu.stop()
        for child in children:
            common.tell(child, "stop")
        per_process = [int(wait_for(c, "stopped", deadline).split()[1]) for c in children]
    finally:
        unfinished.close()
        common.end_children(children)
    figures = common.drain_figures(n, left, began, began, finished, 0.0, sum(per_process), cpu)
    done_rows = common.count(side.DATABASE, side.DONE)
    return {**figures, "per_process": per_process, "done_rows": done_rows}


def run(system: str, side: ModuleType, args: argparse.Namespace, deadline: float) -> Any:
    workload = args.workload
    if not capable(system, workload):
        raise RuntimeError(f"{system} has no {workload}")
    side.reset()
    if workload in ("drain_async", "drain_sync"):
        return side.drain(args.n, workload.removeprefix("drain_"), args.budget)
    if workload == "drain_async_2proc":
        return two_processes(system, side, args.n, args.budget, deadline)
    if workload in ("enqueue_single", "enqueue_single_async"):
        return getattr(side, workload)(args.n, args.budget)
    if workload == "enqueue_bulk":
        return side.enqueue_bulk(args.n)
    if workload == "latency":
        return side.latency(args.latency_n, args.budget)
    if workload == "latency_busy":
        cores = os.cpu_count() or 1
        with common.spinners(cores):
            return {**side.latency(args.latency_n, args.budget), "spinners": cores}
    raise ValueError(workload)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    common.terminate_on_signal()
    began = time.perf_counter()
    deadline = began + args.timeout
    side = importlib.import_module(f"tests.benchmarks.compare.{args.system}_side")
    if args.workload == "serve":
        side.serve(args.kind)
        return 0
    try:
        if args.workload == "setup":
            side.setup()
            figures: Any = {}
        else:
            figures = run(args.system, side, args, deadline)
    except Exception as exc:
        traceback.print_exc()
        common.emit({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    common.emit({"ok": True, "figures": figures, "wall": time.perf_counter() - began})
    return 0


if __name__ == "__main__":
    sys.exit(main())
