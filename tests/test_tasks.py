"""The decorator, per-call options and enqueueing (no worker running)."""

import asyncio
import datetime

import pytest
from django.db import transaction

from autotask import WAITING, AsyncTaskHandle, Task, TaskHandle, registry, task
from autotask.models import TaskRun
from tests.app.tasks import add, async_add


def test_bare_and_configured_decorator_register_by_dotted_name() -> None:
    assert isinstance(add, Task)
    assert add.name == "tests.app.tasks.add"
    assert registry.get("tests.app.tasks.add") is add
    assert async_add.is_async and not add.is_async

    @task(queue="mail", priority=5, retries=3, ttl=60)
    def configured() -> None: ...

    assert (configured.queue, configured.priority, configured.retries, configured.ttl) == (
        "mail",
        5,
        3,
        60,
    )
    assert configured.name.startswith(f"{__name__}.test_bare_and_configured")
    assert configured.name.endswith(".<locals>.configured")


def test_duplicate_name_is_an_error_at_decoration() -> None:
    @task(name="tests.duplicate")
    def first() -> None: ...

    with pytest.raises(ValueError, match="already registered"):

        @task(name="tests.duplicate")
        def second() -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 101}, "priority must be an integer from -100 to 100"),
        ({"priority": "high"}, "priority must be"),
        ({"queue": ""}, "queue must be"),
        ({"retries": -1}, "retries must be"),
        ({"ttl": -5}, "ttl must be"),
    ],
)
def test_bad_decorator_options_are_value_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        task(**options)(lambda: None)


def test_call_runs_the_function_itself() -> None:
    assert add.call(2, 3) == 5
    assert asyncio.run(async_add.call(2, 3)) == 5


def test_using_validates_and_returns_a_changed_copy() -> None:
    later = add.using(delay=datetime.timedelta(minutes=1), priority=7, queue="slow")
    assert (later.delay_seconds, later.priority, later.queue) == (60.0, 7, "slow")
    assert (add.delay_seconds, add.priority, add.queue) == (0, 0, "default")
    with pytest.raises(ValueError, match="either delay or run_at"):
        add.using(delay=1, run_at=datetime.datetime.now(datetime.UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        add.using(run_at=datetime.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="delay must be"):
        add.using(delay=-1)


@pytest.mark.django_db
def test_sync_call_enqueues_a_waiting_run_and_returns_a_handle() -> None:
    handle = add(2, 3)
    assert isinstance(handle, TaskHandle)
    assert handle.status == WAITING and not handle.ready
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.name, row.args, row.kwargs, row.queue, row.status) == (
        "tests.app.tasks.add",
        [2, 3],
        {},
        "default",
        "waiting",
    )
    assert row.max_attempts == 1


@pytest.mark.django_db
def test_using_sets_run_at_priority_and_queue_on_the_row() -> None:
    when = datetime.datetime(2031, 5, 1, 12, tzinfo=datetime.UTC)
    handle = add.using(run_at=when, priority=-3, queue="q2")(1, b=2)
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.run_at, row.priority, row.queue, row.kwargs) == (when, -3, "q2", {"b": 2})
    delayed = TaskRun.objects.get(pk=add.using(delay=3600)(1, 1).id)
    assert 3590 < (delayed.run_at - delayed.enqueued_at).total_seconds() <= 3600


@pytest.mark.django_db
def test_bad_arguments_fail_at_enqueue_and_write_nothing() -> None:
    with pytest.raises(TypeError, match=r"add\(\): argument 'a' \(\{1\}\) is of type set"):
        add({1}, 2)
    with pytest.raises(TypeError, match=r"argument 'b' \(\(2,\)\) is of type tuple"):
        add(1, (2,))
    with pytest.raises(TypeError, match="missing a required argument: 'b'"):
        add(1)
    assert not TaskRun.objects.exists()


@pytest.mark.django_db
def test_enqueue_joins_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        run_id = add(1, 1).id
        assert TaskRun.objects.filter(pk=run_id).exists()
        raise RuntimeError("roll back")
    assert not TaskRun.objects.filter(pk=run_id).exists()


async def test_sync_call_inside_an_event_loop_says_to_use_defer() -> None:
    with pytest.raises(RuntimeError, match=r"await add\.defer\(\.\.\.\)"):
        add(1, 2)


@pytest.mark.usefixtures("transactional_db")
async def test_defer_enqueues_through_the_async_pool() -> None:
    handle = await add.using(priority=9).defer(4, b=5)
    assert isinstance(handle, AsyncTaskHandle)
    assert handle.status == WAITING and handle.priority == 9
    again = await AsyncTaskHandle.get(handle.id)
    assert again == handle and again.name == "tests.app.tasks.add"
    with pytest.raises(TypeError, match="argument 'b'"):
        await add.defer(1, b={2})


@pytest.mark.django_db
def test_waiting_inside_the_enqueuing_transaction_is_a_clear_error(caplog) -> None:
    handle = add(1, 2)  # the db fixture's transaction is still open
    with pytest.raises(RuntimeError, match="still open"):
        handle.wait(5)
    assert handle.status == "waiting" and not handle.ready  # reads are fine, and say so:
    assert not handle.ready
    warnings = [r.getMessage() for r in caplog.records if "still open" in r.getMessage()]
    assert len(warnings) == 1 and "polling it there never ends" in warnings[0]


@pytest.mark.django_db(transaction=True)
def test_enqueue_before_migrate_says_to_migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", "autotask", "zero", verbosity=0)
    try:
        with pytest.raises(RuntimeError, match=r"manage\.py migrate"):
            add(1, 2)
        with pytest.raises(RuntimeError, match=r"manage\.py migrate"):
            asyncio.run(add.defer(1, 2))
    finally:
        call_command("migrate", "autotask", verbosity=0)


def test_variadic_positional_arguments_are_named_by_position() -> None:
    @task(name="tests.variadic")
    def variadic(first: int, *rest: int, flag: bool = False) -> None: ...

    with pytest.raises(TypeError, match=r"argument 'rest\[1\]'"):
        variadic(1, 2, {3})
    with pytest.raises(TypeError, match=r"argument 'flag'"):
        variadic(1, flag={True})


@pytest.mark.django_db(transaction=True)
def test_a_defer_never_awaited_warns_naming_the_task_and_enqueues_nothing(worker: None) -> None:
    import gc
    import warnings

    from autotask.models import TaskRun
    from tests.app.tasks import add as add_task

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add_task.defer(1, 2)  # the missing await
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages == [
        "add.defer(...) was never awaited, so no run was enqueued: write `await add.defer(...)` "
        "in async code (in sync code, call the task itself)."
    ]
    assert not TaskRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_deferral_is_a_coroutine_for_create_task_and_gather(worker: None) -> None:
    import asyncio

    from tests.app.tasks import add as add_task

    async def both() -> list[int]:
        first = asyncio.create_task(add_task.defer(1, 1))
        second, third = await asyncio.gather(add_task.defer(2, 2), add_task.defer(3, 3))
        return [(await first).id, second.id, third.id]

    ids = asyncio.run(both())
    assert len(set(ids)) == 3
