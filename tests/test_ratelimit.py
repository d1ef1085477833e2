"""Token bucket, backoff and Retry-After parsing (pure, on a fake clock)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from app.integrations.ratelimit import Backoff, TokenBucket, parse_retry_after


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_serves_its_capacity_then_waits_for_the_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, rate_per_s=1.0, clock=clock, sleep=clock.sleep)
    waited = [bucket.take() for _ in range(10)]
    assert waited == [0.0] * 10
    assert bucket.take() == pytest.approx(1.0)  # the 11th waits one refill
    assert clock.slept == [pytest.approx(1.0)]


def test_bucket_refills_with_time_but_not_above_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, rate_per_s=2.0, clock=clock, sleep=clock.sleep)
    bucket.take(5)
    clock.now += 1.0
    assert bucket.available == pytest.approx(2.0)
    clock.now += 100.0
    assert bucket.available == pytest.approx(5.0)


def test_bucket_trusts_the_servers_count() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, rate_per_s=50.0, clock=clock, sleep=clock.sleep)
    bucket.set_available(100)
    assert bucket.take(150) == pytest.approx(1.0)  # 50 more points at 50/s


def test_bucket_refuses_a_request_larger_than_itself() -> None:
    bucket = TokenBucket(10, rate_per_s=1.0)
    with pytest.raises(ValueError, match="bucket of 10"):
        bucket.take(11)


@pytest.mark.parametrize("capacity,rate", [(0, 1.0), (1, 0.0), (-1, 1.0)])
def test_bucket_needs_positive_numbers(capacity: float, rate: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(capacity, rate)


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, rng=random.Random(7))
    delays = [backoff.delay(n) for n in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


def test_backoff_waits_what_the_server_asked() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0)
    assert backoff.delay(0, retry_after_s=42.0) == 42.0
    assert 0.5 <= backoff.delay(0, retry_after_s=0.0) <= 1.0


@pytest.mark.parametrize(
    "header,expected",
    [
        ("10", 10.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("Fri, 27 Nov 2026 12:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 11:59:00 GMT", 0.0),
    ],
)
def test_retry_after_parses_both_forms(header: str | None, expected: float | None) -> None:
    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected
