"""The one door to the tables for code outside the runtime: every read and write of a run.

Each operation comes as twins with the same name, Django-style (``insert_run`` /
``ainsert_run``). The sync one goes through Django's connection, so it joins the caller's
``transaction.atomic()`` and sees what that transaction wrote; the async one goes through the
runtime's pool (or, on any other event loop, that loop's own connections), never blocks the
caller's loop, and commits on its own. Both send the same statement from ``sql.py`` and read
its rows the same way, so they cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from . import conf, options, runtime, sql
from .exceptions import NotMigrated, RunDoesNotExist, ScheduleDoesNotExist, is_missing_table
from .runtime.runs import ClaimedRun, Outcome, write_params
from .runtime.worker import claim_statement
from .status import Status, TaskError

Params = Sequence[Any] | Mapping[str, Any]
_T = TypeVar("_T")


# NewRun and RunRecord are made for every run of a bulk enqueue, so they are not frozen: the
# setattr through object that a frozen dataclass's __init__ pays for each of 16 fields cost
# about 1.8 us an instance, a third of enqueue_many's Python time for the two. Nothing outside
# this module and the handles that copy a record's fields gets hold of either.
@dataclass(slots=True, kw_only=True)
class NewRun:
    """A run to insert: a task's name and options, its arguments already JSON text."""

    name: str
    queue: str
    args: str
    kwargs: str
    priority: int
    max_attempts: int
    run_at: datetime | None  # None: now + delay
    delay: float
    unique_key: str | None = None  # while a run with it waits or runs, that run is returned
    concurrency_key: str | None = None  # runs with one key run at most ``concurrency`` at once
    concurrency: int | None = None
    rate_key: str | None = None  # runs with one key start at most ``rate`` per ``rate_period``
    rate: int | None = None
    rate_period: float | None = None
    depends_on: tuple[int, ...] = ()  # ids of runs it is not due before (depends_on=)
    ttl: float = conf.DEFAULT_TTL  # kept this long if born CANCELLED (a dependency failed)

    @property
    def limited(self) -> bool:
        return self.concurrency_key is not None or self.rate_key is not None

    def params(self) -> list[Any]:
        """The insert's parameters, in the order of its placeholders."""
        if self.depends_on:
            ids = list(self.depends_on)
            limits = self._limit_params()
            return [*limits, ids, *self._run_params(), *limits, self.ttl, ids]
        if self.limited:
            return [*self._limit_params(), *self._run_params(), *self._limit_params()]
        return self._run_params()

    def many_params(self) -> list[Any]:
        """A row of the many-runs insert's arrays (each array of one type: delay as a float)."""
        row = [*self._run_params(), *self._limit_params()]
        row[7] = float(self.delay)
        return row

    def _limit_params(self) -> list[Any]:
        return [self.concurrency_key, self.concurrency, self.rate_key, self.rate, self.rate_period]

    def _run_params(self) -> list[Any]:
        return [
            self.name,
            self.queue,
            self.args,
            self.kwargs,
            self.priority,
            self.max_attempts,
            self.run_at,
            self.delay,
            self.unique_key,
        ]


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """A run as its row says it is now (the columns of ``sql.RUN_COLUMNS``)."""

    id: int
    name: str
    queue: str
    status: Status
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    error: TaskError | None
    errors: list[TaskError]  # one per failed attempt, in order
    postpones: int
    worker_ids: list[str]  # the worker of each attempt, in order

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RunRecord:
        (id_, name, queue, status, priority, attempts, max_attempts, run_at, enqueued_at) = row[:9]
        started_at, finished_at, result, error, errors, postpones, worker_ids = row[9:16]
        return cls(
            id=id_,
            name=name,
            queue=queue,
            status=Status(status),
            priority=priority,
            attempts=attempts,
            max_attempts=max_attempts,
            run_at=run_at,
            enqueued_at=enqueued_at,
            started_at=started_at,
            finished_at=finished_at,
            result=None if result is None else json.loads(result),
            error=TaskError.from_json(None if error is None else json.loads(error)),
            errors=[e for e in map(TaskError.from_json, json.loads(errors or "[]")) if e],
            postpones=postpones,
            worker_ids=json.loads(worker_ids or "[]"),
        )


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A periodic or cron task's clock (the columns of ``sql.SCHEDULE_COLUMNS``)."""

    name: str
    spec: str
    next_run_at: datetime
    last_run_at: datetime | None
    paused: bool
    orphaned: bool  # its task is not in the leader's code, so it is not run


@contextlib.contextmanager
def _tables_required() -> Iterator[None]:
    """Using the tables before ``migrate`` says so, instead of a bare 'relation does not exist'."""
    try:
        yield
    except (DatabaseError, psycopg.Error) as exc:
        if is_missing_table(exc):
            raise NotMigrated() from exc
        raise


def _connection() -> BaseDatabaseWrapper:
    return connections[conf.database()]


def _fetchone(statement: str, params: Params) -> tuple[Any, ...] | None:
    with _tables_required(), _connection().cursor() as cursor:
        cursor.execute(statement, params)
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


def _fetchall(statement: str, params: Params) -> list[tuple[Any, ...]]:
    with _tables_required(), _connection().cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())


async def _afetchone(statement: str, params: Params) -> tuple[Any, ...] | None:
    with _tables_required():
        return await runtime.get().fetchone(statement, params)


async def _afetchall(statement: str, params: Params) -> list[tuple[Any, ...]]:
    with _tables_required():
        return await runtime.get().fetchall(statement, params)


def insert_run(run: NewRun) -> tuple[RunRecord, int | None]:
    """Insert one run; with the enqueuing transaction's id when inside ``atomic()``, else None."""
    statement = _insert_statement(run)
    row = _inserted(run, _fetchone(statement, run.params()))
    transaction = row[-1] if in_atomic_block() else None
    return _inserted_record(run, statement, row), transaction


async def ainsert_run(run: NewRun) -> RunRecord:
    statement = _insert_statement(run)
    row = await _afetchone(statement, run.params())
    return _inserted_record(run, statement, _inserted(run, row))


def _inserted_record(run: NewRun, statement: str, row: tuple[Any, ...]) -> RunRecord:
    if statement is sql.RUN_INSERT:  # it returns the id, run_at and enqueued_at
        return _new_record(run, row[0], row[1], row[2])
    return RunRecord.from_row(row)


def _inserted(run: NewRun, row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    if row is None:  # only a run after others is not inserted: one of them does not exist
        ids = ", ".join(f"#{run_id}" for run_id in run.depends_on)
        raise RunDoesNotExist(
            f"{run.name}: one of the runs it depends on ({ids}) does not exist (it may have "
            "been pruned); nothing was enqueued."
        )
    return row


def _insert_statement(run: NewRun) -> str:
    if run.depends_on:
        return sql.RUN_INSERT_AFTER
    if run.limited:
        return sql.RUN_INSERT_LIMITED if run.unique_key is None else sql.RUN_INSERT_LIMITED_UNIQUE
    return sql.RUN_INSERT if run.unique_key is None else sql.RUN_INSERT_UNIQUE


def _many_params(runs: Sequence[NewRun]) -> list[list[Any]]:
    return [list(column) for column in zip(*(run.many_params() for run in runs), strict=True)]


def _plain_params(runs: Sequence[NewRun]) -> dict[str, Any]:
    """The parameters of ``sql.RUN_INSERT_MANY_PLAIN``: each column as its one value, or as the
    list of its values if they differ (a JSON array for the arguments)."""
    params: dict[str, Any] = {"count": len(runs)}
    columns: list[tuple[str, str, list[Any]]] = [
        ("name", "names", [run.name for run in runs]),
        ("queue", "queues", [run.queue for run in runs]),
        ("priority", "priorities", [run.priority for run in runs]),
        ("max_attempts", "max_attemptses", [run.max_attempts for run in runs]),
        ("run_at", "run_ats", [run.run_at for run in runs]),
        # One array type: a delay may be given as an int.
        ("delay", "delays", [float(run.delay) for run in runs]),
    ]
    for column, many, values in columns:
        params[column], params[many] = _one_or_all(values)
    for column, many, texts in (
        ("args", "argses", [run.args for run in runs]),
        ("kwargs", "kwargses", [run.kwargs for run in runs]),
    ):
        one, every = _one_or_all(texts)
        params[column], params[many] = one, None if every is None else f"[{','.join(every)}]"
    return params


def _one_or_all(values: list[_T]) -> tuple[_T | None, list[_T] | None]:
    """A column's one value and None, or None and its values if they differ."""
    first = values[0]
    if all(value == first for value in values):
        return first, None
    return None, values


# sql.RUN_INSERT_MANY_PLAIN sends all the runs' arguments as one JSON value, and PostgreSQL
# caps a jsonb at 256 MB; RUN_INSERT_MANY sends them one text each (each capped alone). In
# characters, for UTF-8's 4 bytes a character at worst.
_PLAIN_ARGUMENTS_MAX = 60_000_000


def _is_plain(runs: Sequence[NewRun]) -> bool:
    """Whether ``sql.RUN_INSERT_MANY_PLAIN`` can insert these runs: no unique keys, no
    limits, and arguments that fit in one jsonb."""
    size = 0
    for run in runs:
        if run.unique_key is not None or run.limited:
            return False
        size += len(run.args) + len(run.kwargs)
    return size <= _PLAIN_ARGUMENTS_MAX


def _many_statement(runs: Sequence[NewRun], plain: bool) -> tuple[str, Params]:
    """The statement inserting ``runs`` and its parameters: the lighter one when it can do."""
    if any(run.depends_on for run in runs):
        raise ValueError("insert_runs() does not insert runs that depend on others")
    if plain:
        return sql.RUN_INSERT_MANY_PLAIN, _plain_params(runs)
    return sql.RUN_INSERT_MANY, _many_params(_distinct_keys(runs))


def _distinct_keys(runs: Sequence[NewRun]) -> list[NewRun]:
    """Runs to insert: of several with one unique_key, the first (one statement cannot insert
    and then update the same row)."""
    seen: set[str] = set()
    kept = []
    for run in runs:
        if run.unique_key is not None:
            if run.unique_key in seen:
                continue
            seen.add(run.unique_key)
        kept.append(run)
    return kept


def _records_in_order(
    runs: Sequence[NewRun], rows: list[tuple[Any, ...]], plain: bool
) -> list[RunRecord]:
    """One record per input run, in the input's order.

    Ids are drawn in the input's order, so the new rows, sorted by id, are the input's runs in
    turn; a keyed run that met a waiting or running run with its key gets that run's record.
    """
    if plain:
        ids, run_ats, enqueued_at, _ = rows[0]
        if run_ats is None:  # every run is due from its enqueue
            run_ats = [enqueued_at] * len(ids)
        return [
            _new_record(run, run_id, run_at, enqueued_at)
            for run, run_id, run_at in zip(runs, ids, run_ats, strict=True)
        ]
    by_key = {row[-2]: RunRecord.from_row(row) for row in rows if row[-2] is not None}
    unkeyed = iter(
        sorted(
            (RunRecord.from_row(row) for row in rows if row[-2] is None),
            key=lambda record: record.id,
        )
    )
    return [by_key[run.unique_key] if run.unique_key is not None else next(unkeyed) for run in runs]


def _new_record(run: NewRun, run_id: int, run_at: datetime, enqueued_at: datetime) -> RunRecord:
    """The record of a run just inserted, from what was sent and what sql.RUN_INSERT or
    sql.RUN_INSERT_MANY_PLAIN returns (reading back every column would cost a third of the
    bulk rate, a tenth of a single enqueue's)."""
    return RunRecord(
        id=run_id,
        name=run.name,
        queue=run.queue,
        status=Status.WAITING,
        priority=run.priority,
        attempts=0,
        max_attempts=run.max_attempts,
        run_at=run_at,
        enqueued_at=enqueued_at,
        started_at=None,
        finished_at=None,
        result=None,
        error=None,
        errors=[],
        postpones=0,
        worker_ids=[],
    )


def insert_runs(runs: Sequence[NewRun]) -> tuple[list[RunRecord], int | None]:
    """Insert many runs in one statement (one NOTIFY per queue); a record per run, in order
    (a run whose unique_key is taken gets the record of the run that has it), and, inside
    ``atomic()``, the enqueuing transaction's id."""
    if not runs:
        return [], None
    plain = _is_plain(runs)
    rows = _fetchall(*_many_statement(runs, plain))
    transaction = rows[0][-1] if in_atomic_block() else None
    return _records_in_order(runs, rows, plain), transaction


async def ainsert_runs(runs: Sequence[NewRun]) -> list[RunRecord]:
    if not runs:
        return []
    plain = _is_plain(runs)
    rows = await _afetchall(*_many_statement(runs, plain))
    return _records_in_order(runs, rows, plain)


@dataclass(frozen=True, slots=True)
class WorkflowStep:
    """A run of a workflow to insert, and where it stands among the others."""

    run: NewRun
    waiting_for: int  # how many steps it depends on (0: it starts the workflow)
    has_dependents: bool
    result_arg: str | None  # "one", "list", or None: it is given no result


@dataclass(frozen=True, slots=True)
class WorkflowEdge:
    """``step`` is not due before ``dependency`` finished (steps by 1-based place)."""

    step: int
    dependency: int
    position: int  # the dependency's result's place in the list the step is given
    required: bool  # if the dependency does not end DONE, the step is cancelled


def _workflow_params(
    steps: Sequence[WorkflowStep], edges: Sequence[WorkflowEdge]
) -> dict[str, Any]:
    runs = [step.run for step in steps]
    (names, queues, args, kwargs, priorities, max_attempts, run_ats, delays, _) = (
        list(column) for column in zip(*(run._run_params() for run in runs), strict=True)
    )
    (concurrency_keys, concurrencies, rate_keys, rates, rate_periods) = (
        list(column) for column in zip(*(run._limit_params() for run in runs), strict=True)
    )
    return {
        "names": names,
        "queues": queues,
        "args": args,
        "kwargs": kwargs,
        "priorities": priorities,
        "max_attempts": max_attempts,
        "run_ats": run_ats,
        "delays": delays,
        "concurrency_keys": concurrency_keys,
        "concurrencies": concurrencies,
        "rate_keys": rate_keys,
        "rates": rates,
        "rate_periods": rate_periods,
        "waiting_for": [step.waiting_for for step in steps],
        "has_dependents": [step.has_dependents for step in steps],
        "result_args": [step.result_arg for step in steps],
        "edge_steps": [edge.step for edge in edges],
        "edge_dependencies": [edge.dependency for edge in edges],
        "edge_positions": [edge.position for edge in edges],
        "edge_required": [edge.required for edge in edges],
    }


def insert_workflow(
    steps: Sequence[WorkflowStep], edges: Sequence[WorkflowEdge]
) -> tuple[int, list[RunRecord], int | None]:
    """Insert a workflow in one statement: its id, a record per step in order, and the
    enqueuing transaction's id when inside ``atomic()`` (else None)."""
    rows = _fetchall(sql.WORKFLOW_INSERT, _workflow_params(steps, edges))
    transaction = rows[0][-1] if in_atomic_block() else None
    return rows[0][-2], [RunRecord.from_row(row) for row in rows], transaction


async def ainsert_workflow(
    steps: Sequence[WorkflowStep], edges: Sequence[WorkflowEdge]
) -> tuple[int, list[RunRecord]]:
    rows = await _afetchall(sql.WORKFLOW_INSERT, _workflow_params(steps, edges))
    return rows[0][-2], [RunRecord.from_row(row) for row in rows]


def _workflow(workflow_id: int, rows: list[tuple[Any, ...]]) -> list[tuple[RunRecord, bool]]:
    if not rows:
        raise RunDoesNotExist(f"No workflow with id {workflow_id} (it may have been pruned).")
    return [(RunRecord.from_row(row), bool(row[-1])) for row in rows]


def fetch_workflow(workflow_id: int) -> list[tuple[RunRecord, bool]]:
    """A workflow's steps in order, each with whether it ends the workflow; RunDoesNotExist if
    it has none (never had, or all were pruned)."""
    return _workflow(workflow_id, _fetchall(sql.WORKFLOW_SELECT, [workflow_id]))


async def afetch_workflow(workflow_id: int) -> list[tuple[RunRecord, bool]]:
    return _workflow(workflow_id, await _afetchall(sql.WORKFLOW_SELECT, [workflow_id]))


def _cancel_params(workflow_id: int, ttls: Mapping[str, float]) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "names": list(ttls),
        "ttls": list(ttls.values()),
        "ttl": conf.DEFAULT_TTL,
    }


def cancel_workflow(workflow_id: int, ttls: Mapping[str, float]) -> int:
    """Cancel a workflow's waiting steps and ask its running ones to stop; how many steps were
    cancelled or asked (``ttls``: how long to keep each task's cancelled rows)."""
    params = _cancel_params(workflow_id, ttls)
    cancelled = _fetchall(sql.WORKFLOW_SET_CANCELLED_IF_WAITING, params)
    return len(cancelled) + len(_fetchall(sql.WORKFLOW_REQUEST_CANCEL_IF_RUNNING, params))


async def acancel_workflow(workflow_id: int, ttls: Mapping[str, float]) -> int:
    params = _cancel_params(workflow_id, ttls)
    cancelled = await _afetchall(sql.WORKFLOW_SET_CANCELLED_IF_WAITING, params)
    return len(cancelled) + len(await _afetchall(sql.WORKFLOW_REQUEST_CANCEL_IF_RUNNING, params))


@dataclass(frozen=True, slots=True)
class WorkflowCount:
    """Workflows with a step waiting or running, and the runs waiting for other runs."""

    unfinished: int
    waiting_for_others: int


def workflow_counts() -> WorkflowCount:
    row = _fetchone(sql.WORKFLOW_COUNT_UNFINISHED, [])
    return WorkflowCount(*row) if row is not None else WorkflowCount(0, 0)


async def aworkflow_counts() -> WorkflowCount:
    row = await _afetchone(sql.WORKFLOW_COUNT_UNFINISHED, [])
    return WorkflowCount(*row) if row is not None else WorkflowCount(0, 0)


def _missing(run_id: int) -> RunDoesNotExist:
    return RunDoesNotExist(f"No task run with id {run_id} (it may have been pruned).")


def fetch_run(run_id: int) -> RunRecord:
    """The run as it is now; RunDoesNotExist if there is none (never was, or pruned)."""
    row = _fetchone(sql.RUN_SELECT, [run_id])
    if row is None:
        raise _missing(run_id)
    return RunRecord.from_row(row)


async def afetch_run(run_id: int) -> RunRecord:
    row = await _afetchone(sql.RUN_SELECT, [run_id])
    if row is None:
        raise _missing(run_id)
    return RunRecord.from_row(row)


def watch_runs(run_ids: Sequence[int], timeout: float | None) -> None:
    """Have the status changes of these runs NOTIFYed, for a handle that waits on them; call it
    after subscribing and before re-reading the runs, so that no change falls between.
    TimeoutError after ``timeout`` seconds (a row locked that long).

    Written through the runtime's pool, never the caller's connection: inside ``atomic()`` the
    mark's row lock would last until the caller commits, and the claim, which skips locked
    rows, would pass over the very run the caller is waiting for."""
    rt = runtime.get()
    marking = rt.submit(rt.fetchall(sql.RUN_SET_WATCHED_MANY, [list(run_ids)]))
    with _tables_required():
        try:
            marking.result(timeout)
        except TimeoutError:
            marking.cancel()
            raise


async def awatch_runs(run_ids: Sequence[int], timeout: float | None) -> None:
    """``watch_runs`` from any event loop (its connections are autocommit)."""
    await asyncio.wait_for(_afetchall(sql.RUN_SET_WATCHED_MANY, [list(run_ids)]), timeout)


def fetch_run_call(run_id: int) -> tuple[RunRecord, list[Any], dict[str, Any]]:
    """The run and the arguments it was enqueued with; RunDoesNotExist if there is none."""
    return _with_call(run_id, _fetchone(sql.RUN_SELECT_WITH_CALL, [run_id]))


async def afetch_run_call(run_id: int) -> tuple[RunRecord, list[Any], dict[str, Any]]:
    return _with_call(run_id, await _afetchone(sql.RUN_SELECT_WITH_CALL, [run_id]))


def _with_call(
    run_id: int, row: Sequence[Any] | None
) -> tuple[RunRecord, list[Any], dict[str, Any]]:
    if row is None:
        raise _missing(run_id)
    return RunRecord.from_row(row), json.loads(row[-2]), json.loads(row[-1])


def cancel_run(run_id: int, ttl: float) -> tuple[RunRecord | None, bool]:
    """Cancel a run: (its record, True) if it was waiting and is now CANCELLED; (None, True)
    if it was running and its runtime was asked to stop it; (None, False) if it had finished
    (or was claimed in the same instant and is not running yet: then nothing happened)."""
    row = _fetchone(sql.RUN_SET_CANCELLED_IF_WAITING, [ttl, run_id])
    if row is not None:
        return RunRecord.from_row(row), True
    return None, _fetchone(sql.RUN_REQUEST_CANCEL_IF_RUNNING, [run_id]) is not None


async def acancel_run(run_id: int, ttl: float) -> tuple[RunRecord | None, bool]:
    row = await _afetchone(sql.RUN_SET_CANCELLED_IF_WAITING, [ttl, run_id])
    if row is not None:
        return RunRecord.from_row(row), True
    return None, await _afetchone(sql.RUN_REQUEST_CANCEL_IF_RUNNING, [run_id]) is not None


# --- claiming and finishing through Django's connection (autotask.testing, AUTOTASK_EAGER);
# the runtime does the same through its pool ---


def claim_runs(
    worker_id: uuid.UUID, limit: int, queues: Sequence[str] | None = None
) -> list[ClaimedRun]:
    """Claim up to ``limit`` due runs for ``worker_id``, in the caller's transaction."""
    params: dict[str, Any] = {"limit": limit, "worker_id": worker_id, "queues": queues}
    # Always the limited claim: it takes every run the plain one would, and limited ones too.
    if queues is None:
        rows = _fetchall(claim_statement(any_queue=True, limited=True), params)
    else:
        statement = claim_statement(any_queue=False, limited=True)
        rows = _fetchall(statement, {**params, "queues": list(queues)})
    return [ClaimedRun(*row) for row in rows]


def claim_run(worker_id: uuid.UUID, run_id: int) -> ClaimedRun | None:
    """Claim one waiting run by id, due or not; None if it is not waiting."""
    row = _fetchone(sql.RUN_CLAIM_ONE_IF_WAITING, {"id": run_id, "worker_id": worker_id})
    return None if row is None else ClaimedRun(*row)


def write_outcomes(outcomes: Sequence[Outcome], worker_id: uuid.UUID) -> list[int]:
    """The completer's guarded write; the ids it applied to."""
    rows = _fetchall(sql.RUN_SET_STATUS_IF_RUNNING_MANY, write_params(outcomes, worker_id))
    return [row[0] for row in rows]


def retry_runs(run_ids: Sequence[int]) -> list[int]:
    """Failed or cancelled runs wait again with all their attempts; the ids that did (a run
    in any other state is left alone). The NOTIFY wakes a worker at commit."""
    rows = _fetchall(sql.RUN_SET_WAITING_IF_FAILED_MANY, {"ids": list(run_ids)})
    return [row[0] for row in rows]


async def aretry_runs(run_ids: Sequence[int]) -> list[int]:
    rows = await _afetchall(sql.RUN_SET_WAITING_IF_FAILED_MANY, {"ids": list(run_ids)})
    return [row[0] for row in rows]


def run_now(run_ids: Sequence[int]) -> list[int]:
    """Waiting runs due later are due now; the ids that were."""
    return [row[0] for row in _fetchall(sql.RUN_SET_DUE_NOW_IF_WAITING_MANY, [list(run_ids)])]


async def arun_now(run_ids: Sequence[int]) -> list[int]:
    rows = await _afetchall(sql.RUN_SET_DUE_NOW_IF_WAITING_MANY, [list(run_ids)])
    return [row[0] for row in rows]


def prune_runs(statuses: Sequence[str], older_than: float | None, *, dry_run: bool = False) -> int:
    """Delete finished runs in ``statuses`` that finished more than ``older_than`` seconds ago
    (None: whose ttl has passed), in batches so no long lock is held; how many (with
    ``dry_run``, how many would be)."""
    params: dict[str, Any] = {"statuses": list(statuses), "older_than": older_than}
    if dry_run:
        row = _fetchone(sql.RUN_COUNT_FINISHED_MATCHING, params)
        return int(row[0]) if row is not None else 0
    deleted = 0
    while True:
        with _tables_required(), _connection().cursor() as cursor:
            cursor.execute(sql.RUN_DELETE_FINISHED_MATCHING_BATCH, {**params, "limit": 1000})
            batch = int(cursor.rowcount)
        deleted += batch
        if batch < 1000:
            return deleted


def estimated_run_count() -> int:
    """About how many runs there are, from the planner's statistics (no table scan); -1 if
    the table has never been analysed."""
    row = _fetchone(sql.RUN_COUNT_ESTIMATE, [])
    return int(row[0]) if row is not None else -1


def cancel_waiting_runs(name: str, args: str, kwargs: str, ttl: float) -> int:
    """Cancel every waiting run of the task ``name`` with exactly these (JSON) arguments."""
    with _tables_required(), _connection().cursor() as cursor:
        cursor.execute(sql.RUN_SET_CANCELLED_IF_WAITING_MATCHING, [ttl, name, args, kwargs])
        return int(cursor.rowcount)


async def acancel_waiting_runs(name: str, args: str, kwargs: str, ttl: float) -> int:
    rows = await _afetchall(sql.RUN_SET_CANCELLED_IF_WAITING_MATCHING, [ttl, name, args, kwargs])
    return len(rows)


def in_atomic_block() -> bool:
    """Whether the caller is inside ``transaction.atomic()`` on autotask's database."""
    return _connection().in_atomic_block


def in_open_transaction(transaction: int) -> bool:
    """Whether Django's connection is still inside the transaction with this id (sync only:
    only a sync enqueue can join a caller's transaction)."""
    if not in_atomic_block():
        return False
    row = _fetchone(sql.TRANSACTION_CURRENT, [])
    return row is not None and row[0] == transaction


def live_worker_exists(timeout: float) -> bool:
    """Whether any runtime, anywhere, sent a heartbeat within ``timeout`` seconds."""
    row = _fetchone(sql.WORKER_EXISTS_LIVE, [timeout])
    return bool(row and row[0])


@dataclass(frozen=True, slots=True)
class QueueCount:
    """How many runs of one queue are in one status (of the waiting ones: how many are due,
    and for how long the oldest due one has waited)."""

    queue: str
    status: Status
    count: int
    due: int
    oldest_due_seconds: float | None


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A runtime's row in ``autotask_worker``, with its heartbeat's age and running count."""

    id: uuid.UUID
    host: str
    pid: int
    queues: list[str] | None  # None: every queue
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float  # seconds
    leader: bool
    running: int


def _queue_counts(rows: list[tuple[Any, ...]]) -> list[QueueCount]:
    return [QueueCount(q, Status(st), n, due, oldest) for q, st, n, due, oldest in rows]


def _count_statement(done: bool) -> str:
    return sql.RUN_COUNT_BY_QUEUE_AND_STATUS if done else sql.RUN_COUNT_NOT_DONE_BY_QUEUE_AND_STATUS


def run_counts(*, done: bool = True) -> list[QueueCount]:
    """Runs per queue and status; with ``done=False`` the done ones are not counted."""
    return _queue_counts(_fetchall(_count_statement(done), []))


async def arun_counts(*, done: bool = True) -> list[QueueCount]:
    return _queue_counts(await _afetchall(_count_statement(done), []))


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """Runs of one queue that ended in one minute (its start, epoch seconds) with one status."""

    minute: float
    queue: str
    status: Status
    count: int


def _minute_counts(rows: list[tuple[Any, ...]]) -> list[MinuteCount]:
    return [MinuteCount(minute, queue, Status(status), n) for minute, queue, status, n in rows]


def finished_per_minute(minutes: int) -> list[MinuteCount]:
    return _minute_counts(_fetchall(sql.RUN_FINISHED_PER_MINUTE, {"minutes": minutes}))


async def afinished_per_minute(minutes: int) -> list[MinuteCount]:
    return _minute_counts(await _afetchall(sql.RUN_FINISHED_PER_MINUTE, {"minutes": minutes}))


@dataclass(frozen=True, slots=True)
class TaskTimings:
    """A task's runs in one queue that ended within a window: count, failures, and run time
    and wait (seconds) as p50, p95, p99 and max."""

    name: str
    queue: str
    count: int
    failed: int
    run_seconds: tuple[float, float, float, float]
    wait_seconds: tuple[float, float, float, float]


def task_timings(since: datetime) -> list[TaskTimings]:
    return [
        TaskTimings(name, queue, n, failed, (*run, run_max), (*wait, wait_max))
        for name, queue, n, failed, run, run_max, wait, wait_max in _fetchall(
            sql.RUN_TIMINGS_BY_TASK, {"since": since}
        )
    ]


def _worker_record(row: Sequence[Any]) -> WorkerRecord:
    queues = json.loads(row[3]) if isinstance(row[3], str) else row[3]
    return WorkerRecord(row[0], row[1], row[2], queues, *row[4:])


def workers() -> list[WorkerRecord]:
    """Every runtime that has a row, live or not (the leader removes silent ones)."""
    return [_worker_record(row) for row in _fetchall(sql.WORKER_SELECT_ALL, [])]


async def aworkers() -> list[WorkerRecord]:
    return [_worker_record(row) for row in await _afetchall(sql.WORKER_SELECT_ALL, [])]


@dataclass(frozen=True, slots=True)
class QueueRecord:
    """A queue as ``queues()`` sees it: paused or not, and its waiting and running runs."""

    name: str
    paused: bool
    changed_at: datetime | None  # when it was last paused or resumed; None: never
    waiting: int = 0
    running: int = 0


def _queue_name(name: str) -> str:
    return options.text(name, "queue", options.MAX_QUEUE)


def _queue(row: Sequence[Any] | None) -> QueueRecord:
    assert row is not None  # an upsert always returns its row
    return QueueRecord(row[0], row[1], row[2])


def pause_queue(name: str) -> QueueRecord:
    """Claim no more runs of this queue, in any process (running ones finish; enqueueing
    still works: its runs wait). Kept in the database, so it survives restarts."""
    return _queue(_fetchone(sql.QUEUE_SET_PAUSED, {"name": _queue_name(name), "paused": True}))


def resume_queue(name: str) -> QueueRecord:
    """Claim this queue's runs again; its workers are woken at once."""
    return _queue(_fetchone(sql.QUEUE_SET_PAUSED, {"name": _queue_name(name), "paused": False}))


async def apause_queue(name: str) -> QueueRecord:
    params = {"name": _queue_name(name), "paused": True}
    return _queue(await _afetchone(sql.QUEUE_SET_PAUSED, params))


async def aresume_queue(name: str) -> QueueRecord:
    params = {"name": _queue_name(name), "paused": False}
    return _queue(await _afetchone(sql.QUEUE_SET_PAUSED, params))


def queues() -> list[QueueRecord]:
    """Queues that are paused, were, or have runs waiting or running, by name."""
    return [QueueRecord(*row) for row in _fetchall(sql.QUEUE_SELECT_ALL, [])]


async def aqueues() -> list[QueueRecord]:
    return [QueueRecord(*row) for row in await _afetchall(sql.QUEUE_SELECT_ALL, [])]


@dataclass(frozen=True, slots=True)
class LimitCount:
    """One limited key (``limits()``): its size, how much of it is in use, its runs waiting."""

    kind: str  # "concurrency" or "rate"
    key: str  # the task's name, and ":" and the key function's answer if it has one
    size: int  # slots (concurrency=) or tokens (the count of rate=)
    in_use: int  # slots held by running runs; tokens taken within their window
    period: float | None  # a rate's window, in seconds
    waiting: int  # runs with this key waiting (due or not)


def limits() -> list[LimitCount]:
    """Limited keys in use or with runs waiting, by kind and key."""
    return [LimitCount(*row) for row in _fetchall(sql.SLOT_COUNT_BY_KEY, [])]


async def alimits() -> list[LimitCount]:
    return [LimitCount(*row) for row in await _afetchall(sql.SLOT_COUNT_BY_KEY, [])]


def schedules() -> list[ScheduleRecord]:
    """Every schedule a runtime has recorded, by name, with its next and last run."""
    return [ScheduleRecord(*row) for row in _fetchall(sql.SCHEDULE_SELECT_ALL, [])]


async def aschedules() -> list[ScheduleRecord]:
    return [ScheduleRecord(*row) for row in await _afetchall(sql.SCHEDULE_SELECT_ALL, [])]


def pause_schedule(name: str) -> ScheduleRecord:
    """Stop enqueueing ticks of a schedule (runs already enqueued still run)."""
    return _paused(name, _fetchone(sql.SCHEDULE_SET_PAUSED, [True, name]))


def resume_schedule(name: str) -> ScheduleRecord:
    """Enqueue ticks again; ticks missed while paused run once, at once."""
    return _paused(name, _fetchone(sql.SCHEDULE_SET_PAUSED, [False, name]))


async def apause_schedule(name: str) -> ScheduleRecord:
    return _paused(name, await _afetchone(sql.SCHEDULE_SET_PAUSED, [True, name]))


async def aresume_schedule(name: str) -> ScheduleRecord:
    return _paused(name, await _afetchone(sql.SCHEDULE_SET_PAUSED, [False, name]))


def _paused(name: str, row: Sequence[Any] | None) -> ScheduleRecord:
    if row is None:
        raise ScheduleDoesNotExist(
            f"No schedule named {name!r}; schedules() lists those that exist (a schedule is "
            "recorded when a runtime whose code has its task starts)."
        )
    return ScheduleRecord(*row)
