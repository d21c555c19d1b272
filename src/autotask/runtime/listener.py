"""The process's one LISTEN connection, shared by the worker (wake-ups) and every handle (status).

A notification is a hint, never the truth: whoever is told something re-reads the table, and on
every (re)connect everyone is told "something may have changed" with ``None``, since
notifications sent while the connection was down are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from .. import conf, sql
from ..status import Status
from .database import listener_kwargs

logger = logging.getLogger("autotask")

WakeCallback = Callable[[str | None], None]
StatusCallback = Callable[[Status | None], None]
CancelCallback = Callable[[int | None], None]


class Listener:
    """A service on the runtime's loop; ``watch`` may be called from any thread."""

    def __init__(self) -> None:
        self._wake_callbacks: list[WakeCallback] = []
        self._cancel_callbacks: list[CancelCallback] = []
        self._watchers: dict[int, list[StatusCallback]] = {}
        self._lock = threading.Lock()
        self._connected = asyncio.Event()
        self._listening: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not conf.listen():  # poll-only: the fallback poll is all there is
            self._connected.set()
            return
        self._listening = asyncio.create_task(self._run(), name="autotask listener")

    async def stop(self, deadline: float) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening

    async def wait_connected(self, timeout: float) -> None:
        """Return once LISTEN is in place, so no wake-up sent after this can be missed."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise ConnectionError(
                f"autotask could not LISTEN on the database within {timeout:g}s "
                "(see the 'autotask' log for the connection error)"
            ) from None

    def on_wake(self, callback: WakeCallback) -> Callable[[], None]:
        """Call ``callback(queue)`` when a run becomes waiting in ``queue`` (None: unknown)."""
        self._wake_callbacks.append(callback)
        return lambda: self._wake_callbacks.remove(callback)

    def on_cancel(self, callback: CancelCallback) -> Callable[[], None]:
        """Call ``callback(run_id)`` when a cancel of a running run is asked for."""
        self._cancel_callbacks.append(callback)
        return lambda: self._cancel_callbacks.remove(callback)

    def watch(self, run_id: int, callback: StatusCallback) -> Callable[[], None]:
        """Call ``callback(status)`` on each status change of a run; returns the unsubscriber."""
        with self._lock:
            self._watchers.setdefault(run_id, []).append(callback)

        def unwatch() -> None:
            with self._lock:
                callbacks = self._watchers.get(run_id, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    self._watchers.pop(run_id, None)

        return unwatch

    async def _run(self) -> None:
        """Stay connected and listening until cancelled, reconnecting with backoff."""
        backoff = 0.5
        lost_at: float | None = None  # when the current outage began, if one has
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(**listener_kwargs())
                async with conn:
                    for channel in (sql.WAKE_CHANNEL, sql.STATUS_CHANNEL, sql.CANCEL_CHANNEL):
                        await conn.execute(sql.LISTEN.format(channel=channel))
                    self._connected.set()
                    backoff = 0.5
                    if lost_at is not None:
                        logger.warning(
                            "autotask: LISTEN connection back after %.1f s", loop.time() - lost_at
                        )
                        lost_at = None
                    self._tell_everyone()
                    async for notify in conn.notifies():
                        self._dispatch(notify.channel, notify.payload)
            except Exception as exc:
                # Whatever went wrong (network, settings, a bug), the listener must come back;
                # it says so once per outage, not at every try.
                if lost_at is None:
                    lost_at = loop.time()
                    logger.warning(
                        "autotask: LISTEN connection failed (%r); reconnecting with backoff "
                        "(polling meanwhile)",
                        exc,
                    )
                else:
                    logger.debug("autotask: LISTEN reconnect failed (%r)", exc)
            finally:
                self._connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _tell_everyone(self) -> None:
        for wake in list(self._wake_callbacks):
            _call(wake, None)
        with self._lock:
            callbacks = [cb for cbs in self._watchers.values() for cb in cbs]
        for callback in callbacks:
            _call(callback, None)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == sql.WAKE_CHANNEL:
            for wake in list(self._wake_callbacks):
                _call(wake, payload)
            return
        if channel == sql.CANCEL_CHANNEL:
            try:
                run_id = int(payload)
            except ValueError:
                logger.warning("autotask: ignored a malformed cancel notification: %.100r", payload)
                return
            for cancel in list(self._cancel_callbacks):
                _call(cancel, run_id)
            return
        malformed = 0
        for item in payload.split(","):
            try:
                run_id, status = _parse_status(item)
            except ValueError:
                malformed += 1
                continue
            with self._lock:
                callbacks = list(self._watchers.get(run_id, ()))
            for callback in callbacks:
                _call(callback, status)
        if malformed:  # once per notification, however much garbage it held
            logger.warning(
                "autotask: ignored %d malformed item(s) of a status notification: %.100r",
                malformed,
                payload,
            )


def _parse_status(item: str) -> tuple[int, Status]:
    run_id, _, status = item.partition(":")
    return int(run_id), Status(status)


def _call(callback: Callable[[Any], None], value: Any) -> None:
    """One subscriber's failure must not take the shared connection down for everyone."""
    try:
        callback(value)
    except Exception:
        logger.exception("autotask: a notification subscriber failed")
