"""Options PostgreSQL would refuse later are refused first, naming the option, before any SQL."""

import datetime

import pytest
from django.db import connection, transaction

from autotask import InvalidTaskOptions, task
from autotask.backoff import constant
from autotask.models import TaskRun
from tests.app.tasks import add, echo


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": float("inf")}, r"ttl must be a number of seconds >= 0"),
        ({"ttl": float("nan")}, r"ttl must be"),
        ({"ttl": 9.3e12}, r"ttl must be .* at most 3,155,760,000"),
        ({"delay": 1e12}, r"delay must be"),
        ({"delay": float("inf")}, r"delay must be"),
        ({"name": "x" * 256}, r"name must be a non-empty name of at most 255 characters"),
        ({"name": "bad\x00name"}, r"name must be .* without NUL"),
        ({"queue": "mail\udcff"}, r"queue must be .* lone surrogates"),
        ({"queue": "q" * 101}, r"queue must be a non-empty name of at most 100"),
        ({"retries": 2**31 - 1}, r"retries must be an integer from 0 to 10,000"),
        ({"retry_on": ValueError("x")}, r"retry_on must be an exception class"),
        ({"retry_on": (KeyError, int)}, r"retry_on must be an exception class"),
        ({"backoff": 5}, r"backoff must be one of autotask.backoff's strategies"),
        ({"max_postpones": -1}, r"max_postpones must be an integer from 0"),
    ],
)
def test_bad_task_options_are_refused_when_decorated(options: dict, message: str) -> None:
    with pytest.raises(InvalidTaskOptions, match=message):
        task(**options)(lambda: None)


def test_an_async_task_cannot_retry_on_stopiteration_which_it_never_raises() -> None:
    async def drains() -> None:
        pass

    with pytest.raises(InvalidTaskOptions, match=r"retry_on names StopIteration, .*\(PEP 479\)"):
        task(retries=1, retry_on=(KeyError, StopIteration))(drains)
    assert task(retries=1, retry_on=StopIteration)(lambda: None).retry_on == (StopIteration,)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": 1e12}, r"delay must be"),
        ({"delay": float("nan")}, r"delay must be"),
        ({"delay": 1e300}, r"delay must be"),
        ({"queue": "a\x00b"}, r"queue must be"),
        ({"delay": datetime.timedelta(days=365 * 200)}, r"delay must be"),
    ],
)
@pytest.mark.django_db
def test_bad_call_options_fail_before_any_sql_and_the_transaction_lives_on(
    options: dict, message: str
) -> None:
    with transaction.atomic():
        with pytest.raises(InvalidTaskOptions, match=message):
            add.using(**options)(1, 2)
        with connection.cursor() as cursor:  # the caller's transaction is still usable
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    assert not TaskRun.objects.exists()


@task(name="tests.options.anything")
def anything(**kwargs: object) -> None: ...


@pytest.mark.django_db
def test_bad_arguments_fail_before_any_sql_and_the_transaction_lives_on() -> None:
    deep: list = []
    for _ in range(150):
        deep = [deep]
    recursive: list = []
    recursive.append(recursive)
    with transaction.atomic():
        with pytest.raises(TypeError, match=r"argument 'value' is nested more than 100"):
            echo(deep)
        with pytest.raises(TypeError, match=r"argument 'value' is nested more than 100"):
            echo(recursive)
        with pytest.raises(TypeError, match=r"keyword argument name 'a\\x00b'"):
            anything(**{"a\x00b": 2})
        assert echo([[[[1]]]]).status == "waiting"  # moderate nesting is fine
    assert TaskRun.objects.count() == 1


def test_good_options_pass() -> None:
    configured = task(retries=3, retry_on=KeyError, backoff=constant(1), max_postpones=0)(
        lambda: None
    )
    assert configured.retry_on == (KeyError,) and configured.max_postpones == 0
