"""Helpers for testing code that enqueues runs: ``run_pending()`` runs what is due, here and now.

A test usually wants to enqueue, then see what the task did, without a runtime thread, timing,
or ``transactional_db``: ``run_pending()`` claims due runs and runs them one by one in the
calling thread, through Django's connection, so it works inside a test's transaction (pytest-
django's ``db`` fixture, Django's ``TestCase``) and sees rows that were never committed. Each
run ends as the runtime would end it (DONE, ERROR, a retry, a postpone), through the same
guarded statement. What it leaves out: timeouts, cancelling a running run, and the threads a
plain task would get; a retry waits out its backoff like any run (with a ``backoff`` of
``constant(0)`` it is due again at once, and run by the same call).

``AUTOTASK_EAGER = True`` does the same for each run at the moment it is enqueued.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from asgiref.sync import async_to_sync
from django.db import close_old_connections, transaction

from . import conf, registry, serialize, store
from .context import RunContext, enter, leave
from .exceptions import Postpone
from .runtime import runs
from .runtime.runs import ClaimedRun, Outcome

# run_pending() gives up after this many attempts: a task that enqueues itself for ever (or a
# retry loop with no backoff) must not hang the test.
DEFAULT_LIMIT = 1000


def run_pending(*, queues: Sequence[str] | None = None, limit: int = DEFAULT_LIMIT) -> int:
    """Run every due run (of ``queues``, or all) in this thread until none is due, including
    runs those runs enqueue; how many attempts ran. Raises RuntimeError past ``limit``."""
    worker_id = uuid.uuid4()  # a worker of its own: the guarded writes name it
    ran = 0
    while claimed := store.claim_runs(worker_id, 1, queues):
        if ran >= limit:
            raise RuntimeError(
                f"run_pending() ran {limit} attempts and runs are still due: a task that "
                "enqueues itself, or retries without a pause? Pass limit= to allow more."
            )
        _finish(claimed[0], worker_id)
        ran += 1
    return ran


def run_eagerly(run_id: int) -> bool:
    """Run the waiting run ``run_id`` at once, here, due or not (AUTOTASK_EAGER); whether it
    was waiting."""
    worker_id = uuid.uuid4()
    claimed = store.claim_run(worker_id, run_id)
    if claimed is None:
        return False
    _finish(claimed, worker_id)
    return True


def run_eagerly_in_thread(run_id: int) -> bool:
    """``run_eagerly`` for async code's sake, in a thread of its own whose connection is dealt
    with as after a request (a thread-sensitive call could take the caller's connection)."""
    close_old_connections()
    try:
        return run_eagerly(run_id)
    finally:
        close_old_connections()


def _finish(run: ClaimedRun, worker_id: uuid.UUID) -> None:
    store.write_outcomes([_outcome(run)], worker_id)


def _outcome(run: ClaimedRun) -> Outcome:
    """The run's outcome, decided as the runtime's executor decides it (``runs``)."""
    task = registry.get(run.name)
    if task is None:
        return runs.unregistered(run, conf.get().unregistered_grace)
    try:
        args, kwargs = json.loads(run.args), json.loads(run.kwargs)
    except (ValueError, RecursionError) as exc:
        return runs.given_up(run, task, exc)
    token = enter(RunContext(run_id=run.id, name=run.name, attempt=run.attempts))
    try:
        # A savepoint: a task whose query fails (an IntegrityError) must not break the test's
        # transaction, in which its outcome is still to be written. So a failing run's writes
        # roll back here, as under the runtime only an atomic=True task's do.
        with transaction.atomic(using=conf.database()):
            if task.is_async:
                value = async_to_sync(task.func)(*args, **kwargs)
            else:
                value = task.func(*args, **kwargs)
            result = serialize.dump_result(task.name, value)
        return runs.done(run, task, result)
    except Postpone as postpone:
        return runs.postponed(run, task, postpone)
    except KeyboardInterrupt:  # the person running the tests wants them to stop
        raise
    except BaseException as exc:  # as the worker does: a task's SystemExit fails its run
        return runs.failed(run, task, exc, retry_delay=conf.get().retry_delay)
    finally:
        leave(token)


__all__ = ["DEFAULT_LIMIT", "run_eagerly", "run_eagerly_in_thread", "run_pending"]
