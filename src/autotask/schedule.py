"""When a periodic or cron task runs next: pure computation, no I/O, every time aware.

Three ways to say it, each validated when the task is decorated (a ``ValueError`` naming the
field and the value):

- ``Every``: a fixed interval (``periodic_task(seconds=)``, ``@task(every=)``), in elapsed time;
- ``Cron``: standard five-field cron (``@task(cron=)``: minute hour day-of-month month
  day-of-week, with croniter's ``*/n``, names and ``@daily``), in a time zone;
- the seed's ``cron_task`` lists and crontab string (field order minutes hours dow months dom,
  Monday = 0), translated into a ``Cron``.

Cron times are wall-clock times in the schedule's zone. Across a DST change a daily run neither
skips nor doubles: a time that does not exist that night (spring forward) runs when the clock
has jumped past it, one that exists twice (fall back) runs at its first occurrence only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterError, croniter

from .exceptions import InvalidTaskOptions

# Past this many candidates the expression cannot match anything real (e.g. 30 February).
_MAX_CANDIDATES = 1000


@dataclass(frozen=True)
class Every:
    """Every ``seconds`` of elapsed time; the first run at once if ``start_now``."""

    seconds: float
    start_now: bool = False
    option: str = field(default="every", compare=False)  # its name in errors

    def __post_init__(self) -> None:
        seconds = self.seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise InvalidTaskOptions(f"{self.option} must be a number of seconds, not {seconds!r}.")
        if not 1 <= seconds <= 366 * 86400:
            raise InvalidTaskOptions(
                f"{self.option} must be from 1 second to a year (31,622,400 s), not {seconds!r}."
            )

    @property
    def spec(self) -> str:
        seconds = float(self.seconds)
        amount = str(int(seconds)) if seconds.is_integer() else repr(seconds)
        return f"every {amount}s" + (" from start" if self.start_now else "")

    def first(self, now: datetime) -> datetime:
        return now if self.start_now else self.next_after(now)

    def next_after(self, moment: datetime) -> datetime:
        # In UTC: an aware datetime of a zone with DST adds wall-clock time, not elapsed time.
        return moment.astimezone(UTC) + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Cron:
    """A standard five-field cron expression, evaluated in the wall-clock time of ``tz``."""

    expression: str
    tz: ZoneInfo

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or not self.expression.strip():
            raise InvalidTaskOptions(f"cron must be a cron expression, not {self.expression!r}.")
        fields = self.expression.split()
        if not self.expression.startswith("@") and len(fields) != 5:
            raise InvalidTaskOptions(
                f"cron {self.expression!r} must have 5 fields (minute hour day-of-month month "
                f"day-of-week), not {len(fields)}."
            )
        try:  # one step, which also finds expressions no date matches (30 February)
            croniter(self.expression, datetime(2000, 1, 1)).get_next(datetime)
        except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
            raise InvalidTaskOptions(f"cron {self.expression!r} is not valid: {exc}") from None

    @property
    def spec(self) -> str:
        return f"cron {self.expression} ({self.tz.key})"

    def first(self, now: datetime) -> datetime:
        return self.next_after(now)

    def next_after(self, moment: datetime) -> datetime:
        """The first matching time strictly after ``moment`` (aware), as an aware UTC time.

        croniter steps through naive wall-clock times; each candidate is then placed in the
        zone with ``fold=0``, which puts a time skipped by DST just after the jump and a time
        that happens twice at its first occurrence.
        """
        wall = moment.astimezone(self.tz).replace(tzinfo=None)
        candidates = croniter(self.expression, wall)
        for _ in range(_MAX_CANDIDATES):
            naive: datetime = candidates.get_next(datetime)
            aware = naive.replace(tzinfo=self.tz, fold=0)
            if aware > moment:
                return aware.astimezone(UTC)
        raise InvalidTaskOptions(f"cron {self.expression!r} never matches a real time.")


Schedule = Every | Cron


def zone(tz: str | ZoneInfo | None, default: str) -> ZoneInfo:
    """The zone of a cron schedule: ``tz`` if given, else ``default`` (settings.TIME_ZONE)."""
    if isinstance(tz, ZoneInfo):
        return tz
    name = default if tz is None else tz
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidTaskOptions(
            f"tz must name a time zone (like 'Europe/Berlin'), not {name!r}."
        ) from None


# --- the seed's cron_task ---

# Seed field name -> (lowest, highest) value; dow is 0-6 with Monday = 0.
_SEED_RANGES = {
    "minutes": (0, 59),
    "hours": (0, 23),
    "dow": (0, 6),
    "months": (1, 12),
    "dom": (1, 31),
}
_SEED_CRONTAB_ORDER = ("minutes", "hours", "dow", "months", "dom")
_TOKEN = re.compile(r"^(?:(\*)|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


def seed_cron(
    *,
    minutes: Iterable[int] | int | None = None,
    hours: Iterable[int] | int | None = None,
    dow: Iterable[int] | int | None = None,
    months: Iterable[int] | int | None = None,
    dom: Iterable[int] | int | None = None,
    crontab: str | None = None,
    tz: ZoneInfo,
) -> Cron:
    """The seed's ``cron_task`` arguments as a ``Cron``; ``crontab`` overrides the lists."""
    if crontab is not None:
        fields = _parse_seed_crontab(crontab)
    else:
        given = {"minutes": minutes, "hours": hours, "dow": dow, "months": months, "dom": dom}
        fields = {name: _seed_list(name, value) for name, value in given.items()}
    return Cron(_standard_expression(fields), tz)


def _seed_list(name: str, value: Iterable[int] | int | None) -> set[int] | None:
    """A list argument of ``cron_task``: None (every value), integers in the field's range, or
    one such integer alone."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    low, high = _SEED_RANGES[name]
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidTaskOptions(
            f"cron_task {name} must be a list of integers {low}-{high}, not {value!r}."
        )
    items = list(value)
    if not items:
        raise InvalidTaskOptions(f"cron_task {name} must not be empty (None means every value).")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
            raise InvalidTaskOptions(
                f"cron_task {name}: {item!r} is not an integer in {low}-{high}"
                + (" (Monday = 0)." if name == "dow" else ".")
            )
    return set(items)


def _parse_seed_crontab(crontab: str) -> dict[str, set[int] | None]:
    if not isinstance(crontab, str):
        raise InvalidTaskOptions(f"cron_task crontab must be a string, not {crontab!r}.")
    parts = crontab.split()
    if len(parts) != 5:
        raise InvalidTaskOptions(
            f"cron_task crontab {crontab!r} must have 5 fields in the order "
            "minutes hours dow months dom."
        )
    return {
        name: _parse_seed_field(name, part)
        for name, part in zip(_SEED_CRONTAB_ORDER, parts, strict=True)
    }


def _parse_seed_field(name: str, text: str) -> set[int] | None:
    """One crontab field of ``*``, integers, ``a-b`` ranges and ``/n`` steps, comma-separated."""
    low, high = _SEED_RANGES[name]
    if text == "*":
        return None
    values: set[int] = set()
    for token in text.split(","):
        match = _TOKEN.match(token)
        if match is None:
            raise InvalidTaskOptions(
                f"cron_task crontab field {name}: {token!r} is not *, an integer, a range "
                "a-b or a step */n."
            )
        star, first, last, step = match.groups()
        start = low if star else int(first)
        end = high if star else int(last if last is not None else first)
        every = int(step) if step is not None else 1
        if not (low <= start <= high and low <= end <= high) or start > end or every < 1:
            raise InvalidTaskOptions(
                f"cron_task crontab field {name}: {token!r} is outside {low}-{high}"
                + (" (Monday = 0)." if name == "dow" else ".")
            )
        values.update(range(start, end + 1, every))
    return values


def _standard_expression(fields: dict[str, set[int] | None]) -> str:
    """Five standard cron fields; seed dow (Monday = 0) becomes cron's (Sunday = 0).

    Standard cron already has the seed's rule for days: with both day-of-month and day-of-week
    restricted, a day matches if either does.
    """

    def field(values: set[int] | None) -> str:
        return "*" if values is None else ",".join(str(v) for v in sorted(values))

    dow = fields["dow"]
    cron_dow = None if dow is None else {(day + 1) % 7 for day in dow}
    return " ".join(
        (
            field(fields["minutes"]),
            field(fields["hours"]),
            field(fields["dom"]),
            field(fields["months"]),
            field(cron_dow),
        )
    )
