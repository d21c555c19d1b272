"""AUTOTASK_IS_ACTIVE under real WSGI servers (gunicorn, runserver), and nowhere else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from autotask.models import TaskRun, Worker
from tests.conftest import wait_until
from tests.integration.conftest import EXAMPLES, Server, free_port, server_environ

pytestmark = pytest.mark.usefixtures("transactional_db")


def _order_and_wait(server: Server, order_id: int) -> TaskRun:
    with server.client() as client:
        response = client.post("/orders/", data={"order_id": order_id})
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        deadline = time.monotonic() + 20
        while client.get(f"/runs/{run_id}/").json()["status"] != "done":
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
    return TaskRun.objects.get(pk=run_id)


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def _stop_group(server: Server, sig: signal.Signals) -> None:
    os.killpg(server.pid, sig)
    server.process.wait(timeout=30)


def test_gunicorn_sync_workers_run_the_tasks_their_requests_enqueue(
    serve: Callable[..., Server],
) -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "demo.wsgi:application",
        "--workers", "2", "--worker-class", "sync", "--bind", f"127.0.0.1:{port}",
    ]  # fmt: skip
    server = serve(command, port, AUTOTASK_IS_ACTIVE="1")
    runs = [_order_and_wait(server, n) for n in range(6)]
    assert [run.result for run in runs] == [f"receipt for order {n} sent" for n in range(6)]
    workers = {worker.id: worker.pid for worker in Worker.objects.all()}
    assert {run.worker_id for run in runs} <= set(workers)
    # Each runtime is in a gunicorn worker, a child of the master, never the master itself.
    assert workers and all(_parent_of(pid) == server.pid for pid in workers.values())
    _stop_group(server, signal.SIGTERM)
    assert not Worker.objects.exists(), server.output()  # each stopped its runtime at exit


def test_runserver_runs_tasks_in_its_serving_child_not_the_autoreloader(
    serve: Callable[..., Server],
) -> None:
    port = free_port()
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"]
    server = serve(command, port, AUTOTASK_IS_ACTIVE="1")
    run = _order_and_wait(server, 7)
    [worker] = Worker.objects.all()
    assert run.worker_id == worker.id
    assert worker.pid != server.pid and _parent_of(worker.pid) == server.pid
    _stop_group(server, signal.SIGINT)  # Ctrl-C in a terminal
    assert wait_until(lambda: not Worker.objects.exists()), server.output()


@pytest.mark.parametrize("command", [["migrate", "--noinput"], ["check"], ["showmigrations"]])
def test_management_commands_start_no_runtime_with_the_switch_on(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=EXAMPLES,
        env=server_environ(AUTOTASK_IS_ACTIVE="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "serving" not in done.stdout + done.stderr  # the runtime's INFO line at start
    assert not Worker.objects.exists()


def test_a_wsgi_server_without_a_worker_anywhere_warns_at_its_first_enqueue(
    serve: Callable[..., Server],
) -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "demo.wsgi:application",
        "--workers", "1", "--bind", f"127.0.0.1:{port}",
    ]  # fmt: skip
    server = serve(command, port)
    with server.client() as client:
        for order_id in range(3):
            assert client.post("/orders/", data={"order_id": order_id}).status_code == 202
    time.sleep(0.5)
    output = server.output()
    assert output.count("no worker runs anywhere") == 1, output
    assert "AUTOTASK_IS_ACTIVE = True" in output and "autotask_worker" in output
    assert TaskRun.objects.filter(status="waiting").count() == 3
    assert not httpx.get(f"{server.base_url}/runs/0/").is_success
