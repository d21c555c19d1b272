"""Signals of autotask's own API, for code that wants to know about runs without polling.

Sent with the task (an ``autotask.Task``) as sender; receivers run as Django's do, and one that
raises is logged and does not disturb the run. In the worker they are sent with ``asend``, so a
plain receiver runs in a thread and may use the ORM. (The ``django.tasks`` backend sends
Django's own task signals instead, for Django's ``Task`` objects.)

- ``task_enqueued(sender, handle)``: a run was stored (``handle`` a TaskHandle or an
  AsyncTaskHandle); inside ``transaction.atomic()`` it is sent before the commit.
- ``task_started(sender, run_id, attempt)``: an attempt begins, in the process running it.
- ``task_finished(sender, run_id, status, error)``: an attempt's outcome has been written:
  ``status`` is the run's status now (``waiting`` when it runs again: a retry or a postpone),
  ``error`` the attempt's ``TaskError`` or None.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("autotask")

task_enqueued = Signal()
task_started = Signal()
task_finished = Signal()


def log_failures(responses: list[tuple[Any, Any]]) -> None:
    """Log each receiver that raised, from what ``send_robust`` (or ``asend_robust``) returned:
    a receiver must not fail what it was told about (a stored enqueue, a finished run)."""
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "autotask: a signal receiver failed (%r)",
                receiver,
                exc_info=(type(response), response, response.__traceback__),
            )
