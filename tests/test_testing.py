"""autotask.testing for users' tests: run_pending() inside a test's transaction, and eager mode."""

from __future__ import annotations

import pytest

from autotask import DONE, ERROR, WAITING, store
from autotask.testing import run_pending
from tests.app.models import Execution
from tests.app.tasks import add, async_add, fail, picky, postponing, record

# The plain ``db`` fixture: every test runs in a transaction nobody else can see, as most of a
# project's tests do. No runtime is started.
pytestmark = pytest.mark.django_db


def test_run_pending_runs_what_was_enqueued_in_this_transaction() -> None:
    first, second = add(1, 2), async_add(3, 4)
    record("inside")
    assert run_pending() == 3
    assert (store.fetch_run(first.id).status, store.fetch_run(first.id).result) == (DONE, 3)
    assert store.fetch_run(second.id).result == 7
    assert Execution.objects.filter(key="inside").count() == 1
    assert run_pending() == 0  # nothing is due any more


def test_a_failing_run_ends_as_the_runtime_would_end_it() -> None:
    handle = fail("in a test")
    assert run_pending() == 1
    run = store.fetch_run(handle.id)
    assert run.status == ERROR and run.error is not None
    assert run.error.message == "in a test"


def test_a_retry_waits_its_backoff_and_a_postpone_its_delay() -> None:
    retried = picky("k", "KeyError")  # retries=3, constant(0.05) backoff
    later = postponing("p", 1)  # postpones 0.1 s once
    assert run_pending() == 2
    assert store.fetch_run(retried.id).status == WAITING  # its next attempt is not due yet
    run = store.fetch_run(later.id)
    assert (run.status, run.postpones, run.attempts) == (WAITING, 1, 0)


def test_only_the_queues_asked_for_and_a_limit_against_endless_runs() -> None:
    mail = add.using(queue="mail")(1, 1)
    other = add(2, 2)
    assert run_pending(queues=["mail"]) == 1
    assert store.fetch_run(mail.id).status == DONE
    assert store.fetch_run(other.id).status == WAITING
    add(3, 3)
    with pytest.raises(RuntimeError, match="ran 1 attempts and runs are still due"):
        run_pending(limit=1)


def test_eager_mode_runs_each_run_as_it_is_enqueued(settings) -> None:
    settings.AUTOTASK_EAGER = True
    handle = add(2, 3)
    assert (handle.status, handle.result) == (DONE, 5)
    failed = fail("eagerly")
    assert failed.status == ERROR and failed.error is not None
    assert failed.error.message == "eagerly"
    assert run_pending() == 0  # nothing was left waiting


@pytest.mark.django_db(transaction=True)
def test_eager_mode_for_defer_too(settings) -> None:
    """No worker is started (it would race run_now for the run): defer() brings up only the
    runtime's pool."""
    import asyncio

    settings.AUTOTASK_EAGER = True

    async def defer() -> object:
        return await async_add.defer(4, 5)

    handle = asyncio.run(defer())
    assert (handle.status, handle.result) == (DONE, 9)  # type: ignore[attr-defined]


def test_a_bad_eager_setting_is_named(settings) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.AUTOTASK_EAGER = "yes"
    with pytest.raises(ImproperlyConfigured, match="AUTOTASK_EAGER must be True or False"):
        add(1, 1)
