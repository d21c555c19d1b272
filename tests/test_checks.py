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
