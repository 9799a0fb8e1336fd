"""The keeping-up rule on made-up monitor samples (the live flags are in test_wrong_engine.py)."""

from __future__ import annotations

from harness.metrics.keeping_up import judge


def samples(lag_at: object, seconds: float = 20, step_ms: int = 500) -> list[dict[str, object]]:
    return [{"wall_ms": t, "lag": lag_at(t)} for t in range(0, int(seconds * 1000) + 1, step_ms)]  # type: ignore[operator]


def test_continuous_engine_with_growing_lag_or_short_read_rate_is_behind() -> None:
    steady = samples(lambda t: 40 + (t // 500 % 2) * 60)   # jitter of one poll batch, no trend
    ok = judge(steady, 0, 20_000, trigger_interval_ms=200, acked_rate=500, in_rate=499)
    assert ok.kept_up is True and ok.rule == "continuous"
    growing = samples(lambda t: t // 100)                   # 10 records/s more unread every second: 2% of 500/s
    behind = judge(growing, 0, 20_000, trigger_interval_ms=200, acked_rate=500, in_rate=499)
    assert behind.kept_up is False and "lag grew 10 records/s" in behind.reason
    slow = judge(steady, 0, 20_000, trigger_interval_ms=0, acked_rate=500, in_rate=470)
    assert slow.kept_up is False and "6% below" in slow.reason


def test_a_short_noisy_lag_is_not_a_trend() -> None:
    # over 2 s, 60 records of jitter fit a slope of 14 records/s (above 1% of 416/s) but are within the noise
    jitter = samples(lambda t: {0: 0, 500: 10, 1000: 30, 1500: 20, 2000: 60}[t], seconds=2)
    assert judge(jitter, 0, 2000, trigger_interval_ms=0, acked_rate=416, in_rate=410).kept_up is True
    # a read rate 5.3% short over 4 s is 88 records, one commit pause's worth (CI saw it from an engine whose sink
    # pauses 0.5 s per commit); the same shortfall over 20 s is a trend
    flat = samples(lambda t: 40, seconds=4)
    assert judge(flat, 0, 4000, trigger_interval_ms=0, acked_rate=419, in_rate=397).kept_up is True
    long = judge(samples(lambda t: 40), 0, 20_000, trigger_interval_ms=0, acked_rate=419, in_rate=397)
    assert long.kept_up is False and "5% below" in long.reason


def test_interval_engine_behind_when_a_run_leaves_more_than_an_interval_unread() -> None:
    # runs every 2 s at 500/s: the lag saw-tooths from ~50 to ~1000 and back
    keeps = samples(lambda t: 50 + (t % 2000) // 2)
    assert judge(keeps, 0, 18_000, trigger_interval_ms=2000, acked_rate=500, in_rate=None).kept_up is True
    falls = samples(lambda t: 50 + (t % 2000) // 2 + t // 10)   # and 100 records/s more left after each run
    k = judge(falls, 0, 18_000, trigger_interval_ms=2000, acked_rate=500, in_rate=None)
    assert k.kept_up is False and k.rule == "interval" and k.max_lag_after_run is not None
    assert judge([], 0, 500, trigger_interval_ms=2000, acked_rate=500, in_rate=None).kept_up is None


def test_nothing_acknowledged_is_not_judged() -> None:
    assert judge(samples(lambda t: 0), 0, 20_000, trigger_interval_ms=0, acked_rate=None, in_rate=None).kept_up is None
