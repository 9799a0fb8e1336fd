"""Events are a pure function of (seed, scenario, i); encodings obey the one malformed rule."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from conftest import scenario_dict
from harness import records
from harness.loadgen.encoding import JsonEncoder
from harness.loadgen.events import (ALL_MALFORMED_KINDS, BAD_INPUT_KINDS, IS_MALFORMED, KIND, KIND_MALFORMED_FIRST,
                                    KIND_NAMES, MALFORMED_KINDS, EventModel)
from harness.scenario import parse_scenario


def _scenario(**load: object):
    d = scenario_dict()
    d["load"].update(load)
    return parse_scenario(d)


MIXED = dict(malformed_fraction=0.3, late={"fraction": 0.1, "delay": "5s"},
             out_of_order={"fraction": 0.2, "max_delay": "400ms"})


def test_event_is_a_pure_function_of_its_index() -> None:
    m = EventModel(_scenario(**MIXED))
    a, b = m.block(0, 1000), m.block(500, 1200)
    for col in ("event_id", "due_ms", "key_idx", "value", "event_ms", "kind"):
        assert np.array_equal(getattr(a, col)[500:], getattr(b, col)[:500]), col
    again = EventModel(_scenario(**MIXED)).block(0, 1000)
    assert np.array_equal(a.key_idx, again.key_idx) and np.array_equal(a.value, again.value)
    other_seed = EventModel(parse_scenario({**scenario_dict(), "seed": 8})).block(0, 1000)
    assert not np.array_equal(a.key_idx, other_seed.key_idx)


def test_delays_follow_the_scenario() -> None:
    m = EventModel(_scenario(**MIXED))
    b = m.block(0, m.count)
    base = np.floor(b.due_ms).astype(np.int64)
    delay = base - b.event_ms
    assert set(np.unique(delay[b.kind == 2])) == {5000}
    ooo = delay[b.kind == 1]
    assert ooo.min() >= 1 and ooo.max() <= 400
    assert np.all(delay[b.kind == 0] == 0)


def test_zipf_keys_are_skewed() -> None:
    m = EventModel(_scenario(key_distribution="zipf", zipf_s=1.2, keys=20, rate=5000))
    counts = np.bincount(m.block(0, m.count).key_idx, minlength=20)
    assert counts[0] > 4 * counts[10] > 0


@pytest.mark.parametrize("payload", [0, 64, 103, 120, 500])
def test_payload_size_is_a_target_never_a_limit(payload: int) -> None:
    """Each record is padded to payload_bytes when its fields fit, and otherwise has an empty pad: its size is
    that of the same fields re-serialized by another JSON library with `pad` empty (103: some fit, some do not)."""
    s = _scenario(payload_bytes=payload)
    m = EventModel(s)
    b = m.block(0, 200)
    enc = JsonEncoder(payload)
    raws = [enc.finish(p, 1_795_000_000_000) for p, k in zip(enc.prefixes(b, 1_795_000_000_000), b.kind)
            if k < KIND_MALFORMED_FIRST]
    padded = unpadded = 0
    for raw in raws:
        obj = orjson.loads(raw)
        assert orjson.dumps(obj) == raw  # compact, fields in order: its length is the JSON's own length
        assert set(obj["pad"]) <= {"x"}
        bare = len(orjson.dumps({**obj, "pad": ""}))
        assert len(raw) == max(payload, bare), (payload, bare, raw)
        padded += bare < payload
        unpadded += bare >= payload
    assert (padded > 0) == (payload > 101) and (unpadded > 0) == (payload <= 104), (padded, unpadded)


def test_every_malformed_kind_breaks_the_rule_and_others_pass() -> None:
    s = _scenario(malformed_fraction=0.6, rate=2000)
    m = EventModel(s)
    b = m.block(0, m.count)
    enc = JsonEncoder(100)
    seen = set()
    for prefix, kind, eid in zip(enc.prefixes(b, 1_795_000_000_000), b.kind.tolist(), b.event_id.tolist()):
        raw = enc.finish(prefix, 1_795_000_000_123)
        parsed = records.parse(raw)
        if kind >= KIND_MALFORMED_FIRST:
            assert parsed is None, (KIND_NAMES[kind], raw)
            seen.add(KIND_NAMES[kind])
        else:
            assert parsed is not None and parsed.event_id == eid and parsed.sent_at == 1_795_000_000_123
    assert seen == set(MALFORMED_KINDS)


BAD = {"tombstone": 0.05, "empty_value": 0.05, "invalid_utf8": 0.05, "deep_nesting": 0.05,
       "deep_nesting_extra": 0.05, "extra_fields": 0.05, "near_size_limit": 0.02, "oversized": 2}


def test_every_bad_input_kind_is_made_and_judged_by_the_rule() -> None:
    d = scenario_dict(topic={"partitions": 3, "max_message_bytes": 65536})
    d["load"].update(rate=2000, malformed_fraction=0.05, bad_input=BAD)
    s = parse_scenario(d)
    m = EventModel(s)
    b = m.block(0, m.count)
    enc = JsonEncoder(100, 65536)
    seen: dict[str, int] = {}
    for prefix, kind, eid in zip(enc.prefixes(b, 1_795_000_000_000), b.kind.tolist(), b.event_id.tolist()):
        raw = enc.finish(prefix, 1_795_000_000_123)
        name = KIND_NAMES[kind]
        seen[name] = seen.get(name, 0) + 1
        parsed = records.parse(raw)
        assert (parsed is None) == bool(IS_MALFORMED[kind]) == (name in ALL_MALFORMED_KINDS), (name, raw)
        if name == "tombstone":
            assert raw is None
        elif name == "empty_value":
            assert raw == b""
        elif name == "invalid_utf8":   # decoded leniently it would be a perfect record: the trap for Flink
            assert raw is not None and records.parse(raw.decode("utf-8", "replace").encode()) is not None
        elif name == "near_size_limit":
            assert raw is not None and len(raw) == 65536 - 1024 and parsed is not None and parsed.event_id == eid
        elif name == "oversized":
            assert raw is not None and len(raw) == 65536 + 1024
        elif name == "deep_nesting":
            assert raw is not None and raw.count(b'{"n":') == 100
    assert set(BAD_INPUT_KINDS) - {"far_future"} <= set(seen) and seen["oversized"] == 2, seen   # far_future: below
    # on time: their event time is their intended send time
    bad = np.isin(b.kind, [KIND[k] for k in BAD_INPUT_KINDS])
    assert np.array_equal(b.event_ms[bad], np.floor(b.due_ms[bad]).astype(np.int64))


def test_bad_input_leaves_the_other_draws_alone() -> None:
    """Without bad_input the load is what it was; with it, only the events it replaced changed kind."""
    plain = EventModel(_scenario(**MIXED)).block(0, 3000)
    d = scenario_dict()
    d["load"].update(**MIXED, bad_input={"extra_fields": 0.1})
    mixed = EventModel(parse_scenario(d)).block(0, 3000)
    assert np.array_equal(plain.key_idx, mixed.key_idx) and np.array_equal(plain.value, mixed.value)
    changed = plain.kind != mixed.kind
    assert np.all(mixed.kind[changed] == KIND["extra_fields"]) and 0.05 < changed.mean() < 0.15


def test_far_future_records_are_planted_a_day_ahead_in_one_or_every_partition() -> None:
    from harness.scenario import FAR_FUTURE_MS

    d = scenario_dict(topic={"partitions": 3})
    d["load"].update(rate=500, keys=50, bad_input={"far_future": [{"at": "1s", "partitions": "one"},
                                                                  {"at": "3s", "partitions": "all"}]})
    m = EventModel(parse_scenario(d))
    b = m.block(0, m.count)
    ahead = np.flatnonzero(b.kind == KIND["far_future"])
    assert len(ahead) == 1 + 3
    parts = b.key_idx[ahead] % 3
    assert sorted(parts[1:].tolist()) == [0, 1, 2]
    assert np.array_equal(b.event_ms[ahead], np.floor(b.due_ms[ahead]).astype(np.int64) + FAR_FUTURE_MS)
    assert 1000 <= b.due_ms[ahead[0]] < 1100 and all(3000 <= b.due_ms[i] < 3500 for i in ahead[1:])
    enc = JsonEncoder(100)
    e = records.parse(enc.finish(enc.prefixes(b, 1_795_000_000_000)[ahead[0]], 1_795_000_002_000))
    assert e is not None      # well-formed JSON: it is the clock rule that makes it malformed
    assert records.beyond_skew(e, 1_795_000_002_000, 3_600_000) and not records.beyond_skew(e, 1_795_000_002_000, None)


def test_sized_kinds_need_the_topic_limit() -> None:
    from harness.errors import HarnessError

    d = scenario_dict()
    d["load"]["bad_input"] = {"near_size_limit": 0.01}
    with pytest.raises(HarnessError) as exc:
        parse_scenario(d)
    assert "topic.max_message_bytes" in exc.value.message and exc.value.exit_code == 2


def test_heartbeat_is_well_formed_and_recognised() -> None:
    raw = JsonEncoder(100).heartbeat(1_795_000_000_000, 1_795_000_000_001)
    e = records.parse(raw)
    assert e is not None and records.is_heartbeat(e) and e.value == 0


@pytest.mark.parametrize("raw", [b'{"event_id":1,"key":"k","value":true,"event_time":5}',
                                 b'{"event_id":1,"key":"k","value":1.0,"event_time":5}',
                                 b'{"event_id":1,"key":"k","value":"1","event_time":5}',
                                 b'{"event_id":1,"key":5,"value":1,"event_time":5}',
                                 b'[1,2]', b'', b'{"event_id":1,"key":"k","value":1}'])
def test_rule_edge_cases(raw: bytes) -> None:
    assert records.parse(raw) is None


def test_well_formed_minimal() -> None:
    e = records.parse(orjson.dumps({"event_id": 1, "key": "k", "value": -3, "event_time": 5}))
    assert e is not None and e.value == -3 and e.sent_at is None
