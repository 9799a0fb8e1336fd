"""The recovery-time rule (harness/metrics/recovery.py) on hand-made samples and windows."""

from __future__ import annotations

import pandas as pd

from harness.metrics.bad_input import malformed_around_faults
from harness.metrics.recovery import RECOVERY_HOLD_MS, duplicates_between, first_result_after, recovery

FAULT = 100_000


def samples(lag_at: dict[int, int | None], until_ms: int) -> list[dict]:
    """A sample every 500 ms from 10 s before the fault; lag 10 unless lag_at sets it (from that time on)."""
    rows, lag = [], 10
    for t in range(FAULT - 10_000, until_ms + 1, 500):
        lag = lag_at.get(t, lag)
        rows.append({"wall_ms": t, "lag": lag})
    return rows


def windows(latency_at: dict[int, int]) -> pd.DataFrame:
    """One window landing per second from 10 s before the fault, latency 1000 ms unless latency_at says."""
    ts = range(FAULT - 10_000, FAULT + 40_000, 1000)
    return pd.DataFrame({"final_at_ms": list(ts), "event_to_result_ms": [latency_at.get(t, 1000) for t in ts]})


def test_recovery_ends_when_lag_and_latency_are_back_for_the_hold() -> None:
    rows = samples({FAULT: 5000, FAULT + 6_000: 15}, FAULT + 40_000)      # 15 <= max(2 x 10, 400)
    slow = {FAULT + s * 1000: 8000 for s in range(0, 9)}                 # the last slow window lands at +8 s
    r = recovery(rows, windows(slow), FAULT, rate_per_s=400)
    assert r.recovery_ms == 8_500 and r.note is None                      # the first sample after the slow window
    assert r.lag_limit == 400 and r.latency_limit_ms == 1500


def test_an_unknown_lag_is_not_recovered() -> None:
    rows = samples({FAULT: None, FAULT + 3_000: 10}, FAULT + 40_000)       # the engine was down: no position
    assert recovery(rows, windows({}), FAULT, rate_per_s=400).recovery_ms == 3_000


def test_too_few_closes_before_the_fault_is_not_measurable() -> None:
    w = windows({})
    w = w[(w["final_at_ms"] >= FAULT - 2_000)]
    r = recovery(samples({}, FAULT + 40_000), w, FAULT, rate_per_s=400)
    assert r.recovery_ms is None and r.note is not None and r.note.startswith("not measurable: 2 window closes")


def test_a_run_that_ends_too_soon_has_not_recovered() -> None:
    rows = samples({FAULT: 5000}, FAULT + RECOVERY_HOLD_MS + 2_000)
    r = recovery(rows, windows({}), FAULT, rate_per_s=400)
    assert r.recovery_ms is None and r.note is not None and "not recovered within the run" in r.note


def test_first_result_after() -> None:
    assert first_result_after([FAULT - 5, FAULT + 700, FAULT + 300, float("nan")], FAULT + 200, FAULT) == 300
    assert first_result_after([FAULT - 5], FAULT, FAULT) is None


def test_a_second_fault_is_judged_against_the_run_before_the_first() -> None:
    # the first fault (at -6 s) left a backlog and slow windows until the second; judged against the time
    # before the first fault they count, judged against the time just before the second they would not
    rows = samples({FAULT - 6_000: 5000, FAULT + 5_000: 10}, FAULT + 40_000)
    slow = {FAULT + s * 1000: 8000 for s in range(-5, 3)}
    assert recovery(rows, windows(slow), FAULT, 400).recovery_ms == 0
    assert recovery(rows, windows(slow), FAULT, 400, undisturbed_until_ms=FAULT - 6_000).recovery_ms == 5_000


def test_duplicates_between_faults() -> None:
    row = {"key": "a", "window_start": 0, "window_end": 1, "cnt": 1, "sum": 1, "min": 1, "max": 1}
    log = pd.DataFrame([{**row, "t": 1}, {**row, "t": 5}, {**row, "cnt": 2, "t": 6}, {**row, "t": 9}])
    assert duplicates_between(log, "t", 0, 6) == 1 and duplicates_between(log, "t", 6, None) == 1
    assert duplicates_between(log.iloc[:0], "t", 0, None) == 0


def test_malformed_lost_and_rewritten_per_fault() -> None:
    # five malformed records (partition 0, offsets 1..5) sent at 1, 2, 3 s (before fault A at 3.5 s) and 5, 6 s
    # (before fault B at 6.5 s); a well-formed one that must never count
    special = pd.DataFrame({"kind": ["invalid_json"] * 5 + ["late"], "sent_at": [1000, 2000, 3000, 5000, 6000, 2500],
                            "kafka_partition": [0] * 6, "kafka_offset": [1, 2, 3, 4, 5, 9]})
    # the engine wrote 1 and 2 before A, 1 again after A (a replay), 4 before B, 2 again after B; 3 and 5 never
    written = pd.DataFrame({"kafka_partition": [0] * 5, "kafka_offset": [1, 2, 1, 4, 2],
                            "inserted_at_ms": [1500, 2500, 4000, 5500, 7000]})
    assert malformed_around_faults(special, written, [3500, 6500]) == [(1, 1), (1, 1)]
    assert malformed_around_faults(special, written, []) == []
    # a delivery report missing: which pairs are malformed is unknown, the rewrites still count
    unknown = special.assign(kafka_offset=[1, 2, -1, 4, 5, 9])
    assert malformed_around_faults(unknown, written, [3500]) == [(None, 2)]
