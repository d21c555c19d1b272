"""The management commands as a user runs them: real subprocesses against the test database."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

from autotask import health
from autotask.models import TaskRun
from tests.app.tasks import add, fail, noop
from tests.conftest import database_conninfo, wait_until
from tests.integration.processes import manage

pytestmark = pytest.mark.usefixtures("transactional_db")


def _live_worker_row(queues: list[str] | None) -> uuid.UUID:
    """A worker as another process would register it (its heartbeat fresh)."""
    worker_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO autotask_worker (id, host, pid, queues, concurrency) "
            "VALUES (%s, 'elsewhere', 4242, %s, 3)",
            [worker_id, json.dumps(queues)],
        )
    return worker_id


def _age(run_id: int, seconds: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE autotask_task SET run_at = now() - %s * interval '1 second' WHERE id = %s",
            [seconds, run_id],
        )


# --- autotask.health() ---


def test_health_counts_per_queue_and_finds_a_queue_nobody_serves() -> None:
    waiting = add(1, 1)
    add.using(queue="mail", delay=3600)(1, 2)
    state = health()
    [default, mail] = state.queues
    assert (default.name, default.counts["waiting"], default.due) == ("default", 1, 1)
    assert (mail.name, mail.counts["waiting"], mail.due) == ("mail", 1, 0)
    assert not default.served and state.workers == [] and state.leader is None
    assert state.problems == ["queue 'default' has 1 due run(s) and no live worker"]
    assert not state.healthy
    assert default.oldest_due_seconds is not None and default.oldest_due_seconds >= 0
    TaskRun.objects.filter(pk=waiting.id).delete()
    assert health().healthy  # a run due later in an unserved queue is no problem yet


def test_health_sees_live_workers_the_leader_and_schedules(worker: None) -> None:
    from autotask import runtime

    wait_until(lambda: runtime.get().is_leader, timeout=10)
    add(2, 2).wait(10)
    state = health()
    assert state.healthy, state.problems
    [me] = state.workers
    assert me.pid == os.getpid() and me.leader and state.leader == me
    assert me.running == 0 and me.heartbeat_age < 5
    assert state.queues[0].counts["done"] == 1
    nexts = [s.next_run_at for s in state.schedules]
    assert nexts == sorted(nexts)  # by next run
    assert {"tests.app.tasks.hourly", "tests.app.tasks.new_year"} <= {
        s.name for s in state.schedules
    }


def test_a_due_run_waiting_too_long_is_a_problem() -> None:
    _live_worker_row(["slow"])
    run = add.using(queue="slow")(1, 1)
    _age(run.id, 600)
    state = health(max_due_age=300)
    [slow] = state.queues
    assert slow.served and slow.due == 1
    assert slow.oldest_due_seconds is not None and slow.oldest_due_seconds >= 600
    assert state.problems == [
        f"queue 'slow': its oldest due run has waited {slow.oldest_due_seconds:.0f} s "
        "(more than 300 s)"
    ]
    assert health(max_due_age=3600).healthy


# --- manage.py autotask_health ---


def test_autotask_health_exits_1_when_unhealthy_and_0_when_healthy() -> None:
    add(1, 1)
    unhealthy = manage("autotask_health")
    assert unhealthy.returncode == 1, unhealthy.stderr
    assert "UNHEALTHY: queue 'default' has 1 due run(s) and no live worker" in unhealthy.stdout
    _live_worker_row(None)
    healthy = manage("autotask_health", "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    report = json.loads(healthy.stdout)
    assert report["healthy"] is True and report["problems"] == []
    assert report["queues"][0]["counts"]["waiting"] == 1
    assert [w["host"] for w in report["workers"]] == ["elsewhere"]


def test_autotask_health_refuses_a_bad_threshold() -> None:
    done = manage("autotask_health", "--max-due-age", "0")
    assert done.returncode == 1
    assert "--max-due-age must be a number of seconds above 0" in done.stderr


# --- manage.py autotask_prune ---


def test_autotask_prune_deletes_what_it_is_told_and_dry_run_deletes_nothing(worker: None) -> None:
    done = [add(n, 1).wait(10) for n in range(3)]
    failed = fail("x").wait(10)
    waiting = add.using(delay=3600)(9, 9)
    with connection.cursor() as cursor:  # finished an hour ago, their ttl not yet passed
        cursor.execute(
            "UPDATE autotask_task SET finished_at = now() - interval '1 hour' "
            "WHERE status IN ('done', 'error')"
        )
    dry = manage("autotask_prune", "--older-than", "60", "--status", "error", "--dry-run")
    assert dry.returncode == 0 and "would delete 1 run(s) (error)" in dry.stdout
    assert TaskRun.objects.count() == 5
    expired = manage("autotask_prune")  # by ttl: none has expired
    assert expired.returncode == 0 and "deleted 0 run(s)" in expired.stdout
    pruned = manage("autotask_prune", "--older-than", "60", "--status", "done")
    assert pruned.returncode == 0 and "deleted 3 run(s) (done)" in pruned.stdout
    assert set(TaskRun.objects.values_list("pk", flat=True)) == {failed.id, waiting.id}
    assert not TaskRun.objects.filter(pk__in=[d.id for d in done]).exists()
    wrong = manage("autotask_prune", "--status", "waiting")
    assert wrong.returncode == 1 and "--status takes finished statuses" in wrong.stderr


# --- manage.py autotask_worker's options ---


def test_autotask_worker_stops_after_max_tasks_and_says_what_it_serves() -> None:
    for _ in range(3):
        noop()
    done = manage("autotask_worker", "--max-tasks", "3", "--concurrency", "2", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "autotask worker started: 2 at once, serving every queue" in done.stdout
    assert "stopping (3 task(s) done)" in done.stdout
    assert set(TaskRun.objects.values_list("status", flat=True)) == {"done"}


def test_autotask_worker_serves_only_its_queues_and_stops_after_its_duration() -> None:
    mail = add.using(queue="mail")(1, 1)
    other = add(2, 2)
    started = time.monotonic()
    done = manage("autotask_worker", "--queues", "mail", "--duration", "3", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started >= 3
    assert "serving mail" in done.stdout and "stopping (3 s passed)" in done.stdout
    assert TaskRun.objects.get(pk=mail.id).status == "done"
    assert TaskRun.objects.get(pk=other.id).status == "waiting"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--concurrency", "0"], "--concurrency must be 1 or more"),
        (["--max-tasks", "0"], "--max-tasks must be 1 or more"),
        (["--duration", "-1"], "--duration must be a number of seconds above 0"),
        (["--queues", " , "], "--queues needs at least one queue name"),
    ],
)
def test_autotask_worker_refuses_bad_options(option: list[str], message: str) -> None:
    done = manage("autotask_worker", *option)
    assert done.returncode == 1 and message in done.stderr


def test_autotask_worker_before_migrate_says_so_in_one_line(tmp_path: Path) -> None:
    name = f"autotask_unmigrated_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        done = manage("autotask_worker", DATABASE_URL=database_conninfo(dbname=name))
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert "migrate" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr
