"""What the compare knows about each system without importing it.

The orchestrator reads this to print the configuration and to tell a missing capability ("-",
with its reason) from a failure; the subprocesses import only their own ``<system>_side``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONCURRENCY = 10  # jobs one consumer process runs at once, the same for every system
PGQUEUER_BATCH = 10
PGQUEUER_MAX_TASKS = 2 * PGQUEUER_BATCH  # the least pgqueuer accepts (>= 2 x batch_size)
FLOOR_CLAIM = 50  # rows the floor claims per statement

PEERS = ("pgqueuer", "oban", "procrastinate")
SYSTEMS = ("autotask", *PEERS, "floor")

WORKLOADS = (
    "drain_async",
    "drain_sync",
    "drain_async_2proc",
    "enqueue_single",
    "enqueue_single_async",
    "enqueue_bulk",
    "latency",
    "latency_busy",
)
LATENCY_WORKLOADS = ("latency", "latency_busy")

# Distribution packages whose versions the header prints (read from metadata, never imported).
PACKAGES = {
    "autotask": ("autotask", "django", "psycopg"),
    "pgqueuer": ("pgqueuer", "asyncpg"),
    "oban": ("oban", "psycopg-pool"),
    "procrastinate": ("procrastinate", "psycopg-pool"),
    "floor": ("psycopg",),
}


@dataclass(frozen=True)
class System:
    name: str
    database: str
    config: str  # how its consumer is configured, for the header
    missing: dict[str, str] = field(default_factory=dict)  # workload -> why it has none
    notes: dict[str, str] = field(default_factory=dict)  # workload -> how it is done here


SPECS = {
    "autotask": System(
        "autotask",
        "autotask_bench",
        f"in-process runtime (autotask.runtime.start()), AUTOTASK_WORKERS={CONCURRENCY}, "
        "CONN_MAX_AGE=600, AUTOTASK_HANDLE_TASK_IDLE_TIME and AUTOTASK_POOL_SIZE default; "
        "sync enqueue through Django's connection, await defer() through connections of the "
        "caller's event loop",
        notes={
            "drain_sync": "a plain def task, run by the runtime in its thread pool",
            "enqueue_single": "noop() through Django's connection, autocommit",
            "enqueue_single_async": (
                "await noop.defer() through this event loop's own connections"
            ),
            "enqueue_bulk": "noop.enqueue_many([()] * N): one statement",
            "latency": "noop_probe(i) from the main thread; the runtime runs in its own thread",
        },
    ),
    "pgqueuer": System(
        "pgqueuer",
        "compare_pgqueuer",
        f"PgQueuer(AsyncpgDriver(asyncpg.connect())), run(batch_size={PGQUEUER_BATCH}, "
        f"max_concurrent_tasks={PGQUEUER_MAX_TASKS}); enqueues on a second asyncpg connection",
        notes={
            "drain_async": f"max_concurrent_tasks={PGQUEUER_MAX_TASKS}: the least pgqueuer "
            f"accepts with batch_size={PGQUEUER_BATCH} (>= 2 x batch_size), the nearest to "
            f"{CONCURRENCY} at once; its default is no cap",
            "drain_sync": "pgqueuer 1.6 refuses sync entrypoints and says to wrap blocking code "
            "in asyncio.to_thread(): the entrypoint is async def ...: await "
            "asyncio.to_thread(noop)",
            "drain_async_2proc": "two processes with one PgQueuer each",
            "enqueue_single": "SyncQueries(SyncPsycopgDriver(psycopg.connect(autocommit=True)))"
            ".enqueue(...), its only sync path",
            "enqueue_single_async": "await queries.enqueue(...) on an asyncpg connection",
            "enqueue_bulk": "await queries.enqueue([...] * N, ...): one statement",
            "latency": "await queries.enqueue(...) on the consumer's event loop",
        },
    ),
    "oban": System(
        "oban",
        "compare_oban",
        f'Oban(pool=await Oban.create_pool(dsn), queues={{"default": {CONCURRENCY}}}) '
        "(pool max_size 10, its default), async with oban",
        notes={
            "drain_sync": "@job on a plain def: oban 0.7 calls it directly on its event loop "
            "(its docs say nothing about sync code)",
            "enqueue_single": "no sync enqueue: await Worker.enqueue({}), as enqueue_single_async",
            "enqueue_single_async": "await Worker.enqueue({}) through the Oban instance's pool",
            "enqueue_bulk": "await oban.enqueue_many(jobs) (one INSERT per job in one "
            "transaction in the open-source edition)",
            "latency": "await Probe.enqueue(...) on the consumer's event loop",
        },
    ),
    "procrastinate": System(
        "procrastinate",
        "compare_procrastinate",
        f"App(connector=PsycopgConnector(conninfo=...)) (pool defaults), "
        f"run_worker_async(concurrency={CONCURRENCY})",
        notes={
            "drain_sync": "a plain def task: procrastinate runs it in a thread (sync_to_async)",
            "enqueue_single": "task.defer() with the app opened synchronously (its "
            "SyncPsycopgConnector)",
            "enqueue_single_async": "await task.defer_async() with the app opened async",
            "enqueue_bulk": "task.batch_defer(*[{}] * N) (sync): one statement",
            "latency": "await probe.defer_async(i=i) on the worker's event loop; starts of "
            "about 5 s (its fetch_job_polling_interval) are frequent when a probe is deferred "
            "right after the one before started (a check with a 50 ms pause between probes "
            "saw none), so few probes fit the budget",
        },
    ),
    "floor": System(
        "floor",
        "compare_floor",
        "plain psycopg 3: table job(id bigserial, payload jsonb, status text, ...), a "
        f"statement-level NOTIFY trigger; claims {FLOOR_CLAIM} rows per UPDATE ... SKIP LOCKED",
        missing={
            "drain_sync": "the floor runs no job code in threads; its drain is SQL only",
        },
        notes={
            "drain_async": f"one async connection: claim {FLOOR_CLAIM} (UPDATE ... WHERE id IN "
            "(SELECT ... FOR UPDATE SKIP LOCKED LIMIT 50) RETURNING), await a no-op for each, "
            "finish them in one UPDATE",
            "enqueue_single": "one INSERT per autocommit statement",
            "enqueue_single_async": "one INSERT per statement on an async connection",
            "enqueue_bulk": "one INSERT ... SELECT unnest(%s::jsonb[])",
            "latency": "INSERT (its trigger NOTIFYs) -> the LISTEN connection receives it; "
            "the claim after it is in the JSON as claim_*",
        },
    ),
}


def capable(system: str, workload: str) -> bool:
    return workload not in SPECS[system].missing
