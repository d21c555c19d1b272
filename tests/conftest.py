"""Fixtures: a real PostgreSQL (from DATABASE_URL) and the real in-process runtime."""

from __future__ import annotations

import importlib.util
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from psycopg.conninfo import make_conninfo

from autotask import runtime


def pytest_ignore_collect(collection_path: Any, config: pytest.Config) -> bool | None:
    """The browser tests import Playwright, an extra only ``nox -s browser`` installs: a run
    whose ``-m`` cannot select them (the default, ``-m smoke``) does not import them. A run that
    may select them (``-m browser``, or no mark expression) without Playwright still fails at
    collection, as it should."""
    if collection_path.name != "test_monitor_browser.py":
        return None
    if importlib.util.find_spec("playwright") is not None:
        return None
    markexpr = config.getoption("markexpr") or ""
    return None if not markexpr or _SELECTS_BROWSER.search(markexpr) else True


# "browser" in a mark expression, not negated: such a run may select the browser tests.
_SELECTS_BROWSER = re.compile(r"(?<!not )\bbrowser\b")


@pytest.fixture(scope="session", autouse=True)
def _stop_runtime_before_db_teardown(django_db_setup: None) -> Iterator[None]:
    """The runtime's connections would keep the test database from being dropped."""
    yield
    runtime.stop(timeout=1)


@pytest.fixture
def start_worker(transactional_db: None) -> Iterator[Callable[[], None]]:
    """Start this process's worker (after the test has changed settings, if it wants)."""
    yield runtime.start
    runtime.stop(timeout=2)


@pytest.fixture
def worker(start_worker: Callable[[], None]) -> None:
    start_worker()


def database_conninfo(**overrides: Any) -> str:
    """Connection string of the test database, for processes started by a test."""
    params = dict(connection.settings_dict)
    conninfo = {
        "dbname": params["NAME"],
        "user": params["USER"] or None,
        "password": params["PASSWORD"] or None,
        "host": params["HOST"] or None,
        "port": params["PORT"] or None,
        **params["OPTIONS"],
        **overrides,
    }
    return make_conninfo(**{k: v for k, v in conninfo.items() if v is not None})


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)
