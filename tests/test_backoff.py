"""The waits between attempts, by strategy (no database, no sleeping)."""

import pytest

from autotask import InvalidTaskOptions
from autotask.backoff import background_tasks, constant, exponential, linear
from autotask.runtime.runs import DEFAULT_BACKOFF


def waits(strategy, attempts: int = 5, retry_delay: float = 2.0) -> list[float]:
    return [strategy.seconds(attempt, retry_delay) for attempt in range(1, attempts + 1)]


def test_each_strategy_waits_as_it_says() -> None:
    assert waits(constant()) == [2.0] * 5  # AUTOTASK_RETRY_DELAY, as the original autotask
    assert waits(constant(7)) == [7.0] * 5
    assert waits(linear(3)) == [3.0, 6.0, 9.0, 12.0, 15.0]
    assert waits(exponential(jitter=False)) == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert waits(exponential(base=3, first=1, cap=20, jitter=False)) == [1, 3, 9, 20, 20]
    assert waits(background_tasks()) == [6.0, 21.0, 86.0, 261.0, 630.0]  # attempts ** 4 + 5


def test_jitter_draws_between_half_and_all_of_the_wait() -> None:
    drawn = [exponential(first=10, jitter=True).seconds(3, 2.0) for _ in range(200)]
    assert all(20 <= wait <= 40 for wait in drawn)
    assert len(set(drawn)) > 100  # runs that failed together come back apart


def test_the_default_is_exponential_from_the_retry_delay_and_never_overflows() -> None:
    assert exponential() == DEFAULT_BACKOFF
    assert exponential(jitter=False).seconds(10_000, 2.0) == 3600.0  # the cap
    assert background_tasks().seconds(10**9, 2.0) > 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: constant(-1), r"constant\(seconds\) must be at least 0"),
        (lambda: linear(float("nan")), r"linear\(seconds\) must be a number"),
        (lambda: exponential(base=0.5), r"exponential\(base\) must be at least 1"),
        (lambda: exponential(cap="long"), r"exponential\(cap\) must be a number"),
    ],
)
def test_bad_strategies_are_refused(make, message: str) -> None:
    with pytest.raises(InvalidTaskOptions, match=message):
        make()
