"""Status notifications only for runs someone watches.

0001's update trigger was FOR EACH STATEMENT with transition tables: every claim and every
finish copied its rows into two tuplestores, joined them and sent ``NOTIFY autotask_status``,
which takes a database-wide lock at commit, though almost no run has a handle waiting on it.
Measured (10,000 no-ops, 3 interleaved rounds, medians, this trigger against
0001's): one process 4,377 -> 4,837 jobs/s (async), 3,066 -> 3,333 (sync); two processes 5,583
-> 6,808.

Now a run has ``watched``, set (once, never cleared) by whoever starts watching it, before it
re-reads the row; the status trigger is a row trigger whose WHEN sees it, so for the runs no one
watches it is not called at all. A change committed before the mark is seen by that re-read, one
committed after it notifies. The wake-up of workers (a run that becomes waiting again, or due
sooner) is a row trigger of its own with its WHEN: PostgreSQL folds the identical ``NOTIFY
autotask, '<queue>'`` of one transaction into one.
"""

from django.db import migrations, models

_NEW = (
    # IF EXISTS: the system check E004 may have found it missing already.
    "DROP TRIGGER IF EXISTS autotask_task_updated ON autotask_task",
    "DROP FUNCTION IF EXISTS autotask_notify_updated()",
    """
    CREATE FUNCTION autotask_notify_status() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('autotask_status', NEW.id || ':' || NEW.status);
        RETURN NULL;
    END
    $$;
    """,
    """
    CREATE TRIGGER autotask_task_status_watched
    AFTER UPDATE OF status ON autotask_task
    FOR EACH ROW
    WHEN (NEW.watched AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION autotask_notify_status();
    """,
    """
    CREATE FUNCTION autotask_notify_waiting() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('autotask', NEW.queue);
        RETURN NULL;
    END
    $$;
    """,
    """
    CREATE TRIGGER autotask_task_waiting
    AFTER UPDATE ON autotask_task
    FOR EACH ROW
    WHEN (NEW.status = 'waiting'
          AND (OLD.status IS DISTINCT FROM 'waiting' OR NEW.run_at < OLD.run_at))
    EXECUTE FUNCTION autotask_notify_waiting();
    """,
)

# 0001's trigger as it was (its payloads in batches of 200 ids).
_OLD = (
    "DROP TRIGGER IF EXISTS autotask_task_waiting ON autotask_task",
    "DROP FUNCTION IF EXISTS autotask_notify_waiting()",
    "DROP TRIGGER IF EXISTS autotask_task_status_watched ON autotask_task",
    "DROP FUNCTION IF EXISTS autotask_notify_status()",
    """
    CREATE FUNCTION autotask_notify_updated() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('autotask_status', batch.payload)
        FROM (
            SELECT string_agg(changed.id || ':' || changed.status, ',') AS payload
            FROM (
                SELECT n.id, n.status, (row_number() OVER () - 1) / 200 AS chunk
                FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE n.status IS DISTINCT FROM o.status
            ) AS changed
            GROUP BY changed.chunk
        ) AS batch;
        PERFORM pg_notify('autotask', q.queue)
        FROM (
            SELECT DISTINCT n.queue
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.status = 'waiting'
              AND (o.status IS DISTINCT FROM 'waiting' OR n.run_at < o.run_at)
        ) AS q;
        RETURN NULL;
    END
    $$;
    """,
    """
    CREATE TRIGGER autotask_task_updated
    AFTER UPDATE ON autotask_task
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION autotask_notify_updated();
    """,
)


class Migration(migrations.Migration):
    dependencies = [("autotask", "0012_finished_index")]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="watched",
            field=models.BooleanField(
                db_default=False,
                default=False,
                editable=False,
                help_text="Someone waits on its status: its changes are NOTIFYed.",
            ),
        ),
        migrations.RunSQL(sql=_NEW, reverse_sql=_OLD),
    ]
