"""Per record kind: how many were sent, how many an engine wrote as malformed, and the windows they touch.

An engine's malformed records are the distinct (partition, offset) pairs it wrote to harness_malformed; ground
truth maps each sent record's pair to the kind the generator made (from its delivery reports), so a count per
kind needs no parsing of what the engine wrote. A record's windows are the promised answer's windows of its key
that contain its event time; "not exact" counts those the engine's final table got wrong or left out. For a
malformed kind those windows show whether an engine let such records into a result; for a well-formed kind,
whether it lost them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness import window_assignment
from harness.loadgen.events import ALL_MALFORMED_KINDS, BAD_INPUT_KINDS
from harness.loadgen.generator import OFFSET_TOO_LARGE
from harness.metrics.windows import KEY, VALUES
from harness.scenario import Window

# The kinds counted one by one: the six malformed kinds of malformed_fraction and those of load.bad_input.
COUNTED_KINDS = tuple(dict.fromkeys(ALL_MALFORMED_KINDS + BAD_INPUT_KINDS))


def by_kind(special: pd.DataFrame, counted: set[tuple[int, int]], expected: pd.DataFrame, final: pd.DataFrame,
            window: Window) -> dict[str, dict[str, Any]]:
    """special: ground truth's special events (kind, key, event_time, kafka_partition, kafka_offset); counted:
    the engine's (partition, offset) pairs; expected and final: the promised answer and the engine's table."""
    rows = special[special["kind"].isin(COUNTED_KINDS)]
    if rows.empty:
        return {}
    bad = _not_exact(expected, final)
    out: dict[str, dict[str, Any]] = {}
    for kind, group in rows.groupby("kind", sort=False):
        refused = group["kafka_offset"].to_numpy() == OFFSET_TOO_LARGE
        in_topic = group[~refused]
        known = bool((in_topic["kafka_offset"] >= 0).all())   # every delivery report came
        pairs = set(zip(in_topic["kafka_partition"].tolist(), in_topic["kafka_offset"].tolist()))
        touched = _windows_of(in_topic, expected, window)
        out[str(kind)] = {
            "malformed": kind in ALL_MALFORMED_KINDS,
            "sent": int(len(group)),
            "in_topic": int(len(in_topic)),
            "counted_as_malformed": len(pairs & counted) if known else None,
            "windows": len(touched),
            "windows_not_exact": len(touched & bad),
        }
    return dict(sorted(out.items(), key=lambda kv: COUNTED_KINDS.index(kv[0])))


def malformed_pairs(special: pd.DataFrame) -> set[tuple[int, int]] | None:
    """The (partition, offset) of every malformed record in the topic, by ground truth; None when a delivery
    report is missing (then it cannot say which pairs are malformed)."""
    bad = special[special["kind"].isin(ALL_MALFORMED_KINDS)]
    if (bad["kafka_offset"] < 0).any():
        return None
    return set(zip(bad["kafka_partition"].tolist(), bad["kafka_offset"].tolist()))


def _not_exact(expected: pd.DataFrame, final: pd.DataFrame) -> set[tuple[str, int, int]]:
    m = expected[KEY + VALUES].merge(final[KEY + VALUES], on=KEY, how="left", suffixes=("_exp", ""), indicator=True)
    if m.empty:
        return set()
    differs = np.any([m[v].to_numpy() != m[f"{v}_exp"].to_numpy() for v in VALUES], axis=0)
    bad = m[(m["_merge"] != "both") | differs]
    return set(zip(bad["key"].tolist(), bad["window_start"].tolist(), bad["window_end"].tolist()))


def _windows_of(records: pd.DataFrame, expected: pd.DataFrame, window: Window) -> set[tuple[str, int, int]]:
    """The expected windows (key, start, end) that contain a record's event time."""
    if records.empty or expected.empty:
        return set()
    ev = records[["key", "event_time"]]
    if window.type in ("tumbling", "sliding"):
        w = window_assignment.assign(ev, window)[KEY].merge(expected[KEY], on=KEY)
        return set(zip(w["key"].tolist(), w["window_start"].tolist(), w["window_end"].tolist()))
    # sessions: the latest session of the key that starts at or before the event, if it is still open then
    left = ev.sort_values("event_time")
    right = expected[KEY].sort_values("window_start")
    m = pd.merge_asof(left, right, left_on="event_time", right_on="window_start", by="key")
    m = m[m["window_end"].notna() & (m["event_time"] < m["window_end"])]
    return set(zip(m["key"].tolist(), m["window_start"].astype("int64").tolist(), m["window_end"].astype("int64").tolist()))


def far_future_damage(special: pd.DataFrame, expected: pd.DataFrame, final: pd.DataFrame, *, time_base_ms: int,
                      plants: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """Per far_future plant (its `at` and `one`/`all`, in time order): the records planted, and the windows of
    the promised answer that end after it (until the next plant) with how many the engine got wrong or left
    out. With query.max_clock_skew on, an engine drops the records and loses nothing; with it off, this is
    the damage one record a day ahead does to a watermark."""
    if not plants:
        return []
    from harness.scenario import FAR_FUTURE_MS

    rows = special[special["kind"] == "far_future"]
    intended = (rows["event_time"].to_numpy() - FAR_FUTURE_MS - time_base_ms) if len(rows) else np.zeros(0)
    bad = _not_exact(expected, final)
    ends = expected["window_end"].to_numpy() - time_base_ms if len(expected) else np.zeros(0)
    keys = list(zip(expected["key"].tolist(), expected["window_start"].tolist(), expected["window_end"].tolist()))
    out = []
    order = sorted(plants)
    for j, (at, partitions) in enumerate(order):
        until = order[j + 1][0] if j + 1 < len(order) else None
        planted = int(((intended >= at) & ((intended < until) if until is not None else True)).sum())
        inside = (ends > at) & ((ends <= until) if until is not None else True)
        after = [k for k, hit in zip(keys, inside) if hit]
        out.append({"at_ms": at, "partitions": partitions, "records": planted, "windows_after": len(after),
                    "windows_not_exact_after": sum(1 for k in after if k in bad)})
    return out


def malformed_around_faults(special: pd.DataFrame, written: pd.DataFrame,
                            fired_ms: list[int]) -> list[tuple[int | None, int]]:
    """Per fault, in the order they fired (fired_ms ascending, the harness's clock):

    - the malformed records (by ground truth) handed to the broker since the previous fault and before this one
      that the engine never wrote to harness_malformed: the count this fault cost, whether a driver died before
      its listener wrote them or the restart skipped them (latest, timestamp); None when a delivery report is
      missing, as then ground truth cannot say which pairs are malformed;
    - the rows written between this fault and the next for records already written before it: a replay that
      wrote them again (the distinct count stays right, rows_written shows them).

    written: harness_malformed's kafka_partition, kafka_offset and inserted_at_ms on the harness's clock."""
    bad = special[special["kind"].isin(ALL_MALFORMED_KINDS) & (special["kafka_offset"] != OFFSET_TOO_LARGE)]
    known = not (bad["kafka_offset"] < 0).any()     # the broker never held a refused one: not lost
    pairs_written = set(zip(written["kafka_partition"].tolist(), written["kafka_offset"].tolist()))
    inserted = written["inserted_at_ms"].to_numpy(dtype=float)
    bounds = [-np.inf, *fired_ms, np.inf]
    out: list[tuple[int | None, int]] = []
    for i, at in enumerate(fired_ms):
        lost: int | None = None
        if known:
            between = bad[(bad["sent_at"] >= bounds[i]) & (bad["sent_at"] < at)]
            lost = sum(1 for p in zip(between["kafka_partition"].tolist(), between["kafka_offset"].tolist())
                       if p not in pairs_written)
        before = written[inserted < at]
        seen = set(zip(before["kafka_partition"].tolist(), before["kafka_offset"].tolist()))
        after = written[(inserted >= at) & (inserted < bounds[i + 2])]
        rewritten = sum(1 for p in zip(after["kafka_partition"].tolist(), after["kafka_offset"].tolist()) if p in seen)
        out.append((lost, rewritten))
    return out
