"""Per-window latency and correctness of one engine run, from its sink log against the promised answer.

Definitions (the README's metrics section quotes these):
- sink time: when a row became readable: its commit time where the database tracks commit times, else its
  insert time (result.json says which, under timing.sink_time), on the harness's clock.
- final-value time: when the sink first held the window's final (promised) value and kept it: the sink time
  of the first emission in the last unbroken run of emissions equal to the promised value.
- event-to-result latency: final-value time minus the intended send time of the last contributing event
  (ground truth's `last_intended_at`, from the schedule): a generator that falls behind cannot hide its delay
  (coordinated omission). The same from the hand-off (`last_sent_at`) is kept beside it.
- window-close latency: final-value time minus the window end.
- first-emission latency (engines that emit partial updates): first emission of the window minus its
  `last_intended_at`; an early value was not yet known to be final.
- exact / wrong / missing / extra: the final table against the promised answer (every aggregate equal /
  present with another value / absent / present but not promised).
- re-emission: any emission of a window after its first. duplicate: an emission equal (window and values) to
  an earlier emission of the same window, as a replay produces. Both are counted from the append log.
- late events dropped: the events of the complete answer that are missing from the engine's final output,
  minus those of the on-time answer that are missing (which are unexpected drops), in events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.metrics.stats import percentiles

KEY = ["key", "window_start", "window_end"]
SINK_TIME = "visible_at_ms"  # the log column measure() sets: commit time, or insert time where that is all
VALUES = ["cnt", "sum", "min", "max"]


@dataclass
class WindowReport:
    per_window: pd.DataFrame        # one row per promised window: latencies, status
    summary: dict[str, Any]


def window_latencies(expected: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """For each promised window: final-value time, first emission time, emissions, and the latencies."""
    exp = expected.copy()
    if log.empty:
        for c in ("final_at_ms", "first_emit_ms", "emissions"):
            exp[c] = np.nan
    else:
        at = SINK_TIME if SINK_TIME in log else "inserted_at_ms"
        lg = log.sort_values(at, kind="stable")
        merged = lg.merge(exp[KEY + VALUES], on=KEY, how="inner", suffixes=("", "_exp"))
        merged["is_final"] = np.all([merged[v].to_numpy() == merged[f"{v}_exp"].to_numpy() for v in VALUES], axis=0)
        rows = []
        for k, g in merged.groupby(KEY, sort=False):
            t = g[at].to_numpy()
            fin = g["is_final"].to_numpy()
            final_at = np.nan
            if fin[-1]:
                # start of the last unbroken run of final-valued emissions
                j = len(fin) - 1
                while j > 0 and fin[j - 1]:
                    j -= 1
                final_at = t[j]
            rows.append((*k, final_at, t[0], len(t)))
        got = pd.DataFrame(rows, columns=KEY + ["final_at_ms", "first_emit_ms", "emissions"])
        exp = exp.merge(got, on=KEY, how="left")
    start = exp["last_intended_at"] if "last_intended_at" in exp else exp["last_sent_at"]
    exp["event_to_result_ms"] = exp["final_at_ms"] - start
    exp["event_to_result_handoff_ms"] = exp["final_at_ms"] - exp["last_sent_at"]
    exp["window_close_ms"] = exp["final_at_ms"] - exp["window_end"]
    exp["first_emission_ms"] = exp["first_emit_ms"] - start
    return exp


def duplicates_and_reemissions(log: pd.DataFrame) -> tuple[int, int]:
    if log.empty:
        return 0, 0
    reemissions = len(log) - len(log.drop_duplicates(KEY))
    duplicates = len(log) - len(log.drop_duplicates(KEY + VALUES))
    return int(duplicates), int(reemissions)


def compare_final(expected: pd.DataFrame, final: pd.DataFrame) -> dict[str, int]:
    m = expected[KEY + VALUES].merge(final[KEY + VALUES], on=KEY, how="outer", suffixes=("_exp", ""), indicator=True)
    both = m[m["_merge"] == "both"]
    same = np.all([both[v].to_numpy() == both[f"{v}_exp"].to_numpy() for v in VALUES], axis=0) if len(both) else np.array([], bool)
    return {
        "expected": int(len(expected)),
        "exact": int(same.sum()),
        "wrong": int(len(both) - same.sum()),
        "missing": int((m["_merge"] == "left_only").sum()),
        "extra": int((m["_merge"] == "right_only").sum()),
    }


BAD_WINDOWS_KEPT = 10


def bad_windows(expected: pd.DataFrame, final: pd.DataFrame, limit: int = BAD_WINDOWS_KEPT) -> list[dict[str, Any]]:
    """The first `limit` windows of the final table that differ from the expected ones, with both values."""
    m = expected[KEY + VALUES].merge(final[KEY + VALUES], on=KEY, how="outer", suffixes=("_exp", ""), indicator=True)
    differs = np.any([m[v].to_numpy() != m[f"{v}_exp"].to_numpy() for v in VALUES], axis=0) if len(m) else []
    bad = m[(m["_merge"] != "both") | differs].sort_values(KEY).head(limit)
    out = []
    for row in bad.to_dict("records"):
        kind = {"both": "wrong", "left_only": "missing", "right_only": "extra"}[str(row["_merge"])]
        values = {"expected": None if kind == "extra" else {v: int(row[f"{v}_exp"]) for v in VALUES},
                  "got": None if kind == "missing" else {v: _int(row[v]) for v in VALUES}}
        out.append({"kind": kind, "key": row["key"], "window_start": int(row["window_start"]),
                    "window_end": int(row["window_end"]), **values})
    return out


def _int(v: Any) -> int | None:
    return None if pd.isna(v) else int(v)


def _shortfall(answer: pd.DataFrame, final: pd.DataFrame) -> int:
    """Event-window memberships of answer that the engine's final counts lack."""
    m = answer[KEY + ["cnt"]].merge(final[KEY + ["cnt"]], on=KEY, how="left", suffixes=("", "_got"))
    return int(np.clip(m["cnt"] - m["cnt_got"].fillna(0), 0, None).sum())


def late_drops(complete: pd.DataFrame, on_time: pd.DataFrame, final: pd.DataFrame, windows_per_event: int) -> dict[str, int]:
    """Late events dropped, derived from the engine's output (never from the generator's flags)."""
    vs_complete = _shortfall(complete, final)
    vs_on_time = _shortfall(on_time, final)
    return {
        "late_events_dropped": (vs_complete - vs_on_time) // max(1, windows_per_event),
        "on_time_events_missing": vs_on_time // max(1, windows_per_event),
    }


def report(*, promised: str, expected: dict[str, pd.DataFrame], log: pd.DataFrame, final: pd.DataFrame,
           time_base_ms: int, warmup_ms: int, watermark_delay_ms: int, ooo_slack_ms: int,
           emits: str, windows_per_event: int) -> WindowReport:
    exp = expected[promised]
    per = window_latencies(exp, log)
    measured = per[per["window_end"] > time_base_ms + warmup_ms]
    done = measured.dropna(subset=["final_at_ms"])
    dup, reem = duplicates_and_reemissions(log)
    early = 0
    if emits == "final" and not log.empty:
        early = int((log["inserted_at_ms"] < log["window_end"] + watermark_delay_ms - ooo_slack_ms).sum())
    summary: dict[str, Any] = {
        "promised_answer": promised,
        "correctness": compare_final(exp, final),
        "duplicates": dup,
        "re_emissions": reem,
        "emissions": int(len(log)),
        **late_drops(expected["complete"], expected["on_time"], final, windows_per_event),
        "latency_windows_measured": int(len(done)),
        "latency_windows_excluded_warmup": int(len(per) - len(measured)),
        "event_to_result_ms": percentiles(done["event_to_result_ms"].to_numpy()),
        "event_to_result_from": "intended" if "last_intended_at" in exp else "handoff",
        "event_to_result_handoff_ms": percentiles(done["event_to_result_handoff_ms"].to_numpy()),
        "window_close_ms": percentiles(done["window_close_ms"].to_numpy()),
        "emitted_before_window_close": early,
        "bad_windows": bad_windows(exp, final),
    }
    if emits == "updates":
        summary["first_emission_ms"] = percentiles(measured["first_emission_ms"].dropna().to_numpy())
    return WindowReport(per, summary)
