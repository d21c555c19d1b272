"""Where the benchmarks run, and the raw SQL they use to set up and read back measurements.

Only ``psycopg`` is imported here (no Django), so the settings module can use it too. The
database ``DATABASE_URL`` names is only ever connected to in order to create ``autotask_bench``;
every table the benchmarks truncate or fill is in ``autotask_bench``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
BENCH_DATABASE = "autotask_bench"
UNFINISHED = ("waiting", "running")


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_URL


def bench_params() -> dict[str, Any]:
    """Connection parameters of DATABASE_URL with the database swapped for ``autotask_bench``."""
    params = conninfo_to_dict(server_url())
    params["dbname"] = BENCH_DATABASE
    return params


def bench_conninfo() -> str:
    return make_conninfo(**bench_params())


def ensure_bench_database() -> bool:
    """Create ``autotask_bench`` on DATABASE_URL's server if it is missing; True if created."""
    own = conninfo_to_dict(server_url()).get("dbname")
    if own == BENCH_DATABASE:
        raise SystemExit(
            f"DATABASE_URL names {BENCH_DATABASE!r} itself; point it at another database on the "
            f"same server (the benchmarks create and truncate {BENCH_DATABASE!r} on their own)."
        )
    with psycopg.connect(server_url(), autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DATABASE]
        ).fetchone()
        if found:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DATABASE)))
        except psycopg.errors.DuplicateDatabase:  # created by a concurrent run meanwhile
            return False
        return True


class BenchDB:
    """An autocommit psycopg connection to ``autotask_bench`` for setup and read-back."""

    def __init__(self) -> None:
        self.conn = psycopg.connect(bench_conninfo(), autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def server_version(self) -> str:
        row = self.conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def truncate(self, *tables: str) -> None:
        tables = ("autotask_task", "autotask_dependency", *tables)  # a dependency's run: a key
        names = sql.SQL(", ").join(sql.Identifier(t) for t in tables)
        self.conn.execute(sql.SQL("TRUNCATE {}").format(names))

    def clear_workers(self) -> None:
        """Forget worker rows left by an earlier, killed run (none of ours is running yet)."""
        self.conn.execute("DELETE FROM autotask_worker")

    def bulk_insert(
        self, name: str, queue: str, max_attempts: int, n: int, *, keyed: bool = False
    ) -> float:
        """Insert ``n`` waiting runs in one statement; returns its duration in seconds.

        With ``keyed`` the runs get one argument each, ``"k0"`` .. ``"k<n-1>"``.
        """
        args = "jsonb_build_array('k' || g)" if keyed else "'[]'::jsonb"
        statement = f"""
            INSERT INTO autotask_task (name, queue, args, kwargs, priority, max_attempts,
                                       run_at, status)
            SELECT %s, %s, {args}, '{{}}'::jsonb, 0, %s, now(), 'waiting'
            FROM generate_series(0, %s - 1) AS g
        """
        started = time.perf_counter()
        self.conn.execute(statement, [name, queue, max_attempts, n])
        return time.perf_counter() - started

    def count(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM autotask_task").fetchone()
        return int(row[0]) if row else 0

    def unfinished(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM autotask_task WHERE status = ANY(%s)", [list(UNFINISHED)]
        ).fetchone()
        return int(row[0]) if row else 0

    def statuses(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT status, count(*) FROM autotask_task GROUP BY status ORDER BY status"
        ).fetchall()
        return {status: int(count) for status, count in rows}

    def timings(self, ids: Iterable[int]) -> list[tuple[float, float | None]]:
        """(started_at - enqueued_at, finished_at - started_at) in seconds, in the order of ids."""
        rows = self.conn.execute(
            """
            SELECT t.id,
                   extract(epoch FROM t.started_at - t.enqueued_at),
                   extract(epoch FROM t.finished_at - t.started_at)
            FROM autotask_task AS t WHERE t.id = ANY(%s)
            """,
            [list(ids)],
        ).fetchall()
        by_id = {row[0]: row for row in rows}
        found = []
        for run_id in ids:
            row = by_id.get(run_id)
            if row is None or row[1] is None:
                continue
            found.append((float(row[1]), None if row[2] is None else float(row[2])))
        return found

    def span(self) -> dict[str, Any]:
        """How the runs of the table were executed, from their own timestamps."""
        row = self.conn.execute(
            """
            SELECT count(*) FILTER (WHERE status = 'done'),
                   min(started_at), max(finished_at),
                   extract(epoch FROM max(finished_at) - min(started_at)),
                   count(DISTINCT started_at),
                   extract(epoch FROM sum(finished_at - started_at)),
                   count(*) FILTER (WHERE attempts > 1)
            FROM autotask_task
            """
        ).fetchone()
        assert row is not None
        done, first, last, seconds, claims, busy, retried = row
        return {
            "done": int(done),
            "first_start": first,
            "last_finish": last,
            "seconds": None if seconds is None else float(seconds),
            "claims": int(claims),
            "busy_seconds": None if busy is None else float(busy),
            "retried": int(retried),
        }

    def runs_per_worker(self) -> dict[str, int]:
        rows = self.conn.execute(
            """
            SELECT coalesce(w.pid::text, t.worker_id::text, '-'), count(*)
            FROM autotask_task AS t LEFT JOIN autotask_worker AS w ON w.id = t.worker_id
            GROUP BY 1 ORDER BY 1
            """
        ).fetchall()
        return {str(key): int(count) for key, count in rows}

    def executions(self, table: str, n: int) -> dict[str, int]:
        """Executions recorded in ``table`` for the keys k0..k<n-1>: total, distinct, lost."""
        row = self.conn.execute(
            sql.SQL(
                """
                SELECT (SELECT count(*) FROM {t}),
                       (SELECT count(DISTINCT key) FROM {t}),
                       (SELECT count(*) FROM generate_series(0, %s - 1) AS g
                        WHERE NOT EXISTS (SELECT 1 FROM {t} AS e WHERE e.key = 'k' || g)),
                       (SELECT count(*) FROM (SELECT key FROM {t} GROUP BY key
                                              HAVING count(*) > 1) AS d)
                """
            ).format(t=sql.Identifier(table)),
            [n],
        ).fetchone()
        assert row is not None
        total, distinct, lost, keys_twice = (int(v) for v in row)
        return {"executions": total, "distinct": distinct, "lost": lost, "keys_twice": keys_twice}
