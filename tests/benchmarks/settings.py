"""Django settings of the benchmarks: database ``autotask_bench`` on DATABASE_URL's server.

``python -m tests.benchmarks`` sets the AUTOTASK_BENCH_* variables from its command line before
Django starts; the worker subprocesses of the duplicates measurement inherit them.
"""

import os

from tests.benchmarks.database import bench_params

_params = bench_params()

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _params.pop("dbname"),
        "USER": _params.pop("user", ""),
        "PASSWORD": _params.pop("password", ""),
        "HOST": _params.pop("host", ""),
        "PORT": _params.pop("port", ""),
        "OPTIONS": _params,
        # Django's default is 0: every sync task then opens and closes its own connection.
        "CONN_MAX_AGE": float(os.environ.get("AUTOTASK_BENCH_CONN_MAX_AGE", "0")),
    }
}
SECRET_KEY = "autotask-benchmarks"
USE_TZ = True
INSTALLED_APPS = ["autotask", "tests.app"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTOTASK_WORKERS = int(os.environ.get("AUTOTASK_BENCH_WORKERS", "4"))
AUTOTASK_HANDLE_TASK_IDLE_TIME = float(os.environ.get("AUTOTASK_BENCH_IDLE_TIME", "10"))
if os.environ.get("AUTOTASK_BENCH_POOL_SIZE"):
    AUTOTASK_POOL_SIZE = int(os.environ["AUTOTASK_BENCH_POOL_SIZE"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"autotask": {"handlers": ["console"], "level": "WARNING"}},
}
