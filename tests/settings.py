"""Settings for the test suite: the database comes from DATABASE_URL (set by tests/pgserver.py)."""

import os

from psycopg.conninfo import conninfo_to_dict

_CONNINFO_KEYS = ("dbname", "user", "password", "host", "port")


def database_from_url(url: str) -> dict[str, object]:
    params = conninfo_to_dict(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.pop("dbname", "postgres"),
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
        "OPTIONS": params,
    }


DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
_DIRECT = database_from_url(DATABASE_URL)
_DIRECT["OPTIONS"] = {
    **{k: v for k, v in conninfo_to_dict(DATABASE_URL).items() if k not in _CONNINFO_KEYS},
    "application_name": "autotask-direct-test",
}
# The same database under another name, as a direct DSN beside a pooler would be
# (AUTOTASK_DIRECT_DATABASE); a mirror, so the test runner gives it the test database.
_DIRECT["TEST"] = {"MIRROR": "default"}
DATABASES = {"default": database_from_url(DATABASE_URL), "direct": _DIRECT}
SECRET_KEY = "autotask-tests"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "autotask",
    "tests.app",
    "tests.limited",
    "tests.flows",
]
# What the admin needs (tests/test_admin.py), and no more: other tests' requests go through it too.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
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
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"
AUTOTASK_WORKERS = 4
# The tests keep Django's default CONN_MAX_AGE = 0 (a connection per task run) on purpose.
SILENCED_SYSTEM_CHECKS = ["autotask.W003"]
# django.tasks (Django 6.x; the django-tasks backport on 5.2) through autotask.
TASKS = {
    "default": {
        "BACKEND": "autotask.backend.AutotaskBackend",
        "QUEUES": ["default", "queue-1", "queue-2"],
    },
    "any-queue": {"BACKEND": "autotask.backend.AutotaskBackend", "QUEUES": []},
}
AUTOTASK_HANDLE_TASK_IDLE_TIME = 2.0
AUTOTASK_RETRY_DELAY = 0.2

# Processes a test starts (``manage.py autotask_worker``) take their timings from the environment.
for _name in (
    "AUTOTASK_WORKERS",
    "AUTOTASK_HANDLE_TASK_IDLE_TIME",
    "AUTOTASK_WORKER_MONITOR_INTERVALL",
    "AUTOTASK_WORKER_TIMEOUT",
    "AUTOTASK_SHUTDOWN_TIMEOUT",
):
    if _name in os.environ:
        globals()[_name] = (int if _name == "AUTOTASK_WORKERS" else float)(os.environ[_name])

# The app with a task every second, only in the processes of the test that counts its ticks.
if os.environ.get("AUTOTASK_TEST_TICKING"):
    INSTALLED_APPS.append("tests.ticking")
# Without the app of limited tasks, a process claims as most apps' do: the plain claim.
if os.environ.get("AUTOTASK_TEST_NO_LIMITS"):
    INSTALLED_APPS.remove("tests.limited")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "autotask": {
            "handlers": ["console"],
            "level": os.environ.get("AUTOTASK_TEST_LOG_LEVEL", "WARNING"),
        }
    },
}
