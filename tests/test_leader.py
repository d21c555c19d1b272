"""The leader and its services, in this process: schedules, rescue and pruning on real rows."""

import asyncio
import datetime
import time
import uuid
from collections.abc import Callable

import pytest
from django.db import connection
from django.utils import timezone

import autotask
from autotask import DONE, ERROR, WAITING, ScheduleDoesNotExist, runtime
from autotask.models import Schedule, TaskRun, Worker
from autotask.runtime.database import Pool
from autotask.runtime.pruner import Pruner
from autotask.runtime.rescuer import Rescuer
from autotask.runtime.scheduler import Scheduler, ScheduleSync, schedule_key
from tests.app.models import Execution
from tests.app.tasks import add, failing_hourly, flaky_later, hourly, new_year
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")

HOUR = datetime.timedelta(hours=1)


@pytest.fixture
def fast_leader(settings, start_worker: Callable[[], None]) -> None:
    settings.AUTOTASK_WORKER_MONITOR_INTERVALL = 0.2
    settings.AUTOTASK_WORKER_TIMEOUT = 1.0
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 0.5
    start_worker()
    wait_until(lambda: runtime.get().is_leader, timeout=10)


def _run_async(scenario: Callable[[Pool], object]) -> object:
    async def main() -> object:
        pool = Pool()
        await pool.start()
        try:
            return await scenario(pool)
        finally:
            await pool.stop(0.0)

    return asyncio.run(main())


def test_the_only_runtime_leads_and_says_so_in_its_worker_row(fast_leader: None) -> None:
    me = runtime.get().worker
    assert me is not None
    assert wait_until(lambda: Worker.objects.get(pk=me.id).leader)
    runtime.stop(timeout=1)
    assert not runtime.get().is_leader


def test_a_runtime_records_its_schedules_and_a_restart_keeps_their_clock(worker: None) -> None:
    rows = {row.name: row for row in Schedule.objects.all()}
    assert rows[hourly.name].spec == "every 3600s"
    assert rows[new_year.name].spec.startswith("cron 0 0 1 1 * (")
    next_run = rows[hourly.name].next_run_at
    assert HOUR - datetime.timedelta(seconds=30) < next_run - timezone.now() <= HOUR
    runtime.stop(timeout=1)
    runtime.start()
    assert Schedule.objects.get(name=hourly.name).next_run_at == next_run


def test_a_changed_spec_starts_its_clock_again_at_the_next_start() -> None:
    later = timezone.now() + 100 * HOUR
    Schedule.objects.create(name=hourly.name, spec="every 60s", next_run_at=later)
    _run_async(lambda pool: ScheduleSync(pool).start())
    row = Schedule.objects.get(name=hourly.name)
    assert row.spec == "every 3600s" and row.next_run_at < later


def test_a_due_tick_is_enqueued_once_and_the_schedule_moves_on(fast_leader: None) -> None:
    tick = timezone.now().replace(microsecond=0)
    Schedule.objects.filter(name=hourly.name).update(next_run_at=tick)
    wait_until(lambda: Execution.objects.filter(key="hourly").exists(), timeout=10)
    [run] = TaskRun.objects.filter(name=hourly.name)
    assert run.schedule_key == schedule_key(hourly.name, tick)
    assert wait_until(lambda: TaskRun.objects.get(pk=run.pk).status == DONE)
    row = Schedule.objects.get(name=hourly.name)
    assert row.last_run_at == tick and row.next_run_at == tick + HOUR


def test_missed_ticks_run_once_and_the_clock_resumes_after_now(fast_leader: None) -> None:
    Schedule.objects.filter(name=hourly.name).update(next_run_at=timezone.now() - 30 * HOUR)
    wait_until(lambda: TaskRun.objects.filter(name=hourly.name).exists(), timeout=10)
    assert wait_until(lambda: Schedule.objects.get(name=hourly.name).next_run_at > timezone.now())
    assert TaskRun.objects.filter(name=hourly.name).count() == 1


def test_two_schedulers_ticking_at_once_enqueue_the_tick_once() -> None:
    tick = timezone.now().replace(microsecond=0) - datetime.timedelta(seconds=1)
    Schedule.objects.create(name=hourly.name, spec="every 3600s", next_run_at=tick)

    async def race(pool: Pool) -> None:
        leaders = [Scheduler(pool, poll_interval=1.0) for _ in range(4)]
        await asyncio.gather(*(leader.step() for leader in leaders))

    _run_async(race)
    assert TaskRun.objects.filter(name=hourly.name).count() == 1
    assert Schedule.objects.get(name=hourly.name).next_run_at == tick + HOUR


def test_a_schedule_without_its_task_is_orphaned_and_never_run() -> None:
    due = timezone.now() - HOUR
    Schedule.objects.create(name="gone.from.code", spec="every 60s", next_run_at=due)
    Schedule.objects.create(name=hourly.name, spec="every 3600s", next_run_at=due, orphaned=True)

    async def lead_once(pool: Pool) -> None:
        scheduler = Scheduler(pool, poll_interval=1.0)
        await scheduler.start()  # taking over: mark what this code does not know
        await scheduler.stop(0.0)
        await scheduler.step()

    _run_async(lead_once)
    flags = dict(Schedule.objects.values_list("name", "orphaned"))
    assert flags == {"gone.from.code": True, hourly.name: False}
    assert not TaskRun.objects.filter(name="gone.from.code").exists()
    assert TaskRun.objects.filter(name=hourly.name).count() == 1


def test_paused_schedules_are_not_ticked_until_resumed(fast_leader: None) -> None:
    assert {s.name for s in autotask.schedules()} >= {hourly.name, new_year.name}
    assert autotask.pause_schedule(hourly.name).paused
    Schedule.objects.filter(name=hourly.name).update(next_run_at=timezone.now() - HOUR)
    time.sleep(1.5)  # three scheduler steps
    assert not TaskRun.objects.filter(name=hourly.name).exists()
    resumed = asyncio.run(autotask.aresume_schedule(hourly.name))
    assert not resumed.paused
    wait_until(lambda: TaskRun.objects.filter(name=hourly.name).count() == 1, timeout=10)
    with pytest.raises(ScheduleDoesNotExist, match="No schedule named 'nope'"):
        autotask.pause_schedule("nope")


def _insert_running(worker_id: uuid.UUID, attempts: int, max_attempts: int) -> int:
    run = TaskRun.objects.create(
        name=add.name,
        args=[20, 22],
        status="running",
        attempts=attempts,
        max_attempts=max_attempts,
        worker_id=worker_id,
        started_at=timezone.now() - HOUR,
    )
    return run.pk


def test_runs_of_a_worker_gone_silent_are_rescued(fast_leader: None) -> None:
    dead = uuid.uuid4()
    Worker.objects.create(
        id=dead, host="gone", pid=1, concurrency=1, heartbeat_at=timezone.now() - HOUR
    )
    again = _insert_running(dead, attempts=1, max_attempts=2)
    spent = _insert_running(dead, attempts=1, max_attempts=1)
    orphan = _insert_running(uuid.uuid4(), attempts=1, max_attempts=2)  # its worker left no row
    assert wait_until(lambda: TaskRun.objects.get(pk=again).status == DONE, timeout=10)
    rescued = TaskRun.objects.get(pk=again)
    assert (rescued.result, rescued.attempts) == (42, 2)  # the lost attempt counted
    assert rescued.error["type"] == "autotask.exceptions.WorkerLost"
    lost = TaskRun.objects.get(pk=spent)
    assert lost.status == ERROR and lost.error["type"] == "autotask.exceptions.WorkerLost"
    assert f"({dead}) was lost" in lost.error["message"]
    assert wait_until(lambda: TaskRun.objects.get(pk=orphan).status == DONE, timeout=10)
    assert not Worker.objects.filter(pk=dead).exists()
    assert Worker.objects.filter(pk=runtime.get().worker.id).exists()


def test_pruning_deletes_only_finished_runs_past_their_expiry_in_batches() -> None:
    now = timezone.now()
    keep, drop = [], []
    for n, (status, expires) in enumerate(
        [
            ("done", now - HOUR),
            ("error", now - HOUR),
            ("cancelled", now - HOUR),
            ("done", now - HOUR),
            ("done", now + HOUR),
            ("error", None),
            ("waiting", now - HOUR),
            ("running", now - HOUR),
        ]
    ):
        run = TaskRun.objects.create(name=f"t{n}", status=status, expires_at=expires)
        (
            drop if status in ("done", "error", "cancelled") and expires and expires < now else keep
        ).append(run.pk)

    async def prune(pool: Pool) -> float:
        return await Pruner(pool, interval=600, batch=2).step()

    assert _run_async(prune) == 600
    assert sorted(TaskRun.objects.values_list("pk", flat=True)) == sorted(keep)
    assert len(drop) == 4


def test_pruning_runs_on_the_leader_every_clean_intervall(settings, fast_leader: None) -> None:
    settings.AUTOTASK_CLEAN_INTERVALL = 0.3
    runtime.stop(timeout=1)
    old = TaskRun.objects.create(name="t", status="done", expires_at=timezone.now() - HOUR)
    runtime.start()
    assert wait_until(lambda: not TaskRun.objects.filter(pk=old.pk).exists(), timeout=10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM autotask_task WHERE status = 'waiting'")
        assert cursor.fetchone()[0] == 0


def test_a_tick_whose_run_failed_does_not_stop_the_next(fast_leader: None) -> None:
    for n in (1, 2):
        Schedule.objects.filter(name=failing_hourly.name).update(next_run_at=timezone.now())
        wait_until(
            lambda n=n: TaskRun.objects.filter(name=failing_hourly.name, status=ERROR).count() == n,
            timeout=10,
        )
    assert TaskRun.objects.filter(name=failing_hourly.name).count() == 2
    assert not Schedule.objects.get(name=failing_hourly.name).paused


def _rescue_once(worker_id: uuid.UUID) -> object:
    async def step(pool: Pool) -> float:
        return await Rescuer(pool, worker_id, timeout=30, interval=5).step()

    return _run_async(step)


def test_the_rescue_spares_runs_started_within_the_timeout() -> None:
    me = Worker.objects.create(id=uuid.uuid4(), host="me", pid=2, concurrency=1)
    gone = uuid.uuid4()  # taken for lost, still claiming until its heartbeat rejoins
    fresh = TaskRun.objects.create(
        name=add.name, status="running", attempts=1, worker_id=gone, started_at=timezone.now()
    )
    old = _insert_running(gone, attempts=1, max_attempts=2)
    _rescue_once(me.id)
    assert TaskRun.objects.get(pk=fresh.pk).status == "running"
    assert TaskRun.objects.get(pk=old).status == WAITING


def test_a_leader_whose_own_heartbeat_is_late_rescues_nothing() -> None:
    me = Worker.objects.create(
        id=uuid.uuid4(), host="me", pid=2, concurrency=1, heartbeat_at=timezone.now() - HOUR
    )
    other = Worker.objects.create(
        id=uuid.uuid4(), host="other", pid=3, concurrency=1, heartbeat_at=timezone.now() - HOUR
    )
    run = _insert_running(other.id, attempts=1, max_attempts=2)
    _rescue_once(me.id)  # after an outage: every heartbeat is stale, its own too
    assert TaskRun.objects.get(pk=run).status == "running"
    assert Worker.objects.filter(pk=other.id).exists()


def test_a_new_leader_waits_one_timeout_before_its_first_rescue() -> None:
    assert Rescuer(None, uuid.uuid4(), timeout=30, interval=5).first_pause == 30


def test_a_rescued_error_expires_after_its_tasks_ttl() -> None:
    me = Worker.objects.create(id=uuid.uuid4(), host="me", pid=2, concurrency=1)
    spent = TaskRun.objects.create(
        name=flaky_later.name,  # ttl=60
        status="running",
        attempts=3,
        max_attempts=3,
        worker_id=uuid.uuid4(),
        started_at=timezone.now() - HOUR,
    )
    _rescue_once(me.id)
    row = TaskRun.objects.get(pk=spent.pk)
    assert row.status == ERROR
    assert (row.expires_at - row.finished_at).total_seconds() == 60


def test_no_second_tick_is_enqueued_while_the_first_still_waits() -> None:
    tick = timezone.now().replace(microsecond=0) - datetime.timedelta(seconds=1)
    Schedule.objects.create(name=hourly.name, spec="every 3600s", next_run_at=tick)

    async def two_ticks(pool: Pool) -> None:
        scheduler = Scheduler(pool, poll_interval=1.0)
        await scheduler.step()
        await pool.execute(
            "UPDATE autotask_schedule SET next_run_at = now() - interval '1 second'", []
        )
        await scheduler.step()  # the first tick's run has not started: no second one

    _run_async(two_ticks)
    assert TaskRun.objects.filter(name=hourly.name).count() == 1
    assert Schedule.objects.get(name=hourly.name).next_run_at > timezone.now()
