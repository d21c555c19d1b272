"""Next-run computation against a table of cases, with fixed clocks and no sleeping."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from autotask.exceptions import InvalidTaskOptions
from autotask.schedule import Cron, Every, seed_cron

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, tz: ZoneInfo = UTC_ZONE) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def seed(crontab: str, tz: ZoneInfo = UTC_ZONE) -> Cron:
    return seed_cron(crontab=crontab, tz=tz)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        # The seed's README: every minute.
        (seed("* * * * *"), "2026-06-01 12:00:30", "2026-06-01 12:01:00"),
        # Daily at 7:15 and 7:30.
        (seed("15,30 7 * * *"), "2026-06-01 07:20:00", "2026-06-01 07:30:00"),
        (seed("15,30 7 * * *"), "2026-06-01 07:30:00", "2026-06-02 07:15:00"),
        # During hour 9 on Mondays and on the 10th-15th, only in April and July (seed order:
        # minutes hours dow months dom). 1 April 2026 is a Wednesday.
        (seed("* 9 0 4,7 10-15"), "2026-04-01 00:00:00", "2026-04-06 09:00:00"),
        (seed("* 9 0 4,7 10-15"), "2026-04-06 09:00:00", "2026-04-06 09:01:00"),
        (seed("* 9 0 4,7 10-15"), "2026-04-06 09:59:00", "2026-04-10 09:00:00"),
        (seed("* 9 0 4,7 10-15"), "2026-04-15 09:59:00", "2026-04-20 09:00:00"),
        (seed("* 9 0 4,7 10-15"), "2026-04-27 09:59:00", "2026-07-06 09:00:00"),
        # Steps: */15 minutes; */2 days of the week in the seed's numbering (Mon, Wed, Fri, Sun).
        (seed("*/15 * * * *"), "2026-06-01 12:16:00", "2026-06-01 12:30:00"),
        (seed("0 0 */2 * *"), "2026-06-01 00:00:00", "2026-06-03 00:00:00"),  # Mon -> Wed
        (seed("0 0 */2 * *"), "2026-06-05 00:00:00", "2026-06-07 00:00:00"),  # Fri -> Sun
        (seed("0 0 */2 * *"), "2026-06-07 00:00:00", "2026-06-08 00:00:00"),  # Sun -> Mon
        # Ranges of weekdays in the seed's numbering: 5-6 is the weekend.
        (seed("0 12 5-6 * *"), "2026-06-01 00:00:00", "2026-06-06 12:00:00"),
        # The seed's lists: Saturday (5) at noon.
        (
            seed_cron(minutes=[0], hours=[12], dow=[5], tz=UTC_ZONE),
            "2026-06-01 00:00:00",
            "2026-06-06 12:00:00",
        ),
        # dom and dow both given: a day matches if either does (Monday, or the 1st).
        (
            seed_cron(minutes=[0], hours=[0], dow=[0], dom=[1], tz=UTC_ZONE),
            "2026-06-02 00:00:00",
            "2026-06-08 00:00:00",
        ),
        (
            seed_cron(minutes=[0], hours=[0], dow=[0], dom=[1], tz=UTC_ZONE),
            "2026-06-29 00:00:00",
            "2026-07-01 00:00:00",
        ),
        # months narrows further: the 1st, in March and September only.
        (
            seed_cron(minutes=[0], hours=[0], dom=[1], months=[3, 9], tz=UTC_ZONE),
            "2026-03-01 00:00:00",
            "2026-09-01 00:00:00",
        ),
        # Standard cron for new code: croniter's */n, names, @daily.
        (Cron("*/5 * * * *", UTC_ZONE), "2026-06-01 12:01:00", "2026-06-01 12:05:00"),
        (Cron("0 9 * * mon-fri", UTC_ZONE), "2026-06-05 09:00:00", "2026-06-08 09:00:00"),
        (Cron("@daily", UTC_ZONE), "2026-06-01 00:00:00", "2026-06-02 00:00:00"),
        # Elapsed time.
        (Every(90), "2026-06-01 12:00:00", "2026-06-01 12:01:30"),
    ],
)
def test_next_run(schedule: Cron | Every, after: str, expected: str) -> None:
    assert schedule.next_after(at(after)) == at(expected)


def test_cron_in_a_zone_returns_utc() -> None:
    nine_in_berlin = Cron("0 9 * * *", BERLIN)
    assert nine_in_berlin.next_after(at("2026-06-01 00:00:00")) == at("2026-06-01 07:00:00")
    assert nine_in_berlin.next_after(at("2026-06-01 00:00:00")).tzinfo is UTC


def _runs_per_local_day(schedule: Cron, start: str, days: int) -> dict[str, int]:
    moment, end = at(start, BERLIN), at(start, BERLIN) + timedelta(days=days)
    counts: dict[str, int] = {}
    while (moment := schedule.next_after(moment)) < end:
        day = moment.astimezone(BERLIN).date().isoformat()
        counts[day] = counts.get(day, 0) + 1
    return counts


@pytest.mark.parametrize("time", ["0 2", "30 2", "0 3", "0 9"])
@pytest.mark.parametrize("start", ["2026-03-26 00:00:00", "2026-10-23 00:00:00"])
def test_a_daily_run_neither_skips_nor_doubles_across_either_dst_change(
    time: str, start: str
) -> None:
    daily = Cron(f"{time} * * *", BERLIN)
    counts = _runs_per_local_day(daily, start, days=6)
    assert list(counts.values()) == [1] * 6, counts


def test_a_time_skipped_by_spring_forward_runs_once_the_clock_has_jumped() -> None:
    daily = Cron("30 2 * * *", BERLIN)  # 29 March 2026: 02:00 CET -> 03:00 CEST
    first = daily.next_after(at("2026-03-28 03:00:00", BERLIN))
    assert first == at("2026-03-29 03:30:00", BERLIN)
    assert daily.next_after(first) == at("2026-03-30 02:30:00", BERLIN)


def test_a_time_repeated_by_fall_back_runs_at_its_first_occurrence_only() -> None:
    daily = Cron("30 2 * * *", BERLIN)  # 25 October 2026: 03:00 CEST -> 02:00 CET
    first = daily.next_after(at("2026-10-24 03:00:00", BERLIN))
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert daily.next_after(first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # 02:30 CET


def test_every_first_run_is_now_with_start_now_else_after_the_interval() -> None:
    now = at("2026-06-01 12:00:00")
    assert Every(3600, start_now=True).first(now) == now
    assert Every(3600).first(now) == at("2026-06-01 13:00:00")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: seed("60 * * * *"), r"field minutes: '60' is outside 0-59"),
        (lambda: seed("* 24 * * *"), r"field hours: '24' is outside 0-23"),
        (lambda: seed("* * 7 * *"), r"field dow: '7' is outside 0-6 \(Monday = 0\)"),
        (lambda: seed("* * * 13 *"), r"field months: '13' is outside 1-12"),
        (lambda: seed("* * * * 0"), r"field dom: '0' is outside 1-31"),
        (lambda: seed("* * * *"), r"must have 5 fields in the order minutes hours dow months dom"),
        (lambda: seed("a * * * *"), r"field minutes: 'a' is not \*, an integer"),
        (lambda: seed("5-2 * * * *"), r"field minutes: '5-2' is outside"),
        (lambda: seed_cron(minutes=[60], tz=UTC_ZONE), r"minutes: 60 is not an integer in 0-59"),
        (lambda: seed_cron(dow=[7], tz=UTC_ZONE), r"dow: 7 is not an integer in 0-6"),
        (lambda: seed_cron(dom=[True], tz=UTC_ZONE), r"dom: True is not an integer"),
        (lambda: seed_cron(hours="5", tz=UTC_ZONE), r"hours must be a list of integers 0-23"),
        (lambda: seed_cron(months=[], tz=UTC_ZONE), r"months must not be empty"),
        (lambda: Cron("99 * * * *", UTC_ZONE), r"cron '99 \* \* \* \*' is not valid"),
        (lambda: Cron("0 0 31 2 *", UTC_ZONE), r"cron '0 0 31 2 \*' is not valid"),
        (lambda: Cron("", UTC_ZONE), r"cron must be a cron expression"),
        (lambda: Every(0), r"every must be from 1 second"),
        (lambda: Every(float("nan")), r"every must be from 1 second"),
        (lambda: Every("60"), r"every must be a number of seconds"),
    ],
)
def test_bad_schedules_are_value_errors_naming_the_field_and_value(make, message: str) -> None:
    with pytest.raises(InvalidTaskOptions, match=message) as caught:
        make()
    assert isinstance(caught.value, ValueError)


def test_every_counts_elapsed_time_whatever_zone_the_moment_is_in() -> None:
    first_0230 = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=0)  # CEST, 00:30 UTC
    assert Every(3600).next_after(first_0230) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    before_jump = datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN)  # CET, 00:30 UTC
    assert Every(3600).next_after(before_jump) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_specs_tell_intervals_apart() -> None:
    assert Every(1234567).spec != Every(1234568).spec
    assert (Every(3600).spec, Every(1.5).spec) == ("every 3600s", "every 1.5s")
    assert Every(60, start_now=True).spec == "every 60s from start"


def test_cron_wants_five_fields_and_the_seed_lists_take_a_single_integer() -> None:
    with pytest.raises(InvalidTaskOptions, match=r"must have 5 fields .* not 6"):
        Cron("* * * * * *", UTC_ZONE)  # croniter would read seconds: every second
    assert Cron("@hourly", UTC_ZONE).expression == "@hourly"
    single = seed_cron(minutes=5, hours=7, tz=UTC_ZONE)
    assert single.expression == seed_cron(minutes=[5], hours=[7], tz=UTC_ZONE).expression
