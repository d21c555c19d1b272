"""Workflows: runs that wait for other runs (chains, groups with a final step, ``depends_on``).

A run that waits has ``waiting_for`` > 0 and a ``run_at`` in the far future, so the claim, the
next-due query and health need no change to leave it alone; its edges are rows of
``autotask_dependency``. A row trigger on a run that has dependents follows its edges when it
finishes, in the same transaction as the finish, however it finishes (the completer, a timeout,
a cancel, a rescue, a deleted row): see ``autotask_finish_dependency`` below. The index of a
workflow's steps comes in 0010, built ``CONCURRENTLY``.
"""

from django.db import migrations, models

# Followed when a run with dependents finishes (or its unfinished row is deleted).
#
# If it did not succeed, the runs that required it to, and the runs that require those, can
# never run: they are cancelled in one statement (a recursive query, not a trigger per level:
# a chain of a thousand steps would exceed the stack), saying which run ended how. Their
# required edges are spent first, so each cancelled run's own firing of this trigger has only
# its optional edges left to follow.
#
# Then every dependent still told nothing of this run has one dependency fewer to wait for.
# The decrement locks the dependent's row, so two of its dependencies finishing at the same
# instant in two processes take turns: the second sees the first's committed count and exactly
# one brings it to zero. That one makes the dependent due, in a statement of its own (and so a
# snapshot of its own, which sees the other dependencies' committed results), giving it their
# results as its first argument when it takes them. Dependents are locked in id order.
_FINISH_DEPENDENCY = """
CREATE FUNCTION autotask_finish_dependency() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    finished_run autotask_task%ROWTYPE;
    dependent bigint;
    remaining integer;
BEGIN
    IF TG_OP = 'DELETE' THEN
        finished_run := OLD;
        finished_run.status := 'deleted';
    ELSE
        finished_run := NEW;
    END IF;
    IF finished_run.status <> 'done' THEN
        WITH RECURSIVE doomed(id) AS (
            SELECT d.run_id FROM autotask_dependency AS d
            WHERE d.depends_on_id = finished_run.id AND d.required AND NOT d.finished
            UNION
            SELECT d.run_id FROM autotask_dependency AS d JOIN doomed ON d.depends_on_id = doomed.id
            WHERE d.required AND NOT d.finished
        ),
        spent AS (
            UPDATE autotask_dependency AS d SET finished = true
            WHERE d.required AND NOT d.finished
              AND (d.depends_on_id = finished_run.id
                   OR d.depends_on_id IN (SELECT id FROM doomed))
        )
        UPDATE autotask_task AS t
        SET status = 'cancelled', finished_at = now(),
            expires_at = COALESCE(finished_run.expires_at, now() + interval '1 day'),
            error = jsonb_build_object(
                'type', 'autotask.exceptions.DependencyFailed',
                'message', 'not run: run #' || finished_run.id || ' (' || finished_run.name
                           || '), which it needed to succeed, '
                           || CASE WHEN finished_run.status = 'deleted' THEN 'was deleted'
                                   ELSE 'ended ' || upper(finished_run.status) END,
                'traceback', '')
        WHERE t.id IN (SELECT id FROM doomed) AND t.status = 'waiting';
    END IF;
    FOR dependent IN
        SELECT d.run_id FROM autotask_dependency AS d
        WHERE d.depends_on_id = finished_run.id AND NOT d.finished
        ORDER BY d.run_id
    LOOP
        UPDATE autotask_dependency SET finished = true
        WHERE run_id = dependent AND depends_on_id = finished_run.id;
        UPDATE autotask_task SET waiting_for = waiting_for - 1
        WHERE id = dependent AND status = 'waiting' AND waiting_for > 0
        RETURNING waiting_for INTO remaining;
        IF remaining = 0 THEN
            UPDATE autotask_task AS t
            SET run_at = now(),
                args = CASE t.result_arg
                    WHEN 'one' THEN jsonb_build_array((
                        SELECT x.result FROM autotask_dependency AS d
                        JOIN autotask_task AS x ON x.id = d.depends_on_id
                        WHERE d.run_id = t.id ORDER BY d.position LIMIT 1)) || t.args
                    WHEN 'list' THEN jsonb_build_array(COALESCE((
                        SELECT jsonb_agg(CASE WHEN x.status = 'done' THEN x.result END
                                         ORDER BY d.position)
                        FROM autotask_dependency AS d
                        LEFT JOIN autotask_task AS x ON x.id = d.depends_on_id
                        WHERE d.run_id = t.id), '[]'::jsonb)) || t.args
                    ELSE t.args END
            WHERE t.id = dependent;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("autotask", "0008_rate_waiting_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="Dependency",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "position",
                    models.IntegerField(
                        help_text="Its result's place in the list the run is given."
                    ),
                ),
                (
                    "required",
                    models.BooleanField(
                        help_text="If it does not end DONE, the run is cancelled instead of run."
                    ),
                ),
                (
                    "finished",
                    models.BooleanField(
                        db_default=False,
                        default=False,
                        help_text="It has finished and the run was told.",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "dependencies",
                "db_table": "autotask_dependency",
            },
        ),
        migrations.AddField(
            model_name="taskrun",
            name="has_dependents",
            field=models.BooleanField(
                db_default=False, default=False, help_text="Other runs wait for it to finish."
            ),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="result_arg",
            field=models.CharField(
                blank=True,
                choices=[("one", "one"), ("list", "list")],
                help_text="What it is given, as its first argument, when its dependencies "
                "finish: its one dependency's result, or the list of their results; empty: "
                "nothing.",
                max_length=8,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="waiting_for",
            field=models.IntegerField(
                blank=True,
                help_text="How many of the runs it depends on have not finished: it is not due "
                "before none has (its run_at is the far future until then).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="workflow_id",
            field=models.BigIntegerField(
                blank=True, help_text="The workflow (chain or group) it is a step of.", null=True
            ),
        ),
        migrations.AddField(
            model_name="dependency",
            name="depends_on",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=models.deletion.DO_NOTHING,
                related_name="dependents",
                to="autotask.taskrun",
            ),
        ),
        migrations.AddField(
            model_name="dependency",
            name="run",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=models.deletion.DO_NOTHING,
                related_name="dependencies",
                to="autotask.taskrun",
            ),
        ),
        migrations.AddConstraint(
            model_name="dependency",
            constraint=models.UniqueConstraint(
                fields=("run", "depends_on"), name="autotask_dependency_edge"
            ),
        ),
        migrations.RunSQL(
            sql=[
                "CREATE SEQUENCE autotask_workflow_id_seq;",
                # A dependent's edges go with it; a dependency's stay (see models.Dependency).
                """
                ALTER TABLE autotask_dependency ADD CONSTRAINT autotask_dependency_run_fk
                FOREIGN KEY (run_id) REFERENCES autotask_task (id) ON DELETE CASCADE;
                """,
                _FINISH_DEPENDENCY,
                # Row-level, only for runs others depend on: the WHEN clause is all the other
                # runs' updates pay.
                """
                CREATE TRIGGER autotask_task_dependency_finished
                AFTER UPDATE OF status ON autotask_task
                FOR EACH ROW
                WHEN (NEW.has_dependents AND OLD.status IN ('waiting', 'running')
                      AND NEW.status IN ('done', 'error', 'cancelled'))
                EXECUTE FUNCTION autotask_finish_dependency();
                """,
                """
                CREATE TRIGGER autotask_task_dependency_deleted
                AFTER DELETE ON autotask_task
                FOR EACH ROW
                WHEN (OLD.has_dependents AND OLD.status IN ('waiting', 'running'))
                EXECUTE FUNCTION autotask_finish_dependency();
                """,
            ],
            reverse_sql=[
                "DROP TRIGGER IF EXISTS autotask_task_dependency_deleted ON autotask_task;",
                "DROP TRIGGER IF EXISTS autotask_task_dependency_finished ON autotask_task;",
                "DROP FUNCTION IF EXISTS autotask_finish_dependency();",
                "ALTER TABLE autotask_dependency DROP CONSTRAINT IF EXISTS "
                "autotask_dependency_run_fk;",
                "DROP SEQUENCE IF EXISTS autotask_workflow_id_seq;",
            ],
        ),
    ]
