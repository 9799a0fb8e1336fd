"""Window assignment shared by ground truth, the batch engine and the baseline engine.

Windows are aligned to the epoch (offset 0), as Flink's TUMBLE/HOP and Spark's window() are. A session is
[first event, last event + gap); two events of a key share a session when they are less than `gap` apart,
which is when Flink's and Spark's per-event windows [t, t + gap) overlap and merge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.scenario import Window


def tumbling(t: np.ndarray, size: int) -> np.ndarray:
    return (t // size) * size


def sliding_starts(t: np.ndarray, size: int, slide: int) -> tuple[np.ndarray, np.ndarray]:
    """(row index into t, window start) for every sliding window each time belongs to (size/slide each)."""
    n = size // slide
    last = (t // slide) * slide
    rows = np.repeat(np.arange(len(t)), n)
    starts = np.repeat(last, n) - np.tile(np.arange(n, dtype=np.int64) * slide, len(t))
    return rows, starts


def assign(df: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Add window_start and window_end to events (columns key, event_time, ...); sliding repeats rows."""
    t = df["event_time"].to_numpy(dtype=np.int64)
    if window.type == "tumbling":
        assert window.size is not None
        start = tumbling(t, window.size)
        return df.assign(window_start=start, window_end=start + window.size)
    if window.type == "sliding":
        assert window.size is not None and window.slide is not None
        rows, starts = sliding_starts(t, window.size, window.slide)
        out = df.iloc[rows].reset_index(drop=True)
        return out.assign(window_start=starts, window_end=starts + window.size)
    assert window.gap is not None
    return sessions(df, window.gap)


def sessions(df: pd.DataFrame, gap: int) -> pd.DataFrame:
    if df.empty:
        return df.assign(window_start=np.array([], dtype=np.int64), window_end=np.array([], dtype=np.int64))
    d = df.sort_values(["key", "event_time"], kind="stable").reset_index(drop=True)
    t = d["event_time"].to_numpy(dtype=np.int64)
    k = d["key"].to_numpy()
    new = np.ones(len(d), dtype=bool)
    new[1:] = (k[1:] != k[:-1]) | (t[1:] - t[:-1] >= gap)
    sid = np.cumsum(new)
    g = pd.Series(t).groupby(sid)
    start = g.transform("min").to_numpy()
    end = g.transform("max").to_numpy() + gap
    return d.assign(window_start=start, window_end=end)


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """count, sum, min, max of value, and the last contributing event's hand-off (sent_at) and intended send
    time (when the events carry it), per key and window. Events are sent in schedule order, so the maxima are
    the same event's times."""
    cols = ["key", "window_start", "window_end", "cnt", "sum", "min", "max", "last_sent_at"]
    times = {"last_sent_at": ("sent_at", "max")}
    if "intended_at" in df:
        cols.append("last_intended_at")
        times["last_intended_at"] = ("intended_at", "max")
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c != "key" else "object") for c in cols})
    g = df.groupby(["key", "window_start", "window_end"], sort=True)
    out = g.agg(cnt=("value", "size"), sum=("value", "sum"), min=("value", "min"), max=("value", "max"),
                **times).reset_index()
    return out[cols]
