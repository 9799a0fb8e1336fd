"""Durations as people write them in scenario files: 500ms, 10s, 5m, 1h (stored as integer milliseconds)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
ALLOWED = "a number with a unit: 500ms, 10s, 1.5m, 1h"


def parse_duration(value: Any) -> int:
    """Milliseconds from '10s', '500ms', '1h'. A bare 0 is allowed; other bare numbers are ambiguous."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration ({ALLOWED}), got {value!r}")
    if isinstance(value, (int, float)) and value == 0:
        return 0
    if isinstance(value, str):
        m = _PATTERN.match(value)
        if m:
            ms = float(m.group(1)) * _UNITS[m.group(2)]
            if ms != int(ms):
                raise ValueError(f"'{value}' is not a whole number of milliseconds")
            return int(ms)
    raise ValueError(f"expected a duration ({ALLOWED}), got {value!r}")


def format_duration(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


Millis = Annotated[int, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
