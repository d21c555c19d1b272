"""The monitor's pages, JSON and actions through Django's test client (its streams under a real
uvicorn are in tests/integration/test_monitor_asgi.py, the page in a real browser in
tests/browser/)."""

import json
import logging
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from autotask import CANCELLED, DONE, ERROR, WAITING, TaskHandle, health
from autotask.models import Schedule, TaskRun
from autotask.monitor.snapshot import spec_in_words
from tests.app.tasks import add, fail, hourly, noop

pytestmark = pytest.mark.usefixtures("transactional_db")

MONITOR = "/autotask/"


def logged_in_client(
    username: str, *, staff: bool = False, superuser: bool = False, perms: tuple[str, ...] = ()
) -> Client:
    """A test client logged in as a new user with these rights (the metrics tests' too)."""
    user = User.objects.create_user(username, f"{username}@example.org", "pw", is_staff=staff)
    user.is_superuser = superuser
    user.save()
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def root() -> Client:
    return logged_in_client("root", staff=True, superuser=True)


def _ended(handle: TaskHandle, status: str, **fields: object) -> None:
    TaskRun.objects.filter(pk=handle.id).update(
        status=status, started_at=timezone.now(), finished_at=timezone.now(), attempts=1, **fields
    )


def _run_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-run="(\d+)"', html)]


def test_only_staff_or_the_view_permission_opens_it() -> None:
    anonymous = Client().get(MONITOR)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    assert logged_in_client("plain").get(MONITOR).status_code == 403
    assert logged_in_client("staff", staff=True).get(MONITOR).status_code == 200
    assert logged_in_client("viewer", perms=["view_taskrun"]).get(MONITOR).status_code == 200
    assert logged_in_client("plain2").get(f"{MONITOR}overview.json").status_code == 403


def test_the_overview_counts_each_queue_and_the_json_says_the_same(root: Client) -> None:
    for _ in range(3):
        add(1, 2)
    add.using(queue="mail")(2, 2)
    _ended(fail("boom"), ERROR)
    page = root.get(MONITOR).content.decode()
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', page).group(1)
    assert '<td data-field="waiting">3</td>' in row and '<td data-field="error">1</td>' in row
    assert '<tr data-queue="mail">' in page
    data = root.get(f"{MONITOR}overview.json").json()
    queues = {q["name"]: q for q in data["queues"]}
    assert (queues["default"]["waiting"], queues["default"]["due"]) == (3, 3)
    assert queues["default"]["error"] == 1 and queues["mail"]["waiting"] == 1
    assert sum(data["chart"]["error"]) == 1 and len(data["chart"]["done"]) == 60
    embedded = re.search(r'id="snapshot" type="application/json">(.*?)</script>', page).group(1)
    ages = lambda queues: [q.pop("oldest_due_seconds") for q in queues]  # noqa: E731
    assert all(age >= 0 for age in ages(data["queues"]))  # they grow between the two requests
    page_queues = json.loads(embedded)["queues"]
    assert all(age >= 0 for age in ages(page_queues)) and page_queues == data["queues"]


def test_the_page_says_poll_under_wsgi(root: Client) -> None:
    assert 'data-live="poll"' in root.get(MONITOR).content.decode()


def test_runs_are_filtered_and_paged_by_cursor(root: Client) -> None:
    handles = add.enqueue_many([(i, i) for i in range(120)])
    failed = fail("x")
    _ended(failed, ERROR)
    first = root.get(f"{MONITOR}runs/").content.decode()
    ids = _run_ids(first)
    assert ids == sorted([h.id for h in handles] + [failed.id], reverse=True)[:50]
    before = re.search(r"before=(\d+)", first).group(1)
    assert int(before) == ids[-1]
    pages = [ids]
    while before:
        html = root.get(f"{MONITOR}runs/?before={before}").content.decode()
        pages.append(_run_ids(html))
        found = re.search(r"before=(\d+)", html)
        before = found.group(1) if found else None
    assert [len(p) for p in pages] == [50, 50, 21]
    assert _run_ids(root.get(f"{MONITOR}runs/?status=error").content.decode()) == [failed.id]
    named = root.get(f"{MONITOR}runs/?name=tests.app.tasks.add&status=waiting").content.decode()
    assert len(_run_ids(named)) == 50 and failed.id not in _run_ids(named)
    later = (timezone.localtime() + timezone.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert _run_ids(root.get(f"{MONITOR}runs/?since={later}").content.decode()) == []


def test_a_run_page_shows_its_call_result_error_and_attempts(root: Client) -> None:
    done = add(20, 22)
    _ended(done, DONE, result=42)
    html = root.get(f"{MONITOR}runs/{done.id}/").content.decode()
    assert "[\n  20,\n  22\n]" in html and '<pre id="result">42</pre>' in html
    failed = fail("it broke")
    error = {"type": "builtins.RuntimeError", "message": "it broke",
             "traceback": "Traceback (most recent call last):\nRuntimeError: it broke"}  # fmt: skip
    _ended(failed, ERROR, error=error, errors=[error], worker_ids=["w-1"])
    html = root.get(f"{MONITOR}runs/{failed.id}/").content.decode()
    assert "builtins.RuntimeError" in html and "RuntimeError: it broke" in html
    assert "attempt 1 on worker w-1: failed with" in html
    assert root.get(f"{MONITOR}runs/{failed.id}/?format=json").json() == {
        "id": failed.id, "status": "error", "attempts": 1, "final": True,
    }  # fmt: skip
    assert root.get(f"{MONITOR}runs/999999999/").status_code == 404


def test_retry_and_cancel_are_posts_with_csrf_and_permission(root: Client, caplog) -> None:
    failed = fail("x")
    _ended(failed, ERROR)
    viewer = logged_in_client("viewer", staff=True)
    assert viewer.post(f"{MONITOR}runs/{failed.id}/retry/").status_code == 403
    assert root.get(f"{MONITOR}runs/{failed.id}/retry/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.get(username="root"))
    assert strict.post(f"{MONITOR}runs/{failed.id}/retry/").status_code == 403  # no token
    assert TaskHandle.get(failed.id).status == ERROR
    with caplog.at_level(logging.INFO, logger="autotask.monitor"):
        response = root.post(f"{MONITOR}runs/{failed.id}/retry/", follow=True)
    assert response.status_code == 200
    assert f"Run #{failed.id} is waiting again." in response.content.decode()
    assert TaskHandle.get(failed.id).status == WAITING
    assert any("root retried run" in r.getMessage() for r in caplog.records)
    waiting = add(1, 1)
    root.post(f"{MONITOR}runs/{waiting.id}/cancel/")
    assert TaskHandle.get(waiting.id).status == CANCELLED
    page = root.get(f"{MONITOR}runs/{waiting.id}/").content.decode()
    assert 'id="retry"' in page and 'id="cancel"' not in page


def test_bulk_retry_takes_the_failed_runs_the_filters_match(root: Client) -> None:
    failed = [fail(str(i)) for i in range(3)]
    for handle in failed:
        _ended(handle, ERROR)
    other = add.using(queue="mail")(1, 1)
    _ended(other, ERROR)
    done = add(1, 1)
    _ended(done, DONE, result=2)
    response = root.post(f"{MONITOR}runs/retry/", {"queue": "default"}, follow=True)
    assert "3 failed run(s) waiting again." in response.content.decode()
    statuses = dict(TaskRun.objects.values_list("id", "status"))
    assert [statuses[h.id] for h in failed] == [WAITING] * 3
    assert (statuses[other.id], statuses[done.id]) == (ERROR, DONE)


def test_the_tasks_page_gives_counts_failures_and_percentiles(root: Client) -> None:
    now = timezone.now()
    for seconds in (1, 2, 3, 4):
        run = add(1, 1)
        TaskRun.objects.filter(pk=run.id).update(
            status=DONE, run_at=now - timezone.timedelta(seconds=10),
            started_at=now - timezone.timedelta(seconds=seconds), finished_at=now,
        )  # fmt: skip
    _ended(fail("x"), ERROR)
    html = root.get(f"{MONITOR}tasks/?window=15m").content.decode()
    row = re.search(r'<tr data-task="tests.app.tasks.add">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[:3] == ["default", "4", "0 (0.0 %)"]
    assert cells[3:7] == ["2.500", "3.850", "3.970", "4.000"]  # run time p50 p95 p99 max
    assert cells[7] == "7.500"  # wait p50: due 10 s ago, started 9..6 s ago
    failing = re.search(r'<tr data-task="tests.app.tasks.fail" class="failing">', html)
    assert failing is not None


def test_schedules_page_pause_resume_and_run_now(root: Client) -> None:
    Schedule.objects.create(name=hourly.name, spec="every 3600s", next_run_at=timezone.now())
    Schedule.objects.create(name=noop.name, spec="cron 0 3 * * 1 (UTC)",
                            next_run_at=timezone.now())  # fmt: skip
    html = root.get(f"{MONITOR}schedules/").content.decode()
    assert "every hour" in html and "at 03:00 on Monday (UTC)" in html
    root.post(f"{MONITOR}schedules/{hourly.name}/pause/")
    assert Schedule.objects.get(pk=hourly.name).paused
    root.post(f"{MONITOR}schedules/{hourly.name}/resume/")
    assert not Schedule.objects.get(pk=hourly.name).paused
    response = root.post(f"{MONITOR}schedules/{noop.name}/run/", follow=True)
    assert TaskRun.objects.filter(name=noop.name, status=WAITING).count() == 1
    assert "runs now: run #" in response.content.decode()
    assert root.post(f"{MONITOR}schedules/nothing.here/run/").status_code == 404


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("every 60s", "every minute"),
        ("every 90s", "every 90 seconds"),
        ("every 7200s from start", "every 2 hours, starting at once"),
        ("cron */5 * * * * (UTC)", "every 5 minutes (UTC)"),
        ("cron 30 * * * * (UTC)", "every hour at minute 30 (UTC)"),
        ("cron 0 0 1 * * (Europe/Paris)", "at 00:00 on day 1 of the month (Europe/Paris)"),
        ("cron 0 0 * 1 1 (UTC)", "cron 0 0 * 1 1 (UTC)"),
    ],
)
def test_specs_in_words(spec: str, words: str) -> None:
    assert spec_in_words(spec) == words


def test_done_runs_count_by_the_hour_and_health_can_leave_them_out(root: Client) -> None:
    _ended(add(1, 1), DONE, result=2)
    old = add(2, 2)
    _ended(old, DONE, result=4)
    TaskRun.objects.filter(pk=old.id).update(
        finished_at=timezone.now() - timezone.timedelta(hours=2)
    )
    queues = {q["name"]: q for q in root.get(f"{MONITOR}overview.json").json()["queues"]}
    assert queues["default"]["done_last_hour"] == 1
    counted = {q.name: q.counts[DONE] for q in health().queues}
    uncounted = {q.name: q.counts[DONE] for q in health(count_done=False).queues}
    assert (counted, uncounted) == ({"default": 2}, {})
