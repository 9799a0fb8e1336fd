"""Latency and correctness computations on hand-built sink rows (no services)."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.metrics import windows as wm

EXP_COLS = ["key", "window_start", "window_end", "cnt", "sum", "min", "max", "last_sent_at"]


def _expected(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=EXP_COLS)


def _log(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=EXP_COLS + ["inserted_at_ms"])


def test_final_once_latencies() -> None:
    exp = _expected([("a", 0, 1000, 2, 5, 2, 3, 900), ("b", 0, 1000, 1, 7, 7, 7, 400)])
    log = _log([("a", 0, 1000, 2, 5, 2, 3, 900, 3100.0), ("b", 0, 1000, 1, 7, 7, 7, 400, 3050.0)])
    per = wm.window_latencies(exp, log).set_index("key")
    assert per.loc["a", "event_to_result_ms"] == 2200 and per.loc["a", "window_close_ms"] == 2100
    assert per.loc["b", "event_to_result_ms"] == 2650 and per.loc["b", "window_close_ms"] == 2050


def test_partial_updates_take_the_start_of_the_last_final_run() -> None:
    exp = _expected([("a", 0, 1000, 3, 6, 1, 3, 950)])
    log = _log([
        ("a", 0, 1000, 1, 1, 1, 1, 100, 1000.0),    # partial
        ("a", 0, 1000, 3, 6, 1, 3, 950, 1200.0),    # final value reached...
        ("a", 0, 1000, 2, 3, 1, 2, 950, 1300.0),    # ...lost again (e.g. a wrong replay)
        ("a", 0, 1000, 3, 6, 1, 3, 950, 1500.0),    # final again, and kept
        ("a", 0, 1000, 3, 6, 1, 3, 950, 1600.0),    # an identical re-emission does not move it
    ])
    per = wm.window_latencies(exp, log).iloc[0]
    assert per["final_at_ms"] == 1500 and per["event_to_result_ms"] == 550
    assert per["first_emission_ms"] == 1000 - 950 and per["emissions"] == 5
    dup, reem = wm.duplicates_and_reemissions(log)
    assert reem == 4 and dup == 2  # rows equal to an earlier one: the 1500 and 1600 rows repeat the 1200 one


def test_window_never_final_has_no_latency() -> None:
    exp = _expected([("a", 0, 1000, 3, 6, 1, 3, 950)])
    log = _log([("a", 0, 1000, 2, 3, 1, 2, 900, 1100.0)])
    per = wm.window_latencies(exp, log).iloc[0]
    assert pd.isna(per["final_at_ms"]) and pd.isna(per["event_to_result_ms"])


def test_compare_final_and_late_drops() -> None:
    complete = _expected([("a", 0, 1000, 3, 6, 1, 3, 9), ("a", 1000, 2000, 1, 5, 5, 5, 9), ("b", 0, 1000, 1, 1, 1, 1, 9)])
    on_time = _expected([("a", 0, 1000, 2, 3, 1, 2, 9), ("b", 0, 1000, 1, 1, 1, 1, 9)])
    final = pd.DataFrame([("a", 0, 1000, 2, 3, 1, 2), ("c", 0, 1000, 1, 1, 1, 1)],
                         columns=["key", "window_start", "window_end", "cnt", "sum", "min", "max"])
    c = wm.compare_final(on_time, final)
    assert c == {"expected": 2, "exact": 1, "wrong": 0, "missing": 1, "extra": 1}
    drops = wm.late_drops(complete, on_time, final, windows_per_event=1)
    # complete lacks 1 (a/0) + 1 (a/1000) + 1 (b) = 3; on-time lacks 1 (b): 2 late, 1 unexpected
    assert drops == {"late_events_dropped": 2, "on_time_events_missing": 1}


def test_report_flags_emissions_before_the_window_could_close() -> None:
    exp = _expected([("a", 0, 1000, 1, 1, 1, 1, 500)])
    log = _log([("a", 0, 1000, 1, 1, 1, 1, 500, 1200.0)])
    rep = wm.report(promised="on_time", expected={"on_time": exp, "complete": exp}, log=log,
                    final=log.drop(columns=["inserted_at_ms"]), time_base_ms=0, warmup_ms=0, watermark_delay_ms=2000,
                    ooo_slack_ms=500, emits="final", windows_per_event=1)
    assert rep.summary["emitted_before_window_close"] == 1  # 1200 < 1000 + 2000 - 500


@pytest.mark.parametrize("n,unreliable", [(10, ["p50", "p90", "p99", "p99.9"]), (1000, ["p99.9"]), (10_000, [])])
def test_percentiles_flag_too_few_samples(n: int, unreliable: list[str]) -> None:
    from harness.metrics.stats import percentiles

    p = percentiles(list(range(n)))
    assert p["count"] == n and p["unreliable"] == unreliable and p["max"] == n - 1
