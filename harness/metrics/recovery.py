"""What a fault did to an engine run, from the monitor's samples and the per-window latencies.

Definitions (docs/faults.md and the README quote these):
- time to first result: from the fault to the first sink row after it (for a kill_job, after the engine runs
  again), on the harness's clock.
- recovery time: from the fault to the first sample after which, for RECOVERY_HOLD_MS, both hold: the lag is at
  most max(2 x its pre-fault maximum, 1 s of load), and every window whose final value reached the sink in that
  span has a latency (event to result) of at most 1.5 x the pre-fault p99. With fewer than MIN_PRE_FAULT_CLOSES
  window closes before the fault there is no baseline: "not measurable". A run that ends before such a span
  was seen has not recovered within the run. With several faults, the pre-fault figures are those from before
  the first one. OSPBench defines recovery the same way in spirit.
- duplicates after a fault: duplicates (see harness/metrics/windows.py) whose sink time falls between this
  fault and the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.metrics.windows import KEY, VALUES

RECOVERY_HOLD_MS = 10_000
MIN_PRE_FAULT_CLOSES = 3
LAG_FACTOR = 2.0
LATENCY_FACTOR = 1.5


@dataclass(frozen=True)
class Recovery:
    recovery_ms: int | None
    note: str | None
    lag_limit: float | None = None
    latency_limit_ms: float | None = None


def duplicates_between(log: pd.DataFrame, time_col: str, start_ms: int, end_ms: int | None) -> int:
    """Duplicate emissions (equal window and values to an earlier emission) whose sink time is in
    [start_ms, end_ms); end_ms None: to the end of the run."""
    if log.empty:
        return 0
    lg = log.sort_values(time_col, kind="stable")
    dup = lg[lg.duplicated(KEY + VALUES, keep="first")]     # the duplicate of harness/metrics/windows.py
    t = dup[time_col]
    return int(((t >= start_ms) & (t < end_ms if end_ms is not None else True)).sum())


def first_result_after(log_times: Any, after_ms: int, fault_ms: int) -> int | None:
    """ms from the fault to the first sink time at or after `after_ms`; None when no row came after it."""
    t = np.asarray(log_times, dtype=float)
    t = t[~np.isnan(t) & (t >= after_ms)]
    return int(t.min() - fault_ms) if t.size else None


def recovery(rows: list[dict[str, Any]], per_window: pd.DataFrame, fault_ms: int, rate_per_s: float,
             undisturbed_until_ms: int | None = None) -> Recovery:
    """Recovery time after a fault at fault_ms (epoch ms); rows: the monitor's samples (wall_ms, lag);
    per_window: final_at_ms and event_to_result_ms per promised window. The pre-fault figures come from before
    undisturbed_until_ms (the run's first fault, default this one): a second fault is judged against the
    undisturbed run, not against the backlog the first one left."""
    base_end = min(fault_ms, undisturbed_until_ms) if undisturbed_until_ms is not None else fault_ms
    done = per_window.dropna(subset=["final_at_ms", "event_to_result_ms"])
    before = done[done["final_at_ms"] < base_end]
    if len(before) < MIN_PRE_FAULT_CLOSES:
        return Recovery(None, f"not measurable: {len(before)} window closes before the fault (needs "
                              f"{MIN_PRE_FAULT_CLOSES})")
    pre_lags = [r["lag"] for r in rows if r["wall_ms"] < base_end and r.get("lag") is not None]
    lag_limit = max(LAG_FACTOR * max(pre_lags, default=0), rate_per_s)
    latency_limit = LATENCY_FACTOR * float(np.percentile(before["event_to_result_ms"].to_numpy(), 99))
    after = [r for r in rows if r["wall_ms"] >= fault_ms]
    final_at = done["final_at_ms"].to_numpy()
    latency = done["event_to_result_ms"].to_numpy()
    for i, r in enumerate(after):
        start, end = r["wall_ms"], r["wall_ms"] + RECOVERY_HOLD_MS
        if after[-1]["wall_ms"] < end:
            break                                    # not observed for long enough
        span = [s for s in after[i:] if s["wall_ms"] <= end]
        if any(s.get("lag") is None or s["lag"] > lag_limit for s in span):
            continue
        landed = (final_at >= start) & (final_at <= end)
        if np.any(latency[landed] > latency_limit):
            continue
        return Recovery(int(start - fault_ms), None, lag_limit, latency_limit)
    observed = (after[-1]["wall_ms"] - fault_ms) / 1000 if after else 0
    return Recovery(None, f"not recovered within the run ({observed:.1f} s observed after the fault; recovered "
                          f"means {RECOVERY_HOLD_MS // 1000} s with lag <= {lag_limit:.0f} records and window "
                          f"latency <= {latency_limit:.0f} ms)", lag_limit, latency_limit)
