"""Did an engine keep up with the load? One rule set, used by the run's verdict and by capacity steps.

An engine that falls behind measures its own backlog: its latency grows with the run's length, not with what
it adds per window, so the report must say so beside its figures.

- Continuous and micro-batch engines (longest trigger interval under 1 s): behind when, after the warm-up, the
  lag grows faster than LAG_SLOPE_SHARE of the acknowledged rate, or the rate it reads is more than
  IN_RATE_SHORTFALL below the acknowledged rate; either only when it adds up to more than the lag's sampling
  noise over the measured span.
- Interval engines: behind when, after a run, more than one interval's arrivals are still unread (the lag's
  minimum in some interval-long stretch, from the warm-up to one interval after the last send, exceeds what
  arrives in an interval), which is what a run that starts later than its schedule or reads less than the
  topic holds leaves behind.
"""

from __future__ import annotations

from typing import Any

from harness.metrics.throughput import rate_between
from harness.results.document import KeepingUp

CONTINUOUS_BELOW_MS = 1000     # a trigger interval under this is a continuous or micro-batch engine
LAG_SLOPE_SHARE = 0.01         # lag growth allowed, as a share of the acknowledged rate
IN_RATE_SHORTFALL = 0.05       # read rate allowed below the acknowledged rate
INTERVAL_SLACK = 1.10          # an interval's arrivals, with room for the rate's jitter
# A sampled lag jitters by a poll or flush batch; over a short load that alone can look like a slope. Growth is
# counted only beyond this many records, or this share of a second's arrivals, whichever is more.
LAG_NOISE_RECORDS = 100
LAG_NOISE_SECONDS = 0.25


def judge(rows: list[dict[str, Any]], a_ms: int, b_ms: int, *, trigger_interval_ms: int,
          acked_rate: float | None, in_rate: float | None) -> KeepingUp:
    """Whether the engine kept up between a_ms and b_ms (after the warm-up, to the last send)."""
    if not acked_rate:
        return KeepingUp(kept_up=None, rule="continuous" if trigger_interval_ms < CONTINUOUS_BELOW_MS else "interval",
                         reason="no acknowledged rate measured")
    if trigger_interval_ms < CONTINUOUS_BELOW_MS:
        return _continuous(rows, a_ms, b_ms, acked_rate, in_rate)
    return _interval(rows, a_ms, b_ms, trigger_interval_ms, acked_rate)


def _continuous(rows: list[dict[str, Any]], a_ms: int, b_ms: int, acked: float, in_rate: float | None) -> KeepingUp:
    slope = rate_between(rows, "lag", a_ms, b_ms)
    ratio = in_rate / acked if in_rate is not None else None
    if slope is None and ratio is None:
        return KeepingUp(kept_up=None, rule="continuous", reason="too few samples after the warm-up")
    why = []
    span_s = (b_ms - a_ms) / 1000
    noise = max(LAG_NOISE_RECORDS, LAG_NOISE_SECONDS * acked)
    if slope is not None and slope > LAG_SLOPE_SHARE * acked and slope * span_s > noise:
        why.append(f"lag grew {slope:,.0f} records/s (over {LAG_SLOPE_SHARE:.0%} of the {acked:,.0f}/s acknowledged)")
    # the read rate over a short span jitters by the same poll or flush batch as the lag, so its shortfall must
    # also add up to more than that noise
    if ratio is not None and ratio < 1 - IN_RATE_SHORTFALL and (acked - (in_rate or 0)) * span_s > noise:
        why.append(f"read {in_rate:,.0f} records/s, {1 - ratio:.0%} below the {acked:,.0f}/s acknowledged")
    ok = not why
    reason = "; ".join(why) if why else (f"lag slope {slope or 0:,.0f} records/s, read rate {ratio or 0:.3f} of the "
                                         "acknowledged")
    return KeepingUp(kept_up=ok, rule="continuous", reason=reason,
                     lag_slope_records_per_s=round(slope, 1) if slope is not None else None,
                     in_vs_acked=round(ratio, 4) if ratio is not None else None)


def _interval(rows: list[dict[str, Any]], a_ms: int, b_ms: int, interval_ms: int, acked: float) -> KeepingUp:
    b_ms += interval_ms  # the run after the last send is the one that must catch up with it
    pts = [(r["wall_ms"], r["lag"]) for r in rows if r.get("lag") is not None and a_ms <= r["wall_ms"] <= b_ms]
    stretches = []
    t = a_ms
    while t + interval_ms <= b_ms:
        inside = [lag for w, lag in pts if t <= w < t + interval_ms]
        if inside:
            stretches.append(min(inside))
        t += interval_ms
    if not stretches:
        return KeepingUp(kept_up=None, rule="interval", reason=f"no lag samples in an interval-long stretch ({interval_ms / 1000:g} s) "
                         "after the warm-up: not judged")
    worst = max(stretches)
    allowed = acked * interval_ms / 1000 * INTERVAL_SLACK
    ok = worst <= allowed
    reason = (f"after its runs at most {worst:,} records were unread, "
              f"{'within' if ok else 'more than'} an interval's arrivals ({allowed:,.0f})")
    return KeepingUp(kept_up=ok, rule="interval", reason=reason, max_lag_after_run=int(worst))
