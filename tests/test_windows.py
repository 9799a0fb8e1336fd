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
