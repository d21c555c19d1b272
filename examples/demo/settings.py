"""Settings of the autotask demo project.

Everything that a test (or you) may want to change comes from the environment:

* ``DATABASE_URL``: a PostgreSQL URL or ``key=value`` conninfo string
  (default ``postgresql://postgres@127.0.0.1:5432/test``);
* ``DEBUG``: ``1``/``true``/``yes`` to turn it on;
* ``AUTOTASK_IS_ACTIVE`` (``1`` to run tasks in the processes of a WSGI server, see
  ``demo/wsgi.py``), ``AUTOTASK_WORKERS``, ``AUTOTASK_SHUTDOWN_TIMEOUT``,
  ``AUTOTASK_HANDLE_TASK_IDLE_TIME``: the autotask settings of the same names.
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict


def _database(url: str) -> dict[str, Any]:
    """A Django DATABASES entry from a URL or conninfo string; extra parameters go to OPTIONS."""
    params: dict[str, Any] = dict(conninfo_to_dict(url))
    entry: dict[str, Any] = {"ENGINE": "django.db.backends.postgresql"}
    for key, setting in (
        ("dbname", "NAME"),
        ("user", "USER"),
        ("password", "PASSWORD"),
        ("host", "HOST"),
        ("port", "PORT"),
    ):
        entry[setting] = params.pop(key, "")
    entry["NAME"] = entry["NAME"] or "postgres"
    entry["OPTIONS"] = params
    return entry


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _number(name: str, default: float, kind: type[int] | type[float] = float) -> Any:
    value = os.environ.get(name)
    return default if value in (None, "") else kind(value)


DEBUG = _flag("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "autotask-demo-not-secret")
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

DATABASES = {
    "default": _database(
        os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    # What the monitor (/autotask/) needs: users, sessions, messages, static files; the admin
    # for its login page.
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "autotask",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
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
STATIC_URL = "static/"
LOGIN_URL = "/admin/login/"

ROOT_URLCONF = "demo.urls"
ASGI_APPLICATION = "demo.asgi.application"
WSGI_APPLICATION = "demo.wsgi.application"

AUTOTASK_IS_ACTIVE = _flag("AUTOTASK_IS_ACTIVE", False)
AUTOTASK_WORKERS = _number("AUTOTASK_WORKERS", 4, int)
AUTOTASK_SHUTDOWN_TIMEOUT = _number("AUTOTASK_SHUTDOWN_TIMEOUT", 10.0)
AUTOTASK_HANDLE_TASK_IDLE_TIME = _number("AUTOTASK_HANDLE_TASK_IDLE_TIME", 10.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"autotask": {"handlers": ["console"], "level": "INFO"}},
}
