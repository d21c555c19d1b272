"""The runtime's services start in order and stop in reverse, whatever fails on the way."""

import asyncio

import pytest

from autotask.runtime.service import start_all, stop_all


class _Recorder:
    def __init__(self, name: str, log: list[str], *, fail: str = "") -> None:
        self.name, self.log, self.fail = name, log, fail

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.fail == "start":
            raise RuntimeError(f"{self.name} cannot start")

    async def stop(self, deadline: float) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail == "stop":
            raise RuntimeError(f"{self.name} cannot stop")


def test_services_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    services = [_Recorder(name, log) for name in ("pool", "completer", "worker")]
    asyncio.run(start_all(services))
    asyncio.run(stop_all(services, deadline=0.0))
    assert log == [
        "start pool",
        "start completer",
        "start worker",
        "stop worker",
        "stop completer",
        "stop pool",
    ]


def test_every_service_is_stopped_even_when_one_fails_and_its_error_is_raised() -> None:
    log: list[str] = []
    services = [
        _Recorder("pool", log),
        _Recorder("completer", log, fail="stop"),
        _Recorder("worker", log),
    ]
    with pytest.raises(RuntimeError, match="completer cannot stop"):
        asyncio.run(stop_all(services, deadline=0.0))
    assert log == ["stop worker", "stop completer", "stop pool"]


def test_a_service_that_cannot_start_stops_those_started_before_it() -> None:
    log: list[str] = []
    services = [
        _Recorder("pool", log),
        _Recorder("heartbeat", log),
        _Recorder("executor", log, fail="start"),
        _Recorder("worker", log),
    ]
    with pytest.raises(RuntimeError, match="executor cannot start"):
        asyncio.run(start_all(services))
    assert log == [
        "start pool",
        "start heartbeat",
        "start executor",
        "stop heartbeat",
        "stop pool",
    ]
