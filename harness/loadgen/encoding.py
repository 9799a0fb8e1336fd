"""Record encodings behind one interface (JSON now; a schema'd format can be added beside it).

A record is built in two steps so `sent_at` can be stamped at the moment of hand-off without re-encoding:
`prefixes()` renders everything else for a block, `finish()` appends `sent_at` and closes the record.
"""

from __future__ import annotations

from typing import Protocol

from harness.loadgen.events import (HEARTBEAT_KEY, KIND_LATE, KIND_MALFORMED_FIRST, KIND_NORMAL,
                                    KIND_OUT_OF_ORDER, MALFORMED_KINDS, EventBlock, key_name)

SENT_AT_DIGITS = 13  # epoch milliseconds until the year 2286


class Encoder(Protocol):
    name: str

    def prefixes(self, block: EventBlock, time_base_ms: int) -> list[bytes]: ...

    def finish(self, prefix: bytes, sent_at_ms: int) -> bytes: ...

    def heartbeat(self, event_time_ms: int, sent_at_ms: int) -> bytes: ...


class JsonEncoder:
    """Compact JSON objects with fields in a fixed order; `pad` fills the record up to payload_bytes."""

    name = "json"

    def __init__(self, payload_bytes: int) -> None:
        self.payload_bytes = payload_bytes
        empty = b'{"event_id":0,"key":"","value":0,"event_time":0,"pad":"","sent_at":' + b"0" * SENT_AT_DIGITS + b"}"
        self._fixed = len(empty) - 3  # the three single-digit zeros are counted per event

    def _pad(self, *fields: str) -> str:
        return "x" * max(0, self.payload_bytes - self._fixed - sum(len(f) for f in fields))

    def prefixes(self, block: EventBlock, time_base_ms: int) -> list[bytes]:
        out: list[bytes] = []
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
            else:
                out.append(self._malformed(MALFORMED_KINDS[kind - KIND_MALFORMED_FIRST], eid, k, key, v, t))
        return out

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

    def finish(self, prefix: bytes, sent_at_ms: int) -> bytes:
        return prefix + b"%d}" % sent_at_ms

    def heartbeat(self, event_time_ms: int, sent_at_ms: int) -> bytes:
        return (b'{"event_id":-1,"key":"' + HEARTBEAT_KEY.encode() + b'","value":0,"event_time":%d,"pad":"",'
                b'"sent_at":%d}' % (event_time_ms, sent_at_ms))


ENCODERS = {"json": JsonEncoder}
