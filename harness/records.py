"""The one rule for what a record is, applied by every engine's checker and by ground-truth verification.

A record is well-formed when it is a JSON object whose `event_id`, `value` and `event_time` are JSON integers
(not booleans, not floats such as 1.0, not numeric strings) and whose `key` is a JSON string. Anything else is
malformed, and so is a record whose event time lies beyond the reader's wall clock plus the scenario's
query.max_clock_skew (beyond_skew). A well-formed record with key `__heartbeat__` is a heartbeat: it moves
watermarks, never results.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

# Imported by every job that runs in Python (baseline, batch, and the Flink and Spark jobs, which state the
# same rule in SQL): keep this module free of imports beyond orjson.
HEARTBEAT_KEY = "__heartbeat__"
# The rule's fields and the JSON type each must have ("integer": a JSON number without fraction or exponent).
RULE_FIELDS = {"event_id": "integer", "value": "integer", "event_time": "integer", "key": "string"}


@dataclass(frozen=True, slots=True)
class Event:
    event_id: int
    key: str
    value: int
    event_time: int
    sent_at: int | None


def _is_int(v: object) -> bool:
    return type(v) is int


def parse(raw: bytes | None) -> Event | None:
    """The event in raw, or None when raw is malformed."""
    if raw is None:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    # RULE_FIELDS, spelt out: this runs for every record
    eid, key, value, et = obj.get("event_id"), obj.get("key"), obj.get("value"), obj.get("event_time")
    if not (_is_int(eid) and isinstance(key, str) and _is_int(value) and _is_int(et)):
        return None
    sent = obj.get("sent_at")
    return Event(eid, key, value, et, sent if _is_int(sent) else None)  # type: ignore[arg-type]


def beyond_skew(e: Event, now_ms: int, max_clock_skew_ms: int | None) -> bool:
    """The rule's second half: an event time beyond the reader's wall clock plus max_clock_skew is malformed
    (None: the rule is off)."""
    return max_clock_skew_ms is not None and e.event_time > now_ms + max_clock_skew_ms


def is_heartbeat(e: Event) -> bool:
    return e.key == HEARTBEAT_KEY
