"""Faults injected into an engine run on the scenario's schedule (`faults:`), each recorded with when it was meant
to fire, when it fired and ended, and what it did, so the run's figures can be read against it.

Built so far: `stall_sink`, backpressure from the database. A thread takes `LOCK TABLE ... IN SHARE MODE` on
the sink tables at time base + `at` and holds it for `duration`: every engine's INSERTs wait, while the
harness's own reads (the monitor, the completion check) go on. The run is judged like any other.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from harness.results.document import FaultRecord
from harness.scenario import Fault, StallSink

SINK_TABLES = ("harness_results_log", "harness_malformed")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class FaultInjector:
    """One thread for a load's faults, started when the load's time base is known; stop() ends a fault still
    running (releasing its lock) and returns the records."""

    def __init__(self, faults: list[Fault], dsn: str, time_base_ms: int, say: Any = None) -> None:
        self.faults = sorted(faults, key=lambda f: f.at)
        self.dsn = dsn
        self.time_base_ms = time_base_ms
        self.say = say or (lambda _msg: None)
        self.records = [FaultRecord(kind=f.kind, planned_at_ms=time_base_ms + f.at) for f in self.faults]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "FaultInjector":
        if self.faults:
            self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        for fault, rec in zip(self.faults, self.records):
            if self._stop.wait(max(0.0, (rec.planned_at_ms - now_ms()) / 1000)):
                rec.error = "not fired: the engine run ended first"
                continue
            try:
                if isinstance(fault, StallSink):
                    self._stall_sink(fault, rec)
            except Exception as exc:  # a fault that could not be injected is recorded, never a crash
                rec.error = f"{type(exc).__name__}: {exc}"
                self.say(f"fault {fault.kind} failed: {rec.error}")

    def _stall_sink(self, fault: StallSink, rec: FaultRecord) -> None:
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            conn.execute(f"LOCK TABLE {', '.join(SINK_TABLES)} IN SHARE MODE")
            rec.fired_at_ms = now_ms()
            self.say(f"fault stall_sink: {', '.join(SINK_TABLES)} locked for {fault.duration / 1000:g} s")
            self._stop.wait(fault.duration / 1000)
            conn.rollback()                      # releases the lock
            rec.ended_at_ms = now_ms()
        rec.detail = (f"LOCK TABLE {', '.join(SINK_TABLES)} IN SHARE MODE held "
                      f"{(rec.ended_at_ms - rec.fired_at_ms) / 1000:.2f} s")

    def stop(self) -> list[FaultRecord]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.records
