"""The two unique indexes leave out the runs without a key: most runs have neither a
``unique_key`` nor a ``schedule_key``, yet each of their row versions wrote a NULL entry into
both (a status change is not a HOT update, so the insert, the claim and the finish each write
one into every index whose predicate holds): five index entries per run, for nothing.

Measured on 10,000 no-op runs drained by one process, 3 interleaved rounds: 3,928 / 4,021 /
3,874 -> 4,201 / 4,157 / 4,117 jobs/s, PostgreSQL's CPU 203 / 194 / 202 -> 186 / 183 / 191 us a
run.

Each new index is built ``CONCURRENTLY`` under a temporary name while the old one still holds,
so there is no moment without uniqueness; then the old one goes and the new one takes its name.
Not in a transaction, then, so each step looks before it acts: a run cut short anywhere
(a timeout, a lost connection) can be run again, and never drops the only unique index left.
The table constraint's drop takes the table's exclusive lock; it is tried for a short while at
a time, so that it never holds the queue up behind a long transaction. The other steps need no
such care: ``DROP INDEX CONCURRENTLY`` and ``ALTER INDEX ... RENAME`` take SHARE UPDATE
EXCLUSIVE (on the table and the index, on the index alone), which no read or write of the table
waits behind, however long they wait themselves. The ``ON CONFLICT`` clauses of this release name the new predicates
(``... AND unique_key IS NOT NULL``), which the old indexes satisfy too, so this code works on
either side of the migration. Code of the releases before does not infer the new indexes:
restart it on this release before migrating, or its unique enqueues and schedule ticks fail
until it does.
"""

import time
from typing import Any

from django.db import migrations, models, transaction
from django.db.utils import OperationalError

_PENDING = "autotask_task_unique_pending"
_SCHEDULE = "autotask_task_schedule_key_key"
_LIVE = "status IN ('waiting', 'running')"

# ALTER TABLE's ACCESS EXCLUSIVE lock queues every reader and writer of the table behind it
# while it waits for a long transaction to end: wait a little at a time instead, and let the
# queue move in between.
_LOCK_TIMEOUT = "2s"
_LOCK_ATTEMPTS = 15
_LOCK_PAUSE = 1.0
_LOCK_NOT_AVAILABLE = "55P03"


def _index_valid(cursor: Any, name: str) -> bool | None:
    """None if there is no such index; False if it is the wreck of a failed CONCURRENTLY build."""
    cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name])
    row = cursor.fetchone()
    return None if row is None else bool(row[0])


def _constraint_exists(cursor: Any, name: str) -> bool:
    cursor.execute(
        "SELECT 1 FROM pg_constraint WHERE conname = %s AND conrelid = 'autotask_task'::regclass",
        [name],
    )
    return cursor.fetchone() is not None


def _predicate(cursor: Any, name: str) -> str:
    """The index's WHERE clause as PostgreSQL prints it ('' for none or no such index)."""
    cursor.execute(
        "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = to_regclass(%s)",
        [name],
    )
    row = cursor.fetchone()
    return "" if row is None or row[0] is None else str(row[0])


def _locked(cursor: Any, statement: str) -> None:
    """Run a statement that takes the table's exclusive lock, never waiting long for it. Each
    try is a transaction of its own, the timeout ``SET LOCAL`` in it: it ends with the try, and
    nothing run after a failure (a lost connection) can hide the error that ended it."""
    for _attempt in range(_LOCK_ATTEMPTS):
        try:
            with transaction.atomic(using=cursor.db.alias):
                cursor.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                cursor.execute(statement)
            return
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
        time.sleep(_LOCK_PAUSE)
    raise RuntimeError(
        f"autotask 0014: gave up after {_LOCK_ATTEMPTS} tries of {_LOCK_TIMEOUT} to lock "
        f"autotask_task for `{statement}`: a long transaction holds it (see pg_locks). "
        "Nothing is lost; migrate again once it ends."
    )


def _ensure_new(cursor: Any, name: str, create: str) -> None:
    """Build ``<name>_new`` unless a valid one is there already: after a run cut short between
    dropping the old index and renaming the new one, the new one is the only one left."""
    valid = _index_valid(cursor, f"{name}_new")
    if valid is False:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}_new")
    if not valid:
        cursor.execute(create.format(name=f"{name}_new"))


def _swap_index(
    cursor: Any, name: str, create: str, skips_nulls: bool, drop_constraint: bool = False
) -> None:
    """Replace the index ``name``, uniqueness never lapsing: the new one is built beside it
    (CONCURRENTLY, so enqueues go on), then the old goes and the new takes its name. Each step
    looks before it acts, so a run cut short anywhere can simply be run again; one run again
    after it finished (its record in django_migrations lost) finds the index as wanted (a
    valid one, leaving NULL keys out or not as ``skips_nulls`` says) and builds nothing."""
    finished = (
        _index_valid(cursor, f"{name}_new") is None
        and _index_valid(cursor, name)
        and ("IS NOT NULL" in _predicate(cursor, name)) == skips_nulls
        and not (drop_constraint and _constraint_exists(cursor, name))
    )
    if finished:
        return
    _ensure_new(cursor, name, create)
    if drop_constraint and _constraint_exists(cursor, name):
        _locked(cursor, f"ALTER TABLE autotask_task DROP CONSTRAINT {name}")
    elif _index_valid(cursor, name) is not None:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    cursor.execute(f"ALTER INDEX {name}_new RENAME TO {name}")


def _forward(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        _swap_index(
            cursor,
            _PENDING,
            "CREATE UNIQUE INDEX CONCURRENTLY {name} ON autotask_task (unique_key) "
            f"WHERE {_LIVE} AND unique_key IS NOT NULL",
            skips_nulls=True,
        )
        _swap_index(
            cursor,
            _SCHEDULE,
            "CREATE UNIQUE INDEX CONCURRENTLY {name} ON autotask_task (schedule_key) "
            "WHERE schedule_key IS NOT NULL",
            skips_nulls=True,
            drop_constraint=True,
        )


def _backward(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        _swap_index(
            cursor,
            _PENDING,
            f"CREATE UNIQUE INDEX CONCURRENTLY {{name}} ON autotask_task (unique_key) WHERE {_LIVE}",
            skips_nulls=False,
        )
        if _constraint_exists(cursor, _SCHEDULE):  # done already
            return
        _ensure_new(
            cursor,
            _SCHEDULE,
            "CREATE UNIQUE INDEX CONCURRENTLY {name} ON autotask_task (schedule_key)",
        )
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_SCHEDULE}")
        # A table constraint again, as 0011 left it (the index takes the constraint's name).
        _locked(
            cursor,
            f"ALTER TABLE autotask_task ADD CONSTRAINT {_SCHEDULE} UNIQUE USING INDEX {_SCHEDULE}_new",
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("autotask", "0013_watched_runs"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="taskrun", name=_PENDING),
                migrations.AddConstraint(
                    model_name="taskrun",
                    constraint=models.UniqueConstraint(
                        "unique_key",
                        condition=models.Q(
                            ("status__in", ["waiting", "running"]), ("unique_key__isnull", False)
                        ),
                        name=_PENDING,
                    ),
                ),
                migrations.RemoveConstraint(model_name="taskrun", name=_SCHEDULE),
                migrations.AddConstraint(
                    model_name="taskrun",
                    constraint=models.UniqueConstraint(
                        fields=("schedule_key",),
                        condition=models.Q(("schedule_key__isnull", False)),
                        name=_SCHEDULE,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(_forward, _backward)],
        ),
    ]
