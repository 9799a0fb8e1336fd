"""Throughput, lag and CPU during the load, from the monitor's time series (one row per sample, on the wall
clock): every figure of that kind is defined here."""

from __future__ import annotations

from typing import Any

import numpy as np

RATE_SKIP_MS = 2000  # engine counters read through metric caches are stale for up to a refresh interval

Rows = list[dict[str, Any]]


def rate_between(rows: Rows, col: str, a_ms: int, b_ms: int) -> float | None:
    """Per-second slope of a counter between a and b, by least squares over the samples in between.

    A slope, not a difference of two readings: engines report counters through metric caches that lag by up
    to a refresh interval, and a constant lag shifts the line without changing its slope.
    """
    pts = [(r["wall_ms"], r[col]) for r in rows if r.get(col) is not None and a_ms <= r["wall_ms"] <= b_ms]
    if len(pts) < 3 or b_ms <= a_ms:
        return None
    t = np.array([p[0] for p in pts], dtype=float)
    v = np.array([p[1] for p in pts], dtype=float)
    if t[-1] - t[0] < 1000:
        return None
    return float(np.polyfit(t, v, 1)[0] * 1000)


def value_at(rows: Rows, col: str, at_ms: int) -> float | None:
    pts = [(r["wall_ms"], r[col]) for r in rows if r.get(col) is not None]
    if not pts:
        return None
    return float(np.interp(at_ms, [p[0] for p in pts], [p[1] for p in pts]))


def rate_interval(time_base_ms: int, warmup_ms: int, last_handoff_ms: int | None) -> tuple[int, int]:
    """Where rates are measured: from time base + warm-up + RATE_SKIP_MS to the last send. The first seconds
    after the warm-up are skipped because stale counters bend the start of the line while the rate ramps up."""
    return time_base_ms + warmup_ms + RATE_SKIP_MS, last_handoff_ms or time_base_ms


def throughput(rows: Rows, a_ms: int, b_ms: int, sink_inserted_ms: Any) -> dict[str, Any]:
    """Source records read per second against records acknowledged per second, and sink rows per second."""
    rate_in = rate_between(rows, "records_in", a_ms, b_ms)
    rate_acked = rate_between(rows, "acked_records", a_ms, b_ms)
    out_rate = None
    if len(sink_inserted_ms) > 1:
        span = (sink_inserted_ms.max() - sink_inserted_ms.min()) / 1000
        out_rate = round(len(sink_inserted_ms) / span, 2) if span > 0 else None
    return {
        "in_records_per_s": round(rate_in, 1) if rate_in is not None else None,
        "acked_records_per_s": round(rate_acked, 1) if rate_acked is not None else None,
        "in_vs_acked": round(rate_in / rate_acked, 4) if rate_in and rate_acked else None,
        "out_rows_per_s": out_rate,
    }


def lag(rows: Rows) -> dict[str, Any]:
    lags = [r["lag"] for r in rows if r.get("lag") is not None]
    return {"max_records": max(lags) if lags else None, "final_records": lags[-1] if lags else None}


def used_between(rows: Rows, col: str, a_ms: int, b_ms: int) -> float | None:
    a, b = value_at(rows, col, a_ms), value_at(rows, col, b_ms)
    return round(b - a, 3) if a is not None and b is not None else None


def _per_million(cpu: float | None, events: int) -> float | None:
    return round(cpu / (events / 1e6), 2) if cpu is not None and events else None


def cpu_during_load(rows: Rows, time_base_ms: int, end_ms: int, events_sent: int, *,
                    method: str = "sampled") -> dict[str, Any]:
    """CPU seconds between the time base and end_ms (when the answer settled, so an interval engine's work
    after the last send counts), per million events: the engine's from its cgroup where it has one (method),
    else from sampling its processes; the broker's and PostgreSQL's beside it (embedded services only)."""
    sampled = used_between(rows, "cpu_s", time_base_ms, end_ms)
    exact = used_between(rows, "cgroup_cpu_s", time_base_ms, end_ms) if method != "sampled" else None
    cpu = exact if exact is not None else sampled
    broker, pg = used_between(rows, "broker_cpu_s", time_base_ms, end_ms), used_between(rows, "postgres_cpu_s", time_base_ms, end_ms)
    return {
        "cpu_seconds": cpu,
        "cpu_seconds_per_million_events": _per_million(cpu, events_sent),
        "method": method if exact is not None else "sampled",
        "until_ms_after_time_base": end_ms - time_base_ms,
        "sampled_cpu_seconds": sampled,
        "broker_cpu_seconds": broker, "broker_cpu_seconds_per_million_events": _per_million(broker, events_sent),
        "postgres_cpu_seconds": pg, "postgres_cpu_seconds_per_million_events": _per_million(pg, events_sent),
    }
