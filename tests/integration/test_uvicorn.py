"""End to end: the example project under real uvicorn processes, spoken to over real HTTP.

Each server is a separate process on the test database, so these tests use ``transactional_db``
(through the ``start_server`` fixture) and read runs back through the ORM once committed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from autotask.models import TaskRun, Worker
from tests.conftest import wait_until

if TYPE_CHECKING:
    from .conftest import Server

STATUS_ORDER = ["waiting", "running", "done"]


def run_in(statuses: set[str], run_id: int) -> Callable[[], TaskRun | None]:
    def check() -> TaskRun | None:
        run = TaskRun.objects.get(pk=run_id)
        return run if run.status in statuses else None

    return check


def worker_of(server: Server) -> Worker:
    return Worker.objects.get(pid=server.pid)


@pytest.mark.smoke
def test_async_view_streams_statuses_of_a_run_done_in_the_server(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    with (
        server.client() as client,
        client.stream("GET", "/price/SKU-42/", timeout=30) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = list(response.iter_lines())
    events = [
        json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")
    ]

    statuses = [event["status"] for event in events]
    assert statuses[0] == "waiting", statuses
    assert statuses[-1] == "done", statuses
    assert "running" in statuses, statuses
    # Each status once, in the order a run goes through them.
    assert statuses == sorted(set(statuses), key=STATUS_ORDER.index), statuses
    assert len({event["id"] for event in events}) == 1

    final = events[-1]
    assert final["task"] == "shop.tasks.fetch_price"
    assert final["error"] is None
    result = final["result"]
    assert result["sku"] == "SKU-42"
    assert result["currency"] == "EUR"
    assert float(result["price"]) >= 1.0
    assert result["pid"] == server.pid, "the run was executed by another process"

    run = TaskRun.objects.get(pk=final["id"])
    assert run.status == "done"
    assert run.result == result
    assert run.args == ["SKU-42"]
    assert run.attempts == 1
    assert run.worker_id == worker_of(server).id


def test_sync_view_enqueues_in_a_transaction_and_the_server_runs_it(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    with server.client() as client:
        refused = client.post("/orders/", data={"order_id": "not a number"})
        assert refused.status_code == 400
        assert not TaskRun.objects.exists()

        response = client.post("/orders/", data={"order_id": "1234"})
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]

        def finished() -> dict[str, Any] | None:
            detail: dict[str, Any] = client.get(f"/runs/{run_id}/").json()
            return detail if detail["status"] in {"done", "error", "cancelled"} else None

        detail = wait_until(finished, timeout=15)
        missing = client.get("/runs/987654321/")

    assert detail["status"] == "done", detail
    assert detail["result"] == "receipt for order 1234 sent"
    assert detail["error"] is None
    assert missing.status_code == 404

    run = TaskRun.objects.get(pk=run_id)
    assert run.name == "shop.tasks.send_receipt"
    assert run.args == [1234]
    assert run.status == "done"
    assert run.attempts == 1
    assert run.result == "receipt for order 1234 sent"
    assert run.worker_id == worker_of(server).id
    assert TaskRun.objects.count() == 1


def test_sigterm_puts_the_running_run_back_and_the_next_server_finishes_it(
    start_server: Callable[..., Server],
) -> None:
    first = start_server(AUTOTASK_SHUTDOWN_TIMEOUT="1")
    with first.client() as client:
        response = client.post("/slow/", data={"seconds": "30"})
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    running = wait_until(run_in({"running"}, run_id), timeout=10)
    assert running.attempts == 1
    assert running.worker_id == worker_of(first).id

    started = time.monotonic()
    first.terminate(timeout=15)
    # The task sleeps 30 s; the server waited only AUTOTASK_SHUTDOWN_TIMEOUT for it.
    assert time.monotonic() - started < 10

    requeued = TaskRun.objects.get(pk=run_id)
    assert requeued.status == "waiting"
    assert requeued.attempts == 0, "an interrupted attempt must not count"
    assert requeued.worker_id is None
    assert requeued.started_at is None
    assert requeued.result is None
    assert requeued.error is None
    assert not Worker.objects.filter(pid=first.pid).exists()
    assert "back to waiting" in first.output()

    # Same run, same row: only its argument is cut short, so the next server needs no 30 s.
    TaskRun.objects.filter(pk=run_id).update(args=[0.2])
    second = start_server()
    done = wait_until(run_in({"done", "error"}, run_id), timeout=15)
    assert done.status == "done", done.error
    assert done.attempts == 1
    assert done.result == {"slept": 0.2, "pid": second.pid}
    assert done.worker_id == worker_of(second).id


def test_lifespan_starts_and_stops_the_runtime_and_http_passes_through(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    # Lifespan startup registered this process's worker before uvicorn served anything.
    worker = worker_of(server)
    assert worker.concurrency == 2

    with server.client() as client:
        index = client.get("/")
        not_found = client.get("/no-such-page/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert "autotask demo" in index.text
    assert not_found.status_code == 404

    server.terminate(timeout=15)
    output = server.output()
    assert "Application startup complete" in output
    assert "Application shutdown complete" in output
    assert not Worker.objects.filter(pk=worker.pk).exists()
