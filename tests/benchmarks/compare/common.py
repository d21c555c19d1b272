"""What every side shares: where its database is, timing, polling, the child protocol.

Only psycopg (sync) is imported here: the harness reads the tables of every system with it, so
that "finished" is decided the same way for all, from outside the system under test.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.benchmarks.report import percentile

from .probes import async_starts, starts

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[3]
# Seconds between two looks at a table being drained: at most LONGEST_POLL while much is left,
# POLL near the end. Looking every 10 ms all along cost PostgreSQL about 100 us of CPU per run
# drained (a count over the whole table each time: a quarter of what autotask's claim and
# finish cost on a 2-core machine), taken from whichever system was being measured.
POLL = 0.01
LONGEST_POLL = 0.1
WARMUP = 5  # enqueues (and runs) before a timed series: connections, caches, JIT-free paths
RESULT = "compare-result "  # prefix of the one stdout line a run prints
PROBE_TIMEOUT = 10.0  # seconds a latency probe may take to start before it counts as lost
MAX_TIMEOUTS = 3  # lost probes after which a latency series gives up
SETTLE = 0.5  # seconds an idle consumer gets after its start before a latency series


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_URL


def conninfo(database: str) -> str:
    """DATABASE_URL's server with the database swapped for ``database``."""
    params = conninfo_to_dict(server_url())
    params["dbname"] = database
    return make_conninfo(**params)


def dsn(database: str) -> str:
    """A ``postgresql://`` URL for ``database`` (asyncpg and oban take URLs, not conninfo); a
    unix-socket host (tests/pgserver.py's throwaway server) goes in the query string."""
    params = {k: str(v) for k, v in conninfo_to_dict(server_url()).items()}
    params.pop("dbname", None)
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", "")
    auth = f"{user}:{quote(password, safe='')}@" if password else f"{user}@" if user else ""
    host = params.get("host", "")
    where = ""
    if host and not host.startswith("/"):
        params.pop("host")
        port = params.pop("port", "")
        where = f"{host}:{port}" if port else host
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}{where}/{quote(database, safe='')}{query}"


def ensure_database(database: str) -> bool:
    """Create ``database`` on DATABASE_URL's server if it is missing; True if created."""
    if conninfo_to_dict(server_url()).get("dbname") == database:
        raise SystemExit(f"DATABASE_URL names {database!r}: point it at another database")
    with psycopg.connect(server_url(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except psycopg.errors.DuplicateDatabase:
            return False
        return True


def execute(database: str, *statements: LiteralString) -> None:
    """Run ``statements`` on ``database``, each in its own autocommit transaction."""
    with psycopg.connect(conninfo(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def count(database: str, query: LiteralString) -> int:
    """The single number ``query`` returns."""
    with psycopg.connect(conninfo(database), autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def server_version() -> str:
    with psycopg.connect(server_url(), autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# -- figures ---------------------------------------------------------------------------------


def ms_distribution(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    return {
        f"{prefix}p50_ms": percentile(seconds, 50) * 1000,
        f"{prefix}p95_ms": percentile(seconds, 95) * 1000,
        f"{prefix}p99_ms": percentile(seconds, 99) * 1000,
        f"{prefix}max_ms": max(seconds) * 1000 if seconds else math.nan,
    }


def rate_figures(n: int, done: int, seconds: float, rows: int) -> dict[str, Any]:
    """An enqueue series of ``done`` of the ``n`` asked for (fewer: cut by the budget);
    ``rows`` is what the table holds afterwards (it should be ``done``)."""
    return {
        "n": n,
        "done": done,
        "cut": done < n,
        "seconds": seconds,
        "per_s": done / seconds if seconds > 0 else 0.0,
        "rows": rows,
    }


def timed_series(call: Callable[[], Any], n: int, budget: float) -> tuple[int, float]:
    """``call()`` up to ``n`` times, stopping once ``budget`` seconds have passed: (calls,
    seconds)."""
    began = time.perf_counter()
    until = began + budget
    done = 0
    while done < n:
        call()
        done += 1
        if time.perf_counter() > until:
            break
    return done, time.perf_counter() - began


async def timed_series_async(
    call: Callable[[], Awaitable[Any]], n: int, budget: float
) -> tuple[int, float]:
    """The same for an awaited call."""
    began = time.perf_counter()
    until = began + budget
    done = 0
    while done < n:
        await call()
        done += 1
        if time.perf_counter() > until:
            break
    return done, time.perf_counter() - began


def latency_figures(
    n: int, starts: list[float], calls: list[float], timeouts: int, **extra: Any
) -> dict[str, Any]:
    return {
        "n": n,
        "measured": len(starts),
        "timeouts": timeouts,
        **ms_distribution("", starts),
        "enqueue_p50_ms": percentile(calls, 50) * 1000,
        **extra,
    }


def probe_series(enqueue: Callable[[int], Any], n: int, budget: float) -> dict[str, Any]:
    """Sequential probes from this thread, each enqueued once the one before has started (in
    another thread: the job marks ``probes.starts``). ``budget`` counts from after the
    warm-up probes."""
    series = _ProbeSeries(n, budget)
    for i in series.numbers():
        before = time.perf_counter()
        enqueue(i)
        after = time.perf_counter()
        series.record(i, before, after, starts.wait(i, series.wait_limit()))
    return series.figures()


async def probe_series_async(
    enqueue: Callable[[int], Awaitable[Any]], n: int, budget: float
) -> dict[str, Any]:
    """The same on an event loop that also runs the consumer (``probes.async_starts``)."""
    series = _ProbeSeries(n, budget)
    for i in series.numbers():
        started = async_starts.expect(i)
        before = time.perf_counter()
        await enqueue(i)
        after = time.perf_counter()
        try:
            at: float | None = await asyncio.wait_for(started, series.wait_limit())
        except TimeoutError:
            at = None
        series.record(i, before, after, at)
    return series.figures()


class _ProbeSeries:
    """The bookkeeping of a latency series: warm-up probes (numbered below 0) first, then
    probes 0..n-1 until ``budget`` seconds have passed (no new probe is enqueued after it) or
    MAX_TIMEOUTS probes have not started within PROBE_TIMEOUT."""

    def __init__(self, n: int, budget: float) -> None:
        self.n = n
        self.budget = budget
        self.until = math.inf  # set once the warm-up is over
        self.latencies: list[float] = []
        self.calls: list[float] = []
        self.timeouts = 0

    def numbers(self) -> Iterator[int]:
        for i in range(-WARMUP, self.n):
            if i == 0:
                self.until = time.perf_counter() + self.budget
            if time.perf_counter() > self.until or self.timeouts >= MAX_TIMEOUTS:
                return
            yield i

    def wait_limit(self) -> float:
        """A probe enqueued is waited for in full, budget or not: a slow start is the figure."""
        return PROBE_TIMEOUT

    def record(self, i: int, before: float, after: float, at: float | None) -> None:
        if at is None:
            self.timeouts += 1
        elif i >= 0:
            self.latencies.append(at - before)
            self.calls.append(after - before)

    def figures(self) -> dict[str, Any]:
        if not self.latencies:
            raise RuntimeError(
                f"no latency probe started ({self.timeouts} waited {PROBE_TIMEOUT:g} s each)"
            )
        return latency_figures(self.n, self.latencies, self.calls, self.timeouts)


class Counter:
    """A count query on a connection of its own, read repeatedly while a backlog drains."""

    def __init__(self, database: str, query: LiteralString) -> None:
        self.conn = psycopg.connect(conninfo(database), autocommit=True)
        self.query = query

    def __call__(self) -> int:
        row = self.conn.execute(self.query).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


def wait_drained(count: Callable[[], int], until: float) -> int:
    """Poll until ``count()`` (the unfinished jobs) is 0 or it is ``until``; what is left.

    The next look comes after half the time the rate so far says is left (between POLL and
    LONGEST_POLL): while the rate holds within a factor of two, the end is seen within POLL."""
    began, first = time.perf_counter(), None
    while True:
        left = count()
        now = time.perf_counter()
        if left == 0 or now > until:
            return left
        first = left if first is None else first
        rate = (first - left) / (now - began) if now > began else 0.0
        wait = left / rate / 2 if rate > 0 else POLL
        time.sleep(min(max(wait, POLL), LONGEST_POLL, max(until - now, 0.0)))


class CpuMeter:
    """The CPU time the whole machine, and PostgreSQL's processes among it, spent from its
    making to ``stop()`` (Linux's /proc; nothing elsewhere). A drain's rate alone does not say
    what bounds it: these say whether the CPUs were full, and how much of each job's cost was
    the database's, which no consumer's code can take away."""

    _TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self) -> None:
        self._before = _cpu_ticks()
        self._used: tuple[int, int, int] | None = None

    def stop(self) -> None:
        after = _cpu_ticks()
        if self._before is not None and after is not None:
            busy, total, postgres = (a - b for a, b in zip(after, self._before, strict=True))
            self._used = busy, total, postgres

    def figures(self, jobs: int) -> dict[str, float]:
        if self._used is None or jobs <= 0:
            return {}
        busy, total, postgres = self._used
        return {
            "cpus_busy_pct": 100.0 * busy / total if total else math.nan,
            "cpu_us_per_job": 1e6 * busy / self._TICKS / jobs,
            "postgres_cpu_us_per_job": 1e6 * postgres / self._TICKS / jobs,
        }


def _cpu_ticks() -> tuple[int, int, int] | None:
    """Clock ticks: busy and in all, over every CPU (/proc/stat's first line; idle and iowait
    are not busy), and those of the processes named postgres, ended backends included."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(ticks[:8])  # guest time is counted in user time already
    busy = total - ticks[3] - ticks[4]
    postgres = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        if name.startswith("postgres"):
            fields = rest.split()
            # utime and stime, and cutime and cstime: the postmaster's reaped children, so
            # that a connection that ended inside the window still counts.
            postgres += sum(int(field) for field in fields[11:15])
    return busy, total, postgres


def drain_figures(
    n: int,
    left: int,
    began: float,
    started: float,
    finished: float,
    last_call: float = 0.0,
    calls: int | None = None,
    cpu: CpuMeter | None = None,
) -> dict[str, Any]:
    """``began``: just before the consumer was started; ``finished``: when the table said all
    N were finished, or the budget's end with ``left`` unfinished (the figure is then the rate
    of the part done); ``last_call``: when the last job function ran (in-process only);
    ``cpu``: made at ``began``, stopped at ``finished``."""
    seconds = finished - began
    done = n - left
    if done <= 0:
        raise RuntimeError(f"none of {n} jobs finished in {seconds:.1f} s")
    return {
        "n": n,
        "done": done,
        "cut": left > 0,
        "seconds": seconds,
        "jobs_per_s": done / seconds if seconds > 0 else 0.0,
        "start_seconds": started - began,
        "last_call_seconds": last_call - began if last_call and not left else None,
        "calls": calls,
        **(cpu.figures(done) if cpu is not None else {}),
    }


# -- child processes -------------------------------------------------------------------------


def run_command(system: str, workload: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.benchmarks.compare.run", system, workload, *args]


def spawn(command: list[str]) -> subprocess.Popen[str]:
    """A child in this process's group (so a timeout that kills the group kills it too)."""
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=os.environ.copy(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_line(child: subprocess.Popen[str], deadline: float) -> str:
    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=max(0.0, deadline - time.perf_counter())):
            raise TimeoutError(f"child {child.pid} did not answer in time")
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"child {child.pid} exited with code {child.wait()}")
    return line.strip()


def tell(child: subprocess.Popen[str], word: str) -> None:
    assert child.stdin is not None
    child.stdin.write(word + "\n")
    child.stdin.flush()


def end_children(children: list[subprocess.Popen[str]], grace: float = 10.0) -> None:
    """Kill what did not exit within ``grace`` seconds (by pid: only our own children)."""
    until = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.0, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextmanager
def spinners(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` processes spinning a CPU each, for as long as the block runs."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        time.sleep(0.5)  # let them reach the spin before anything is measured
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


class ChildProtocol:
    """The consumer side of a two-process drain, over stdin/stdout.

    Prints ``ready`` once imported and connected, starts its consumer on ``go``, stops it on
    ``stop`` (or end of input) and prints ``stopped <calls>``.
    """

    @staticmethod
    def ready() -> None:
        print("ready", flush=True)

    @staticmethod
    def wait(word: str) -> None:
        line = sys.stdin.readline()
        if line and line.strip() != word:
            raise RuntimeError(f"expected {word!r}, got {line.strip()!r}")

    @staticmethod
    def stopped(calls: int) -> None:
        print(f"stopped {calls}", flush=True)


def emit(payload: dict[str, Any]) -> None:
    print(RESULT + json.dumps(payload, default=str), flush=True)


def terminate_on_signal() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks (spinners, children) run."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
