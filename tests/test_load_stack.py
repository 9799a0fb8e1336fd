"""The generator and ground truth on the real broker and PostgreSQL, checked by an independent consumer.

Two runs of one mixed scenario (out-of-order, late and malformed records together) serve every assertion.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import orjson
import pytest

from pathlib import Path

from conftest import Svc, consume_topic, current_svc, scenario_dict
from harness.loadgen.events import HEARTBEAT_KEY
from harness.run import LoadOutcome, RunHooks, run_load
from harness.scenario import Scenario, parse_scenario
from harness.storage import sink_tables as tables

pytestmark = pytest.mark.stack

MIXED = scenario_dict(
    name="mixed",
    duration="5s",
    load={"rate": 400, "keys": 20, "payload_bytes": 120, "heartbeat_interval": "100ms",
          "out_of_order": {"fraction": 0.1, "max_delay": "300ms"},
          "late": {"fraction": 0.05, "delay": "3s"},
          "malformed_fraction": 0.05},
)


@dataclass
class Consumed:
    outcome: LoadOutcome
    records: list[tuple[int, int, bytes | None, bytes | None]]  # partition, offset, key, value


@pytest.fixture(scope="module")
def two_runs(stack_dir: Path) -> tuple[Scenario, Consumed, Consumed]:
    svc = current_svc(stack_dir)
    s = parse_scenario(MIXED)
    runs = []
    for n in range(2):
        o = run_load(s, svc.bootstrap, svc.dsn, run_id="t-load", load_id=f"t-load-{n}-{id(s)}", engine=None,
                     repeat=n, results=None, hooks=RunHooks())
        runs.append(Consumed(o, consume_topic(svc.bootstrap, o.topic, s.topic.partitions)))
    return s, runs[0], runs[1]


def _normalise(value: bytes, time_base: int) -> bytes:
    """A record without what may differ between runs: sent_at, and event time relative to the time base."""
    v = re.sub(rb'"sent_at":\d+', b'"sent_at":_', value)
    return re.sub(rb'("event_time":"?)(\d+)', lambda m: m.group(1) + str(int(m.group(2)) - time_base).encode(), v)


def _events(c: Consumed) -> list[tuple[int, int, bytes | None, bytes | None]]:
    return [r for r in c.records if r[2] != HEARTBEAT_KEY.encode()]


def test_same_seed_gives_identical_events(two_runs: tuple[Scenario, Consumed, Consumed]) -> None:
    _, a, b = two_runs
    assert a.outcome.topic != b.outcome.topic and a.outcome.time_base_ms != b.outcome.time_base_ms
    na = sorted((r[0], r[2], _normalise(r[3] or b"", a.outcome.time_base_ms)) for r in _events(a))
    nb = sorted((r[0], r[2], _normalise(r[3] or b"", b.outcome.time_base_ms)) for r in _events(b))
    assert len(na) == a.outcome.stats.scheduled
    assert na == nb


def test_acknowledged_matches_scheduled(two_runs: tuple[Scenario, Consumed, Consumed]) -> None:
    s, a, _ = two_runs
    st = a.outcome.stats
    # The rate x duration formula written out (400 events/s for 5 s, constant), not read back from the schedule.
    assert (MIXED["duration"], MIXED["load"]["rate"], s.load.shape.type) == ("5s", 400, "constant")
    expected = 400 * 5
    assert st.scheduled == expected
    assert st.sent == st.acked == expected and st.delivery_errors == 0
    events = _events(a)
    ids = [int(re.search(rb'"event_id":(\d+)', v or b"").group(1)) for *_, v in events]  # type: ignore[union-attr]
    assert sorted(ids) == list(range(expected))  # each scheduled event is in the topic, once
    # Per second, against the `sent_at` stamped into each record in the topic: hand-offs exactly, and
    # acknowledgements (counted in the delivery callbacks) all of them, none before its event was handed off.
    tb = a.outcome.time_base_ms
    in_topic = Counter((int(re.search(rb'"sent_at":(\d+)', v or b"").group(1)) - tb) // 1000  # type: ignore[union-attr]
                       for *_, v in events)
    assert dict(in_topic) == st.sent_per_second
    assert sum(st.acked_per_second.values()) == len(events)
    last = max([*in_topic, *st.acked_per_second])
    sent_so_far = acked_so_far = 0
    for sec in range(min(in_topic) - 1, last + 1):
        sent_so_far += in_topic.get(sec, 0)
        acked_so_far += st.acked_per_second.get(sec, 0)
        assert acked_so_far <= sent_so_far, (sec, st.acked_per_second, dict(in_topic))
    # Heartbeats reached every partition.
    assert {r[0] for r in a.records if r[2] == HEARTBEAT_KEY.encode()} == set(range(s.topic.partitions))


def _recompute(s: Scenario, c: Consumed) -> tuple[dict, dict, int, int]:
    """Both answers from the topic alone: parse by the README rule, simulate one watermark in send order."""
    size, wm_delay = s.query.window.size, s.query.watermark_delay
    assert size is not None
    parsed = []
    malformed = 0
    for _, _, _, value in c.records:
        try:
            obj = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            malformed += 1
            continue
        ok = (isinstance(obj, dict) and type(obj.get("event_id")) is int and isinstance(obj.get("key"), str)
              and type(obj.get("value")) is int and type(obj.get("event_time")) is int)
        if not ok:
            malformed += 1
            continue
        parsed.append(obj)
    parsed.sort(key=lambda o: o["sent_at"])
    complete: dict = {}
    on_time: dict = {}
    late = 0
    max_seen = -(2**62)
    for o in parsed:
        et = o["event_time"]
        start = et - et % size
        is_late = start + size + s.query.allowed_lateness <= max_seen - wm_delay
        max_seen = max(max_seen, et)
        if o["key"] == HEARTBEAT_KEY:
            continue
        late += is_late
        for answer, include in ((complete, True), (on_time, not is_late)):
            if not include:
                continue
            k = (o["key"], start, start + size)
            cnt, sm, mn, mx, last = answer.get(k, (0, 0, 10**9, -(10**9), 0))
            v = o["value"]
            answer[k] = (cnt + 1, sm + v, min(mn, v), max(mx, v), max(last, o["sent_at"]))
    return complete, on_time, late, malformed


def test_independent_consumer_recomputes_both_answers(two_runs: tuple[Scenario, Consumed, Consumed], svc: Svc) -> None:
    import psycopg

    s, a, _ = two_runs
    complete, on_time, late, _ = _recompute(s, a)
    assert late > 0 and len(complete) > len(on_time) > 0 or complete != on_time
    with psycopg.connect(svc.dsn) as conn:
        for answer, mine in (("complete", complete), ("on_time", on_time)):
            stored = tables.read_expected(conn, a.outcome.load_id, answer)
            theirs = {(r.key, r.window_start, r.window_end): (r.cnt, r.sum, r.min, r.max, r.last_sent_at)
                      for r in stored.itertuples(index=False)}
            assert theirs == mine, answer


def test_malformed_and_late_fractions_as_configured(two_runs: tuple[Scenario, Consumed, Consumed], svc: Svc) -> None:
    import psycopg

    s, a, _ = two_runs
    _, _, late, malformed = _recompute(s, a)
    n = a.outcome.stats.scheduled
    for observed, p in ((malformed, s.load.malformed_fraction), (late, s.load.late.fraction)):
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(observed - n * p) <= 4 * sigma, (observed, n * p)
    with psycopg.connect(svc.dsn) as conn:
        rows = dict(conn.execute("SELECT CASE WHEN kind IN ('late', 'out_of_order') THEN kind ELSE 'malformed' END, "
                                 "count(*) FROM harness_special_events WHERE load_id = %s GROUP BY 1",
                                 (a.outcome.load_id,)).fetchall())
    assert rows["malformed"] == malformed and rows["late"] == late
