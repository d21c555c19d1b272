"""The admin through Django's test client: lists, filters, search, details, actions, permissions."""

import datetime
import os
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission, User
from django.core import checks
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from autotask import CANCELLED, DONE, ERROR, RUNNING, WAITING, admin, runtime
from autotask.models import Schedule, TaskRun, Worker
from tests.app.tasks import add, fail, fail_twice, slow
from tests.conftest import wait_until

pytestmark = pytest.mark.usefixtures("transactional_db")

RUNS = "/admin/autotask/taskrun/"
LATER = datetime.timedelta(hours=1)


@pytest.fixture
def superuser() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    return client


def _staff(username: str, *permissions: str) -> Client:
    user = User.objects.create_user(username, f"{username}@example.org", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


def _rows(html: str) -> list[int]:
    """The ids of the runs a changelist page shows, in order."""
    return [int(n) for n in re.findall(rf'href="{RUNS}(\d+)/change/', html)]


def _act(client: Client, url: str, action: str, ids: list[object]) -> list[str]:
    """Post an action; the messages it left."""
    response = client.post(url, {"action": action, "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def _finished(run_id: int) -> TaskRun:
    return wait_until(lambda: TaskRun.objects.filter(pk=run_id, finished_at__isnull=False).first())


def test_the_admin_passes_djangos_checks() -> None:
    assert [e for e in checks.run_checks(tags=["admin"]) if e.level >= checks.ERROR] == []


def test_the_list_shows_each_runs_columns_newest_first(superuser: Client, worker: None) -> None:
    done = add(2, 3)
    done.wait(10)
    waiting = add.using(delay=LATER, queue="queue-1", priority=7)(1, 1)
    running = slow(30)
    wait_until(lambda: running.refresh().status == RUNNING)
    html = superuser.get(RUNS).content.decode()
    assert _rows(html) == [running.id, waiting.id, done.id]
    assert "tests.app.tasks.add" in html and "queue-1" in html and ">7<" in html
    assert ">1/1<" in html  # attempts of max_attempts
    assert re.search(r"\d\.\d{3} s so far", html)  # the running run's duration
    assert f"{os.uname().nodename}:{os.getpid()}" in html  # the worker running it
    assert "3 task runs" in html


def test_filters_by_status_queue_and_name_list_the_values_that_occur(superuser: Client) -> None:
    a = add(1, 1)
    b = add.using(queue="queue-2")(2, 2)
    c = fail.using(delay=LATER)("x")
    TaskRun.objects.filter(pk=a.id).update(status=DONE)
    html = superuser.get(RUNS).content.decode()
    assert "?queue=queue-2" in html and "?name=tests.app.tasks.fail" in html
    assert _rows(superuser.get(RUNS, {"status": DONE}).content.decode()) == [a.id]
    assert _rows(superuser.get(RUNS, {"queue": "queue-2"}).content.decode()) == [b.id]
    by_name = superuser.get(RUNS, {"name": "tests.app.tasks.fail"}).content.decode()
    assert _rows(by_name) == [c.id]
    both = superuser.get(RUNS, {"status": WAITING, "queue": "default"}).content.decode()
    assert _rows(both) == [c.id]


def test_search_finds_a_run_by_id_or_part_of_its_tasks_name(superuser: Client) -> None:
    a = add(1, 1)
    b = fail.using(delay=LATER)("x")
    assert _rows(superuser.get(RUNS, {"q": "FAIL"}).content.decode()) == [b.id]
    assert _rows(superuser.get(RUNS, {"q": str(a.id)}).content.decode()) == [a.id]
    assert _rows(superuser.get(RUNS, {"q": "nothing-like-it"}).content.decode()) == []


def test_the_count_reads_a_bounded_number_of_rows_then_trusts_the_estimate(
    superuser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "EXACT_COUNT_LIMIT", 2)
    for n in range(5):
        add(n, n)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE autotask_task")  # the planner now says 5
    for n in range(3):
        add(n, n)
    with CaptureQueriesContext(connection) as queries:
        html = superuser.get(RUNS).content.decode()
    assert "5 task runs" in html  # 8 exist: the page took the planner's word for it
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 3" in sql for sql in counts)
    with CaptureQueriesContext(connection) as queries:
        filtered = superuser.get(RUNS, {"name": "tests.app.tasks.add"}).content.decode()
    assert any(q["sql"].startswith("EXPLAIN") for q in queries)  # the filtered list's estimate
    assert re.search(r"\b[3-9] task runs", filtered)


def test_the_detail_shows_the_call_the_result_and_each_failed_attempt(
    superuser: Client, worker: None
) -> None:
    handle = fail_twice("detail")
    assert handle.wait(10).status == DONE
    html = superuser.get(f"{RUNS}{handle.id}/change/").content.decode()
    assert re.search(r"<pre[^>]*>\[\s+&quot;detail&quot;\s+\]</pre>", html)  # args, indented
    assert re.search(r"<pre[^>]*>&quot;ok after 3&quot;</pre>", html)  # the result
    assert "Failed attempt 1: builtins.RuntimeError: attempt 1 fails" in html
    assert "Failed attempt 2: builtins.RuntimeError: attempt 2 fails" in html
    assert html.count("Traceback (most recent call last)") == 2
    assert 'name="_save"' not in html  # nothing here is saved from a form


def test_an_error_message_is_escaped(superuser: Client, worker: None) -> None:
    handle = fail("<script>alert(1)</script>")
    handle.wait(10)
    html = superuser.get(f"{RUNS}{handle.id}/change/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html


def test_a_run_cannot_be_saved_added_or_deleted_from_a_form(superuser: Client) -> None:
    handle = add(1, 1)
    url = f"{RUNS}{handle.id}/change/"
    assert superuser.post(url, {"status": DONE}).status_code == 403
    assert TaskRun.objects.get(pk=handle.id).status == WAITING
    assert superuser.get(f"{RUNS}add/").status_code == 403
    assert superuser.get(f"{RUNS}{handle.id}/delete/").status_code == 403
    assert 'value="delete_selected"' not in superuser.get(RUNS).content.decode()


def test_retry_puts_failed_runs_back_and_the_runtime_runs_them_again(
    superuser: Client, worker: None
) -> None:
    failed = fail("once more")
    done = add(1, 1)
    failed.wait(10)
    done.wait(10)
    messages = _act(superuser, RUNS, "retry", [failed.id, done.id])
    assert messages == ["1 run waiting again; 1 left alone: not failed or cancelled."]
    wait_until(lambda: len(TaskRun.objects.get(pk=failed.id).errors) == 2)
    assert TaskRun.objects.get(pk=failed.id).status == ERROR  # it ran (and failed) again
    assert TaskRun.objects.get(pk=done.id).status == DONE


def test_cancel_cancels_waiting_runs_and_stops_running_ones(
    superuser: Client, worker: None
) -> None:
    later = add.using(delay=LATER)(1, 1)
    running = slow(30)
    done = add(2, 2)
    done.wait(10)
    wait_until(lambda: running.refresh().status == RUNNING)
    messages = _act(superuser, RUNS, "cancel", [later.id, running.id, done.id])
    assert messages == [
        "1 waiting run cancelled, 1 running run asked to stop (by its runtime); "
        "1 left alone: already finished."
    ]
    assert TaskRun.objects.get(pk=later.id).status == CANCELLED
    assert running.wait(10).status == CANCELLED
    assert TaskRun.objects.get(pk=done.id).status == DONE


def test_run_now_makes_a_run_due_later_due_now(superuser: Client, worker: None) -> None:
    later = add.using(delay=LATER)(20, 22)
    done = add(1, 1)
    done.wait(10)
    messages = _act(superuser, RUNS, "run_now", [later.id, done.id])
    assert messages == ["1 run due now; 1 left alone: not waiting for a later time."]
    assert later.wait(10).result == 42


def test_staff_without_permissions_is_refused(superuser: Client) -> None:
    handle = add(1, 1)
    TaskRun.objects.filter(pk=handle.id).update(status=ERROR)
    assert _staff("nobody").get(RUNS).status_code == 403
    viewer = _staff("viewer", "view_taskrun")
    html = viewer.get(RUNS).content.decode()
    assert _rows(html) == [handle.id] and 'value="retry"' not in html
    retry = {"action": "retry", "_selected_action": [handle.id]}
    response = viewer.post(RUNS, retry, follow=True)
    assert response.status_code == 200 and list(response.context["messages"]) == []
    assert _staff("stranger").post(RUNS, retry).status_code == 403
    assert TaskRun.objects.get(pk=handle.id).status == ERROR
    assert 'value="retry"' in superuser.get(RUNS).content.decode()


def test_schedules_pause_and_resume_and_show_their_next_run(
    superuser: Client, start_worker: Callable[[], None]
) -> None:
    start_worker()
    wait_until(lambda: Schedule.objects.filter(name="tests.app.tasks.hourly").exists())
    runtime.stop(timeout=2)  # the schedules stay recorded; no leader ticks meanwhile
    url = "/admin/autotask/schedule/"
    html = superuser.get(url).content.decode()
    assert "tests.app.tasks.hourly" in html and re.search(r"\(in \d+", html)
    assert _act(superuser, url, "pause", ["tests.app.tasks.hourly"]) == ["1 schedule paused."]
    assert Schedule.objects.get(name="tests.app.tasks.hourly").paused
    assert ">paused<" in superuser.get(url).content.decode()
    both = ["tests.app.tasks.hourly", "tests.app.tasks.new_year"]
    assert _act(superuser, url, "resume", both) == ["1 schedule resumed; 1 left alone: not paused."]
    assert not Schedule.objects.filter(paused=True).exists()


def test_workers_show_their_heartbeat_age_and_the_leader(superuser: Client, worker: None) -> None:
    wait_until(lambda: Worker.objects.filter(leader=True).exists())
    running = slow(30)
    wait_until(lambda: running.refresh().status == RUNNING)
    html = superuser.get("/admin/autotask/worker/").content.decode()
    assert f"{os.uname().nodename}:{os.getpid()}" in html
    assert re.search(r"\d\.\d{3} s ago", html) and "lost" not in html
    assert 'alt="True"' in html  # the leader's icon
    assert re.search(r'<td class="field-running">1</td>', html)
    Worker.objects.update(heartbeat_at=timezone.now() - datetime.timedelta(minutes=5))
    assert (
        "(lost: its runs will be rescued)"
        in superuser.get("/admin/autotask/worker/").content.decode()
    )
