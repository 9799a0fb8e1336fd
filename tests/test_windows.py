"""Window assignment on hand-made events: tumbling, sliding and session."""

from __future__ import annotations

import pandas as pd

from harness import window_assignment as windows
from harness.scenario import Window


def _events(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"key": k, "event_time": t, "value": v, "sent_at": t + 1} for k, t, v in rows])


def _result(df: pd.DataFrame) -> list[tuple]:
    return [tuple(r) for r in windows.aggregate(df).itertuples(index=False)]


def test_tumbling() -> None:
    ev = _events([("a", 999, 1), ("a", 1000, 2), ("a", 1999, 3), ("b", 0, 4)])
    got = _result(windows.assign(ev, Window(type="tumbling", size="1s")))
    assert got == [("a", 0, 1000, 1, 1, 1, 1, 1000), ("a", 1000, 2000, 2, 5, 2, 3, 2000),
                   ("b", 0, 1000, 1, 4, 4, 4, 1)]


def test_sliding_each_event_in_size_over_slide_windows() -> None:
    ev = _events([("a", 2500, 7)])
    got = _result(windows.assign(ev, Window(type="sliding", size="3s", slide="1s")))
    assert [(s, e) for _, s, e, *_ in got] == [(0, 3000), (1000, 4000), (2000, 5000)]


def test_session_merges_events_closer_than_gap() -> None:
    # 999 apart merges; exactly `gap` apart does not: [t, t + gap) windows are half-open and do not overlap.
    ev = _events([("a", 0, 1), ("a", 999, 2), ("a", 1998, 3), ("a", 2998 + 1000, 4), ("b", 500, 5)])
    got = _result(windows.assign(ev, Window(type="session", gap="1s")))
    assert got == [("a", 0, 2998, 3, 6, 1, 3, 1999), ("a", 3998, 4998, 1, 4, 4, 4, 3999),
                   ("b", 500, 1500, 1, 5, 5, 5, 501)]


# The session boundary: two events of a key exactly `gap` apart are in two sessions, `gap - 1` apart in one
# (README "Ground truth": "less than `gap` apart"). Flink and Spark merge touching windows, so they are given
# gap - 1 ms; the ground truth, the baseline and the batch job apply the rule themselves.
GAP = 1000
BOUNDARY = [("a", 10_000, 1), ("a", 10_000 + GAP, 2),          # exactly gap apart: split
            ("b", 10_000, 3), ("b", 10_000 + GAP - 1, 4),      # gap - 1 apart: one session
            ("c", 10_000, 5), ("c", 10_000 + GAP, 6), ("c", 10_000 + 2 * GAP - 1, 7)]  # split, then merge
BOUNDARY_SESSIONS = [("a", 10_000, 11_000, 1, 1, 1, 1, 10_001), ("a", 11_000, 12_000, 1, 2, 2, 2, 11_001),
                     ("b", 10_000, 11_999, 2, 7, 3, 4, 11_000),
                     ("c", 10_000, 11_000, 1, 5, 5, 5, 10_001), ("c", 11_000, 12_999, 2, 13, 6, 7, 12_000)]


def test_session_boundary_in_ground_truth() -> None:
    got = _result(windows.assign(_events(BOUNDARY), Window(type="session", gap="1s")))
    assert got == BOUNDARY_SESSIONS


def test_session_boundary_in_baseline_and_batch() -> None:
    from pipelines.baseline.job import Windows
    from pipelines.batch.job import _sessions

    w = Windows({"type": "session", "gap_ms": GAP})
    for key, t, v in BOUNDARY:
        assert w.add(key, t, v, t + 1, watermark=0)
    assert sorted(w.fire(watermark=10**9)) == BOUNDARY_SESSIONS
    batch = _sessions(pd.DataFrame(columns=["key", "window_start", "window_end", "cnt", "sum", "min", "max",
                                            "last_sent_at", "last_event_time", "emitted"]),
                      _events(BOUNDARY), GAP)
    cols = ["key", "window_start", "window_end", "cnt", "sum", "min", "max", "last_sent_at"]
    assert sorted(tuple(int(x) if i else x for i, x in enumerate(r)) for r in batch[cols].itertuples(index=False)) \
        == BOUNDARY_SESSIONS


def test_session_gap_given_to_flink_and_spark() -> None:
    """Flink and Spark merge windows [t, t + g] that touch: events d apart share a session when d <= g. With the
    gap they are given, that is d < GAP, the rule above; the window end then gets its 1 ms back."""
    from pipelines.flink.job import session_gap as flink_gap
    from pipelines.spark.job import session_gap as spark_gap

    for g in (flink_gap(GAP), spark_gap(GAP)):
        assert (GAP - 1 <= g) and not (GAP <= g)


def test_bad_windows_lists_wrong_missing_and_extra_in_order() -> None:
    from harness.metrics.windows import bad_windows, compare_final

    cols = ["key", "window_start", "window_end", "cnt", "sum", "min", "max"]
    expected = pd.DataFrame([("a", 0, 10, 2, 5, 1, 4), ("b", 0, 10, 1, 7, 7, 7), ("c", 0, 10, 3, 9, 1, 5)],
                            columns=cols)
    final = pd.DataFrame([("a", 0, 10, 2, 5, 1, 4), ("b", 0, 10, 1, 8, 7, 7), ("d", 0, 10, 1, 1, 1, 1),
                          ("e", 0, 10, None, None, None, None)], columns=cols)
    bad = bad_windows(expected, final)
    assert [(b["kind"], b["key"]) for b in bad] == [("wrong", "b"), ("missing", "c"), ("extra", "d"), ("extra", "e")]
    assert bad[0]["expected"]["sum"] == 7 and bad[0]["got"]["sum"] == 8
    assert bad[1]["got"] is None and bad[2]["expected"] is None and bad[3]["got"]["cnt"] is None
    c = compare_final(expected, final)
    assert (c["wrong"], c["missing"], c["extra"]) == (1, 1, 2)
    assert len(bad_windows(expected, final, limit=2)) == 2 and bad_windows(expected, expected) == []
