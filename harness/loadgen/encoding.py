"""Record encodings behind one interface (JSON now; a schema'd format can be added beside it).

A record is built in two steps so `sent_at` can be stamped at the moment of hand-off without re-encoding:
`prefixes()` renders everything else for a block, `finish()` appends `sent_at` and closes the record.
"""

from __future__ import annotations

from typing import Protocol

from harness.loadgen.events import (HEARTBEAT_KEY, KIND_BAD_FIRST, KIND_LATE, KIND_MALFORMED_FIRST, KIND_NAMES,
                                    KIND_NORMAL, KIND_OUT_OF_ORDER, MALFORMED_KINDS, NESTING_DEPTH, EventBlock,
                                    key_name)

SENT_AT_DIGITS = 13  # epoch milliseconds until the year 2286


class Encoder(Protocol):
    name: str

    def prefixes(self, block: EventBlock, time_base_ms: int) -> list[bytes | None]: ...

    def finish(self, prefix: bytes | None, sent_at_ms: int) -> bytes | None: ...

    def heartbeat(self, event_time_ms: int, sent_at_ms: int) -> bytes: ...


class JsonEncoder:
    """Compact JSON objects with fields in a fixed order; `pad` fills the record up to payload_bytes (records near
    and over the topic's size limit, up to that limit -/+ 1 KiB)."""

    name = "json"

    def __init__(self, payload_bytes: int, size_limit: int | None = None) -> None:
        self.payload_bytes = payload_bytes
        self.size_limit = size_limit
        empty = b'{"event_id":0,"key":"","value":0,"event_time":0,"pad":"","sent_at":' + b"0" * SENT_AT_DIGITS + b"}"
        self._fixed = len(empty) - 3  # the three single-digit zeros are counted per event

    def _pad(self, *fields: str, total: int | None = None) -> str:
        return "x" * max(0, (self.payload_bytes if total is None else total) - self._fixed - sum(len(f) for f in fields))

    def prefixes(self, block: EventBlock, time_base_ms: int) -> list[bytes | None]:
        out: list[bytes | None] = []
        ids = block.event_id.tolist()
        keys = block.key_idx.tolist()
        values = block.value.tolist()
        times = (block.event_ms + time_base_ms).tolist()
        kinds = block.kind.tolist()
        for eid, k, v, t, kind in zip(ids, keys, values, times, kinds):
            key = key_name(k)
            if kind in (KIND_NORMAL, KIND_OUT_OF_ORDER, KIND_LATE):
                e, vs, ts = str(eid), str(v), str(t)
                pad = self._pad(e, key, vs, ts)
                out.append(f'{{"event_id":{e},"key":"{key}","value":{vs},"event_time":{ts},'
                           f'"pad":"{pad}","sent_at":'.encode())
            elif kind < KIND_BAD_FIRST:
                out.append(self._malformed(MALFORMED_KINDS[kind - KIND_MALFORMED_FIRST], eid, k, key, v, t))
            else:
                out.append(self._bad_input(KIND_NAMES[kind], eid, key, v, t))
        return out

    def _bad_input(self, kind: str, eid: int, key: str, v: int, t: int) -> bytes | None:
        """The kinds of load.bad_input. finish() leaves a tombstone (None) and an empty value (b"") as they are."""
        e, vs, ts = str(eid), str(v), str(t)
        if kind == "tombstone":
            return None
        if kind == "empty_value":
            return b""
        if kind == "far_future":   # its event time is already a day ahead: otherwise a perfect record
            pad = self._pad(e, key, vs, ts)
            return f'{{"event_id":{e},"key":"{key}","value":{vs},"event_time":{ts},"pad":"{pad}","sent_at":'.encode()
        if kind in ("near_size_limit", "oversized"):
            if self.size_limit is None:  # pragma: no cover - the scenario refuses these kinds without a limit
                raise ValueError(f"{kind} records need the topic's max.message.bytes")
            total = self.size_limit + (-1024 if kind == "near_size_limit" else 1024)
            pad = self._pad(e, key, vs, ts, total=total)
            return f'{{"event_id":{e},"key":"{key}","value":{vs},"event_time":{ts},"pad":"{pad}","sent_at":'.encode()
        pad = self._pad(e, key, vs, ts)
        nested = '{"n":' * NESTING_DEPTH + vs + "}" * NESTING_DEPTH
        if kind == "invalid_utf8":  # "\xc3(" is a two-byte lead followed by a byte that cannot continue it
            head = f'{{"event_id":{e},"key":"{key}","value":{vs},"event_time":{ts},"pad":"'.encode()
            return head + b"\xc3(" + pad[2:].encode() + b'","sent_at":'
        if kind == "deep_nesting":
            body = f'{{"event_id":{e},"key":"{key}","value":{nested},"event_time":{ts},"pad":"{pad}","sent_at":'
        elif kind == "deep_nesting_extra":
            body = f'{{"event_id":{e},"key":"{key}","value":{vs},"nest":{nested},"event_time":{ts},"pad":"{pad}","sent_at":'
        elif kind == "extra_fields":  # a nested "value" and "event_time" the rule must not read
            body = (f'{{"event_id":{e},"source":"web","key":"{key}","tags":[1,2.5,"v",null],"value":{vs},'
                    f'"meta":{{"value":"x","event_time":null}},"event_time":{ts},"pad":"{pad}","sent_at":')
        else:  # pragma: no cover - BAD_INPUT_KINDS and this function change together
            raise ValueError(kind)
        return body.encode()

    def _malformed(self, kind: str, eid: int, k: int, key: str, v: int, t: int) -> bytes:
        e, vs, ts = str(eid), str(v), str(t)
        pad = self._pad(e, key, vs, ts)
        if kind == "invalid_json":  # a missing comma: no JSON parser accepts it
            body = f'{{"event_id":{e} "key":"{key}","value":{vs},"event_time":{ts},"pad":"{pad}","sent_at":'
        elif kind == "missing_field":
            body = f'{{"event_id":{e},"key":"{key}","event_time":{ts},"pad":"{pad}","sent_at":'
        elif kind == "null_event_time":
            body = f'{{"event_id":{e},"key":"{key}","value":{vs},"event_time":null,"pad":"{pad}","sent_at":'
        elif kind == "key_not_string":
            body = f'{{"event_id":{e},"key":{k},"value":{vs},"event_time":{ts},"pad":"{pad}","sent_at":'
        elif kind == "value_not_integer":
            bad = (f'"{vs}"', f"{vs}.5", "true")[eid % 3]
            body = f'{{"event_id":{e},"key":"{key}","value":{bad},"event_time":{ts},"pad":"{pad}","sent_at":'
        elif kind == "event_time_not_integer":
            bad = (f'"{ts}"', f"{ts}.0")[eid % 2]
            body = f'{{"event_id":{e},"key":"{key}","value":{vs},"event_time":{bad},"pad":"{pad}","sent_at":'
        else:  # pragma: no cover - MALFORMED_KINDS and this function change together
            raise ValueError(kind)
        return body.encode()

    def finish(self, prefix: bytes | None, sent_at_ms: int) -> bytes | None:
        if not prefix:   # a tombstone or an empty value stays one
            return prefix
        return prefix + b"%d}" % sent_at_ms

    def heartbeat(self, event_time_ms: int, sent_at_ms: int) -> bytes:
        return (b'{"event_id":-1,"key":"' + HEARTBEAT_KEY.encode() + b'","value":0,"event_time":%d,"pad":"",'
                b'"sent_at":%d}' % (event_time_ms, sent_at_ms))


ENCODERS = {"json": JsonEncoder}
