"""Workflows on real PostgreSQL: chains, groups with a final step, depends_on, their handles.

Most tests run the steps with ``autotask.testing.run_pending()`` in the test's transaction: the
trigger that moves a workflow on runs in the finishing statement, there as under a runtime.
"""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.urls import reverse

import autotask
from autotask import CANCELLED, DONE, ERROR, RUNNING, WAITING, chain, group
from autotask.exceptions import InvalidTaskOptions, RunDoesNotExist
from autotask.models import Dependency, TaskRun
from autotask.testing import run_pending
from autotask.workflow_handles import AsyncWorkflowHandle, WorkflowHandle
from tests.app.models import Execution
from tests.conftest import database_conninfo
from tests.flows.tasks import add, async_double, double, fail, gather, member, record

pytestmark = pytest.mark.django_db


def _statuses(handle: WorkflowHandle) -> list[str]:
    return [str(run.status) for run in handle.refresh().runs]


def test_a_chain_runs_its_steps_in_order_each_given_the_result_before() -> None:
    flow = chain(add.s(1, 2), double.s(), async_double.s()).enqueue()
    assert flow.status == WAITING
    first, second, third = TaskRun.objects.filter(workflow_id=flow.id).order_by("id")
    assert (first.waiting_for, second.waiting_for, third.waiting_for) == (0, 1, 1)
    assert second.run_at.year == third.run_at.year == 9999  # not due: waits for the step before
    assert run_pending() == 3
    assert flow.status == DONE
    assert flow.result == 12  # (1 + 2) * 2 * 2
    assert [run.result for run in flow.runs] == [3, 6, 12]
    assert TaskRun.objects.get(pk=third.pk).args == [6]


def test_a_chain_stops_at_a_failure_and_says_why_the_rest_did_not_run() -> None:
    flow = chain(record.si("a"), fail.s(), record.si("c"), record.si("d")).enqueue()
    run_pending()
    assert _statuses(flow) == ["done", "error", "cancelled", "cancelled"]
    assert flow.status == ERROR
    assert flow.error is not None and flow.error.exception_class_path == "builtins.ValueError"
    failed = flow.runs[1]
    for cancelled in flow.runs[2:]:
        assert cancelled.error is not None
        assert cancelled.error.exception_class_path == "autotask.exceptions.DependencyFailed"
        assert f"run #{failed.id} (tests.flows.tasks.fail)" in cancelled.error.message
        assert "ended ERROR" in cancelled.error.message
        assert cancelled.finished_at is not None
    assert list(Execution.objects.values_list("key", flat=True)) == ["a"]


def test_a_group_then_a_final_step_given_every_result_in_order() -> None:
    flow = group(double.s(i) for i in range(10)).then(gather.s("final")).enqueue()
    assert len(flow.run_ids) == 11 and flow.last_run_ids == [flow.run_ids[-1]]
    assert run_pending() == 11
    assert flow.status == DONE
    assert flow.result == [2 * i for i in range(10)]
    assert Execution.objects.filter(key="final").count() == 1


def test_a_group_final_runs_after_a_failure_too_given_none_for_it() -> None:
    flow = group(double.s(1), fail.s(), double.s(3)).then(gather.s("final")).enqueue()
    run_pending()
    assert _statuses(flow) == ["done", "error", "done", "done"]
    assert flow.status == DONE  # it ran as it was told: after all finished, however
    assert flow.result == [2, None, 6]


def test_only_on_success_cancels_the_final_step_when_a_member_fails() -> None:
    flow = group(double.s(1), fail.s()).then(gather.s("final"), only_on_success=True).enqueue()
    run_pending()
    assert _statuses(flow) == ["done", "error", "cancelled"]
    assert flow.status == ERROR
    final = flow.runs[-1]
    assert final.error is not None
    assert final.error.exception_class_path == "autotask.exceptions.DependencyFailed"
    assert not Execution.objects.filter(key="final").exists()


def test_chains_and_groups_nest() -> None:
    # a, then b and (c then d) side by side, then e given [b's result, d's result].
    flow = chain(
        add.s(1, 1),
        group(double.s(), chain(double.s(), add.s(100))),
        gather.s("e"),
    ).enqueue()
    run_pending()
    assert flow.status == DONE
    assert flow.result == [4, 104]


def test_a_failure_inside_a_group_cancels_only_what_needed_it() -> None:
    # The member chain stops at its failure; the final step runs anyway, given None for it.
    flow = group(chain(fail.s(), record.si("after-fail")), record.s("other")).then(
        gather.s("final")
    )
    handle = flow.enqueue()
    run_pending()
    assert _statuses(handle) == ["error", "cancelled", "done", "done"]
    assert handle.result == [None, "other"]


def test_a_long_failed_chain_is_cancelled_in_one_go() -> None:
    steps = [fail.s()] + [double.s() for _ in range(400)]
    flow = chain(*steps).enqueue()
    run_pending()
    assert TaskRun.objects.filter(workflow_id=flow.id, status="cancelled").count() == 400
    assert flow.status == ERROR


def test_enqueueing_a_workflow_is_one_transaction_with_the_caller() -> None:
    before = TaskRun.objects.count()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        chain(double.s(1), double.s()).enqueue()
        1 / 0  # noqa: B018
    assert TaskRun.objects.count() == before
    assert not Dependency.objects.exists()


def test_a_bad_step_fails_at_enqueue_and_nothing_is_written() -> None:
    with pytest.raises(TypeError, match="double"):
        chain(add.s(1, 2), double.s(5)).enqueue()  # double would get (3, 5)
    with pytest.raises(TypeError, match="add"):
        group(add.s(1)).enqueue()
    assert not TaskRun.objects.exists()


def test_workflow_options_are_checked() -> None:
    with pytest.raises(InvalidTaskOptions):
        chain()
    with pytest.raises(InvalidTaskOptions):
        group([])
    with pytest.raises(TypeError, match="steps are"):
        chain(double)  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskOptions, match="unique"):
        chain(double.s(1), autotask.task(unique=True, name="unique.step")(str).s()).enqueue()
    handle = double(1)
    with pytest.raises(InvalidTaskOptions, match="depends_on"):
        chain(double.using(depends_on=handle).s(1)).enqueue()


def test_steps_keep_their_task_options() -> None:
    flow = chain(double.using(queue="mail", priority=5).s(1), double.s()).enqueue()
    first, second = TaskRun.objects.filter(workflow_id=flow.id).order_by("id")
    assert (first.queue, first.priority, second.queue) == ("mail", 5, "default")


def test_depends_on_waits_for_every_run_it_names() -> None:
    a, b = record("a"), record("b")
    after = record.using(depends_on=[a, b])("after")
    row = TaskRun.objects.get(pk=after.id)
    assert row.waiting_for == 2 and row.run_at.year == 9999
    assert TaskRun.objects.get(pk=a.id).has_dependents
    assert run_pending() == 3
    assert list(Execution.objects.order_by("id").values_list("key", flat=True))[-1] == "after"
    assert after.status == DONE and after.result == "after"
    assert TaskRun.objects.get(pk=after.id).args == ["after"]  # given no result


def test_depends_on_a_finished_run_is_due_at_once() -> None:
    done = record("a")
    run_pending()
    after = record.using(depends_on=done)("after")
    assert TaskRun.objects.get(pk=after.id).waiting_for == 0
    assert run_pending() == 1


def test_depends_on_a_failed_run_is_cancelled_at_once_saying_why() -> None:
    failed = fail()
    run_pending()
    after = record.using(depends_on=failed.id)("after")
    assert after.status == CANCELLED
    assert after.error is not None
    assert after.error.exception_class_path == "autotask.exceptions.DependencyFailed"
    assert f"#{failed.id}" in after.error.message and "ERROR" in after.error.message
    assert run_pending() == 0


def test_depends_on_a_run_that_does_not_exist_enqueues_nothing() -> None:
    with pytest.raises(RunDoesNotExist, match="#999999999"):
        record.using(depends_on=999_999_999)("never")
    assert not TaskRun.objects.filter(name=record.name).exists()


def test_depends_on_a_workflow_waits_for_its_end() -> None:
    flow = group(double.s(1), double.s(2)).enqueue()
    after = record.using(depends_on=flow)("after")
    assert TaskRun.objects.get(pk=after.id).waiting_for == 2
    run_pending()
    assert after.status == DONE


def test_depends_on_is_checked() -> None:
    with pytest.raises(InvalidTaskOptions, match="depends_on takes"):
        record.using(depends_on="7")  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskOptions, match="at least one"):
        record.using(depends_on=[])
    with pytest.raises(InvalidTaskOptions, match="unique"):
        record.using(depends_on=1, unique_key="k")


def test_cancelling_a_workflow_cancels_its_waiting_steps() -> None:
    flow = chain(double.s(1), double.s(), double.s()).enqueue()
    assert flow.cancel() is True
    assert _statuses(flow) == ["cancelled", "cancelled", "cancelled"]
    assert flow.status == CANCELLED
    assert flow.cancel() is False
    assert run_pending() == 0


def test_a_cancelled_step_cancels_the_steps_that_need_it() -> None:
    flow = chain(double.s(1), double.s(), double.s()).enqueue()
    assert flow.runs[0].cancel()
    assert _statuses(flow) == ["cancelled", "cancelled", "cancelled"]
    assert "ended CANCELLED" in (flow.runs[2].error.message if flow.runs[2].error else "")


def test_deleting_an_unfinished_step_cancels_the_steps_that_need_it() -> None:
    flow = chain(double.s(1), double.s()).enqueue()
    TaskRun.objects.filter(pk=flow.run_ids[0]).delete()
    second = TaskRun.objects.get(pk=flow.run_ids[1])
    assert second.status == "cancelled" and "was deleted" in second.error["message"]


def test_the_workflow_status_is_running_while_any_step_has_started() -> None:
    flow = chain(double.s(1), double.s()).enqueue()
    TaskRun.objects.filter(pk=flow.run_ids[0]).update(status="running")
    assert flow.status == RUNNING
    assert WorkflowHandle.get(flow.id).status == RUNNING


def test_a_handle_is_rebuilt_from_its_id() -> None:
    flow = group(double.s(1), double.s(2)).enqueue()
    run_pending()
    again = WorkflowHandle.get(flow.id)
    assert again == flow and again.status == DONE and again.result == [2, 4]
    with pytest.raises(RunDoesNotExist):
        WorkflowHandle.get(987_654_321)


def test_a_finished_step_is_not_pruned_while_a_step_waits_for_it() -> None:
    flow = group(double.s(1), double.s(2)).then(gather.s("final")).enqueue()
    first = flow.run_ids[0]
    autotask.testing.run_eagerly(first)
    TaskRun.objects.filter(pk=first).update(expires_at="2000-01-01T00:00Z")
    from autotask import store

    assert store.prune_runs(["done"], None) == 0
    run_pending()
    assert flow.result == [2, 4]
    TaskRun.objects.filter(workflow_id=flow.id).update(expires_at="2000-01-01T00:00Z")
    assert store.prune_runs(["done"], None) == 3
    assert not Dependency.objects.exists()  # the final step's edges went with it


def test_retrying_a_step_cancelled_for_a_failure_is_refused() -> None:
    from autotask import store

    flow = chain(fail.s(), double.s()).enqueue()
    run_pending()
    assert store.retry_runs([flow.run_ids[1]]) == []
    assert store.run_now([flow.run_ids[1]]) == []


def test_eager_mode_runs_a_workflow_in_order(settings: Any) -> None:
    settings.AUTOTASK_EAGER = True
    flow = chain(add.s(1, 2), double.s(), group(double.s(), add.s(1))).enqueue()
    assert flow.status == DONE
    assert flow.result == [12, 7]


_FINISH = "UPDATE autotask_task SET status = 'done', result = %s::jsonb WHERE id = %s"


@pytest.mark.django_db(transaction=True)
def test_members_finishing_at_the_same_instant_release_the_final_step_exactly_once() -> None:
    """The last two members finish in two transactions at once: the second one's trigger waits
    for the final step's row, which the first one's holds, and then sees the first's commit, so
    exactly one of them brings the count to zero, and the final step gets both results."""
    flow = group(double.s(1), double.s(2)).then(gather.s("final")).enqueue()
    first, second, last = flow.run_ids
    TaskRun.objects.filter(pk__in=[first, second]).update(status="running")
    with psycopg.connect(database_conninfo()) as one, psycopg.connect(database_conninfo()) as two:
        one.execute(_FINISH, ["2", first])  # uncommitted: holds the final step's row
        finished = threading.Event()

        def finish_second() -> None:
            two.execute(_FINISH, ["4", second])
            two.commit()
            finished.set()

        thread = threading.Thread(target=finish_second)
        thread.start()
        with psycopg.connect(database_conninfo(), autocommit=True) as observer:

            def blocked() -> bool:
                row = observer.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'UPDATE autotask_task SET status%'"
                ).fetchone()
                return row == (1,)

            for _ in range(200):
                if blocked() or finished.wait(0.05):
                    break
            assert blocked() and not finished.is_set()  # the second waits for the first
        assert TaskRun.objects.get(pk=last).waiting_for == 2  # nothing committed yet
        one.commit()
        thread.join(10)
    assert finished.is_set()
    final = TaskRun.objects.get(pk=last)
    assert final.waiting_for == 0 and final.run_at.year != 9999
    assert final.args == [[2, 4], "final"]
    assert run_pending() == 1
    assert Execution.objects.filter(key="final").count() == 1


def test_sync_updates_stream_the_workflow_until_it_ends(worker: None) -> None:
    flow = chain(member.si(0, 0.3), double.si(2)).enqueue()
    assert list(flow.updates(timeout=20)) == [WAITING, RUNNING, DONE]
    assert flow.result == 4 and flow.ready


async def test_async_updates_stream_a_group_until_its_final_step(worker: None) -> None:
    flow = await group(member.si(i, 0.2) for i in range(4)).then(gather.s("final")).defer()
    assert isinstance(flow, AsyncWorkflowHandle)
    seen = [status async for status in flow.updates(timeout=20)]
    assert seen == [WAITING, RUNNING, DONE]
    assert flow.result == [0, 1, 2, 3]
    again = await AsyncWorkflowHandle.get(flow.id)
    assert (again.status, again.result) == (DONE, [0, 1, 2, 3])
    assert [run.status for run in again.runs] == [DONE] * 5


async def test_async_depends_on_and_cancel(worker: None) -> None:
    first = await member.defer(0, 0.3)
    after = await record.using(depends_on=first).defer("after")
    assert (await after.wait(20)).status == DONE
    assert (await first.refresh()).finished_at <= after.started_at  # type: ignore[operator]
    flow = await chain(member.si(1, 5), double.si(1)).defer()
    while (await flow.refresh()).status != RUNNING:
        await asyncio.sleep(0.05)
    assert await flow.cancel() is True
    await flow.wait(20)
    assert flow.status == CANCELLED
    assert [run.status for run in flow.runs] == [CANCELLED, CANCELLED]


def test_waiting_on_a_workflow_inside_the_transaction_that_enqueued_it_is_refused() -> None:
    with transaction.atomic():
        flow = chain(double.s(1)).enqueue()
        with pytest.raises(RuntimeError, match="still open"):
            flow.wait(1)


def test_health_the_command_and_the_admin_show_workflows() -> None:
    flow = chain(double.s(1), double.s(), double.s()).enqueue()
    state = autotask.health()
    assert state.workflows == autotask.WorkflowCount(unfinished=1, waiting_for_others=2)
    assert state.as_dict()["workflows"] == {"unfinished": 1, "waiting_for_others": 2}
    out = io.StringIO()
    call_command("autotask_health", stdout=out)
    assert "workflows: 1 unfinished, 2 run(s) waiting for others to finish" in out.getvalue()

    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    first, second, third = flow.run_ids
    page = client.get(reverse("admin:autotask_taskrun_change", args=[second])).content.decode()
    assert f"?workflow_id={flow.id}" in page and f"workflow {flow.id}" in page
    assert f'/{first}/change/">#{first}</a>' in page  # runs after
    assert f'/{third}/change/">#{third}</a>' in page  # needed by
    listed = client.get(reverse("admin:autotask_taskrun_changelist"), {"workflow_id": flow.id})
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 3
    run_pending()
    assert autotask.health().workflows == autotask.WorkflowCount(0, 0)


async def test_the_sync_enqueue_of_a_workflow_is_refused_inside_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match=r"await workflow\.defer\(\)"):
        chain(double.s(1)).enqueue()
