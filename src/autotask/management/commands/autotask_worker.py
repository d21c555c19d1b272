"""``manage.py autotask_worker``: the runtime in a process of its own, until SIGTERM or Ctrl-C.

The same runtime the web process runs under ``with_worker``; PostgreSQL coordinates any number
of these and of web processes. On SIGTERM it stops claiming, gives running tasks
``AUTOTASK_SHUTDOWN_TIMEOUT`` seconds, and puts the rest back to waiting; a second signal
cuts that wait short (the runs are put back all the same). ``--max-tasks`` and ``--duration``
(django-background-tasks' ``process_tasks`` options) end it the same graceful way, for a
process manager or cron job that restarts it. ``--metrics-port`` serves Prometheus' text at
``/metrics`` (no auth: it binds to localhost unless ``--metrics-host`` says otherwise), since a
worker serves no HTTP of its own.
"""

from __future__ import annotations

import signal
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from autotask import conf, runtime
from autotask.exceptions import NotMigrated
from autotask.monitor import prometheus

# How often --max-tasks is checked.
_CHECK_EVERY = 0.2


class Command(BaseCommand):
    help = "Run autotask's worker in the foreground until SIGTERM or SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues",
            help="Comma-separated queues to serve (default: AUTOTASK_QUEUES, else every queue).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            help="Runs at once in this process (default: AUTOTASK_WORKERS).",
        )
        parser.add_argument(
            "--max-tasks",
            type=int,
            help="Stop (gracefully) once this many runs have ended here.",
        )
        parser.add_argument(
            "--duration",
            type=float,
            help="Stop (gracefully) after this many seconds.",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="Serve Prometheus metrics at /metrics on this port (0: any free one); no auth.",
        )
        parser.add_argument(
            "--metrics-host",
            default="127.0.0.1",
            help="Address the metrics port binds to (default: 127.0.0.1, this machine only).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._override_settings(options)
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            if stop.is_set():  # a second signal (a terminal's Ctrl-C plus a forwarded one)
                self.stderr.write("autotask worker: cancelling running tasks now", ending="\n")
                runtime.get().hurry()
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        metrics = self._serve_metrics(options["metrics_host"], options["metrics_port"])
        try:
            runtime.start()
        except NotMigrated as exc:
            raise CommandError(str(exc)) from None
        current = conf.get()
        self.stdout.write(
            f"autotask worker started: {current.concurrency} at once, serving "
            f"{', '.join(current.queues) if current.queues else 'every queue'}; "
            "SIGTERM or Ctrl-C stops it.",
            ending="\n",
        )
        self.stdout.flush()
        why = self._wait(stop, options["max_tasks"], options["duration"])
        self.stdout.write(f"autotask worker stopping ({why})...", ending="\n")
        runtime.stop()
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()

    def _serve_metrics(self, host: str, port: int | None) -> ThreadingHTTPServer | None:
        """Before the runtime starts, so that its first attempts are counted too."""
        if port is None:
            return None
        if not 0 <= port <= 65535:
            raise CommandError("--metrics-port must be between 0 and 65535.")
        try:
            server = prometheus.serve(host, port)
        except OSError as exc:
            raise CommandError(f"--metrics-port: cannot listen on {host}:{port}: {exc}") from None
        bound_host, bound_port = server.server_address[:2]
        self.stdout.write(
            f"autotask worker: metrics at http://{bound_host!s}:{bound_port}/metrics",
            ending="\n",
        )
        return server

    def _override_settings(self, options: dict[str, Any]) -> None:
        """The options win over the settings, for this process only; checked as they are."""
        if options["queues"] is not None:
            queues = [q.strip() for q in options["queues"].split(",") if q.strip()]
            if not queues:
                raise CommandError("--queues needs at least one queue name.")
            settings.AUTOTASK_QUEUES = queues
        if options["concurrency"] is not None:
            if options["concurrency"] < 1:
                raise CommandError("--concurrency must be 1 or more.")
            settings.AUTOTASK_WORKERS = options["concurrency"]
        if options["max_tasks"] is not None and options["max_tasks"] < 1:
            raise CommandError("--max-tasks must be 1 or more.")
        if options["duration"] is not None and not options["duration"] > 0:
            raise CommandError("--duration must be a number of seconds above 0.")
        conf.get()  # a bad value fails here, with the setting's name

    def _wait(self, stop: threading.Event, max_tasks: int | None, duration: float | None) -> str:
        if max_tasks is None and duration is None:
            stop.wait()
            return "signal"
        until = time.monotonic() + duration if duration is not None else None
        while not stop.wait(_CHECK_EVERY):
            if max_tasks is not None and runtime.get().attempts_ended >= max_tasks:
                return f"{max_tasks} task(s) done"
            if until is not None and time.monotonic() >= until:
                return f"{duration:g} s passed"
        return "signal"
