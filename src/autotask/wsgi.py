"""The runtime in processes that serve requests without ASGI lifespan: ``AUTOTASK_IS_ACTIVE``.

With the seed's switch on, a process starts its runtime (in the background) when Django's own
handler serves its first request, and stops it at exit, putting unfinished runs back. Keying on
the first request is what picks exactly the right processes: ``runserver``'s child and not its
autoreloader, each gunicorn or uwsgi worker after the fork, and never ``migrate``, ``shell``,
``test`` (the test client's handler is not a server's) or any other command. A process that
should start before its first request calls ``start()`` from a server hook (gunicorn:
``post_worker_init``; see the README).

With the switch off, a process serving WSGI requests checks once, at its first enqueue, that
some worker runs anywhere, and logs one warning saying how to get one if none does.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours
import logging
import os
import threading
import time
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.db import transaction

from . import checks, conf, runtime, store

logger = logging.getLogger("autotask")

# A start that failed (the database down, not migrated yet) is tried again at a request this
# long after, rather than at every request or never.
_RETRY_START_AFTER = 10.0

_lock = threading.Lock()
_started_in: int | None = None  # the pid whose runtime start() started (a fork starts afresh)
_stop_registered_in: int | None = None
_failed_at = -_RETRY_START_AFTER
_serving_wsgi = False
_checked = False


def connect() -> None:
    """Listen for the first request of this process (from ``AppConfig.ready``)."""
    request_started.connect(_request_started, dispatch_uid="autotask.wsgi")


def _request_started(sender: Any, **kwargs: Any) -> None:
    global _serving_wsgi
    if not (isinstance(sender, type) and issubclass(sender, WSGIHandler | ASGIHandler)):
        return  # the test client, or some other caller of the signal
    if conf.is_active():
        retry_due = time.monotonic() - _failed_at >= _RETRY_START_AFTER
        if _started_in != os.getpid() and retry_due:
            threading.Thread(
                target=_start_logging_errors, name="autotask-start", daemon=True
            ).start()
    elif issubclass(sender, WSGIHandler):
        _serving_wsgi = True


def start() -> None:
    """Start this process's runtime now, and stop it when the process exits (idempotent).

    For server hooks that run in each worker process once Django is set up, e.g. gunicorn's
    ``post_worker_init``, so a worker runs tasks before its first request.
    """
    global _started_in, _stop_registered_in
    with _lock:
        if _started_in == os.getpid():
            return
        _started_in = os.getpid()
        if _stop_registered_in != os.getpid():
            _stop_registered_in = os.getpid()
            _at_exit(_stop_at_exit)
    try:
        runtime.start()
    except BaseException:
        _started_in = None  # try again later
        raise


def post_worker_init(worker: Any) -> None:
    """gunicorn's hook, run in each worker once the application is loaded: ``start()``."""
    start()


def _start_logging_errors() -> None:
    global _failed_at
    checks.log_problems(logger)
    try:
        start()
    except Exception:
        _failed_at = time.monotonic()
        logger.exception(
            "autotask: the runtime did not start in this server process; a request in %g s "
            "or later tries again",
            _RETRY_START_AFTER,
        )


def _at_exit(callback: Any) -> None:
    """Run ``callback`` as the interpreter exits, before it shuts down threads and executors.

    ``atexit`` runs too late for a graceful stop: by then ``concurrent.futures`` refuses new
    work, so the event loop can no longer resolve a host name, and ``sync_to_async`` has no
    thread to run in. ``threading._register_atexit`` (what ``concurrent.futures`` itself uses)
    runs before that; plain ``atexit`` only where it does not exist.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(callback)
    else:
        register(callback)


def _stop_at_exit() -> None:
    if _started_in == os.getpid():
        runtime.stop()


def enqueued() -> None:
    """After an enqueue: the first one in a WSGI process with nothing to run it warns, once."""
    global _checked
    if not _serving_wsgi or _checked:
        return
    _checked = True
    if runtime.get().worker is not None:
        return
    try:
        # A savepoint of its own: whatever happens here, the caller's transaction stays usable.
        with transaction.atomic(using=conf.database()):
            live = store.live_worker_exists(conf.get().worker_timeout)
    except Exception:
        logger.debug("autotask: could not check for live workers", exc_info=True)
        return
    if not live:
        logger.warning(
            "autotask: a run was enqueued but no worker runs anywhere, so it will wait. "
            "Set AUTOTASK_IS_ACTIVE = True to run tasks in the server's processes, or run "
            "`manage.py autotask_worker` beside the server."
        )
