"""Concurrency and rate limits in one process: the options, the slots an enqueue provisions,
the claim that takes no more than a key's free slots and tokens, and every way a slot frees.
Across processes: tests/integration/test_limits_processes.py."""

from __future__ import annotations

import dataclasses
import io
import itertools
import time
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from autotask import (
    CANCELLED,
    DONE,
    ERROR,
    RUNNING,
    WAITING,
    InvalidTaskOptions,
    health,
    sql,
    store,
    task,
)
from autotask.models import LimitSlot, TaskRun
from autotask.runtime.runs import Outcome
from tests.app.tasks import add
from tests.conftest import wait_until
from tests.limited.tasks import (
    async_one_at_a_time,
    one_per_account,
    two_at_a_time,
    two_per_second_per_account,
)

pytestmark = pytest.mark.usefixtures("transactional_db")

WORKER = uuid.uuid4()
_ERROR = '{"type": "X", "message": "", "traceback": ""}'


def _slots(kind: str, key: str) -> list[tuple[int, int | None]]:
    return list(
        LimitSlot.objects.filter(kind=kind, key=key).order_by("slot").values_list("slot", "run_id")
    )


def _claim(limit: int = 10) -> list[int]:
    return [run.id for run in store.claim_runs(WORKER, limit)]


def _finish(*run_ids: int) -> None:
    outcomes = [Outcome(run_id, DONE, ttl=60, result="null") for run_id in run_ids]
    assert sorted(store.write_outcomes(outcomes, WORKER)) == sorted(run_ids)


# --- options ---


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be an integer from 1 to 10,000, not 0"),
        ({"concurrency": True}, "concurrency must be an integer"),
        ({"concurrency": 10_001}, "concurrency must be an integer"),
        ({"concurrency_key": lambda: 1}, r"concurrency_key needs concurrency="),
        ({"concurrency": 1, "concurrency_key": "account"}, "concurrency_key must be a function"),
        ({"rate": "10"}, "rate must be a string like '10/s'"),
        ({"rate": "10/week"}, "rate must be a string like"),
        ({"rate": "10/ms"}, "rate must be a string like"),
        ({"rate": ["10/s"]}, "rate must be a string like"),
        ({"rate": 10}, "rate must be a string like"),
        ({"rate": "0/s"}, "rate's count must be an integer from 1"),
        ({"rate": "5/0m"}, "rate's window must be more than 0 s"),
        ({"rate_key": lambda: 1}, r"rate_key needs rate="),
    ],
)
def test_bad_limit_options_fail_at_decoration(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTaskOptions, match=message):
        task(name="bad.limits", **options)(lambda: None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("10/s", (10, 1.0)),
        ("10/m", (10, 60.0)),
        ("100 / hour", (100, 3600.0)),
        ("5/10m", (5, 600.0)),
        ("3/1.5s", (3, 1.5)),
        ("1/D", (1, 86400.0)),
        ("7/mins", (7, 60.0)),
    ],
)
def test_rates_are_starts_per_window(rate: str, parsed: tuple[int, float]) -> None:
    from autotask import options

    assert options.rate(rate) == parsed


def test_a_key_function_must_return_a_str_or_an_int() -> None:
    bad = task(name="bad.key", concurrency=1, concurrency_key=lambda x: [x])(lambda x: None)
    with pytest.raises(InvalidTaskOptions, match=r"concurrency_key must return a str or an int"):
        bad(1)
    too_long = task(name="long.key", rate="1/s", rate_key=lambda x: x)(lambda x: None)
    with pytest.raises(InvalidTaskOptions, match=r"rate_key must be a non-empty name of at most"):
        too_long("x" * 300)
    assert not TaskRun.objects.exists()


# --- the slots an enqueue provisions ---


def test_enqueue_stores_the_keys_and_provisions_the_slots_once() -> None:
    first = two_at_a_time("a", 0)
    two_at_a_time("b", 0)
    one_per_account(7, "c", 0)
    row = TaskRun.objects.get(pk=first.id)
    assert (row.concurrency_key, row.rate_key) == ("tests.limited.tasks.two_at_a_time", None)
    assert _slots("concurrency", "tests.limited.tasks.two_at_a_time") == [(1, None), (2, None)]
    assert _slots("concurrency", "tests.limited.tasks.one_per_account:7") == [(1, None)]
    handle = two_per_second_per_account("acme")
    assert TaskRun.objects.get(pk=handle.id).rate_key == (
        "tests.limited.tasks.two_per_second_per_account:acme"
    )
    tokens = LimitSlot.objects.filter(kind="rate")
    assert [(t.slot, t.period, t.taken_at) for t in tokens.order_by("slot")] == [
        (1, 1.0, None),
        (2, 1.0, None),
    ]
    assert LimitSlot.objects.count() == 5
    assert not TaskRun.objects.filter(concurrency_key=None, rate_key=None).exists()
    add(1, 2)  # an unlimited run has no key and provisions nothing
    assert TaskRun.objects.filter(concurrency_key=None, rate_key=None).count() == 1
    assert LimitSlot.objects.count() == 5


def test_a_changed_limit_holds_for_the_runs_enqueued_under_it() -> None:
    name = "changing.limit"
    first = task(name=name, concurrency=3, rate="2/s")(lambda: None)
    first()
    assert len(_slots("concurrency", name)) == 3 and len(_slots("rate", name)) == 2
    more = dataclasses.replace(first, concurrency=5, rate="1/m")  # as after a deploy
    more()
    assert len(_slots("concurrency", name)) == 5  # a larger limit adds rows...
    assert len(_slots("rate", name)) == 2
    row = TaskRun.objects.order_by("-id").first()
    assert row is not None
    assert (row.concurrency_limit, row.rate_limit, row.rate_period) == (5, 1, 60.0)
    TaskRun.objects.all().delete()
    fewer = dataclasses.replace(first, concurrency=1, rate=None)
    runs = [fewer().id for _ in range(3)]
    assert len(_slots("concurrency", name)) == 5  # ...a smaller one deletes none: runs say it
    assert _claim() == [runs[0]]


def test_the_many_runs_insert_provisions_their_keys_too() -> None:
    runs = [one_per_account._new_run((account, "k", 0), {}) for account in (1, 2, 2, 3)]
    records, _ = store.insert_runs(runs)
    assert [r.status for r in records] == [WAITING] * 4
    keys = set(LimitSlot.objects.values_list("key", flat=True))
    assert keys == {f"tests.limited.tasks.one_per_account:{n}" for n in (1, 2, 3)}
    assert LimitSlot.objects.count() == 3


# --- the claim ---


def test_the_claim_takes_no_more_than_the_free_slots_and_does_not_block_other_runs() -> None:
    limited = [two_at_a_time(f"r{n}", 0).id for n in range(5)]
    other = add(1, 1).id  # enqueued last: it is claimed anyway
    claimed = _claim()
    assert sorted(claimed) == sorted([*limited[:2], other])
    assert _slots("concurrency", "tests.limited.tasks.two_at_a_time") == [
        (1, limited[0]),
        (2, limited[1]),
    ]
    assert _claim() == []  # the key is full: nothing more, however often it is asked
    _finish(limited[0])  # a finished run frees its slot, in the same statement
    assert _claim() == [limited[2]]
    assert _claim() == []


def test_runs_of_different_keys_run_side_by_side() -> None:
    first = [one_per_account(account, "a", 0).id for account in (1, 2, 3)]
    second = [one_per_account(account, "b", 0).id for account in (1, 2, 3)]
    assert sorted(_claim()) == sorted(first)
    _finish(first[1])
    assert _claim() == [second[1]]


def test_a_claim_of_one_at_a_time_still_finds_the_runs_behind_a_full_key() -> None:
    held = two_at_a_time("held", 0).id
    two_at_a_time("held2", 0)
    assert len(_claim(2)) == 2  # the key is full now
    waiting = [two_at_a_time(f"w{n}", 0).id for n in range(20)]
    other = add(2, 2).id
    assert _claim(1) == [other]  # the scan passes over the full key's 20 runs
    assert TaskRun.objects.filter(pk__in=waiting, status=WAITING).count() == 20
    assert held


@pytest.mark.parametrize("how", ["error", "retry", "shutdown", "rescue", "delete", "cancel"])
def test_every_way_out_of_running_frees_the_slot(how: str) -> None:
    run = two_at_a_time("r", 0).id
    assert _claim() == [run]
    with connection.cursor() as cursor:
        if how == "error":
            store.write_outcomes([Outcome(run, ERROR, ttl=60, error=_ERROR)], WORKER)
        elif how == "retry":
            store.write_outcomes([Outcome(run, WAITING, ttl=60, error=_ERROR, delay=60)], WORKER)
        elif how == "shutdown":
            cursor.execute(sql.RUN_SET_WAITING_IF_RUNNING_ON_WORKER, [WORKER])
        elif how == "rescue":  # its worker has no row: lost
            TaskRun.objects.filter(pk=run).update(started_at=timezone.now() - timedelta(hours=1))
            cursor.execute(
                sql.RUN_RESCUE_IF_WORKER_GONE,
                {"timeout": 30, "names": [], "ttls": [], "ttl": 60},
            )
        elif how == "delete":
            TaskRun.objects.filter(pk=run).delete()
        elif how == "cancel":
            store.write_outcomes([Outcome(run, CANCELLED, ttl=60)], WORKER)
    assert TaskRun.objects.filter(pk=run, status=RUNNING).count() == 0
    assert _slots("concurrency", "tests.limited.tasks.two_at_a_time") == [(1, None), (2, None)]


def test_the_rescuer_frees_a_slot_left_held_by_a_run_that_is_not_running() -> None:
    run = two_at_a_time("r", 0).id
    assert _claim() == [run]
    with connection.cursor() as cursor:
        # As if the trigger had not fired (disabled for a restore, say).
        cursor.execute("ALTER TABLE autotask_task DISABLE TRIGGER autotask_task_slot_released")
        try:
            _finish(run)
        finally:
            cursor.execute("ALTER TABLE autotask_task ENABLE TRIGGER autotask_task_slot_released")
        assert _slots("concurrency", "tests.limited.tasks.two_at_a_time")[0] == (1, run)
        cursor.execute(sql.SLOT_RELEASE_IF_RUN_NOT_RUNNING, [30])
        assert cursor.fetchall() == []  # taken just now: too recent to judge
        LimitSlot.objects.filter(run_id=run).update(taken_at=timezone.now() - timedelta(hours=1))
        cursor.execute(sql.SLOT_RELEASE_IF_RUN_NOT_RUNNING, [30])
        assert cursor.fetchall() == [("tests.limited.tasks.two_at_a_time",)]
    assert _slots("concurrency", "tests.limited.tasks.two_at_a_time")[0] == (1, None)


def test_the_rescuer_writes_the_slots_of_waiting_runs_whose_key_has_none() -> None:
    run = two_at_a_time("r", 0).id
    LimitSlot.objects.all().delete()  # as after a restore without them
    assert _claim() == []  # no slot, no claim: it would wait for ever
    with connection.cursor() as cursor:
        cursor.execute(sql.SLOT_INSERT_MISSING, [])
        assert cursor.fetchall() == [("tests.limited.tasks.two_at_a_time",)] * 2
        cursor.execute(sql.SLOT_INSERT_MISSING, [])
        assert cursor.fetchall() == []
    assert _claim() == [run]


def test_a_rate_limit_lets_so_many_start_per_window_and_says_when_the_next_may() -> None:
    runs = [two_per_second_per_account("acme").id for _ in range(5)]
    other_key = two_per_second_per_account("globex").id
    assert sorted(_claim()) == sorted([*runs[:2], other_key])
    _finish(*runs[:2])
    assert _claim() == []  # finishing does not give a token back: only time does
    with connection.cursor() as cursor:
        cursor.execute(sql.RUN_SECONDS_UNTIL_DUE_LIMITED_ANY_QUEUE, {})
        (seconds,) = cursor.fetchone()
    assert 0.5 < seconds <= 1.0  # the earliest token frees a second after it was taken
    LimitSlot.objects.filter(key__endswith=":acme").update(
        taken_at=timezone.now() - timedelta(seconds=1)
    )
    assert sorted(_claim()) == sorted(runs[2:4])


def test_the_plain_claim_leaves_limited_runs_alone() -> None:
    from autotask.runtime.worker import claim_statement

    assert claim_statement(any_queue=True, limited=True) == sql.RUN_CLAIM_MANY_LIMITED_ANY_QUEUE
    assert claim_statement(any_queue=False, limited=False) == sql.RUN_CLAIM_MANY_IN_QUEUES
    assert "autotask_slot" not in sql.RUN_CLAIM_MANY_ANY_QUEUE
    limited = two_at_a_time("r", 0).id
    plain = add(1, 2).id
    params = {"limit": 10, "worker_id": WORKER, "queues": None}
    with connection.cursor() as cursor:
        cursor.execute(sql.RUN_CLAIM_MANY_ANY_QUEUE, params)
        assert [row[0] for row in cursor.fetchall()] == [plain]
        cursor.execute(sql.SLOT_EXISTS, [])
        assert cursor.fetchone() == (True,)  # so an idle worker switches to the limited claim
    assert _claim() == [limited]


# --- with the runtime ---


def test_the_runtime_runs_a_limited_task_one_at_a_time_woken_by_each_freed_slot(
    settings, start_worker
) -> None:
    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 60  # a freed slot's NOTIFY, not the poll, wakes it
    start_worker()
    handles = [async_one_at_a_time(0.2) for _ in range(4)]
    begun = time.monotonic()
    for handle in handles:
        assert handle.wait(10).status == DONE
    assert time.monotonic() - begun < 5
    runs = sorted(
        TaskRun.objects.filter(pk__in=[h.id for h in handles]), key=lambda r: r.started_at
    )
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at <= later.started_at
    wait_until(
        lambda: _slots("concurrency", "tests.limited.tasks.async_one_at_a_time") == [(1, None)]
    )


def test_a_django_task_takes_the_limits_too() -> None:
    from tests.app.django_tasks import limited_per_key

    result = limited_per_key.enqueue("acme")
    row = TaskRun.objects.get(pk=int(result.id))
    name = "tests.app.django_tasks.limited_per_key"
    assert (row.concurrency_key, row.rate_key) == (f"{name}:acme", name)
    assert len(_slots("concurrency", f"{name}:acme")) == 1
    assert len(_slots("rate", name)) == 100


def test_limits_show_in_health_the_health_command_and_the_admin() -> None:
    runs = [two_at_a_time(f"r{n}", 0).id for n in range(3)]
    assert sorted(_claim()) == sorted(runs[:2])
    two_per_second_per_account("acme")
    state = health()
    limits = {(limit.kind, limit.key): limit for limit in state.limits}
    held = limits["concurrency", "tests.limited.tasks.two_at_a_time"]
    assert (held.size, held.in_use, held.waiting, held.period) == (2, 2, 1, None)
    rated = limits["rate", "tests.limited.tasks.two_per_second_per_account:acme"]
    assert (rated.size, rated.in_use, rated.waiting, rated.period) == (2, 0, 1, 1.0)
    [queue] = state.queues
    assert queue.due == 1  # the rate-limited run may start; the full key's waits on purpose
    assert state.as_dict()["limits"][0]["key"] == "tests.limited.tasks.two_at_a_time"
    assert state.problems == ["queue 'default' has 1 due run(s) and no live worker"]
    out = io.StringIO()
    with pytest.raises(SystemExit):  # unhealthy: the rate-limited run could start, nobody runs it
        call_command("autotask_health", stdout=out)
    assert "concurrency tests.limited.tasks.two_at_a_time: 2/2 running, 1 waiting" in out.getvalue()
    assert "started in the last 1 s, 1 waiting" in out.getvalue()

    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    page = client.get("/admin/autotask/limitslot/?kind=concurrency")
    assert page.status_code == 200
    body = page.content.decode()
    assert "tests.limited.tasks.two_at_a_time" in body
    assert f'/admin/autotask/taskrun/{runs[0]}/change/">run {runs[0]}</a>' in body
    detail = client.get(f"/admin/autotask/taskrun/{runs[2]}/change/").content.decode()
    assert "tests.limited.tasks.two_at_a_time" in detail  # its concurrency_key


def test_a_worker_without_limited_tasks_switches_to_the_limited_claim_when_limits_appear(
    settings, start_worker, monkeypatch
) -> None:
    from autotask import registry

    settings.AUTOTASK_HANDLE_TASK_IDLE_TIME = 1  # it asks whether limits are in use once a poll
    monkeypatch.setattr(registry, "_limited", set())  # as in a process whose tasks have none
    start_worker()
    assert add(1, 1).wait(10).result == 2  # claimed with the plain statement
    monkeypatch.setattr(registry, "has_limits", lambda: False)  # the task below stays unknown
    handle = two_at_a_time("r", 0)  # its enqueue writes the first slots
    assert handle.wait(10).status == DONE
