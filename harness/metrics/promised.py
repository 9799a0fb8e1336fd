"""The answer a restart that skips records on purpose promises (kill_job with `latest` or `timestamp`).

Such a restart starts without the killed engine's state, from per-partition offsets the harness resolved at the
restart (faults.FaultInjector: the end offsets then, or the first offset at or after the timestamp). What it
promises is the windows emitted before the kill, with their ground-truth values, overlaid by ground truth
recomputed from the records at or after those offsets: a window the restarted engine writes again holds only
what it read after the restart. Records between the kill and those offsets are lost on purpose, and so are the
earlier records of windows that were open at the kill.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import window_assignment
from harness.loadgen.events import IS_MALFORMED, ON_TIME_KINDS
from harness.metrics.windows import KEY, SINK_TIME


def after_restart(expected: pd.DataFrame, log: pd.DataFrame, events: pd.DataFrame, *, kill_ms: int,
                  start_offsets: dict[int, int], window: object, on_time: bool) -> pd.DataFrame:
    """expected: ground truth's windows of the promised answer; log: the engine's sink log (with SINK_TIME);
    events: ground truth's events (kind, key, value, event_time, sent_at, intended_at, kafka_partition,
    kafka_offset)."""
    before = log[log[SINK_TIME] <= kill_ms][KEY].drop_duplicates() if len(log) else pd.DataFrame(columns=KEY)
    emitted = expected.merge(before, on=KEY)
    parts = events["kafka_partition"].to_numpy()
    per_partition = np.zeros(int(parts.max()) + 1 if len(parts) else 1, dtype=np.int64)
    for p, o in start_offsets.items():
        if p < len(per_partition):
            per_partition[p] = o
    kinds = events["kind"].to_numpy()
    keep = (events["kafka_offset"].to_numpy() >= per_partition[parts]) & ~IS_MALFORMED[kinds]
    if on_time:
        keep &= np.isin(kinds, ON_TIME_KINDS)
    after = window_assignment.aggregate(window_assignment.assign(events[keep], window))  # type: ignore[arg-type]
    out = pd.concat([emitted.merge(after[KEY], on=KEY, how="left", indicator=True)
                     .query("_merge == 'left_only'").drop(columns="_merge"), after], ignore_index=True)
    return out[expected.columns].sort_values(KEY).reset_index(drop=True)
