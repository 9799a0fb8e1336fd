"""The database's clock against the harness's.

Sink times come from the database server (insert and commit times) and send times from the harness, and an
external database runs on another machine's clock. So around each engine run the harness reads
`clock_timestamp()` between two local readings, keeps the reading with the shortest round trip, and subtracts
the offset from every database time it reads.

HARNESS_FAULT_DB_CLOCK_MS (test-only) makes the database's clock read that many ms ahead: it is added to every
database time the harness reads (here and by `to_harness_clock`), as a server with a wrong clock would.
"""

from __future__ import annotations

import os
import time

import pandas as pd
import psycopg

from harness.errors import EXIT_FAILED, HarnessError
from harness.results.document import ClockReading

READINGS = 7
# Beyond this the correction is too uncertain for millisecond latencies: the round trip is then tens of ms,
# which a database on the same network never needs.
OFFSET_BOUND_MS = 20.0


def injected_ms() -> float:
    return float(os.environ.get("HARNESS_FAULT_DB_CLOCK_MS", "0") or 0)


def read_offset(conn: psycopg.Connection, readings: int = READINGS) -> ClockReading:
    """Database clock minus harness clock, from the reading with the shortest round trip."""
    best: tuple[float, float] | None = None  # (round trip, offset), ms
    for _ in range(readings):
        t0 = time.time_ns()
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp()) * 1000").fetchone()
        t1 = time.time_ns()
        assert row is not None
        db_ms = float(row[0]) + injected_ms()
        rtt = (t1 - t0) / 1e6
        offset = db_ms - (t0 + t1) / 2e6
        if best is None or rtt < best[0]:
            best = (rtt, offset)
    assert best is not None
    return ClockReading(offset_ms=round(best[1], 3), uncertainty_ms=round(best[0] / 2, 3))


def checked_offset(dsn: str, what: str) -> ClockReading:
    """read_offset on a fresh connection; refuses a reading too uncertain to correct latencies with."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        reading = read_offset(conn)
    if reading.uncertainty_ms > OFFSET_BOUND_MS:
        raise HarnessError(f"{what}: the database clock's offset is uncertain by ±{reading.uncertainty_ms:.1f} ms "
                           f"(round trip {2 * reading.uncertainty_ms:.1f} ms), over the bound of "
                           f"±{OFFSET_BOUND_MS:g} ms; latencies could not be put on one clock", exit_code=EXIT_FAILED)
    return reading


def applied_offset(before: ClockReading | None, after: ClockReading | None) -> float:
    readings = [r.offset_ms for r in (before, after) if r is not None]
    return round(sum(readings) / len(readings), 3) if readings else 0.0


def to_harness_clock(log: pd.DataFrame, offset_ms: float, columns: tuple[str, ...]) -> pd.DataFrame:
    """Database times of a sink log on the harness's clock (the injected fault first, as the server would)."""
    shift = injected_ms() - offset_ms
    out = log.copy()
    for c in columns:
        if c in out:
            out[c] = out[c] + shift
    return out
