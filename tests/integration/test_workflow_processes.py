"""Workflows across three worker processes, one of them SIGKILLed while it runs steps: every
step runs, and the group's final step runs exactly once, as the side table they write says."""

from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path

import pytest
from django.db import connection

from autotask import DONE, chain, group
from autotask.models import TaskRun, Worker
from tests.app.models import Execution
from tests.conftest import wait_until
from tests.flows.tasks import final, link, member, record
from tests.integration.processes import live_workers, start_worker_process, stop

MEMBERS = 50


def _worker_that_just_started_a_member() -> uuid.UUID | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT worker_id FROM autotask_task WHERE name = %s AND status = 'running'"
            " AND started_at > now() - interval '0.3 seconds' LIMIT 1",
            [member.name],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


@pytest.mark.django_db(transaction=True)
def test_a_chain_and_a_group_survive_a_killed_process_and_the_final_runs_once(
    tmp_path: Path,
) -> None:
    env = {"AUTOTASK_WORKER_MONITOR_INTERVALL": "0.5", "AUTOTASK_WORKER_TIMEOUT": "3"}
    logs = [tmp_path / f"worker{n}.log" for n in range(3)]
    processes = [start_worker_process(log, **env) for log in logs]
    try:
        wait_until(lambda: len(live_workers()) == 3, timeout=30)
        steps = chain(record.si("chain-1"), link.s("chain-2", 0.5), link.s("chain-3", 0.5))
        members = group(member.s(i, 1.0) for i in range(MEMBERS))
        chained, grouped = steps.enqueue(), members.then(final.s()).enqueue()

        # Mid-way: some members done, and the process to kill has just started one (members
        # take a second), so it dies with it running.
        wait_until(lambda: Execution.objects.filter(key__startswith="member-").count() >= 10)
        victim_id = wait_until(_worker_that_just_started_a_member, timeout=30)
        victim_pid = Worker.objects.get(pk=victim_id).pid
        [victim] = [process for process in processes if process.pid == victim_pid]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        # What it left running: steps of the chain or the group, for the rescue to run again.
        left = TaskRun.objects.filter(status="running", worker_id=victim_id)
        killed_runs = set(left.values_list("id", flat=True))
        assert killed_runs

        assert chained.wait(timeout=90).status == DONE
        assert grouped.wait(timeout=90).status == DONE
    finally:
        codes = stop(processes)
        for log in logs:
            sys.stdout.write(log.read_text(errors="replace"))
    assert sorted(codes) == [-signal.SIGKILL, 0, 0]

    # Every member ran (the killed ones again, after their rescue), and the final step once,
    # given every member's result.
    ran = set(Execution.objects.values_list("key", flat=True))
    assert {f"member-{i}" for i in range(MEMBERS)} <= ran
    assert Execution.objects.filter(key="final").count() == 1
    assert grouped.result == sum(range(MEMBERS))
    # The killed process's runs were rescued and run again (one whose finish it had sent as it
    # died may have landed after all: it is done after one attempt).
    left_behind = list(TaskRun.objects.filter(pk__in=killed_runs))
    assert all(run.status == "done" for run in left_behind)
    assert any(run.attempts == 2 and run.worker_ids[0] == str(victim_id) for run in left_behind)
    assert [run.result for run in chained.runs] == ["chain-1", "chain-2", "chain-3"]
    assert {"chain-2<-chain-1", "chain-3<-chain-2"} <= ran
    # The steps ran in more than one process, and never before the steps they needed.
    final_run = TaskRun.objects.get(pk=grouped.last_run_ids[0])
    members_finished = TaskRun.objects.filter(pk__in=grouped.run_ids[:-1])
    assert all(run.finished_at <= final_run.started_at for run in members_finished)
    assert len(set(Execution.objects.values_list("pid", flat=True))) > 1
