"""The original autotask's API: its import paths, decorators, defaults and polling loop."""

import datetime
import itertools
import time
from collections.abc import Callable

import pytest

from autotask import InvalidTaskOptions
from autotask.models import TaskRun
from autotask.schedule import Cron, Every
from autotask.task import DONE, ERROR, RUNNING, WAITING
from autotask.tasks import Task, cron_task, delayed_task, periodic_task, task
from tests.app.models import Execution
from tests.app.tasks import add, flaky_later, hourly, new_year
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_the_seed_import_paths_and_defaults() -> None:
    assert (WAITING, RUNNING, DONE, ERROR) == ("waiting", "running", "done", "error")

    @delayed_task()
    def later() -> None: ...

    assert isinstance(later, Task)
    assert (later.delay_seconds, later.retries, later.ttl, later.schedule) == (0, 0, 300, None)
    assert hourly.schedule == Every(3600, start_now=False)
    assert isinstance(new_year.schedule, Cron)
    assert new_year.schedule.expression == "0 0 1 1 *"  # seed order turned into cron's


def test_delayed_task_waits_its_delay_retries_apart_and_keeps_its_row_for_ttl(
    settings, start_worker: Callable[[], None]
) -> None:
    settings.AUTOTASK_RETRY_DELAY = 0.3
    start_worker()
    handle = flaky_later("k")
    assert handle.status == WAITING  # returned at once
    handle.wait(20)
    assert (handle.status, handle.result, handle.attempts) == (DONE, "ok after 3", 3)
    times = list(Execution.objects.filter(key="k").order_by("at").values_list("at", flat=True))
    assert (times[0] - handle.enqueued_at).total_seconds() >= 1.0  # delay=1
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 2 and all(gap >= 0.3 for gap in gaps), gaps  # AUTOTASK_RETRY_DELAY
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.expires_at - row.finished_at).total_seconds() == 60  # ttl=60


def test_the_seeds_polling_loop_ends_when_the_run_finishes(worker: None) -> None:
    handle = add(1, 2)
    deadline = time.monotonic() + 10
    while not handle.ready:  # the seed's own loop: `ready` is read afresh until it is True
        assert time.monotonic() < deadline, "handle.ready never became True"
        time.sleep(0.05)
    assert (handle.status, handle.result, handle.error) == (DONE, 3, None)


def test_status_and_result_are_read_afresh_until_the_run_is_finished(worker: None) -> None:
    handle = add(2, 2)
    assert wait_until(lambda: handle.status == DONE)
    assert handle.result == 4 and handle.finished_at is not None


def test_calling_a_periodic_task_enqueues_a_one_off_run() -> None:
    handle = hourly()
    row = TaskRun.objects.get(pk=handle.id)
    assert (row.name, row.status, row.schedule_key, row.args) == (hourly.name, "waiting", None, [])


def test_new_code_gives_every_and_cron_on_task() -> None:
    @task(every=datetime.timedelta(minutes=5), name="tests.seed.every")
    def every_five() -> None: ...

    @task(cron="*/10 * * * *", tz="Europe/Berlin", name="tests.seed.cron")
    def every_ten() -> None: ...

    assert every_five.schedule == Every(300.0)
    assert every_ten.schedule == Cron("*/10 * * * *", every_ten.schedule.tz)
    assert every_ten.schedule.tz.key == "Europe/Berlin"


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        (lambda: periodic_task(seconds=0), r"seconds must be from 1 second"),
        (lambda: periodic_task(seconds="60"), r"seconds must be a number of seconds"),
        (lambda: cron_task(minutes=[61]), r"minutes: 61 is not an integer in 0-59"),
        (lambda: cron_task(crontab="* * 8 * *"), r"field dow: '8' is outside 0-6"),
        (lambda: task(every=60, cron="* * * * *"), r"either every or cron"),
        (lambda: task(tz="Europe/Berlin"), r"tz applies to cron"),
        (lambda: task(start_now=True), r"start_now applies to every"),
        (lambda: task(cron="* * * * *", tz="Mars/Olympus"), r"tz must name a time zone"),
        (lambda: delayed_task(delay=-1), r"delay must be a number of seconds >= 0"),
    ],
)
def test_bad_schedules_and_options_are_refused_when_decorated(decorate, message: str) -> None:
    with pytest.raises(InvalidTaskOptions, match=message):
        decorate()


def test_a_periodic_task_that_needs_arguments_is_refused_when_decorated() -> None:
    with pytest.raises(InvalidTaskOptions, match=r"runs with no arguments.*'section'"):

        @periodic_task(seconds=60)
        def rebuild(section: str) -> None: ...


def test_the_seed_decorators_want_their_parentheses() -> None:
    with pytest.raises(TypeError, match=r"@delayed_task\(\)"):

        @delayed_task
        def bare() -> None: ...
