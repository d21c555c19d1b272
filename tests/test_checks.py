from typing import Any

import pytest
from django.db.utils import ConnectionHandler

from autotask import checks
from autotask.checks import check_setting_names, check_settings


def test_postgres_database_passes() -> None:
    assert check_settings() == []


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_other_database_is_refused_with_a_hint(settings: Any, monkeypatch: Any) -> None:
    settings.DATABASES = {
        **settings.DATABASES,
        "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
    # Django's own handler caches DATABASES; a fresh one sees the override.
    monkeypatch.setattr(checks, "connections", ConnectionHandler(settings.DATABASES))
    settings.AUTOTASK_DATABASE = "other"
    [error] = check_settings()
    assert error.id == "autotask.E002" and "PostgreSQL" in error.msg
    assert "sqlite3" in error.msg


def test_bad_setting_is_named(settings: Any) -> None:
    settings.AUTOTASK_DATABASE = "nope"
    [error] = check_settings()
    assert error.id == "autotask.E001" and "AUTOTASK_DATABASE" in error.msg


def test_misspelt_setting_is_warned_about_with_a_suggestion(settings: Any) -> None:
    settings.AUTOTASK_WORKER_MONITOR_INTERVAL = 3  # the seed's name has two Ls
    settings.AUTOTASK_WORKER_EXECUTABLE = "python3"  # the seed's, of no use here
    warnings = {w.id: w for w in check_setting_names()}
    assert set(warnings) == {"autotask.W001", "autotask.W002"}
    assert (
        "AUTOTASK_WORKER_MONITOR_INTERVAL is not an autotask setting"
        in warnings["autotask.W001"].msg
    )
    assert warnings["autotask.W001"].hint == "Did you mean AUTOTASK_WORKER_MONITOR_INTERVALL?"
    assert "AUTOTASK_WORKER_EXECUTABLE" in warnings["autotask.W002"].msg
    assert "autotask_worker" in warnings["autotask.W002"].hint


def test_the_seed_settings_now_acted_on_raise_no_warning(settings: Any) -> None:
    settings.AUTOTASK_IS_ACTIVE = True
    settings.AUTOTASK_CLEAN_INTERVALL = 60
    assert check_setting_names() == []


def test_known_settings_raise_no_warning() -> None:
    assert check_setting_names() == []


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("AUTOTASKS_WORKERS", "AUTOTASK_WORKERS"),
        ("AUTO_TASK_QUEUES", "AUTOTASK_QUEUES"),
        ("AUTOTASKIS_ACTIVE", "AUTOTASK_IS_ACTIVE"),
    ],
)
def test_a_setting_with_the_wrong_prefix_is_warned_about(
    settings: Any, name: str, meant: str
) -> None:
    setattr(settings, name, 3)
    [warning] = checks.check_setting_prefixes()
    assert warning.id == "autotask.W001" and name in warning.msg
    assert warning.hint == f"Did you mean {meant}?"


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_several_plain_tasks_without_persistent_connections_are_warned_about(
    settings: Any,
) -> None:
    settings.AUTOTASK_WORKERS = 4
    settings.DATABASES = {
        **settings.DATABASES,
        "default": {**settings.DATABASES["default"], "CONN_MAX_AGE": 0},
    }
    [warning] = checks.check_connections()
    assert warning.id == "autotask.W003" and "CONN_MAX_AGE is 0" in warning.msg
    settings.DATABASES = {
        **settings.DATABASES,
        "default": {**settings.DATABASES["default"], "CONN_MAX_AGE": 600},
    }
    assert checks.check_connections() == []
    settings.AUTOTASK_WORKERS = 1
    settings.DATABASES = {
        **settings.DATABASES,
        "default": {**settings.DATABASES["default"], "CONN_MAX_AGE": 0},
    }
    assert checks.check_connections() == []


def test_a_django_tasks_queue_no_worker_serves_is_warned_about(settings: Any) -> None:
    settings.AUTOTASK_QUEUES = ["default"]
    warnings = checks.check_task_queues()
    assert {w.id for w in warnings} == {"autotask.W004"}
    assert sorted(w.msg.split("queue ")[1].split(",")[0] for w in warnings) == [
        "'queue-1'",
        "'queue-2'",
    ]
    settings.AUTOTASK_QUEUES = ["default", "queue-1", "queue-2"]
    assert checks.check_task_queues() == []
    settings.AUTOTASK_QUEUES = None
    assert checks.check_task_queues() == []


def test_the_driver_is_psycopg_3() -> None:
    assert checks.check_driver() == []


@pytest.mark.django_db(transaction=True)
def test_missing_triggers_and_migrations_are_found_when_the_database_is_checked() -> None:
    from django.db import connection

    assert checks.check_tables(databases=None) == []  # not asked to look at databases
    assert checks.check_tables(databases=["default"]) == []
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER autotask_task_inserted ON autotask_task")
    try:
        [error] = checks.check_tables(databases=["default"])
        assert error.id == "autotask.E004" and "autotask_task_inserted" in error.msg
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TRIGGER autotask_task_inserted AFTER INSERT ON autotask_task "
                "REFERENCING NEW TABLE AS new_rows "
                "FOR EACH STATEMENT EXECUTE FUNCTION autotask_notify_inserted()"
            )
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'autotask' AND name LIKE '0004%%'"
        )
    try:
        [warning] = checks.check_tables(databases=["default"])
        assert warning.id == "autotask.W005" and "1 migration(s) not applied" in warning.msg
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO django_migrations (app, name, applied) "
                "VALUES ('autotask', '0004_worker_ids', now())"
            )
