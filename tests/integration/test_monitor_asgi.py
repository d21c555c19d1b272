"""The monitor under a real uvicorn: its streams (server-sent events) as a browser gets them."""

import json
import time
from collections.abc import Callable, Iterator

import httpx
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from autotask.models import TaskRun

from .conftest import Server


def staff_cookies(*, superuser: bool = False) -> dict[str, str]:
    """A logged-in staff session in the test database, which the server shares (its
    SECRET_KEY is the tests' one, so the session's auth hash matches)."""
    user = User.objects.create_user(
        "monitor", "m@example.org", "pw", is_staff=True, is_superuser=superuser
    )
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            yield name, json.loads(line[6:])


def test_the_overview_streams_a_change_within_a_second(start_server: Callable[..., Server]) -> None:
    server = start_server(SECRET_KEY=settings.SECRET_KEY)
    cookies = staff_cookies()
    with (
        server.client(cookies=cookies, timeout=10) as client,
        client.stream("GET", "/autotask/events/") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        name, first = next(stream)
        assert name == "overview"
        assert any(w["leader"] for w in first["workers"])  # the server's runtime leads
        TaskRun.objects.create(
            name="shop.tasks.slow", args=[0.1], queue="streamed", run_at=timezone.now()
        )
        written = time.monotonic()
        for _, data in stream:
            queues = {q["name"]: q for q in data["queues"]}
            if "streamed" in queues:
                break
        assert time.monotonic() - written < 1.5
        while queues["streamed"]["done_last_hour"] != 1:
            queues = {q["name"]: q for q in next(stream)[1]["queues"]}


def test_a_run_streams_its_statuses_until_final(start_server: Callable[..., Server]) -> None:
    server = start_server(SECRET_KEY=settings.SECRET_KEY)
    run = TaskRun.objects.create(
        name="shop.tasks.slow", args=[0.3], run_at=timezone.now() + timezone.timedelta(seconds=1)
    )
    with (
        server.client(cookies=staff_cookies(), timeout=10) as client,
        client.stream("GET", f"/autotask/runs/{run.id}/events/") as response,
    ):
        seen = [data for _, data in events(response)]
    assert [d["status"] for d in seen] == ["waiting", "running", "done"]
    assert seen[-1]["final"] and not seen[0]["final"]


def test_the_stream_needs_a_staff_session(start_server: Callable[..., Server]) -> None:
    server = start_server(SECRET_KEY=settings.SECRET_KEY)
    with server.client(timeout=10) as client:
        response = client.get("/autotask/events/")
    assert response.status_code == 302 and "/admin/login/" in response.headers["location"]
