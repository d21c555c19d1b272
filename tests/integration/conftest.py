"""Real uvicorn processes serving the example project (examples/) against the test database.

``start_server(**env)`` starts one and returns once it answers HTTP (so its lifespan startup,
which starts autotask's runtime, has completed). Every server a test started is stopped at
teardown (SIGTERM, then SIGKILL if it lingers), and the output of each is attached to the report
of a test that fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.conftest import database_conninfo

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
STARTUP_TIMEOUT = 30.0

servers_key = pytest.StashKey[list["Server"]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for server in item.stash.get(servers_key, []):
            report.sections.append(
                (f"uvicorn pid {server.pid} ({server.base_url})", server.output())
            )
    return report


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.base_url, **kwargs)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> None:
        """SIGTERM, as a process manager would, and wait until uvicorn has shut down cleanly.

        Fails if it is still alive after ``timeout`` seconds or did not finish its shutdown.
        Recent uvicorn re-raises the signal after a clean shutdown (exit status -SIGTERM);
        older ones exit with 0.
        """
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"uvicorn still running {timeout} s after SIGTERM:\n{self.output()}")
        assert code in (0, -signal.SIGTERM), f"exit status {code}:\n{self.output()}"
        assert f"Finished server process [{self.pid}]" in self.output()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            code = server.process.returncode
            pytest.fail(f"uvicorn exited with {code} before serving:\n{server.output()}")
        try:
            if httpx.get(f"{server.base_url}/", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"uvicorn did not answer within {STARTUP_TIMEOUT} s:\n{server.output()}")


def server_environ(**env: str) -> dict[str, str]:
    """The example project's environment in a server process: the test database, a small
    runtime that stops quickly; keyword arguments add to it or override it."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "DATABASE_URL": database_conninfo(),
        "DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
        "AUTOTASK_WORKERS": "2",
        "AUTOTASK_HANDLE_TASK_IDLE_TIME": "1",
        "AUTOTASK_SHUTDOWN_TIMEOUT": "5",
        **env,
    }


def _spawn(
    servers: list[Server],
    command: list[str],
    port: int,
    log_path: Path,
    environ: dict[str, str],
    **popen: Any,
) -> Server:
    """Start ``command`` in examples/, its output into ``log_path``; return once it answers."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        command, cwd=EXAMPLES, env=environ, stdout=log, stderr=subprocess.STDOUT, **popen
    )
    server = Server(process, f"http://127.0.0.1:{port}", log_path, log)
    servers.append(server)
    wait_until_serving(server)
    return server


@pytest.fixture
def start_server(
    transactional_db: None, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Server]]:
    """Start uvicorn serving demo.asgi:application; keyword arguments become its environment.

    Depends on ``transactional_db``: the server is another process, so it sees only committed
    rows, and this fixture's teardown (stopping the servers) runs before the database is flushed.
    """
    servers: list[Server] = []
    request.node.stash[servers_key] = servers

    def start(**env: str) -> Server:
        port = free_port()
        log_path = tmp_path / f"uvicorn-{len(servers)}-{port}.log"
        command = [
            sys.executable, "-m", "uvicorn", "demo.asgi:application",
            "--app-dir", str(EXAMPLES),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--lifespan", "on",
        ]  # fmt: skip
        return _spawn(servers, command, port, log_path, server_environ(**env))

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def serve(
    transactional_db: None, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Server]]:
    """Start any server command (gunicorn, runserver) in a process group of its own, since
    runserver forks a child; killed with its group at teardown if still running."""
    servers: list[Server] = []
    request.node.stash[servers_key] = servers

    def start(command: list[str], port: int, **env: str) -> Server:
        log_path = tmp_path / f"server-{len(servers)}.log"
        environ = server_environ(**env)
        return _spawn(servers, command, port, log_path, environ, start_new_session=True)

    yield start
    for server in servers:
        if server.process.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
        server._log.close()
