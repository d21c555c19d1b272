"""Every SQL statement autotask sends, named for what it does, and nothing else.

Placeholders are ``%s`` so the same text runs through Django's cursor (enqueue in the caller's
transaction) and through psycopg directly (the runtime). Every state change of a run names the
state it expects to leave, so a run taken away from a worker is never overwritten by it.
The schema (tables, indexes, triggers) lives in ``migrations/``.
"""

RUN_COLUMNS = (
    "id, name, queue, status, priority, attempts, max_attempts, run_at, enqueued_at,"
    " started_at, finished_at, result::text, error::text"
)

INSERT_RUN = f"""
INSERT INTO autotask_task (name, queue, args, kwargs, priority, max_attempts, run_at, status)
VALUES (%s, %s, %s::jsonb, %s::jsonb, %s, %s,
        COALESCE(%s::timestamptz, now() + %s * interval '1 second'), 'waiting')
RETURNING {RUN_COLUMNS}, txid_current()
"""

# The enqueuing transaction, to tell a caller waiting on a run nobody can see yet.
CURRENT_TRANSACTION = "SELECT txid_current_if_assigned()"

SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM autotask_task WHERE id = %s"

# Claims: one statement each, as many runs as there are free slots. MATERIALIZED keeps the
# locking subquery from being inlined into the UPDATE, where SKIP LOCKED would lose its meaning.
_CLAIM = """
WITH claimed AS MATERIALIZED (
    SELECT id FROM autotask_task
    WHERE status = 'waiting' AND run_at <= now(){queue_filter}
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE autotask_task AS t
SET status = 'running', attempts = t.attempts + 1, worker_id = %(worker_id)s,
    started_at = now(), finished_at = NULL
FROM claimed
WHERE t.id = claimed.id
RETURNING t.id, t.name, t.args, t.kwargs, t.attempts, t.max_attempts
"""
CLAIM_RUNS_ANY_QUEUE = _CLAIM.format(queue_filter="")
CLAIM_RUNS_IN_QUEUES = _CLAIM.format(queue_filter=" AND queue = ANY(%(queues)s)")

# Seconds until the earliest waiting run is due (negative: due now), NULL when none waits.
SECONDS_UNTIL_DUE_ANY_QUEUE = """
SELECT extract(epoch FROM min(run_at) - clock_timestamp())
FROM autotask_task WHERE status = 'waiting'
"""
SECONDS_UNTIL_DUE_IN_QUEUES = """
SELECT extract(epoch FROM min(run_at) - clock_timestamp())
FROM autotask_task WHERE status = 'waiting' AND queue = ANY(%s)
"""

# Finishes queued while another is being written go out together (group commit): one
# statement, one commit, one status NOTIFY for the lot. Returns the ids that were still ours.
SET_DONE_IF_RUNNING = """
UPDATE autotask_task AS t
SET status = 'done', result = f.result::jsonb, finished_at = now(),
    expires_at = now() + f.ttl * interval '1 second'
FROM unnest(%s::bigint[], %s::text[], %s::float8[]) AS f(id, result, ttl)
WHERE t.id = f.id AND t.status = 'running' AND t.worker_id = %s
RETURNING t.id
"""

SET_ERROR_IF_RUNNING = """
UPDATE autotask_task
SET status = 'error', error = %s::jsonb, finished_at = now(),
    expires_at = now() + %s * interval '1 second'
WHERE id = %s AND status = 'running' AND worker_id = %s
"""

# A failed attempt with attempts left: back to waiting, keeping the error as the last one seen.
SET_RETRY_IF_RUNNING = """
UPDATE autotask_task
SET status = 'waiting', error = %s::jsonb, worker_id = NULL,
    run_at = now() + %s * interval '1 second'
WHERE id = %s AND status = 'running' AND worker_id = %s
"""

# Shutdown: the worker's unfinished runs go back to waiting; the interrupted attempt is not
# counted. By worker rather than by id, so a run claimed in the last instant is not missed.
SET_WAITING_IF_RUNNING_ON_WORKER = """
UPDATE autotask_task
SET status = 'waiting', attempts = greatest(attempts - 1, 0), worker_id = NULL,
    started_at = NULL
WHERE status = 'running' AND worker_id = %s
"""

INSERT_WORKER = """
INSERT INTO autotask_worker (id, host, pid, queues, concurrency, started_at, heartbeat_at)
VALUES (%s, %s, %s, %s::jsonb, %s, now(), now())
"""

UPDATE_WORKER_HEARTBEAT = "UPDATE autotask_worker SET heartbeat_at = now() WHERE id = %s"

DELETE_WORKER = "DELETE FROM autotask_worker WHERE id = %s"

# Channels of the NOTIFYs the triggers send (see migrations/0001_initial.py).
WAKE_CHANNEL = "autotask"
STATUS_CHANNEL = "autotask_status"
LISTEN = "LISTEN {channel}"
