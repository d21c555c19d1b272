"""The lifespan wrapper speaks the ASGI lifespan protocol and passes other scopes through.

(The same wrapper under a real uvicorn is tested in tests/integration/.)
"""

import asyncio
from typing import Any

import pytest

from autotask import runtime
from autotask.asgi import with_worker

pytestmark = pytest.mark.usefixtures("transactional_db")


async def _lifespan(app: Any, *events: str) -> list[dict[str, Any]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []
    for event in events:
        inbox.put_nowait({"type": event})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app({"type": "lifespan"}, inbox.get, send), 20)
    return sent


async def test_startup_starts_the_worker_and_shutdown_stops_it() -> None:
    app = with_worker(_never_called, shutdown_timeout=1)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    serving = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    while not sent:
        await asyncio.sleep(0.01)
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert runtime.get().worker is not None
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(serving, 20)
    assert sent[-1] == {"type": "lifespan.shutdown.complete"}
    assert runtime.get().worker is None


async def test_startup_failure_is_reported_to_the_server(settings: Any) -> None:
    settings.AUTOTASK_WORKERS = 0
    sent = await _lifespan(with_worker(_never_called), "lifespan.startup")
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "AUTOTASK_WORKERS must be a positive integer" in sent[0]["message"]


@pytest.mark.parametrize("scope_type", ["http", "websocket"])
async def test_other_scopes_go_to_the_wrapped_app_untouched(scope_type: str) -> None:
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None: ...

    scope = {"type": scope_type, "path": "/"}
    await with_worker(inner)(scope, receive, send)
    assert seen == [(scope, receive, send)]
    assert runtime.get().worker is None


async def test_a_server_without_lifespan_is_warned_about_once(caplog: Any) -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None: ...

    app = with_worker(inner)
    for _ in range(3):
        await app({"type": "http"}, _never_called, _never_called)
    warnings = [r for r in caplog.records if "sent no lifespan events" in r.getMessage()]
    assert len(warnings) == 1


async def _never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("lifespan must not reach the wrapped app")


async def test_a_misspelt_setting_is_logged_at_startup_where_no_check_runs(
    settings: Any, caplog: Any
) -> None:
    settings.AUTOTASKS_WORKERS = 3  # the wrong prefix: a server runs no `manage.py check`
    sent = await _lifespan(
        with_worker(_never_called, shutdown_timeout=1), "lifespan.startup", "lifespan.shutdown"
    )
    assert sent[0] == {"type": "lifespan.startup.complete"}
    [record] = [r for r in caplog.records if "AUTOTASKS_WORKERS" in r.getMessage()]
    assert record.levelname == "WARNING" and "autotask.W001" in record.getMessage()
    assert "Did you mean AUTOTASK_WORKERS?" in record.getMessage()
