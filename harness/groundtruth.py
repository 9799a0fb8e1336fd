"""What a perfect engine outputs for one load: the complete answer and the on-time answer.

Complete: every well-formed event. On-time: without the events sent late, which a watermark-based engine
drops. Scenario validation keeps out-of-order delays below the watermark delay and late delays beyond every
engine's window close, so the split by the generator's own flag is exact (docs/scenarios.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import window_assignment as windows
from harness.loadgen.events import IS_MALFORMED, KIND_NAMES, KIND_NORMAL, ON_TIME_KINDS, EventModel, key_name
from harness.loadgen.generator import OFFSET_TOO_LARGE, OFFSET_UNKNOWN, event_offsets
from harness.scenario import Scenario

ANSWERS = ("complete", "on_time")


@dataclass
class GroundTruth:
    windows: dict[str, pd.DataFrame]  # answer -> key, window_start, window_end, cnt, sum, min, max, last_sent_at,
    #                                    last_intended_at
    special: pd.DataFrame              # event_id, kind, key, event_time, sent_at, kafka_partition, kafka_offset
    #                                    for every non-normal event (kafka_offset: an OFFSET_* code when unknown)
    counts: dict[str, int]             # events per kind, "malformed" (in the topic) and "refused_too_large"


def events_frame(model: EventModel, time_base_ms: int, handoff_ms: np.ndarray, sent: int) -> pd.DataFrame:
    """Every event that was handed to the producer, with absolute event time, its sent_at (hand-off), its
    intended send time (the schedule's, in whole ms like sent_at) and its partition (the generator's rule)."""
    parts = []
    for start in range(0, sent, 500_000):
        b = model.block(start, min(sent, start + 500_000))
        parts.append(pd.DataFrame({
            "event_id": b.event_id, "key_idx": b.key_idx, "value": b.value,
            "event_time": b.event_ms + time_base_ms, "kind": b.kind,
            "sent_at": handoff_ms[start:start + len(b)],
            "intended_at": np.floor(b.due_ms).astype(np.int64) + time_base_ms,
            "kafka_partition": b.key_idx % model.s.topic.partitions,
        }))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in
                             ("event_id", "key_idx", "value", "event_time", "kind", "sent_at", "intended_at",
                              "kafka_partition")})
    return pd.concat(parts, ignore_index=True)


def events(scenario: Scenario, model: EventModel, time_base_ms: int, handoff_ms: np.ndarray, sent: int,
           delivered: dict | None = None) -> pd.DataFrame:
    """events_frame with each event's key name and offset (an OFFSET_* code where none is known)."""
    ev = events_frame(model, time_base_ms, handoff_ms, sent)
    ev["kafka_offset"] = (event_offsets(ev["kafka_partition"].to_numpy(), delivered) if delivered is not None
                          else np.full(len(ev), OFFSET_UNKNOWN, dtype=np.int64))
    names = np.array([key_name(i) for i in range(scenario.load.keys)], dtype=object)
    ev["key"] = names[ev["key_idx"].to_numpy()] if len(ev) else pd.Series(dtype=object)
    return ev


def compute(scenario: Scenario, model: EventModel, time_base_ms: int, handoff_ms: np.ndarray, sent: int,
            delivered: dict | None = None, partitions: list[int] | None = None) -> GroundTruth:
    """delivered: the generator's offsets per partition in delivery order (SendStats.offsets), which give each
    event its offset; a record the broker refused for its size is left out. partitions: only the events of
    these (a shard's, `--shard i/N`); a key's windows lie in one partition, so shards' answers add up."""
    ev = events(scenario, model, time_base_ms, handoff_ms, sent, delivered)
    if partitions is not None:
        ev = ev[ev["kafka_partition"].isin(partitions)].reset_index(drop=True)
    refused = ev["kafka_offset"].to_numpy() == OFFSET_TOO_LARGE
    kind = ev["kind"].to_numpy()
    in_topic = ev[~refused]
    well_formed = in_topic[~IS_MALFORMED[in_topic["kind"].to_numpy()]]
    on_time = well_formed[well_formed["kind"].isin(ON_TIME_KINDS)]
    result = {
        "complete": windows.aggregate(windows.assign(well_formed, scenario.query.window)),
        "on_time": windows.aggregate(windows.assign(on_time, scenario.query.window)),
    }
    special = ev[kind != KIND_NORMAL][["event_id", "kind", "key", "event_time", "sent_at", "kafka_partition",
                                      "kafka_offset"]].copy()
    special["kind"] = [KIND_NAMES[k] for k in special["kind"].tolist()]
    counts = {KIND_NAMES[k]: int(c) for k, c in zip(*np.unique(kind, return_counts=True))}
    counts["late"] = counts.get("late", 0)
    counts["malformed"] = int(IS_MALFORMED[in_topic["kind"].to_numpy()].sum())
    if refused.any():
        counts["refused_too_large"] = int(refused.sum())
    return GroundTruth(result, special.reset_index(drop=True), counts)


def last_window_end(gt: GroundTruth) -> int | None:
    frames = [f for f in gt.windows.values() if len(f)]
    return int(max(f["window_end"].max() for f in frames)) if frames else None

