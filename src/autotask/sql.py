"""Every SQL statement autotask sends, named entity first for what it does, and nothing else.

Placeholders are ``%s`` so the same text runs through Django's cursor (enqueue in the caller's
transaction) and through psycopg directly (the runtime). Every state change of a run names the
state it expects to leave (``..._IF_RUNNING``), so a run taken away from a worker is never
overwritten by it. The schema (tables, indexes, triggers) lives in ``migrations/``.
"""

# --- runs: what code outside the runtime reads and writes (through store.py) ---

RUN_COLUMNS = (
    "id, name, queue, status, priority, attempts, max_attempts, run_at, enqueued_at,"
    " started_at, finished_at, result::text, error::text, errors::text, postpones,"
    " worker_ids::text"
)

# A run with a unique_key that a waiting or running run already has is not inserted: the
# statement returns that run instead, in the same statement (the partial unique index decides,
# so two callers at once cannot both insert). The no-op update is what makes it RETURN the row.
# The WHERE names the index's predicate (it leaves out runs without a key: migration 0014).
_RUN_UNIQUE = """
ON CONFLICT (unique_key) WHERE status IN ('waiting', 'running') AND unique_key IS NOT NULL
DO UPDATE SET unique_key = EXCLUDED.unique_key
"""

# Returns the enqueuing transaction too, to tell a caller waiting on a run nobody can see yet.
# run_at counts from statement_timestamp(), as enqueued_at's default does (Django's Now()), so
# a run enqueued without a delay has run_at = enqueued_at, even late in a long transaction.
# Without a unique_key (most runs) there is no ON CONFLICT: its speculative insertion costs
# about a sixth of the enqueue rate.
_RUN_INSERT = """
INSERT INTO autotask_task
    (name, queue, args, kwargs, priority, max_attempts, run_at, status, unique_key{limit_columns})
VALUES (%s, %s, %s::jsonb, %s::jsonb, %s, %s,
        COALESCE(%s::timestamptz, statement_timestamp() + %s * interval '1 second'),
        'waiting', %s{limit_values})
"""
_RUN_INSERT_PLAIN = _RUN_INSERT.format(limit_columns="", limit_values="")
# A plain run's record is what was sent and these three: reading back every column (and decoding
# its JSON) cost about a tenth of a single enqueue.
RUN_INSERT = f"{_RUN_INSERT_PLAIN} RETURNING id, run_at, enqueued_at, txid_current()"
RUN_INSERT_UNIQUE = f"{_RUN_INSERT_PLAIN} {_RUN_UNIQUE} RETURNING {RUN_COLUMNS}, txid_current()"

# A limited run's keys must have their slots (concurrency) or tokens (rate): at least N rows for
# a limit of N, inserted by the first enqueue with the key (and by one with a larger N). Rows are
# never deleted or updated here: a held one may be in use, and an enqueue, perhaps in a long
# transaction, must not lock rows a claim or a finishing run needs. Each run carries its own N
# and window, and a claim uses only the key's first N rows, so a smaller N takes effect with the
# runs enqueued under it. Only a missing key writes (the check is an index probe), in key order.
# Two transactions enqueuing the same new key at once wait for one another, as two inserts of
# one unique value do.
_SLOTS_PROVISION = """
provisioned AS (
    INSERT INTO autotask_slot (kind, key, slot, period)
    SELECT l.kind, l.key, generate_series(1, l.n), l.period
    FROM limits AS l
    WHERE NOT EXISTS (SELECT 1 FROM autotask_slot AS s
                      WHERE s.kind = l.kind AND s.key = l.key AND s.slot = l.n)
    ORDER BY 1, 2, 3
    ON CONFLICT (kind, key, slot) DO NOTHING
)
"""
_LIMITS_OF_ONE = """
WITH limits AS (
    SELECT * FROM (VALUES ('concurrency', %s::text, %s::int, NULL::float8),
                          ('rate', %s::text, %s::int, %s::float8)) AS l(kind, key, n, period)
    WHERE key IS NOT NULL
),
"""
_RUN_INSERT_LIMITED = (
    _LIMITS_OF_ONE
    + _SLOTS_PROVISION
    + _RUN_INSERT.format(
        limit_columns=", concurrency_key, concurrency_limit, rate_key, rate_limit, rate_period",
        limit_values=", %s, %s, %s, %s, %s",
    )
)
RUN_INSERT_LIMITED = f"{_RUN_INSERT_LIMITED} RETURNING {RUN_COLUMNS}, txid_current()"
RUN_INSERT_LIMITED_UNIQUE = (
    f"{_RUN_INSERT_LIMITED} {_RUN_UNIQUE} RETURNING {RUN_COLUMNS}, txid_current()"
)

# The limits of many runs (the rows of ``r``), for _SLOTS_PROVISION.
_LIMITS_OF_MANY = """limits AS (
    SELECT 'concurrency' AS kind, concurrency_key AS key, max(concurrency) AS n,
           NULL::float8 AS period
    FROM r WHERE concurrency_key IS NOT NULL GROUP BY concurrency_key
    UNION ALL
    SELECT 'rate', rate_key, max(rate), max(rate_period) FROM r WHERE rate_key IS NOT NULL
    GROUP BY rate_key
),"""

# Many runs in one statement (one trigger call, so one NOTIFY per queue). Identity values are
# drawn in the order of the SELECT, so the new rows' ids follow the input's order; a row that
# met an existing unique_key comes back as that run (store.py puts each back in its place).
RUN_INSERT_MANY = f"""
WITH r AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::int[],
                         %s::timestamptz[], %s::float8[], %s::text[], %s::text[], %s::int[],
                         %s::text[], %s::int[], %s::float8[])
         WITH ORDINALITY
         AS r(name, queue, args, kwargs, priority, max_attempts, run_at, delay, unique_key,
              concurrency_key, concurrency, rate_key, rate, rate_period, n)
),
{_LIMITS_OF_MANY}
{_SLOTS_PROVISION}
INSERT INTO autotask_task
    (name, queue, args, kwargs, priority, max_attempts, run_at, status, unique_key,
     concurrency_key, concurrency_limit, rate_key, rate_limit, rate_period)
SELECT r.name, r.queue, r.args::jsonb, r.kwargs::jsonb, r.priority, r.max_attempts,
       COALESCE(r.run_at, statement_timestamp() + r.delay * interval '1 second'), 'waiting',
       r.unique_key, r.concurrency_key, r.concurrency, r.rate_key, r.rate, r.rate_period
FROM r
ORDER BY r.n
{_RUN_UNIQUE}
RETURNING {RUN_COLUMNS}, unique_key, txid_current()
"""

# The same for runs with neither a unique_key nor a limit (most bulk enqueues), built for rate:
# no speculative insertion, no limits' CTEs, and only what the caller cannot know returned, as
# one row (store.py builds each record from what it sent). A column with one value for every
# run comes as that value, with an empty array beside it (ROWS FROM pads it with NULLs); a
# column that varies comes as an array, and the scalar is NULL. The arguments come as one JSON
# array each, not as arrays of text: quoting every element of a text array literal was most of
# the Python side's time. enqueued_at is the column's default, statement_timestamp(), one value
# for the statement; run_at is returned only when some run's differs from it.
RUN_INSERT_MANY_PLAIN = """
WITH inserted AS (
    INSERT INTO autotask_task (name, queue, args, kwargs, priority, max_attempts, run_at, status)
    SELECT COALESCE(r.name, %(name)s::text), COALESCE(r.queue, %(queue)s::text),
           COALESCE(r.args, %(args)s::jsonb), COALESCE(r.kwargs, %(kwargs)s::jsonb),
           COALESCE(r.priority, %(priority)s::int),
           COALESCE(r.max_attempts, %(max_attempts)s::int),
           COALESCE(r.run_at, %(run_at)s::timestamptz, statement_timestamp()
                    + COALESCE(r.delay, %(delay)s::float8) * interval '1 second'),
           'waiting'
    FROM ROWS FROM (generate_series(1, %(count)s::int),
                    unnest(%(names)s::text[]), unnest(%(queues)s::text[]),
                    jsonb_array_elements(%(argses)s::jsonb),
                    jsonb_array_elements(%(kwargses)s::jsonb),
                    unnest(%(priorities)s::int[]), unnest(%(max_attemptses)s::int[]),
                    unnest(%(run_ats)s::timestamptz[]), unnest(%(delays)s::float8[]))
         AS r(n, name, queue, args, kwargs, priority, max_attempts, run_at, delay)
    ORDER BY r.n
    RETURNING id, run_at, enqueued_at
)
SELECT array_agg(id ORDER BY id),
       CASE WHEN bool_and(run_at = enqueued_at) THEN NULL ELSE array_agg(run_at ORDER BY id) END,
       min(enqueued_at), txid_current()
FROM inserted
"""

# --- workflows: runs that wait for other runs (see migrations/0009_workflows.py) ---

# The run_at of a run that waits for others: the far future (but a year Python can represent in
# any time zone), so that the claim, the next-due query and health leave it alone unchanged.
# The trigger that brings its waiting_for to zero sets it to now().
_WAITING_FOR_OTHERS = "'9999-01-01 00:00:00+00'::timestamptz"

# A workflow's steps and their edges in one statement (so one transaction, joining the caller's
# when sync), under one new workflow id. Steps come in an order where each follows the steps it
# depends on; edges name steps by their place in it (1-based), as WITH ORDINALITY numbers them,
# and ids are drawn in that order too. A step whose waiting_for is 0 starts the workflow.
WORKFLOW_INSERT = f"""
WITH workflow AS (SELECT nextval('autotask_workflow_id_seq') AS id),
r AS (
    SELECT * FROM unnest(%(names)s::text[], %(queues)s::text[], %(args)s::text[],
                         %(kwargs)s::text[], %(priorities)s::int[], %(max_attempts)s::int[],
                         %(run_ats)s::timestamptz[], %(delays)s::float8[],
                         %(concurrency_keys)s::text[], %(concurrencies)s::int[],
                         %(rate_keys)s::text[], %(rates)s::int[], %(rate_periods)s::float8[],
                         %(waiting_for)s::int[], %(has_dependents)s::bool[],
                         %(result_args)s::text[])
         WITH ORDINALITY
         AS r(name, queue, args, kwargs, priority, max_attempts, run_at, delay, concurrency_key,
              concurrency, rate_key, rate, rate_period, waiting_for, has_dependents, result_arg,
              n)
),
{_LIMITS_OF_MANY}
{_SLOTS_PROVISION},
inserted AS (
    INSERT INTO autotask_task
        (name, queue, args, kwargs, priority, max_attempts, run_at, status, concurrency_key,
         concurrency_limit, rate_key, rate_limit, rate_period, workflow_id, waiting_for,
         has_dependents, result_arg)
    SELECT r.name, r.queue, r.args::jsonb, r.kwargs::jsonb, r.priority, r.max_attempts,
           CASE WHEN r.waiting_for > 0 THEN {_WAITING_FOR_OTHERS}
                ELSE COALESCE(r.run_at, statement_timestamp() + r.delay * interval '1 second')
           END,
           'waiting', r.concurrency_key, r.concurrency, r.rate_key, r.rate, r.rate_period,
           workflow.id, r.waiting_for, r.has_dependents, r.result_arg
    FROM r CROSS JOIN workflow
    ORDER BY r.n
    RETURNING {RUN_COLUMNS}
),
numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM inserted),
edges AS (
    INSERT INTO autotask_dependency (run_id, depends_on_id, position, required)
    SELECT a.id, b.id, e.position, e.required
    FROM unnest(%(edge_steps)s::int[], %(edge_dependencies)s::int[], %(edge_positions)s::int[],
                %(edge_required)s::bool[]) AS e(step, dependency, position, required)
    JOIN numbered AS a ON a.n = e.step
    JOIN numbered AS b ON b.n = e.dependency
)
SELECT inserted.*, workflow.id, txid_current() FROM inserted CROSS JOIN workflow
ORDER BY inserted.id
"""

# One run after existing ones (depends_on=): each of them is marked as having dependents, and
# so locked, which makes a dependency finishing at this moment either finish first (it is then
# seen finished here, and not waited for) or see this run's edge when it does. A dependency that
# already failed means the run is inserted CANCELLED, saying why; one that does not exist (never
# did, or pruned) means nothing is inserted at all, and no row comes back.
_RUN_INSERT_AFTER = f"""
dependencies AS (
    UPDATE autotask_task SET has_dependents = true
    WHERE id = ANY(%s::bigint[])
    RETURNING id, name, status
),
state AS (
    SELECT count(*) AS found,
           count(*) FILTER (WHERE status IN ('waiting', 'running')) AS unfinished,
           (array_agg('#' || id || ' (' || name || ') ended ' || upper(status) ORDER BY id)
               FILTER (WHERE status IN ('error', 'cancelled')))[1] AS failed
    FROM dependencies
),
inserted AS (
    INSERT INTO autotask_task
        (name, queue, args, kwargs, priority, max_attempts, run_at, status, unique_key,
         concurrency_key, concurrency_limit, rate_key, rate_limit, rate_period, waiting_for,
         finished_at, expires_at, error)
    SELECT %s, %s, %s::jsonb, %s::jsonb, %s, %s,
           CASE WHEN s.unfinished > 0 THEN {_WAITING_FOR_OTHERS}
                ELSE COALESCE(%s::timestamptz, statement_timestamp() + %s * interval '1 second')
           END,
           CASE WHEN s.failed IS NULL THEN 'waiting' ELSE 'cancelled' END,
           %s, %s, %s, %s, %s, %s, s.unfinished,
           CASE WHEN s.failed IS NOT NULL THEN now() END,
           CASE WHEN s.failed IS NOT NULL THEN now() + %s * interval '1 second' END,
           CASE WHEN s.failed IS NOT NULL THEN jsonb_build_object(
               'type', 'autotask.exceptions.DependencyFailed',
               'message', 'not run: run ' || s.failed || ', which it needed to succeed',
               'traceback', '') END
    FROM state AS s
    WHERE s.found = cardinality(%s::bigint[])
    RETURNING {RUN_COLUMNS}, txid_current()
),
edges AS (
    INSERT INTO autotask_dependency (run_id, depends_on_id, position, required, finished)
    SELECT i.id, d.id, row_number() OVER (ORDER BY d.id) - 1, true,
           i.status = 'cancelled' OR d.status NOT IN ('waiting', 'running')
    FROM inserted AS i CROSS JOIN dependencies AS d
)
SELECT * FROM inserted
"""
RUN_INSERT_AFTER = _LIMITS_OF_ONE + _SLOTS_PROVISION + "," + _RUN_INSERT_AFTER

# A workflow's steps, in order, each with whether it ends the workflow (no step of the same
# workflow depends on it): the handle's status and result are those of these.
WORKFLOW_SELECT = f"""
SELECT {RUN_COLUMNS}, NOT EXISTS (
    SELECT 1 FROM autotask_dependency AS d JOIN autotask_task AS x ON x.id = d.run_id
    WHERE d.depends_on_id = t.id AND x.workflow_id = t.workflow_id)
FROM autotask_task AS t WHERE t.workflow_id = %s ORDER BY t.id
"""

# Cancelling a workflow: its waiting steps at once (each kept for its task's ttl, from the
# caller's registry, else %(ttl)s), and its running ones asked to stop.
WORKFLOW_SET_CANCELLED_IF_WAITING = """
UPDATE autotask_task AS t
SET status = 'cancelled', finished_at = now(),
    expires_at = now() + COALESCE(
        (SELECT k.ttl FROM unnest(%(names)s::text[], %(ttls)s::float8[]) AS k(name, ttl)
         WHERE k.name = t.name), %(ttl)s) * interval '1 second'
WHERE t.workflow_id = %(workflow_id)s AND t.status = 'waiting'
RETURNING t.id
"""
WORKFLOW_REQUEST_CANCEL_IF_RUNNING = """
SELECT pg_notify('autotask_cancel', id::text) FROM autotask_task
WHERE workflow_id = %(workflow_id)s AND status = 'running'
"""

# health(): workflows with a step waiting or running, and the runs waiting for others.
WORKFLOW_COUNT_UNFINISHED = """
SELECT count(DISTINCT workflow_id), count(*) FILTER (WHERE waiting_for > 0)
FROM autotask_task WHERE status IN ('waiting', 'running')
  AND (workflow_id IS NOT NULL OR waiting_for > 0)
"""

RUN_SELECT = f"SELECT {RUN_COLUMNS} FROM autotask_task WHERE id = %s"
# With the call's arguments (django.tasks' TaskResult has them).
RUN_SELECT_WITH_CALL = (
    f"SELECT {RUN_COLUMNS}, args::text, kwargs::text FROM autotask_task WHERE id = %s"
)

# Cancel: a waiting run never runs; a running one is asked to stop (its runtime listens on
# autotask_cancel and ends it CANCELLED); a finished one stays as it is.
RUN_SET_CANCELLED_IF_WAITING = f"""
UPDATE autotask_task
SET status = 'cancelled', finished_at = now(), expires_at = now() + %s * interval '1 second'
WHERE id = %s AND status = 'waiting'
RETURNING {RUN_COLUMNS}
"""

RUN_REQUEST_CANCEL_IF_RUNNING = """
SELECT pg_notify('autotask_cancel', id::text) FROM autotask_task
WHERE id = %s AND status = 'running'
"""

# A run someone waits on (a handle's updates(), the monitor's run page): the status trigger
# NOTIFYs its changes from now on (migration 0013); never cleared, since the rows are few.
# Already watched rows are not written again (nor locked). The mark holds the row's lock for a
# moment, and a claim meeting it skips the run and backs off: so a waiting run's queue is woken
# once the mark commits, or the run would start only when that back-off ends.
RUN_SET_WATCHED_MANY = """
WITH marked AS (
    UPDATE autotask_task SET watched = true
    WHERE id = ANY(%s) AND NOT watched
    RETURNING queue, status
)
SELECT pg_notify('autotask', q.queue)
FROM (SELECT DISTINCT queue FROM marked WHERE status = 'waiting') AS q
"""

# Retry by hand (the admin, the monitor): a failed or cancelled run waits again, with a fresh
# set of attempts; its errors so far are kept.
# Both wake the workers of the runs' queues, as an insert's trigger does (PostgreSQL sends one
# notification per distinct queue).
RUN_SET_WAITING_IF_FAILED_MANY = """
WITH retried AS (
    UPDATE autotask_task AS t
    SET status = 'waiting', attempts = 0, run_at = now(), started_at = NULL,
        finished_at = NULL, expires_at = NULL, worker_id = NULL, error = NULL
    WHERE id = ANY(%(ids)s) AND status IN ('error', 'cancelled')
      -- Not a step cancelled because a run it needed failed: it would run without its inputs.
      AND NOT COALESCE(waiting_for > 0, false)
      -- A unique run waits again only if no run with its key waits or runs (the partial
      -- unique index would refuse the whole statement), and only one per key.
      AND (unique_key IS NULL OR (
          NOT EXISTS (SELECT 1 FROM autotask_task AS o WHERE o.unique_key = t.unique_key
                      AND o.status IN ('waiting', 'running'))
          AND id = (SELECT min(s.id) FROM autotask_task AS s WHERE s.id = ANY(%(ids)s)
                    AND s.unique_key = t.unique_key AND s.status IN ('error', 'cancelled'))))
    RETURNING id, queue
)
SELECT id, pg_notify('autotask', queue) FROM retried
"""

# Run now: a waiting run that was due later is due at once (not one waiting for others).
RUN_SET_DUE_NOW_IF_WAITING_MANY = """
WITH due AS (
    UPDATE autotask_task SET run_at = now()
    WHERE id = ANY(%s) AND status = 'waiting' AND run_at > now()
      AND NOT COALESCE(waiting_for > 0, false)
    RETURNING id, queue
)
SELECT id, pg_notify('autotask', queue) FROM due
"""

# The planner's estimate of the number of runs (the admin's changelist: no count(*) over
# millions of rows); -1 before the table was ever analysed.
RUN_COUNT_ESTIMATE = "SELECT reltuples::bigint FROM pg_class WHERE oid = 'autotask_task'::regclass"

# django-async's deschedule: every waiting run of a task with these arguments.
RUN_SET_CANCELLED_IF_WAITING_MATCHING = """
UPDATE autotask_task
SET status = 'cancelled', finished_at = now(), expires_at = now() + %s * interval '1 second'
WHERE name = %s AND args = %s::jsonb AND kwargs = %s::jsonb AND status = 'waiting'
RETURNING id
"""

TRANSACTION_CURRENT = "SELECT txid_current_if_assigned()"

# --- runs: what the runtime does to them ---

# A paused queue's runs are not claimed, and do not count as due (they would look locked, and
# be polled for). Read from the table at every claim, so a pause holds at once everywhere. As an
# anti-join it costs the claim next to nothing (measured: 3,250 vs 3,308 rows claimed/s); an
# ARRAY of the paused ones, or one passed in, changed the plan and cost a third or more.
_NOT_PAUSED = """NOT EXISTS (SELECT 1 FROM autotask_queue AS q
                  WHERE q.name = autotask_task.queue AND q.paused)"""

# A limited run is a candidate only while its keys seem to have a free slot and token: the
# scan passes over a full key's runs instead of filling the claim's LIMIT with them, and the
# next-due query does not count them as due. Read from the statement's snapshot, so it is only
# a filter; what enforces the limit is the locking of the slot rows themselves, below. A key has
# a free token if its oldest one is free: one probe of the index, where an EXISTS was planned
# as a scan of the key's tokens, in use ones first (measured: 19 of a claim's 27 ms).
_WITHIN_LIMITS = """(concurrency_key IS NULL OR EXISTS (
          SELECT 1 FROM autotask_slot AS s
          WHERE s.kind = 'concurrency' AND s.key = autotask_task.concurrency_key
            AND s.run_id IS NULL AND s.slot <= autotask_task.concurrency_limit))
      AND (rate_key IS NULL OR (
          SELECT s.taken_at IS NULL
                 OR s.taken_at <= now() - autotask_task.rate_period * interval '1 second'
          FROM autotask_slot AS s
          WHERE s.kind = 'rate' AND s.key = autotask_task.rate_key AND s.run_id IS NULL
            AND s.slot <= autotask_task.rate_limit
          ORDER BY s.taken_at NULLS FIRST LIMIT 1))"""

# As many runs as there are free slots, in one statement. MATERIALIZED keeps the locking
# subquery from being inlined into the UPDATE, where SKIP LOCKED would lose its meaning.
# Arguments come back as text, decoded run by run: one undecodable row fails alone. Due by
# statement_timestamp(), the clock run_at is set by, so that a claim inside a transaction (the
# testing helper's, in a test's) sees runs enqueued earlier in it as due.
#
# Limits: the candidates' keys lock as many of their free slot and token rows as they have
# candidates, FOR UPDATE SKIP LOCKED, and the k-th candidate of a key (in claim order) gets its
# k-th locked row; only candidates that got a row for each of their keys are claimed, and only
# their rows are taken. A row another claim holds is skipped, and a row taken since this
# statement's snapshot fails the re-check of its WHERE when locked (READ COMMITTED re-reads a
# locked row's newest version): two claims never take one row, so no key exceeds its limit,
# however many processes claim at once, without a lock that makes one claim wait for another.
# Candidates left without a row stay waiting, their row locks gone at commit. Free rows are
# found through a partial index of the rows no run holds, tokens oldest first, so a key's rows
# in use are never stepped over (measured: searched in slot order, a key of 100,000 slots
# claimed 499 runs/s, 50 at a time, its used slots stepped over by every claim). A token is taken
# at now(), the clock started_at is set by (statement_timestamp() can be a few milliseconds
# later, even in the first statement of a transaction), so that the starts of a key's runs, as
# their rows show them, are never more than its rate in any window.
_RUN_CLAIM_MANY = """
WITH candidates AS MATERIALIZED (
    SELECT id, priority, run_at, concurrency_key, concurrency_limit, rate_key, rate_limit,
           rate_period
    FROM autotask_task
    WHERE status = 'waiting' AND run_at <= statement_timestamp(){queue_filter}
      AND {not_paused}
      AND {within_limits}
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
),
ranked AS (
    SELECT c.id, c.concurrency_key, c.rate_key,
           row_number() OVER (PARTITION BY c.concurrency_key
                              ORDER BY c.priority DESC, c.run_at, c.id) AS concurrency_rank,
           row_number() OVER (PARTITION BY c.rate_key
                              ORDER BY c.priority DESC, c.run_at, c.id) AS rate_rank
    FROM candidates AS c
),
wanted AS (
    SELECT 'concurrency' AS kind, concurrency_key AS key, count(*) AS runs,
           min(concurrency_limit) AS n, NULL::float8 AS period
    FROM candidates WHERE concurrency_key IS NOT NULL GROUP BY concurrency_key
    UNION ALL
    SELECT 'rate', rate_key, count(*), min(rate_limit), max(rate_period)
    FROM candidates WHERE rate_key IS NOT NULL GROUP BY rate_key
),
free AS MATERIALIZED (
    SELECT f.id, w.kind, w.key,
           row_number() OVER (PARTITION BY w.kind, w.key ORDER BY f.taken_at NULLS FIRST) AS rank
    FROM wanted AS w, LATERAL (
        SELECT s.id, s.taken_at FROM autotask_slot AS s
        WHERE s.kind = w.kind AND s.key = w.key AND s.run_id IS NULL AND s.slot <= w.n
          AND (s.kind = 'concurrency' OR s.taken_at IS NULL
               OR s.taken_at <= now() - w.period * interval '1 second')
        ORDER BY s.taken_at NULLS FIRST
        LIMIT w.runs
        FOR UPDATE SKIP LOCKED
    ) AS f
),
assigned AS MATERIALIZED (
    SELECT r.id, cs.id AS concurrency_slot, rs.id AS rate_slot
    FROM ranked AS r
    LEFT JOIN free AS cs ON cs.kind = 'concurrency' AND cs.key = r.concurrency_key
                            AND cs.rank = r.concurrency_rank
    LEFT JOIN free AS rs ON rs.kind = 'rate' AND rs.key = r.rate_key AND rs.rank = r.rate_rank
    WHERE (r.concurrency_key IS NULL OR cs.id IS NOT NULL)
      AND (r.rate_key IS NULL OR rs.id IS NOT NULL)
),
taken AS (
    UPDATE autotask_slot AS s
    SET run_id = CASE WHEN s.kind = 'concurrency' THEN a.run_id END, taken_at = now()
    FROM (SELECT id AS run_id, concurrency_slot AS slot_id FROM assigned
          WHERE concurrency_slot IS NOT NULL
          UNION ALL
          SELECT id, rate_slot FROM assigned WHERE rate_slot IS NOT NULL) AS a
    WHERE s.id = a.slot_id
)
UPDATE autotask_task AS t
{claim}
FROM assigned
WHERE t.id = assigned.id
{claimed}
"""
# Settings for the plain claim. The claim function of migration 0015 carries them itself
# (RUN_CLAIM_MANY_BY_FUNCTION); where the database lacks it, they are sent with the statement
# (one message, one round trip, but planned at every claim) and hold for it alone (SET LOCAL,
# in the implicit transaction of the message).
# enable_sort: a claim must walk its index in order and stop after LIMIT rows; when the
# statistics see few waiting runs the planner may instead fetch every due run and sort them.
# That happens in production, not only after a TRUNCATE: the last ANALYZE saw a table of
# finished runs (kept for their ttl), and the burst of waiting ones since is below autovacuum's
# 10 % threshold. Measured on 20,000 due runs: 17 ms a claim of 10 (a sort of 18,500 rows), a
# drain of 774 jobs/s instead of 2,400. Not for the limited claim: it needs sorts of its own
# (its window functions), and with sorts disabled it was planned as nested loops taking 1.3 s
# (it keeps the risk: see the README).
# synchronous_commit: the claim's commit returns without waiting for its WAL to reach disk. A
# claim lost in a PostgreSQL crash (not a restart) leaves its runs waiting, so they run again,
# which at-least-once allows, maybe while their first execution still goes on (README,
# Reliability); no finish can outlive its claim, since a finish is durable and flushing its
# commit flushes the WAL before it, the claim's included. Enqueues and finishes stay durable.
# Measured, 10,000 no-ops, 4-5 interleaved rounds: async 4,198 -> 4,383 jobs/s (medians), sync
# 2,644 -> 2,910.
RUN_CLAIM_SETTINGS = "SET LOCAL enable_sort = off; SET LOCAL synchronous_commit = off"
# The claim of a process none of whose tasks has a limit (registry.has_limits()): the same
# without the limits' part, which costs the statement about 40 % even when no run has a limit
# (measured: 3,264 vs 2,032 rows claimed per second, 4 at a time; planning 0.19 vs 0.56 ms).
# It leaves limited runs alone (they are of tasks its code does not have, or has without the
# limit: a deploy in progress); a worker switches to the limited claim for good once limits
# are in use in the database (sql.SLOT_EXISTS), so such runs are never stranded.
_RUN_CLAIM_MANY_PLAIN = """
WITH claimed AS MATERIALIZED (
    SELECT id FROM autotask_task
    WHERE status = 'waiting' AND run_at <= statement_timestamp(){queue_filter}
      AND {not_paused} AND concurrency_key IS NULL AND rate_key IS NULL
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE autotask_task AS t
{claim}
FROM claimed
WHERE t.id = claimed.id
{claimed}
"""
_RUN_CLAIM_SET = """SET status = 'running', attempts = t.attempts + 1, worker_id = %(worker_id)s,
    worker_ids = t.worker_ids || to_jsonb(%(worker_id)s::text),
    started_at = now(), finished_at = NULL"""
_RUN_CLAIM_RETURNING = """RETURNING t.id, t.name, t.args::text, t.kwargs::text, t.attempts,
          t.max_attempts, t.postpones, extract(epoch FROM now() - t.enqueued_at)::float8"""
_ANY_QUEUE = ""
_IN_QUEUES = " AND queue = ANY(%(queues)s)"
RUN_CLAIM_MANY_ANY_QUEUE = _RUN_CLAIM_MANY_PLAIN.format(
    queue_filter=_ANY_QUEUE, claim=_RUN_CLAIM_SET, claimed=_RUN_CLAIM_RETURNING,
    not_paused=_NOT_PAUSED,
)  # fmt: skip
RUN_CLAIM_MANY_IN_QUEUES = _RUN_CLAIM_MANY_PLAIN.format(
    queue_filter=_IN_QUEUES, claim=_RUN_CLAIM_SET, claimed=_RUN_CLAIM_RETURNING,
    not_paused=_NOT_PAUSED,
)  # fmt: skip
RUN_CLAIM_MANY_LIMITED_ANY_QUEUE = _RUN_CLAIM_MANY.format(
    queue_filter=_ANY_QUEUE, claim=_RUN_CLAIM_SET, claimed=_RUN_CLAIM_RETURNING,
    not_paused=_NOT_PAUSED, within_limits=_WITHIN_LIMITS,
)  # fmt: skip
RUN_CLAIM_MANY_LIMITED_IN_QUEUES = _RUN_CLAIM_MANY.format(
    queue_filter=_IN_QUEUES, claim=_RUN_CLAIM_SET, claimed=_RUN_CLAIM_RETURNING,
    not_paused=_NOT_PAUSED, within_limits=_WITHIN_LIMITS,
)  # fmt: skip
# The plain claim through its function (migration 0015: the same statements, with the same
# settings, planned once per session instead of at every claim). p_queues NULL: every queue.
RUN_CLAIM_MANY_BY_FUNCTION = """
SELECT * FROM autotask_claim_many(%(limit)s::int, %(worker_id)s::uuid, %(queues)s::text[])
"""
# One run by id, due or not (AUTOTASK_EAGER runs what was just enqueued, limits or not), but
# not one still waiting for others.
RUN_CLAIM_ONE_IF_WAITING = f"""
UPDATE autotask_task AS t
{_RUN_CLAIM_SET}
WHERE t.id = %(id)s AND t.status = 'waiting' AND NOT COALESCE(t.waiting_for > 0, false)
{_RUN_CLAIM_RETURNING}
"""

# Seconds until a waiting run may be claimed (negative: now), NULL when none waits: the earliest
# run_at among runs not held back by a full key, or the moment a rate token frees for a key that
# has due runs waiting for one (a freed concurrency slot NOTIFYs instead: see the migration).
# ORDER BY ... LIMIT 1, not min(): with the filters, min() would aggregate every waiting row
# instead of stopping at the first one the index yields.
_RUN_SECONDS_UNTIL_DUE = """
SELECT extract(epoch FROM least(
    (SELECT run_at FROM autotask_task
     WHERE status = 'waiting'{queue_filter} AND {not_paused}
       AND (run_at > statement_timestamp() OR {within_limits})
     ORDER BY run_at LIMIT 1),
    (SELECT min(s.taken_at + k.rate_period * interval '1 second')
     FROM (SELECT DISTINCT rate_key, rate_limit, rate_period FROM autotask_task
           WHERE status = 'waiting' AND rate_key IS NOT NULL
             AND run_at <= statement_timestamp(){queue_filter} AND {not_paused}) AS k
     JOIN autotask_slot AS s
       ON s.kind = 'rate' AND s.key = k.rate_key AND s.slot <= k.rate_limit
     WHERE s.taken_at + k.rate_period * interval '1 second' > statement_timestamp())
) - clock_timestamp())
"""
# Without limits (see _RUN_CLAIM_MANY_PLAIN): the earliest run_at.
_RUN_SECONDS_UNTIL_DUE_PLAIN = """
SELECT extract(epoch FROM run_at - clock_timestamp())
FROM autotask_task WHERE status = 'waiting'{queue_filter} AND {not_paused}
ORDER BY run_at LIMIT 1
"""
RUN_SECONDS_UNTIL_DUE_ANY_QUEUE = _RUN_SECONDS_UNTIL_DUE_PLAIN.format(
    queue_filter=_ANY_QUEUE, not_paused=_NOT_PAUSED
)
RUN_SECONDS_UNTIL_DUE_IN_QUEUES = _RUN_SECONDS_UNTIL_DUE_PLAIN.format(
    queue_filter=_IN_QUEUES, not_paused=_NOT_PAUSED
)
RUN_SECONDS_UNTIL_DUE_LIMITED_ANY_QUEUE = _RUN_SECONDS_UNTIL_DUE.format(
    queue_filter=_ANY_QUEUE, not_paused=_NOT_PAUSED, within_limits=_WITHIN_LIMITS
)
RUN_SECONDS_UNTIL_DUE_LIMITED_IN_QUEUES = _RUN_SECONDS_UNTIL_DUE.format(
    queue_filter=_IN_QUEUES, not_paused=_NOT_PAUSED, within_limits=_WITHIN_LIMITS
)

# The outcomes of many runs, whatever each is, in one statement (River's JobSetStateIfRunningMany):
# 'done' keeps its result, 'error' its error, both get finished_at and expires_at = now + ttl;
# 'waiting' (a retry) keeps the error as the last one seen and is due again after ``delay``.
# Every error is also appended to ``errors``, one per failed attempt; a 'done' run keeps those
# of earlier attempts. A postponed run waits again without the attempt counting against it.
# Returns the ids that were still ours.
# The outcomes come as one JSON array of rows (runs.write_params): PostgreSQL parses it once,
# where seven arrays cost psycopg about 65 us to dump for a batch of 10. A result and an error
# come wrapped in a list: [value], or [] for none, so that a task's None (JSON null) and no
# result at all (SQL NULL) stay apart: e->2->0 is NULL only for [] ('null'::jsonb -> 0 would
# be JSON null: PostgreSQL reads a scalar as a one-element array there).
RUN_SET_STATUS_IF_RUNNING_MANY = """
UPDATE autotask_task AS t
SET status = o.status,
    result = o.result,
    error = COALESCE(o.error, t.error),
    errors = CASE WHEN o.error IS NULL THEN t.errors
                  ELSE t.errors || jsonb_build_array(o.error) END,
    attempts = t.attempts - o.postponed::int,
    postpones = t.postpones + o.postponed::int,
    finished_at = CASE WHEN o.status = 'waiting' THEN t.finished_at ELSE now() END,
    expires_at = CASE WHEN o.status = 'waiting' THEN t.expires_at
                      ELSE now() + o.ttl * interval '1 second' END,
    run_at = CASE WHEN o.status = 'waiting'
                  THEN statement_timestamp() + o.delay * interval '1 second'
                  ELSE t.run_at END,
    worker_id = CASE WHEN o.status = 'waiting' THEN NULL ELSE t.worker_id END
FROM (SELECT (e->>0)::bigint AS id, e->>1 AS status, e->2->0 AS result, e->3->0 AS error,
             (e->>4)::float8 AS ttl, (e->>5)::float8 AS delay, (e->>6)::bool AS postponed
      FROM jsonb_array_elements(%(outcomes)s::jsonb) AS e) AS o
WHERE t.id = o.id AND t.status = 'running' AND t.worker_id = %(worker_id)s
RETURNING t.id
"""

# Shutdown: the worker's unfinished runs go back to waiting; the interrupted attempt is not
# counted. By worker rather than by id, so a run claimed in the last instant is not missed.
RUN_SET_WAITING_IF_RUNNING_ON_WORKER = """
UPDATE autotask_task
SET status = 'waiting', attempts = greatest(attempts - 1, 0), worker_id = NULL,
    started_at = NULL
WHERE status = 'running' AND worker_id = %s
"""

# A rescue: running runs whose worker has no row any more (its heartbeat went stale, or it left
# without putting them back) wait again if attempts remain (the lost attempt counts), else end
# in ERROR saying the worker was lost, expiring after their task's ttl (the leader's registry;
# %(ttl)s for tasks it does not know). The error is kept either way, as the last one seen. Only
# runs started before the timeout: a worker taken for lost keeps what it claimed since.
RUN_RESCUE_IF_WORKER_GONE = """
UPDATE autotask_task AS t
SET status = CASE WHEN t.attempts < t.max_attempts THEN 'waiting' ELSE 'error' END,
    error = jsonb_build_object(
        'type', 'autotask.exceptions.WorkerLost',
        'message', 'the worker running it (' || t.worker_id::text || ') was lost: '
                   || 'no heartbeat for ' || %(timeout)s::float8 || ' s',
        'traceback', ''),
    finished_at = CASE WHEN t.attempts < t.max_attempts THEN NULL ELSE now() END,
    expires_at = CASE WHEN t.attempts < t.max_attempts THEN NULL
                      ELSE now() + COALESCE(
                          (SELECT k.ttl FROM unnest(%(names)s::text[], %(ttls)s::float8[])
                                             AS k(name, ttl) WHERE k.name = t.name),
                          %(ttl)s) * interval '1 second' END,
    run_at = CASE WHEN t.attempts < t.max_attempts THEN now() ELSE t.run_at END,
    worker_id = NULL
WHERE t.status = 'running'
  AND t.started_at < now() - %(timeout)s * interval '1 second'
  AND NOT EXISTS (SELECT 1 FROM autotask_worker AS w WHERE w.id = t.worker_id)
RETURNING t.id, t.status
"""

# A finished run that a run still waiting for others depends on is kept, whatever its ttl:
# that run is to be given its result. (An index probe, for runs with dependents only.)
_NOT_AWAITED = """(NOT has_dependents OR NOT EXISTS (
        SELECT 1 FROM autotask_dependency AS d JOIN autotask_task AS x ON x.id = d.run_id
        WHERE d.depends_on_id = autotask_task.id AND x.status = 'waiting' AND x.waiting_for > 0))"""

# Pruning, a batch at a time: finished runs past their expires_at.
RUN_DELETE_EXPIRED_BATCH = f"""
DELETE FROM autotask_task
WHERE id IN (
    SELECT id FROM autotask_task
    WHERE status IN ('done', 'error', 'cancelled') AND expires_at < now() AND {_NOT_AWAITED}
    ORDER BY expires_at
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
"""

# manage.py autotask_prune: finished runs in the given statuses that finished more than
# %(older_than)s seconds ago, or (older_than NULL) whose ttl has passed; a batch at a time.
_RUN_FINISHED_MATCHING = f"""
    status = ANY(%(statuses)s) AND {_NOT_AWAITED}
    AND CASE WHEN %(older_than)s::float8 IS NULL THEN expires_at < now()
             ELSE finished_at < now() - %(older_than)s::float8 * interval '1 second' END
"""
RUN_COUNT_FINISHED_MATCHING = f"SELECT count(*) FROM autotask_task WHERE {_RUN_FINISHED_MATCHING}"
RUN_DELETE_FINISHED_MATCHING_BATCH = f"""
DELETE FROM autotask_task
WHERE id IN (
    SELECT id FROM autotask_task WHERE {_RUN_FINISHED_MATCHING}
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""

# After a claim whose answer was lost (the connection died under it), the claim may still have
# committed: this worker's running runs that its executor does not hold go back to waiting,
# their attempt not counted, instead of staying 'running' under a live worker for ever.
RUN_SET_WAITING_IF_RUNNING_ON_WORKER_EXCEPT = """
UPDATE autotask_task
SET status = 'waiting', attempts = greatest(attempts - 1, 0), worker_id = NULL,
    started_at = NULL
WHERE status = 'running' AND worker_id = %s AND NOT (id = ANY(%s::bigint[]))
"""

# --- limit slots: concurrency slots and rate tokens (see _RUN_CLAIM_MANY) ---

# The rescuer's safety net: a concurrency slot held by a run that is not running (its trigger
# was disabled, say during a restore, or the table truncated) is freed, or its key would stay
# full for ever. Only slots taken longer ago than the timeout: a slot's newest version (which
# the UPDATE re-checks) that old was committed before this statement's snapshot, so the run's
# status read here is current.
# Whether limits have ever been used here (slots are never deleted): from then on every worker
# claims with the limited statement, whatever its own tasks.
SLOT_EXISTS = "SELECT EXISTS (SELECT 1 FROM autotask_slot)"

# The rescuer's other safety net: keys of waiting runs that have no rows at all (the table was
# truncated, or restored without them) get them again, or their runs would wait for ever.
SLOT_INSERT_MISSING = """
INSERT INTO autotask_slot (kind, key, slot, period)
SELECT l.kind, l.key, generate_series(1, l.n), l.period
FROM (
    SELECT 'concurrency' AS kind, concurrency_key AS key, max(concurrency_limit) AS n,
           NULL::float8 AS period
    FROM autotask_task WHERE status = 'waiting' AND concurrency_key IS NOT NULL
    GROUP BY concurrency_key
    UNION ALL
    SELECT 'rate', rate_key, max(rate_limit), max(rate_period)
    FROM autotask_task WHERE status = 'waiting' AND rate_key IS NOT NULL GROUP BY rate_key
) AS l
WHERE NOT EXISTS (SELECT 1 FROM autotask_slot AS s WHERE s.kind = l.kind AND s.key = l.key)
ORDER BY 1, 2, 3
ON CONFLICT (kind, key, slot) DO NOTHING
RETURNING key
"""

SLOT_RELEASE_IF_RUN_NOT_RUNNING = """
UPDATE autotask_slot AS s SET run_id = NULL
WHERE s.kind = 'concurrency' AND s.run_id IS NOT NULL
  AND s.taken_at < now() - %s * interval '1 second'
  AND NOT EXISTS (SELECT 1 FROM autotask_task AS t WHERE t.id = s.run_id AND t.status = 'running')
RETURNING s.key
"""

# health() and the commands: each limited key with its size (the rows written: the largest
# limit seen), how much of it is in use (slots held; tokens taken within their window) and its
# runs waiting, for keys in use or waited on (size 0: a key whose rows are missing).
SLOT_COUNT_BY_KEY = """
WITH waiting AS (
    SELECT 'concurrency' AS kind, concurrency_key AS key, count(*) AS runs FROM autotask_task
    WHERE status = 'waiting' AND concurrency_key IS NOT NULL GROUP BY concurrency_key
    UNION ALL
    SELECT 'rate', rate_key, count(*) FROM autotask_task
    WHERE status = 'waiting' AND rate_key IS NOT NULL GROUP BY rate_key
),
slots AS (
    SELECT kind, key, count(*) AS size, max(period) AS period,
           count(*) FILTER (WHERE CASE WHEN kind = 'concurrency' THEN run_id IS NOT NULL
                                       ELSE taken_at > now() - period * interval '1 second'
                                  END) AS in_use
    FROM autotask_slot GROUP BY kind, key
)
SELECT COALESCE(s.kind, w.kind), COALESCE(s.key, w.key), COALESCE(s.size, 0),
       COALESCE(s.in_use, 0), s.period, COALESCE(w.runs, 0)
FROM slots AS s FULL JOIN waiting AS w ON w.kind = s.kind AND w.key = s.key
WHERE s.in_use > 0 OR w.runs > 0
ORDER BY 1, 2
"""

# --- workers: one row per running runtime ---

WORKER_INSERT = """
INSERT INTO autotask_worker (id, host, pid, queues, concurrency, started_at, heartbeat_at)
VALUES (%s, %s, %s, %s::jsonb, %s, now(), now())
"""

WORKER_HEARTBEAT = "UPDATE autotask_worker SET heartbeat_at = now() WHERE id = %s"

WORKER_HEARTBEAT_AGE = """
SELECT extract(epoch FROM now() - heartbeat_at) FROM autotask_worker WHERE id = %s
"""

WORKER_DELETE = "DELETE FROM autotask_worker WHERE id = %s"

# The leader's half of a rescue: workers silent for longer than the timeout are gone.
WORKER_DELETE_STALE = """
DELETE FROM autotask_worker
WHERE heartbeat_at < now() - %s * interval '1 second'
RETURNING id, host, pid
"""

WORKER_SET_LEADER = "UPDATE autotask_worker SET leader = %s WHERE id = %s"

# health(): runs per queue and status, with how many waiting ones are due and the oldest due
# one's age (a scan of the table: a health check runs seconds apart, not per request). A
# limited run whose key is full waits on purpose: it is due only while its key has room (and
# counted with its key, SLOT_COUNT_BY_KEY), or a rate-limited backlog would look stuck.
_RUN_DUE_HERE = f"status = 'waiting' AND run_at <= now() AND {_WITHIN_LIMITS}"
RUN_COUNT_BY_QUEUE_AND_STATUS = f"""
SELECT queue, status, count(*),
       count(*) FILTER (WHERE {_RUN_DUE_HERE}),
       extract(epoch FROM now() - min(run_at) FILTER (WHERE {_RUN_DUE_HERE}))::float8
FROM autotask_task GROUP BY queue, status ORDER BY queue, status
"""
# The same without the done runs, which are most of a table that has run a while and most of
# the statement's time (546 of 836 ms over 1,000,000 rows): an index scan of the others.
RUN_COUNT_NOT_DONE_BY_QUEUE_AND_STATUS = f"""
SELECT queue, status, count(*),
       count(*) FILTER (WHERE {_RUN_DUE_HERE}),
       extract(epoch FROM now() - min(run_at) FILTER (WHERE {_RUN_DUE_HERE}))::float8
FROM autotask_task WHERE status IN ('waiting', 'running', 'error', 'cancelled')
GROUP BY queue, status ORDER BY queue, status
"""

# The monitor's chart: runs of each queue that ended done or error, per minute of the last
# %(minutes)s (through the index of finished runs: 3 ms, not a scan of the table).
RUN_FINISHED_PER_MINUTE = """
SELECT extract(epoch FROM date_trunc('minute', finished_at))::float8, queue, status, count(*)
FROM autotask_task
WHERE finished_at >= date_trunc('minute', now()) - %(minutes)s * interval '1 minute'
  AND status IN ('done', 'error')
GROUP BY 1, 2, 3 ORDER BY 1
"""

# The monitor's tasks page: per task and queue, runs that ended since %(since)s, how many
# failed, and percentiles of run time (started -> finished) and of wait (due -> started).
RUN_TIMINGS_BY_TASK = """
SELECT name, queue, count(*), count(*) FILTER (WHERE status = 'error'),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY run_seconds),
       max(run_seconds),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY wait_seconds),
       max(wait_seconds)
FROM (SELECT name, queue, status,
             extract(epoch FROM finished_at - started_at)::float8 AS run_seconds,
             greatest(extract(epoch FROM started_at - run_at)::float8, 0) AS wait_seconds
      FROM autotask_task
      WHERE finished_at >= %(since)s AND started_at IS NOT NULL
        AND status IN ('done', 'error')) AS finished
GROUP BY name, queue ORDER BY name, queue
"""

# health(): every worker row, with its heartbeat's age and how many runs it holds.
WORKER_SELECT_ALL = """
SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.started_at, w.heartbeat_at,
       extract(epoch FROM now() - w.heartbeat_at)::float8, w.leader,
       (SELECT count(*) FROM autotask_task AS t WHERE t.status = 'running' AND t.worker_id = w.id)
FROM autotask_worker AS w ORDER BY w.host, w.pid
"""

# The system check: the triggers that NOTIFY on inserts and status changes.
TRIGGER_NAMES_ON_RUNS = """
SELECT tgname FROM pg_trigger WHERE tgrelid = 'autotask_task'::regclass AND NOT tgisinternal
"""

# Whether anything would run a run enqueued now (for the warning under WSGI).
WORKER_EXISTS_LIVE = """
SELECT EXISTS (
    SELECT 1 FROM autotask_worker WHERE heartbeat_at > now() - %s * interval '1 second'
)
"""

# --- the leader: a session-level advisory lock on a connection of its own ---

# The key is b"autotask" read as a big-endian 64-bit integer.
LEADER_TRY_LOCK = "SELECT pg_try_advisory_lock(7022647215996892011)"
LEADER_UNLOCK = "SELECT pg_advisory_unlock(7022647215996892011)"
LEADER_ALIVE = "SELECT 1"

# The server's end of a dedicated connection: a session whose host vanished (power, network) is
# ended within about 25 s, and with it the leader's lock; not after the system's two hours.
# Sent as SET, not as startup options, which poolers such as pgbouncer refuse.
SESSION_KEEPALIVES = (
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"
)

# --- schedules: one row per periodic or cron task, the clock that survives restarts ---

SCHEDULE_COLUMNS = "name, spec, next_run_at, last_run_at, paused, orphaned"

# A process's schedules, at its start: new ones get their first run time; a changed spec
# starts its clock again; an unchanged one keeps its next run (a restart resets nothing).
SCHEDULE_UPSERT_MANY = """
INSERT INTO autotask_schedule (name, spec, next_run_at, paused, orphaned)
SELECT s.name, s.spec, s.next_run_at, false, false
FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS s(name, spec, next_run_at)
ON CONFLICT (name) DO UPDATE
SET spec = EXCLUDED.spec,
    orphaned = false,
    next_run_at = CASE WHEN autotask_schedule.spec = EXCLUDED.spec
                       THEN autotask_schedule.next_run_at ELSE EXCLUDED.next_run_at END
"""

# The leader, on taking over: schedules whose task its code does not have are not run.
SCHEDULE_SET_ORPHANED = """
UPDATE autotask_schedule SET orphaned = NOT (name = ANY(%(names)s))
WHERE orphaned IS DISTINCT FROM NOT (name = ANY(%(names)s))
"""

SCHEDULE_SELECT_DUE = """
SELECT name, next_run_at, now() FROM autotask_schedule
WHERE name = ANY(%s) AND NOT paused AND NOT orphaned AND next_run_at <= now()
ORDER BY next_run_at
"""

SCHEDULE_SECONDS_UNTIL_DUE = """
SELECT extract(epoch FROM min(next_run_at) - clock_timestamp()) FROM autotask_schedule
WHERE name = ANY(%s) AND NOT paused AND NOT orphaned
"""

# One tick, in one statement: the schedule moves on only from the tick this leader saw (two
# leaders for a moment advance it once), and the run is inserted only if it moved, keyed by
# the tick (ON CONFLICT: a tick is enqueued once, whatever happens), and only if no earlier
# tick of it still waits: behind busy workers, ticks do not pile up to run in a burst later.
SCHEDULE_TICK = """
WITH advanced AS (
    UPDATE autotask_schedule
    SET next_run_at = %(next_run_at)s, last_run_at = %(tick)s
    WHERE name = %(name)s AND next_run_at = %(tick)s AND NOT paused AND NOT orphaned
    RETURNING name
)
INSERT INTO autotask_task
    (name, queue, args, kwargs, priority, max_attempts, run_at, status, schedule_key)
SELECT advanced.name, %(queue)s, '[]', '{}', %(priority)s, %(max_attempts)s, now(),
       'waiting', %(schedule_key)s
FROM advanced
WHERE NOT EXISTS (
    SELECT 1 FROM autotask_task AS w
    WHERE w.name = advanced.name AND w.status = 'waiting' AND w.schedule_key IS NOT NULL
)
ON CONFLICT (schedule_key) WHERE schedule_key IS NOT NULL DO NOTHING
RETURNING id
"""

SCHEDULE_SELECT_ALL = f"SELECT {SCHEDULE_COLUMNS} FROM autotask_schedule ORDER BY name"

SCHEDULE_SET_PAUSED = f"""
UPDATE autotask_schedule SET paused = %s WHERE name = %s RETURNING {SCHEDULE_COLUMNS}
"""

# --- queues: paused or not ---

QUEUE_COLUMNS = "name, paused, changed_at"

# Pausing takes effect at every worker's next claim (the claim reads this table); resuming
# also wakes the queue's workers, as an insert does, for the runs that waited meanwhile.
QUEUE_SET_PAUSED = f"""
WITH changed AS (
    INSERT INTO autotask_queue (name, paused, changed_at) VALUES (%(name)s, %(paused)s, now())
    ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, changed_at = now()
    RETURNING {QUEUE_COLUMNS}
)
SELECT {QUEUE_COLUMNS}, CASE WHEN NOT paused THEN pg_notify('autotask', name) END FROM changed
"""

# Every queue that is paused, was ever paused, or has runs waiting or running, with those
# counts (waiting and running runs are found through the claim's and the rescue's indexes).
QUEUE_SELECT_ALL = """
SELECT COALESCE(q.name, r.queue), COALESCE(q.paused, false), q.changed_at,
       COALESCE(r.waiting, 0), COALESCE(r.running, 0)
FROM autotask_queue AS q
FULL JOIN (
    SELECT queue, count(*) FILTER (WHERE status = 'waiting') AS waiting,
           count(*) FILTER (WHERE status = 'running') AS running
    FROM autotask_task WHERE status IN ('waiting', 'running') GROUP BY queue
) AS r ON r.queue = q.name
ORDER BY 1
"""

# --- notifications (sent by the triggers in migrations/0001_initial.py) ---

WAKE_CHANNEL = "autotask"
STATUS_CHANNEL = "autotask_status"
CANCEL_CHANNEL = "autotask_cancel"  # sent by RUN_REQUEST_CANCEL_IF_RUNNING: a run id
LISTEN = "LISTEN {channel}"
