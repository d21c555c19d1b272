"""``with_worker(app)``: an ASGI wrapper whose lifespan starts and stops this process's runtime.

Lifespan events are answered here and not passed on, so wrap a Django app (which ignores
lifespan) rather than one with startup hooks of its own. Every other scope (http, websocket)
goes straight to the wrapped app. A server that sends no lifespan events (``--lifespan off``,
some servers) never starts the worker; the first request then logs a warning saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from . import checks, conf, runtime

logger = logging.getLogger("autotask")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def with_worker(app: ASGIApp, *, shutdown_timeout: float | None = None) -> ASGIApp:
    """Wrap ``app`` so that lifespan startup starts the worker and shutdown stops it.

    ``shutdown_timeout`` (default ``AUTOTASK_SHUTDOWN_TIMEOUT``) is how long running tasks get
    to finish before they are put back to waiting.
    """

    lifespan_seen = False

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal lifespan_seen
        if scope["type"] == "lifespan":
            lifespan_seen = True
            await _lifespan(receive, send, shutdown_timeout)
            return
        if not lifespan_seen:
            lifespan_seen = True  # look once
            # Not started some other way either (AUTOTASK_IS_ACTIVE starts it on this request).
            if runtime.get().worker is None and not conf.is_active():
                _warn_no_lifespan()
        await app(scope, receive, send)

    return application


def _warn_no_lifespan() -> None:
    logger.warning(
        "autotask: the ASGI server sent no lifespan events, so this process runs no "
        "tasks. Enable lifespan (uvicorn: --lifespan on) or run `manage.py "
        "autotask_worker` beside it."
    )


async def _lifespan(receive: Receive, send: Send, shutdown_timeout: float | None) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            checks.log_problems(logger)
            try:
                await runtime.astart()
            except Exception as exc:
                logger.exception("autotask: runtime failed to start")
                await send({"type": "lifespan.startup.failed", "message": f"autotask: {exc}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await runtime.astop(shutdown_timeout)
            except Exception as exc:
                logger.exception("autotask: runtime failed to stop cleanly")
                await send({"type": "lifespan.shutdown.failed", "message": f"autotask: {exc}"})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return
