"""What ``metrics/`` and ``autotask_worker --metrics-port`` serve, in Prometheus' text format.

The format (0.0.4) is a few lines of text, so it is written here rather than pulled in as a
dependency. Two kinds of families go into one scrape:

- the database's, read through ``health()``: the same for every process that is asked;
- this process's, counted from autotask's own ``task_started`` / ``task_finished`` signals:
  only the attempts this process ran, from zero at its start (Prometheus' ``rate()`` expects
  counters to reset with the process).

Receivers are not connected at import: ``connect()`` does it, so that a worker that serves no
metrics does not pay for signals nobody reads (the executor sends none without a receiver).
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.db import connections

from .. import signals
from ..health import Health, health
from ..status import FINAL_STATUSES, Status, TaskError
from ..store import WorkerRecord

logger = logging.getLogger("autotask")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds (seconds) of the attempt duration histogram's buckets; +Inf follows.
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# Attempts started whose finish this process has not heard yet (one the runtime ended at
# shutdown sends none): past this many the oldest are forgotten, so they cannot pile up.
_MAX_OPEN_ATTEMPTS = 100_000

_FINAL = sorted(str(status) for status in FINAL_STATUSES)

LabelValues = Mapping[str, object]


# --- the text format ---


def _number(value: float) -> str:
    """Exactly the value: ``repr`` keeps every digit a float has (``str`` of an int too)."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _label_value(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class _Text:
    """Lines of one exposition: each family's HELP and TYPE, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {_help_text(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: LabelValues | None = None) -> None:
        if labels:
            pairs = ",".join(f'{key}="{_label_value(v)}"' for key, v in labels.items())
            self._lines.append(f"{name}{{{pairs}}} {_number(value)}")
        else:
            self._lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


# --- the database's families, from health() ---


def _write_queues(out: _Text, state: Health) -> None:
    out.family(
        "autotask_runs",
        "gauge",
        "Runs in the table by queue and status (finished ones until they are pruned).",
    )
    for queue in state.queues:
        for status in Status:
            out.sample("autotask_runs", queue.counts.get(status, 0), _queue(queue.name, status))
    out.family("autotask_runs_due", "gauge", "Waiting runs whose time has come, by queue.")
    for queue in state.queues:
        out.sample("autotask_runs_due", queue.due, {"queue": queue.name})
    out.family(
        "autotask_oldest_due_run_age_seconds",
        "gauge",
        "Seconds the oldest due run of the queue has waited; 0 when none is due.",
    )
    for queue in state.queues:
        age = queue.oldest_due_seconds or 0.0
        out.sample("autotask_oldest_due_run_age_seconds", age, {"queue": queue.name})
    out.family("autotask_queue_paused", "gauge", "1 when the queue is paused (pause_queue()).")
    for queue in state.queues:
        out.sample("autotask_queue_paused", int(queue.paused), {"queue": queue.name})
    out.family("autotask_queue_served", "gauge", "1 when at least one live worker serves it.")
    for queue in state.queues:
        out.sample("autotask_queue_served", int(queue.served), {"queue": queue.name})


def _queue(name: str, status: Status) -> dict[str, str]:
    return {"queue": name, "status": str(status)}


def _write_workers(out: _Text, state: Health) -> None:
    out.family("autotask_workers", "gauge", "Live workers (heartbeat within the timeout).")
    out.sample("autotask_workers", len(state.workers))
    out.family("autotask_workers_lost", "gauge", "Silent workers the leader has not removed.")
    out.sample("autotask_workers_lost", len(state.lost_workers))
    per_worker: tuple[tuple[str, str, Callable[[WorkerRecord], float]], ...] = (
        ("autotask_worker_running", "Runs the live worker has going.", _running),
        ("autotask_worker_concurrency", "Runs the live worker may have at once.", _slots),
        ("autotask_worker_heartbeat_age_seconds", "Seconds since its last heartbeat.", _age),
    )
    for name, help_text, value in per_worker:
        out.family(name, "gauge", help_text)
        for worker in state.workers:
            out.sample(name, value(worker), _worker(worker))
    out.family(
        "autotask_leader",
        "gauge",
        "1, labelled with the leader's worker, host and pid; a single unlabelled 0 when no "
        "live worker leads.",
    )
    if state.leader is None:
        out.sample("autotask_leader", 0)
    else:
        out.sample("autotask_leader", 1, _worker(state.leader))
    out.family("autotask_problems", "gauge", "Problems health() finds (autotask_health lists).")
    out.sample("autotask_problems", len(state.problems))


def _worker(worker: WorkerRecord) -> dict[str, object]:
    return {"worker": worker.id, "host": worker.host, "pid": worker.pid}


def _running(worker: WorkerRecord) -> float:
    return worker.running


def _slots(worker: WorkerRecord) -> float:
    return worker.concurrency


def _age(worker: WorkerRecord) -> float:
    return worker.heartbeat_age


# --- this process's families, from the signals ---


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def copy(self) -> _Histogram:
        return _Histogram(list(self.counts), self.total, self.count)


@dataclass(slots=True)
class _Counts:
    started: dict[str, int] = field(default_factory=dict)
    finished: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    durations: dict[str, _Histogram] = field(default_factory=dict)


class ProcessMetrics:
    """What the attempts run in this process add up to.

    Receivers run in the executor's signal threads, several at once: each takes one lock for a
    few dictionary updates, and a scrape copies the dictionaries under the same lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = _Counts()
        self._open: dict[int, list[float]] = {}  # run id -> start of each attempt not finished

    def started(self, task: str, run_id: int) -> None:
        now = time.perf_counter()
        with self._lock:
            self._known(task)
            self._counts.started[task] += 1
            # A list: a run retried at once may start again before its last finish is heard.
            self._open.setdefault(run_id, []).append(now)
            if len(self._open) > _MAX_OPEN_ATTEMPTS:
                del self._open[next(iter(self._open))]

    def finished(self, task: str, run_id: int, status: str, failed: bool) -> None:
        now = time.perf_counter()
        with self._lock:
            self._known(task)
            starts = self._open.get(run_id)
            if starts:
                self._counts.durations[task].observe(now - starts.pop(0))
                if not starts:
                    del self._open[run_id]
            if failed:
                self._counts.failed[task] += 1
            if status in FINAL_STATUSES:
                self._counts.finished[task, status] += 1

    def _known(self, task: str) -> None:
        """Every series of a task from its first attempt, at 0: ``rate()`` and ``increase()``
        miss the first error of a series that appears with it."""
        if task not in self._counts.started:
            self._counts.started[task] = 0
            self._counts.failed[task] = 0
            self._counts.durations[task] = _Histogram()
            for status in _FINAL:
                self._counts.finished[task, status] = 0

    def snapshot(self) -> _Counts:
        with self._lock:
            counts = self._counts
            return _Counts(
                dict(counts.started),
                dict(counts.finished),
                dict(counts.failed),
                {task: h.copy() for task, h in counts.durations.items()},
            )


PROCESS = ProcessMetrics()


def _write_process(out: _Text, counts: _Counts) -> None:
    out.family(
        "autotask_attempts_started_total", "counter", "Attempts this process started, by task."
    )
    for task, n in sorted(counts.started.items()):
        out.sample("autotask_attempts_started_total", n, {"task": task})
    out.family(
        "autotask_runs_finished_total",
        "counter",
        "Runs this process ended in a final status (done, error, cancelled), by task.",
    )
    for (task, status), n in sorted(counts.finished.items()):
        out.sample("autotask_runs_finished_total", n, {"task": task, "status": status})
    out.family(
        "autotask_attempts_failed_total",
        "counter",
        "Attempts this process ran that raised (retried or final), by task.",
    )
    for task, n in sorted(counts.failed.items()):
        out.sample("autotask_attempts_failed_total", n, {"task": task})
    name = "autotask_attempt_duration_seconds"
    out.family(
        name,
        "histogram",
        "Seconds from an attempt's start to its outcome written, attempts run here, by task.",
    )
    for task, histogram in sorted(counts.durations.items()):
        cumulative = 0
        for bound, n in zip((*BUCKETS, math.inf), histogram.counts, strict=True):
            cumulative += n
            out.sample(f"{name}_bucket", cumulative, {"task": task, "le": _number(bound)})
        out.sample(f"{name}_sum", histogram.total, {"task": task})
        out.sample(f"{name}_count", histogram.count, {"task": task})


def _on_started(sender: Any, run_id: int, **kwargs: Any) -> None:
    PROCESS.started(sender.name, run_id)


def _on_finished(
    sender: Any, run_id: int, status: Status, error: TaskError | None, **kwargs: Any
) -> None:
    PROCESS.finished(sender.name, run_id, str(status), error is not None)


def connect() -> None:
    """Count this process's attempts from now on; calling it again changes nothing."""
    signals.task_started.connect(_on_started, dispatch_uid="autotask.metrics.started")
    signals.task_finished.connect(_on_finished, dispatch_uid="autotask.metrics.finished")


# --- a scrape ---


def render(state: Health, counts: _Counts) -> str:
    out = _Text()
    _write_queues(out, state)
    _write_workers(out, state)
    _write_process(out, counts)
    return out.text()


def scrape() -> str:
    """One exposition: ``health()`` through Django's connection, and this process's counts."""
    return render(health(), PROCESS.snapshot())


# --- the worker's own endpoint ---


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.partition("?")[0] != "/metrics":
            self._reply(404, "only /metrics here\n", "text/plain; charset=utf-8")
            return
        try:
            body = scrape()
        except Exception:
            logger.exception("autotask: a metrics scrape failed")
            self._reply(500, "the scrape failed: see the worker's log\n", "text/plain")
            return
        finally:
            # Each request has a thread of its own: its connection would outlive it otherwise.
            connections.close_all()
        self._reply(200, body, CONTENT_TYPE)

    def _reply(self, code: int, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """A scrape every few seconds is no news: DEBUG, not a line on stderr each time."""
        logger.debug("autotask metrics: " + format, *args)


def serve(host: str, port: int) -> ThreadingHTTPServer:
    """``/metrics`` on ``host:port`` (port 0: any free one, see ``server_address``), served
    from a daemon thread until ``shutdown()``; counts this process's attempts from now on."""
    connect()
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="autotask-metrics", daemon=True).start()
    return server
