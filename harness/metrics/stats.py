"""Percentile summaries. A percentile from too few samples is flagged rather than trusted."""

from __future__ import annotations

import numpy as np

PERCENTILES = (50, 90, 99, 99.9)


def min_samples_for(p: float) -> int:
    """Samples needed before percentile p says more than the maximum does: at least 10 beyond the tail."""
    return int(np.ceil(round(10 / (1 - p / 100.0), 6)))


def percentiles(values: np.ndarray | list[float]) -> dict[str, object]:
    """p50, p90, p99, p99.9, max, mean and count; `unreliable` lists percentiles with too few samples."""
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)] if a.size else a
    if a.size == 0:
        return {"count": 0}
    out: dict[str, object] = {"count": int(a.size)}
    for p in PERCENTILES:
        out[f"p{p:g}"] = round(float(np.percentile(a, p, method="higher")), 3)
    out["max"] = round(float(a.max()), 3)
    out["min"] = round(float(a.min()), 3)
    out["mean"] = round(float(a.mean()), 3)
    out["unreliable"] = [f"p{p:g}" for p in PERCENTILES if a.size < min_samples_for(p)]
    return out
