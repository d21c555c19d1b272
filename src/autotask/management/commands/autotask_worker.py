"""``manage.py autotask_worker``: the runtime in a process of its own, until SIGTERM or Ctrl-C.

The same runtime the web process runs under ``with_worker``; PostgreSQL coordinates any number
of these and of web processes. On SIGTERM it stops claiming, gives running tasks
``AUTOTASK_SHUTDOWN_TIMEOUT`` seconds, and puts the rest back to waiting; a second signal
cuts that wait short (the runs are put back all the same).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from autotask import runtime


class Command(BaseCommand):
    help = "Run autotask's worker in the foreground until SIGTERM or SIGINT."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            if stop.is_set():  # a second signal (a terminal's Ctrl-C plus a forwarded one)
                self.stderr.write("autotask worker: cancelling running tasks now", ending="\n")
                runtime.get().hurry()
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        runtime.start()
        self.stdout.write("autotask worker started; SIGTERM or Ctrl-C stops it.", ending="\n")
        self.stdout.flush()
        stop.wait()
        self.stdout.write("autotask worker stopping...", ending="\n")
        runtime.stop()
