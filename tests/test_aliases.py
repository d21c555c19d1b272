"""The aliases for teams coming from another system: Celery's delay() and apply_async(),
django-async's schedule()/deschedule() and per-task atomic, django-background-tasks'
@background and its schedule= keyword. Against the real database and runtime."""

import datetime

import pytest
from django.db import transaction

import autotask
from autotask import DONE, ERROR, WAITING, InvalidTaskOptions, TaskHandle, TaskNotRegistered, task
from autotask.backoff import background_tasks
from autotask.compat import BackgroundTask, background, deschedule, schedule
from autotask.models import TaskRun
from tests.app.models import Execution
from tests.app.tasks import (
    add,
    async_add,
    atomic_not_json,
    atomic_record,
    record_then_fail,
)

pytestmark = pytest.mark.usefixtures("transactional_db")


@background(schedule=30)
def later_add(a: int, b: int) -> int:
    return a + b


@background
def now_add(a: int, b: int) -> int:
    return a + b


def _wait_seconds(handle: TaskHandle) -> float:
    row = TaskRun.objects.get(pk=handle.id)
    return (row.run_at - row.enqueued_at).total_seconds()


# --- Celery: delay() and apply_async() ---


def test_delay_enqueues_as_calling_does_and_joins_the_transaction(worker: None) -> None:
    handle = add.delay(2, b=3)
    assert isinstance(handle, TaskHandle)
    assert handle.wait(10).status == DONE and handle.result == 5
    assert async_add.delay(4, 5).wait(10).result == 9
    with pytest.raises(RuntimeError, match="rolled back"), transaction.atomic():
        doomed = add.delay(1, 1)
        raise RuntimeError("rolled back")
    assert not TaskRun.objects.filter(pk=doomed.id).exists()


def test_apply_async_maps_countdown_queue_and_priority_onto_the_row() -> None:
    handle = add.apply_async((1, 2), countdown=60, queue="slow", priority=7)
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.args, row.kwargs, row.queue, row.priority) == ([1, 2], {}, "slow", 7)
    assert 59 < _wait_seconds(handle) <= 60
    assert (add.queue, add.priority, add.delay_seconds) == ("default", 0, 0)  # untouched


def test_apply_async_takes_an_eta_kwargs_and_no_args() -> None:
    when = datetime.datetime(2031, 5, 1, 12, tzinfo=datetime.UTC)
    row = TaskRun.objects.get(pk=add.apply_async(kwargs={"a": 1, "b": 2}, eta=when).id)
    assert (row.args, row.kwargs, row.run_at) == ([], {"a": 1, "b": 2}, when)
    bare = TaskRun.objects.get(pk=add.apply_async(None, {"a": 3, "b": 4}).id)
    assert (bare.args, bare.kwargs, bare.queue, bare.priority) == (
        [],
        {"a": 3, "b": 4},
        "default",
        0,
    )
    assert 0 <= (bare.run_at - bare.enqueued_at).total_seconds() < 1


def test_apply_async_runs_like_a_call(worker: None) -> None:
    assert add.apply_async([20, 22]).wait(10).result == 42


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"countdown": 5, "eta": datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)},
            InvalidTaskOptions,
            "either delay or run_at",
        ),
        ({"eta": datetime.datetime(2031, 1, 1)}, InvalidTaskOptions, "timezone-aware"),
        ({"countdown": -1}, InvalidTaskOptions, "delay must be"),
        ({"priority": 255}, InvalidTaskOptions, "priority must be an integer from -100 to 100"),
        ({"queue": ""}, InvalidTaskOptions, "queue must be"),
        ({"expires": 60}, InvalidTaskOptions, "expires= is not supported here: runs do not"),
        ({"retry": False}, InvalidTaskOptions, "retry= is not supported here"),
        ({"link": "x"}, InvalidTaskOptions, "link= is not supported here: there are no callbacks"),
        ({"serializer": "json"}, InvalidTaskOptions, "serializer= .* always JSON"),
        ({"time_limit": 5}, InvalidTaskOptions, r"@task\(timeout=seconds\)"),
        ({"countdwn": 5}, TypeError, "unexpected keyword argument 'countdwn'"),
    ],
)
def test_apply_async_refuses_what_it_cannot_honour_and_writes_nothing(
    options: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        add.apply_async((1, 2), **options)
    assert not TaskRun.objects.exists()


def test_apply_async_args_must_be_a_list_or_tuple() -> None:
    with pytest.raises(TypeError, match="args must be a list or tuple"):
        add.apply_async(1)  # type: ignore[arg-type]
    assert not TaskRun.objects.exists()


def test_apply_async_options_are_keywords_as_in_celery() -> None:
    with pytest.raises(TypeError, match="positional"):
        add.apply_async((1, 2), {}, "a-celery-task-id")  # type: ignore[misc]
    assert not TaskRun.objects.exists()


# --- django-async's rule, per task: atomic=True ---


def test_a_failing_atomic_task_leaves_none_of_its_writes(worker: None) -> None:
    failed = atomic_record("atomic-fails", True).wait(10)
    assert failed.status == ERROR and "fails after writing" in failed.error.message
    assert not Execution.objects.filter(key="atomic-fails").exists()
    unstorable = atomic_not_json("atomic-not-json").wait(10)
    assert unstorable.status == ERROR
    assert not Execution.objects.filter(key="atomic-not-json").exists()


def test_a_failing_task_without_atomic_keeps_its_writes(worker: None) -> None:
    assert record_then_fail("plain-fails").wait(10).status == ERROR
    assert Execution.objects.filter(key="plain-fails").count() == 1


def test_a_succeeding_atomic_task_commits(worker: None) -> None:
    done = atomic_record("atomic-ok", False).wait(10)
    assert done.status == DONE
    assert Execution.objects.get(key="atomic-ok").pk == done.result


def test_atomic_is_for_plain_functions_only() -> None:
    assert atomic_record.atomic and not add.atomic
    with pytest.raises(InvalidTaskOptions, match="atomic=True is for plain def tasks only"):

        @task(atomic=True)
        async def not_atomic() -> None: ...

    with pytest.raises(InvalidTaskOptions, match="atomic must be True or False"):
        task(atomic="yes")(lambda: None)  # type: ignore[call-overload]


# --- django-async: schedule() and deschedule() ---


def test_schedule_enqueues_a_registered_task_by_name_or_object() -> None:
    by_name = TaskRun.objects.get(pk=schedule("tests.app.tasks.add", args=(1, 2)).id)
    assert (by_name.name, by_name.args, by_name.kwargs) == ("tests.app.tasks.add", [1, 2], {})
    when = datetime.datetime(2031, 5, 1, 12, tzinfo=datetime.UTC)
    handle = schedule(add, kwargs={"a": 1, "b": 2}, run_after=when, priority=9)
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.kwargs, row.run_at, row.priority) == ({"a": 1, "b": 2}, when, 9)


def test_schedule_never_imports_a_name_nor_takes_a_plain_function() -> None:
    with pytest.raises(TaskNotRegistered, match="nothing is imported"):
        schedule("subprocess.check_output", args=(["true"],))
    with pytest.raises(TaskNotRegistered):
        schedule("subprocess.check_output", args=(["true"],), priority=5)
    with pytest.raises(TypeError, match="decorate the function"):
        schedule(print, args=("hi",))  # type: ignore[arg-type]
    assert not TaskRun.objects.exists()


def test_scheduled_runs_run(worker: None) -> None:
    assert schedule("tests.app.tasks.add", [3], {"b": 4}).wait(10).result == 7


def test_deschedule_takes_args_and_kwargs_as_django_async_did() -> None:
    doomed = [add(1, 2), add(1, 2), add(a=1, b=2)]
    spared = add(2, 1)
    assert deschedule("tests.app.tasks.add", args=(1, 2)) == 2
    assert deschedule(add, kwargs={"a": 1, "b": 2}) == 1
    listed = add(7, 8)
    assert deschedule("tests.app.tasks.add", args=[7, 8]) == 1
    assert {TaskRun.objects.get(pk=h.id).status for h in [*doomed, listed]} == {"cancelled"}
    assert TaskRun.objects.get(pk=spared.id).status == WAITING
    # What the alias saves a caller from: autotask.deschedule takes the list for one argument
    # and quietly cancels nothing.
    kept = add(5, 6)
    assert autotask.deschedule(add, [5, 6]) == 0
    assert TaskRun.objects.get(pk=kept.id).status == WAITING


# --- django-background-tasks: @background(schedule=) and the schedule= call keyword ---


def test_background_waits_its_schedule_with_that_librarys_retries() -> None:
    assert isinstance(later_add, BackgroundTask) and later_add.name == f"{__name__}.later_add"
    assert (later_add.retries, later_add.backoff) == (24, background_tasks())
    handle = later_add(1, 2)
    assert 29 < _wait_seconds(handle) <= 30
    assert TaskRun.objects.get(pk=handle.id).max_attempts == 25
    assert _wait_seconds(now_add(1, 2)) < 1


def test_the_schedule_keyword_at_the_call() -> None:
    assert 89 < _wait_seconds(later_add(1, 2, schedule=90)) <= 90
    assert 1199 < _wait_seconds(later_add(1, b=2, schedule=datetime.timedelta(minutes=20))) <= 1200
    when = datetime.datetime(2031, 5, 1, 12, tzinfo=datetime.UTC)
    row = TaskRun.objects.get(pk=later_add(1, 2, schedule=when, priority=3, queue="bg").id)
    assert (row.run_at, row.priority, row.queue, row.args) == (when, 3, "bg", [1, 2])
    assert later_add.delay_seconds == 30  # the call's keywords changed only that run


def test_background_runs_and_its_options_are_validated(worker: None) -> None:
    assert later_add(2, 3, schedule=0).wait(10).result == 5
    with pytest.raises(InvalidTaskOptions, match="schedule must be a number of seconds"):
        background(schedule=-1)(lambda: None)
    with pytest.raises(TypeError, match="unexpected keyword argument 'repeat'"):
        later_add(1, 2, repeat=3600)
