"""``python -m tests.benchmarks.compare [--n 5000] [--repeat 3] [--systems ...] [--workloads ...]
[--json PATH] [--quick]``: autotask beside pgqueuer, oban, procrastinate and a psycopg floor.

Every (system, workload, repetition) runs in a fresh subprocess (``compare.run``) that imports
only the system under test, starts from an empty table of its system and prints one JSON line.
Repetitions are interleaved (all workloads of all systems, then again), and the systems' order
turns each round, so a slow minute on the shared machine is spread over everyone. A run that
fails or times out is a footnote; the others go on. Figures only: nothing is asserted.

Each system has its own database on DATABASE_URL's server (default
postgresql://postgres@127.0.0.1:5432/test): ``autotask_bench`` (the benchmarks' database) and
``compare_pgqueuer``, ``compare_oban``, ``compare_procrastinate``, ``compare_floor``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from . import common, report
from .systems import (
    CONCURRENCY,
    PACKAGES,
    SPECS,
    SYSTEMS,
    WORKLOADS,
    capable,
)

QUICK = {"n": 1000, "repeat": 1, "latency_n": 50, "budget": 3.0}
DEFAULTS = {"n": 5000, "repeat": 3, "latency_n": 300, "budget": 5.0}


def names(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown)}")
    return [v for v in allowed if v in chosen]  # in the canonical order


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, help="jobs per drain, enqueues per series (5000)")
    parser.add_argument("--repeat", type=int, help="repetitions; the table shows medians (3)")
    parser.add_argument("--latency-n", type=int, help="probes per latency series (300)")
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds a timed series may take before it is cut and its figure is the rate of "
        "the part done (5; keeps slow systems within the run's time)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per subprocess (120)")
    parser.add_argument(
        "--systems",
        type=lambda v: names(v, SYSTEMS, "system"),
        default=list(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)}",
    )
    parser.add_argument(
        "--workloads",
        type=lambda v: names(v, WORKLOADS, "workload"),
        default=list(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="n=1000, repeat 1, 50 latency probes, budget 3 s (well under 2 minutes)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="write every run's figures and the medians ('-': stdout)"
    )
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.n < 1 or args.repeat < 1 or args.latency_n < 1 or args.budget <= 0:
        parser.error("--n, --repeat and --latency-n must be at least 1, --budget positive")
    return args


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def versions(systems: list[str]) -> dict[str, str]:
    found = {}
    for system in systems:
        for package in PACKAGES[system]:
            try:
                found[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                found[package] = "not installed"
    return found


def subprocess_run(command: list[str], timeout: float) -> dict[str, Any]:
    """Run one subprocess in a session of its own; on timeout kill its whole process group
    (its spinners and second consumers with it). Its result line, or the error."""
    began = time.perf_counter()
    child = subprocess.Popen(
        command,
        cwd=common.ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_group(child.pid)
        out, err = child.communicate()
        timed_out = True
    except BaseException:  # Ctrl-C: take the run down with us
        kill_group(child.pid)
        child.communicate()
        raise
    finally:
        kill_group(child.pid)  # anything of its group still alive (there should be none)
    seconds = time.perf_counter() - began
    if timed_out:
        return {"ok": False, "error": f"timed out after {timeout:g} s", "wall": seconds}
    for line in reversed(out.splitlines()):
        if line.startswith(common.RESULT):
            result: dict[str, Any] = json.loads(line.removeprefix(common.RESULT))
            result["wall"] = seconds
            return result
    last = (err.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "error": f"exit code {child.returncode}: {last}", "wall": seconds}


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def header_text(header: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"autotask vs peers, {header['when']}: PostgreSQL {header['postgresql']}, "
        f"Python {header['python']}, {header['cpus']} CPUs, "
        f"load average (1 min) {header['load_before'][0]:.2f} before, "
        f"{header['load_after'][0]:.2f} after",
        "packages: " + ", ".join(f"{k} {v}" for k, v in header["packages"].items()),
        f"n={args.n} per drain and enqueue series, {args.latency_n} probes per latency series, "
        f"{args.repeat} repetition(s), budget {args.budget:g} s per timed series"
        + (" (--quick)" if args.quick else ""),
        f"every consumer runs {CONCURRENCY} jobs at once; how each system is configured:",
    ]
    for system in header["systems"]:
        lines.append(f"  {system} (database {SPECS[system].database}): {SPECS[system].config}")
    return "\n".join(lines)


def how_text(systems: list[str], workloads: list[str]) -> str:
    lines = ["how each system does a workload (where it is not the obvious call):"]
    for system in systems:
        for workload in workloads:
            note = SPECS[system].notes.get(workload)
            if note and capable(system, workload):
                lines.append(f"  {system} {workload}: {note}")
    lines.append(
        "  all: drains time from just before the consumer starts until a poll of the system's "
        "table (from outside the system: every 10 to 100 ms, less often while much is left, "
        "so the end is seen within about 10 ms) finds no unfinished job; a latency is "
        "the job function's perf_counter() minus the one just before the enqueue call, in one "
        "process, each probe enqueued once the one before has started; latency_busy runs one "
        "CPU-spinning process per core beside it"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = sys.stderr if args.json == "-" else sys.stdout
    began = time.perf_counter()
    header: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "postgresql": common.server_version(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "packages": versions(args.systems),
        "systems": args.systems,
        "workloads": args.workloads,
        "n": args.n,
        "latency_n": args.latency_n,
        "repeat": args.repeat,
        "budget": args.budget,
        "concurrency": CONCURRENCY,
        "config": {s: SPECS[s].config for s in args.systems},
    }
    options = ["--n", str(args.n), "--latency-n", str(args.latency_n)]
    options += ["--budget", str(args.budget), "--timeout", str(max(10.0, args.timeout - 5))]

    runs: list[dict[str, Any]] = []
    ready = []
    for system in args.systems:
        progress(f"{system}: database and schema")
        result = subprocess_run(common.run_command(system, "setup"), args.timeout)
        if result["ok"]:
            ready.append(system)
            continue
        for workload in args.workloads:
            if capable(system, workload):
                for rep in range(args.repeat):
                    error = f"setup failed: {result['error']}"
                    runs.append(run_record(system, workload, rep, {"ok": False, "error": error}))

    for rep in range(args.repeat):
        order = ready[rep % len(ready) :] + ready[: rep % len(ready)] if ready else []
        for workload in args.workloads:
            for system in order:
                if not capable(system, workload):
                    continue
                progress(f"round {rep + 1}/{args.repeat}: {system} {workload}")
                command = common.run_command(system, workload, *options)
                result = subprocess_run(command, args.timeout)
                if not result["ok"]:
                    progress(f"  failed: {result['error']}")
                runs.append(run_record(system, workload, rep, result))

    header["load_after"] = os.getloadavg()
    header["seconds"] = time.perf_counter() - began
    found = report.medians(runs, args.systems, args.workloads)
    print(header_text(header, args) + "\n", file=out)
    print(report.render(runs, args.systems, args.workloads, found, args.budget), file=out)
    print("\n" + how_text(args.systems, args.workloads), file=out)
    print(f"\ncompare took {header['seconds']:.0f} s", file=out)
    if args.json:
        document = {"header": header, "runs": runs, "medians": found}
        text = json.dumps(without_nan(document), indent=2, allow_nan=False)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0


def without_nan(value: Any) -> Any:
    """NaN (no value: e.g. a percentile of no probes) as null, which JSON has."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(v) for v in value]
    return value


def run_record(system: str, workload: str, rep: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"system": system, "workload": workload, "rep": rep, **result}


if __name__ == "__main__":
    sys.exit(main())
