"""Paused queues: no process claims their runs, enqueueing still works, running runs finish,
and pausing survives restarts; the API twins, the command, the admin action and health()."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.contrib.auth.models import User
from django.test import Client

import autotask
from autotask import DONE, RUNNING, WAITING, InvalidTaskOptions, runtime, store
from autotask.models import Queue, TaskRun
from tests.app.tasks import add, slow
from tests.conftest import wait_until
from tests.integration.processes import manage

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_a_paused_queue_s_runs_wait_and_others_run(settings, start_worker) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 60  # only a NOTIFY wakes the worker in time
    start_worker()
    record = autotask.pause_queue("mail")
    assert (record.name, record.paused) == ("mail", True)
    held = add.using(queue="mail")(1, 1)  # enqueueing still works
    other = add(2, 2)
    assert other.wait(10).result == 4
    time.sleep(1.0)  # the worker has had every chance to claim it
    assert TaskRun.objects.get(pk=held.id).status == WAITING
    assert autotask.resume_queue("mail").paused is False
    assert held.wait(10).result == 2  # woken by the resume's NOTIFY, not the 60 s poll


def test_a_run_already_running_finishes_when_its_queue_is_paused(worker: None) -> None:
    running = slow.using(queue="mail")(0.5)
    wait_until(lambda: TaskRun.objects.get(pk=running.id).status == RUNNING)
    autotask.pause_queue("mail")
    assert running.wait(10).status == DONE


def test_pausing_survives_a_restart_and_shows_in_queues_and_health(start_worker) -> None:
    autotask.pause_queue("mail")
    start_worker()
    held = add.using(queue="mail")(3, 3)
    runtime.stop(timeout=2)
    runtime.start()  # a new runtime: the pause is in the table, not in memory
    time.sleep(1.0)
    assert TaskRun.objects.get(pk=held.id).status == WAITING
    states = {q.name: q for q in autotask.queues()}
    assert states["mail"].paused and states["mail"].waiting == 1
    health = autotask.health(max_due_age=0.1)
    [mail] = [q for q in health.queues if q.name == "mail"]
    assert mail.paused and mail.due == 1
    assert health.healthy  # its runs wait on purpose: no problem
    autotask.resume_queue("mail")
    assert held.wait(5).result == 6


def test_the_async_twins(worker: None) -> None:
    async def scenario() -> tuple[bool, bool, list[str]]:
        paused = await autotask.apause_queue("reports")
        resumed = await autotask.aresume_queue("reports")
        return paused.paused, resumed.paused, [q.name for q in await autotask.aqueues()]

    assert asyncio.run(scenario()) == (True, False, ["reports"])


@pytest.mark.parametrize("name", ["", "x" * 101, "nul\x00"])
def test_a_bad_queue_name_is_refused_before_any_sql(name: str) -> None:
    with pytest.raises(InvalidTaskOptions, match="queue"):
        autotask.pause_queue(name)
    assert not Queue.objects.exists()


def test_the_command_pauses_resumes_and_lists() -> None:
    add.using(queue="mail")(1, 1)
    paused = manage("autotask_queue", "pause", "mail")
    assert paused.returncode == 0 and "queue 'mail' paused" in paused.stdout
    assert Queue.objects.get(name="mail").paused
    listed = manage("autotask_queue", "list")
    assert "mail  paused   1 waiting  0 running" in listed.stdout
    resumed = manage("autotask_queue", "resume", "mail")
    assert resumed.returncode == 0 and "queue 'mail' resumed" in resumed.stdout
    assert not Queue.objects.get(name="mail").paused
    missing = manage("autotask_queue", "pause")
    assert missing.returncode == 1 and "pause needs a queue name" in missing.stderr


def test_the_admin_pauses_the_queues_of_selected_runs_and_resumes_them() -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    run = add.using(queue="mail")(1, 1)
    response = client.post(
        "/admin/autotask/taskrun/",
        {"action": "pause_queues", "_selected_action": [run.id]},
        follow=True,
    )
    assert "1 queue paused (mail)" in " ".join(str(m) for m in response.context["messages"])
    assert store.queues()[0].paused
    response = client.post(
        "/admin/autotask/queue/", {"action": "resume", "_selected_action": ["mail"]}, follow=True
    )
    assert "1 queue resumed" in " ".join(str(m) for m in response.context["messages"])
    assert not Queue.objects.get(name="mail").paused
