"""5. The admin's run list over 1,000,000 runs: ``python -m tests.benchmarks --only admin``.

Opt-in (not in the default set, so ``nox -s bench`` stays as long as it was): filling and
vacuuming a million rows takes about half a minute before the first page is timed. ``--quick``
fills 200,000. The rows go into ``autotask_bench`` in one ``INSERT ... SELECT generate_series``,
spread the way a busy table is (mostly done, some waiting, a few failed, cancelled or running;
23 task names and 4 queues, plus one rare name), then ``VACUUM ANALYZE`` gives the planner its
statistics, as autovacuum would on a table that has been there a while.

Each page is fetched through Django's test client as a logged-in superuser: the admin's
apps, middleware and URLs are switched on for this measurement only (``override_settings``),
and ``migrate`` creates their tables in ``autotask_bench``. A page is fetched once to warm up,
then ``REPEAT`` times; the figures are the median and slowest of those, the number of queries
a page sends, their total time (Django's rounding: milliseconds) and the slowest of them; the
rest of a page's time is Django rendering a hundred rows. No asserts: figures only.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from autotask import runtime, store

from .database import BenchDB
from .report import ms, table

REPEAT = 5
URL = "/admin/autotask/taskrun/"
RARE = "bench.tasks.rare"
_COUNT = re.compile(r"(\d+) task runs?\b")  # what the page says under the list

# Statuses by g % 1000: 1 error, 1 cancelled, 1 running per thousand; 8 % waiting; the rest done.
_FILL = """
INSERT INTO autotask_task (name, queue, args, kwargs, status, priority, run_at, attempts,
                           max_attempts, enqueued_at, started_at, finished_at, expires_at,
                           result, error, errors)
SELECT CASE WHEN g %% 10000 = 5 THEN %(rare)s ELSE 'bench.tasks.task_' || g %% 23 END,
       (ARRAY['default', 'mail', 'reports', 'slow'])[1 + g %% 4],
       jsonb_build_array(g), '{}'::jsonb, s.status, g %% 7 - 3, s.at,
       CASE WHEN s.status = 'waiting' THEN 0 ELSE 1 END, 3, s.at,
       CASE WHEN s.status <> 'waiting' THEN s.at END,
       CASE WHEN s.status IN ('done', 'error', 'cancelled') THEN s.at + interval '50 ms' END,
       CASE WHEN s.status IN ('done', 'error', 'cancelled') THEN s.at + interval '30 days' END,
       CASE WHEN s.status = 'done' THEN to_jsonb(g) END,
       CASE WHEN s.status = 'error' THEN s.failure END,
       CASE WHEN s.status = 'error' THEN jsonb_build_array(s.failure) ELSE '[]'::jsonb END
FROM generate_series(1, %(n)s) AS g,
LATERAL (
    SELECT CASE WHEN g %% 1000 = 0 THEN 'error'
                WHEN g %% 1000 = 1 THEN 'cancelled'
                WHEN g %% 1000 = 2 THEN 'running'
                WHEN g %% 100 < 8 THEN 'waiting'
                ELSE 'done' END AS status,
           now() - (%(n)s - g) * interval '1 second' AS at,
           jsonb_build_object('type', 'builtins.ValueError', 'message', 'boom',
                              'traceback', 'Traceback (most recent call last): ...') AS failure
) AS s
"""

_ADMIN_SETTINGS: dict[str, Any] = {
    "INSTALLED_APPS": [
        "django.contrib.admin",
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
        "django.contrib.messages",
        "autotask",
        "tests.app",
    ],
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    "ROOT_URLCONF": "tests.urls",
    "ALLOWED_HOSTS": ["testserver"],
}


def _cases(some_id: int) -> list[tuple[str, dict[str, str]]]:
    return [
        ("unfiltered, page 1", {}),
        ("unfiltered, page 50", {"p": "50"}),
        ("unfiltered, page 10,000 (the last)", {"p": "10000"}),
        ("status = done (90 %)", {"status": "done"}),
        ("status = waiting (8 %)", {"status": "waiting"}),
        ("status = error (0.1 %)", {"status": "error"}),
        ("queue = mail (25 %)", {"queue": "mail"}),
        ("name = task_7 (4 %)", {"name": "bench.tasks.task_7"}),
        (f"name = {RARE} (0.01 %)", {"name": RARE}),
        ("status = error and queue = mail (none)", {"status": "error", "queue": "mail"}),
        ("search: part of a name", {"q": "task_1"}),
        ("search: an id", {"q": str(some_id)}),
        ("id ascending (oldest first)", {"o": "1"}),
    ]


@contextmanager
def superuser_client() -> Iterator[Client]:
    """A superuser's client, with the admin switched on for the time of the measurement."""
    with override_settings(**_ADMIN_SETTINGS):
        call_command("migrate", verbosity=0, interactive=False)
        from django.contrib.auth.models import User

        user = User.objects.filter(username="bench").first()
        if user is None:
            user = User.objects.create_superuser("bench", "bench@example.org", "bench")
        client = Client()
        client.force_login(user)
        yield client


def fill(bench: BenchDB, n: int) -> dict[str, float]:
    bench.truncate()
    started = time.perf_counter()
    bench.conn.execute(_FILL, {"n": n, "rare": RARE})
    filled = time.perf_counter()
    bench.conn.execute("VACUUM ANALYZE autotask_task")
    vacuumed = time.perf_counter()
    bench.conn.execute("SELECT count(*) FROM autotask_task")
    counted = time.perf_counter()
    return {
        "insert_seconds": filled - started,
        "vacuum_seconds": vacuumed - filled,
        "count_star_seconds": counted - vacuumed,
    }


def timed_page(client: Client, url: str, params: dict[str, str]) -> dict[str, Any]:
    """A page fetched once to warm up, then ``REPEAT`` times: its times and queries."""
    times: list[float] = []
    queries: list[dict[str, str]] = []
    shown = ""
    client.get(url, params)  # warm-up: templates, the session, caches
    for _ in range(REPEAT):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url, params)
            times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{url} {params}: HTTP {response.status_code}")
        queries = list(captured.captured_queries)
        found = _COUNT.search(response.content.decode())
        shown = found.group(1) if found else "?"
    return {
        "p50": statistics.median(times),
        "max": max(times),
        "queries": len(queries),
        "sql": sum(float(q["time"]) for q in queries),
        "slowest_query": max(float(q["time"]) for q in queries),
        "count": shown,
    }


def measure(bench: BenchDB, n: int) -> dict[str, Any]:
    """Fill the table with ``n`` runs, then time the list unfiltered and with each filter."""
    runtime.stop()
    setup = fill(bench, n)
    row = bench.conn.execute("SELECT id FROM autotask_task WHERE status = 'error' LIMIT 1")
    some_id = row.fetchone()[0]  # type: ignore[index]
    with superuser_client() as client:
        pages = [
            {"label": label, **timed_page(client, URL, params)} for label, params in _cases(some_id)
        ]
    return {"n": n, **setup, "estimate": store.estimated_run_count(), "pages": pages}


def admin_table(figures: dict[str, Any]) -> str:
    rows = [
        [
            p["label"],
            ms(p["p50"]),
            ms(p["max"]),
            p["queries"],
            ms(p["sql"]),
            ms(p["slowest_query"]),
            p["count"] if p["count"] == "?" else f"{int(p['count']):,}",
        ]
        for p in figures["pages"]
    ]
    return table(
        f"5. admin run list over {figures['n']:,} runs (filled in "
        f"{figures['insert_seconds']:.1f} s, VACUUM ANALYZE {figures['vacuum_seconds']:.1f} s; "
        f"the count(*) it avoids: {ms(figures['count_star_seconds'])} ms; "
        f"estimate {figures['estimate']:,})",
        ["page", "p50 ms", "max ms", "queries", "all SQL ms", "slowest query ms", "runs it says"],
        rows,
    )
