"""The Prometheus endpoint: ``metrics/`` under the monitor, and ``autotask_worker
--metrics-port``; every scrape parsed by prometheus_client's own parser."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from autotask import conf, pause_queue
from autotask.health import Health, QueueHealth
from autotask.models import TaskRun
from autotask.monitor.prometheus import BUCKETS, PROCESS, render
from autotask.status import Status
from autotask.store import WorkerRecord
from tests.app.tasks import add, fail, fail_twice, sync_slow
from tests.conftest import database_conninfo, wait_until
from tests.test_monitor import logged_in_client

pytestmark = pytest.mark.usefixtures("transactional_db")

METRICS = "/autotask/metrics/"
ROOT = Path(__file__).resolve().parents[1]
ADD = "tests.app.tasks.add"
FAIL = "tests.app.tasks.fail"
FAIL_TWICE = "tests.app.tasks.fail_twice"
PORT_0 = ("--metrics-port", "0")  # any free port: the worker prints which
STATUSES = ("waiting", "running", "done", "error", "cancelled")


class Scrape:
    """One parsed exposition: its families by name and a sample's value by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [
            (s.labels, s.value) for f in self.families.values() for s in f.samples if s.name == name
        ]

    def value(self, name: str, **labels: object) -> float | None:
        wanted = {k: str(v) for k, v in labels.items()}
        found = [v for got, v in self.samples(name) if got == wanted]
        assert len(found) <= 1, found
        return found[0] if found else None


@pytest.fixture
def staff() -> Client:
    return logged_in_client("staff", staff=True)


def _scrape(client: Client) -> Scrape:
    response = client.get(METRICS)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return Scrape(response.content.decode())


def _age(run_id: int, seconds: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE autotask_task SET run_at = now() - %s * interval '1 second' WHERE id = %s",
            [seconds, run_id],
        )


# --- the format ---


def test_every_family_has_help_and_type_and_prometheus_parses_it(staff: Client) -> None:
    scrape = _scrape(staff)
    types = {name: family.type for name, family in scrape.families.items()}
    assert types == {
        "autotask_runs": "gauge",
        "autotask_runs_due": "gauge",
        "autotask_oldest_due_run_age_seconds": "gauge",
        "autotask_queue_paused": "gauge",
        "autotask_queue_served": "gauge",
        "autotask_workers": "gauge",
        "autotask_workers_lost": "gauge",
        "autotask_worker_running": "gauge",
        "autotask_worker_concurrency": "gauge",
        "autotask_worker_heartbeat_age_seconds": "gauge",
        "autotask_leader": "gauge",
        "autotask_problems": "gauge",
        # prometheus_client names a counter's family without its _total
        "autotask_attempts_started": "counter",
        "autotask_runs_finished": "counter",
        "autotask_attempts_failed": "counter",
        "autotask_attempt_duration_seconds": "histogram",
    }
    assert all(family.documentation for family in scrape.families.values())
    helps = re.findall(r"^# HELP (\S+) ", scrape.text, re.M)
    assert len(helps) == len(set(helps)) == len(re.findall(r"^# TYPE ", scrape.text, re.M))
    assert scrape.text.endswith("\n")


def test_label_values_are_escaped(staff: Client) -> None:
    queue = 'we "quoted" a\\b\nand went on'
    add.using(queue=queue)(1, 2)
    scrape = _scrape(staff)
    assert scrape.value("autotask_runs", queue=queue, status="waiting") == 1
    assert 'queue="we \\"quoted\\" a\\\\b\\nand went on"' in scrape.text


def test_numbers_are_written_exactly() -> None:
    """Every digit a float has, and Prometheus' spellings of infinity and not-a-number."""
    now = datetime.now(UTC)
    worker = WorkerRecord(
        uuid.uuid4(), "h", 1, None, 2, now, now, 0.1 + 0.2, leader=False, running=0
    )
    state = Health(
        queues=[
            QueueHealth("inf", dict.fromkeys(Status, 0), 1, math.inf, True, False),
            QueueHealth("nan", dict.fromkeys(Status, 0), 1, math.nan, True, False),
            QueueHealth("tiny", dict.fromkeys(Status, 0), 1, 1e-300, True, False),
        ],
        workers=[worker],
        lost_workers=[],
        leader=None,
        schedules=[],
        max_due_age=300,
    )
    text = render(state, PROCESS.snapshot())
    assert 'autotask_oldest_due_run_age_seconds{queue="inf"} +Inf\n' in text
    assert 'autotask_oldest_due_run_age_seconds{queue="nan"} NaN\n' in text
    assert 'autotask_oldest_due_run_age_seconds{queue="tiny"} 1e-300\n' in text
    assert f'{{worker="{worker.id}",host="h",pid="1"}} 0.30000000000000004\n' in text
    assert 'autotask_worker_concurrency{worker="' in text and '",pid="1"} 2\n' in text
    parsed = Scrape(text)
    assert parsed.value("autotask_oldest_due_run_age_seconds", queue="inf") == math.inf
    assert parsed.value("autotask_worker_heartbeat_age_seconds", **_labels(worker)) == 0.1 + 0.2


def _labels(worker: WorkerRecord) -> dict[str, object]:
    return {"worker": worker.id, "host": worker.host, "pid": worker.pid}


# --- the database's families ---


def test_runs_per_queue_and_status_and_what_is_due(staff: Client) -> None:
    mail = [add.using(queue="mail")(1, n) for n in range(3)]
    _age(mail[0].id, 120)
    add.using(queue="later", delay=3600)(1, 1)
    done = add.using(queue="later")(2, 2)
    TaskRun.objects.filter(pk=done.id).update(status="done")
    pause_queue("paused")

    scrape = _scrape(staff)
    for queue, expected in {
        "mail": {"waiting": 3},
        "later": {"waiting": 1, "done": 1},
        "paused": {},
    }.items():
        for status in STATUSES:  # every status, 0 when none
            got = scrape.value("autotask_runs", queue=queue, status=status)
            assert got == expected.get(status, 0), (queue, status)
    assert scrape.value("autotask_runs_due", queue="mail") == 3
    assert scrape.value("autotask_runs_due", queue="later") == 0
    mail_age = scrape.value("autotask_oldest_due_run_age_seconds", queue="mail")
    assert mail_age is not None and 120 <= mail_age < 180
    assert scrape.value("autotask_oldest_due_run_age_seconds", queue="later") == 0
    assert scrape.value("autotask_queue_paused", queue="paused") == 1
    assert scrape.value("autotask_queue_paused", queue="mail") == 0
    # Nobody serves them: no worker, no leader (a single unlabelled 0), one problem per queue.
    assert scrape.value("autotask_queue_served", queue="mail") == 0
    assert scrape.value("autotask_workers") == 0
    assert scrape.samples("autotask_worker_running") == []
    assert scrape.samples("autotask_leader") == [({}, 0)]
    assert scrape.value("autotask_problems") == 1  # mail has due runs; later's are not due


def test_live_workers_and_the_leader(worker: None, staff: Client) -> None:
    def leading() -> Scrape | None:
        scrape = _scrape(staff)
        return scrape if scrape.value("autotask_workers") == 1 and _leader(scrape) else None

    scrape = wait_until(leading, timeout=15)
    labels, _ = _leader(scrape)
    assert labels["pid"] == str(os.getpid()) and labels["host"] and labels["worker"]
    assert scrape.value("autotask_worker_concurrency", **labels) == 4  # AUTOTASK_WORKERS
    age = scrape.value("autotask_worker_heartbeat_age_seconds", **labels)
    assert age is not None and 0 <= age < 10
    assert scrape.samples("autotask_leader") == [(labels, 1)]

    slow = [sync_slow(3) for _ in range(2)]
    wait_until(lambda: _scrape(staff).value("autotask_worker_running", **labels) == 2)
    for handle in slow:
        handle.wait(10)
    assert _scrape(staff).value("autotask_worker_running", **labels) == 0


def _leader(scrape: Scrape) -> Any:
    leaders = [(labels, v) for labels, v in scrape.samples("autotask_leader") if v == 1]
    return leaders[0] if leaders else None


# --- this process's families ---


def _process_counts(scrape: Scrape) -> dict[str, float]:
    return {
        "add started": scrape.value("autotask_attempts_started_total", task=ADD) or 0,
        "add done": scrape.value("autotask_runs_finished_total", task=ADD, status="done") or 0,
        "add error": scrape.value("autotask_runs_finished_total", task=ADD, status="error") or 0,
        "add failed": scrape.value("autotask_attempts_failed_total", task=ADD) or 0,
        "add timed": scrape.value("autotask_attempt_duration_seconds_count", task=ADD) or 0,
        "fail error": scrape.value("autotask_runs_finished_total", task=FAIL, status="error") or 0,
        "fail failed": scrape.value("autotask_attempts_failed_total", task=FAIL) or 0,
        "twice started": scrape.value("autotask_attempts_started_total", task=FAIL_TWICE) or 0,
        "twice done": scrape.value("autotask_runs_finished_total", task=FAIL_TWICE, status="done")
        or 0,
        "twice failed": scrape.value("autotask_attempts_failed_total", task=FAIL_TWICE) or 0,
        "twice timed": scrape.value("autotask_attempt_duration_seconds_count", task=FAIL_TWICE)
        or 0,
    }


def test_runs_this_process_ran_move_its_counters_and_histogram(worker: None, staff: Client) -> None:
    before = _process_counts(_scrape(staff))  # counters of the process: earlier tests count too
    handles = [add(n, n) for n in range(5)]
    handles.append(fail("counted"))
    handles.append(fail_twice("metrics"))  # fails twice, then done on its third attempt
    for handle in handles:
        handle.wait(20)
    expected = {
        "add started": 5,
        "add done": 5,
        "add error": 0,
        "add failed": 0,
        "add timed": 5,
        "fail error": 1,
        "fail failed": 1,
        "twice started": 3,
        "twice done": 1,
        "twice failed": 2,
        "twice timed": 3,
    }

    def moved() -> Scrape | None:  # task_finished is sent once the outcome is written
        scrape = _scrape(staff)
        after = _process_counts(scrape)
        return scrape if {k: after[k] - before[k] for k in after} == expected else None

    scrape = wait_until(moved, timeout=10)
    buckets = [
        (labels["le"], value)
        for labels, value in scrape.samples("autotask_attempt_duration_seconds_bucket")
        if labels["task"] == ADD
    ]
    assert [le for le, _ in buckets] == [*(repr(b) for b in BUCKETS), "+Inf"]
    counts = [value for _, value in buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == scrape.value("autotask_attempt_duration_seconds_count", task=ADD)
    total = scrape.value("autotask_attempt_duration_seconds_sum", task=ADD)
    assert total is not None and 0 < total < 5 * 10
    # A task's final statuses appear at 0 with its first attempt, so rate() sees its first error.
    assert scrape.value("autotask_runs_finished_total", task=FAIL, status="done") is not None
    assert scrape.value("autotask_runs_finished_total", task=FAIL, status="cancelled") is not None


# --- who may read it ---


def test_only_viewers_or_the_token_may_read_it(settings: Any, staff: Client) -> None:
    anonymous = Client().get(METRICS)
    assert anonymous.status_code == 403 and "Location" not in anonymous
    assert logged_in_client("plain").get(METRICS).status_code == 403
    assert logged_in_client("viewer", perms=("view_taskrun",)).get(METRICS).status_code == 200
    assert staff.get(METRICS).status_code == 200
    assert staff.post(METRICS).status_code == 405

    # No token set: a bearer header opens nothing and closes nothing.
    bearer = {"Authorization": "Bearer s3cret"}
    assert Client(headers=bearer).get(METRICS).status_code == 403
    assert staff.get(METRICS, headers=bearer).status_code == 200

    settings.AUTOTASK_METRICS_TOKEN = "s3cret"
    right = Client(headers=bearer).get(METRICS)
    assert right.status_code == 200 and b"# TYPE autotask_runs gauge" in right.content
    assert Client(headers={"Authorization": "bearer  s3cret "}).get(METRICS).status_code == 200
    for wrong in ("Bearer s3cre", "Bearer s3cret2", "Bearer ", "Bearer sécret"):
        response = Client(headers={"Authorization": wrong}).get(METRICS)
        assert response.status_code == 401, wrong
        assert response["WWW-Authenticate"].startswith("Bearer")
    # A request with a token is judged by it alone, a session's user or not.
    assert staff.get(METRICS, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert Client(headers={"Authorization": "Basic czNjcmV0"}).get(METRICS).status_code == 403


async def test_it_serves_under_asgi_too(settings: Any) -> None:
    """Through Django's own ASGI handler (the test client's keeps the view's connection open)."""
    settings.AUTOTASK_METRICS_TOKEN = "s3cret"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": METRICS,
        "raw_path": METRICS.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", b"Bearer s3cret")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    app = ApplicationCommunicator(ASGIHandler(), scope)
    await app.send_input({"type": "http.request", "body": b""})
    start = await app.receive_output(10)
    assert start["status"] == 200
    headers = {name.lower(): value for name, value in start["headers"]}
    assert headers[b"content-type"] == b"text/plain; version=0.0.4; charset=utf-8"
    body = b""
    while True:
        message = await app.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await app.wait(10)
    assert "autotask_workers" in Scrape(body.decode()).families


@pytest.mark.parametrize("value", ["", " padded ", 1234, b"bytes"])
def test_a_bad_token_setting_is_named_and_not_shown(settings: Any, value: object) -> None:
    settings.AUTOTASK_METRICS_TOKEN = value
    with pytest.raises(ImproperlyConfigured, match="AUTOTASK_METRICS_TOKEN") as raised:
        conf.get()
    assert "padded" not in str(raised.value) and "1234" not in str(raised.value)


# --- autotask_worker --metrics-port ---


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = tmp_path / "worker.log"
    environ = {
        **os.environ,
        "DATABASE_URL": database_conninfo(),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "autotask_worker", "--settings=tests.settings", *PORT_0],
        cwd=ROOT,
        env=environ,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    yield process, log
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_the_worker_serves_its_metrics_on_its_port(
    worker_process: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, log = worker_process
    url = wait_until(
        lambda: re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", log.read_text()),
        timeout=30,
    ).group(1)
    handles = [add(n, 1) for n in range(3)] + [fail("in the worker")]
    for handle in handles:
        handle.wait(30)

    def scraped() -> Scrape | None:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            scrape = Scrape(response.read().decode())
        finished = scrape.value("autotask_runs_finished_total", task=FAIL, status="error")
        return scrape if finished == 1 else None

    scrape = wait_until(scraped, timeout=10)
    # The worker's own counts (a fresh process: from zero), and the database's families.
    assert scrape.value("autotask_runs_finished_total", task=ADD, status="done") == 3
    assert scrape.value("autotask_attempt_duration_seconds_count", task=ADD) == 3
    assert scrape.value("autotask_attempts_failed_total", task=FAIL) == 1
    pids = {labels["pid"] for labels, _ in scrape.samples("autotask_worker_running")}
    assert str(process.pid) in pids
    assert scrape.value("autotask_runs", queue="default", status="done") == 3

    with pytest.raises(urllib.error.HTTPError) as elsewhere:
        urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
    assert elsewhere.value.code == 404

    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    started = time.monotonic()
    with pytest.raises(urllib.error.URLError):  # the port closed with the worker
        urllib.request.urlopen(url, timeout=2)
    assert time.monotonic() - started < 5
