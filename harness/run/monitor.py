"""The monitor: samples an engine's processes, position and output, and the topic's end offsets, on one clock."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import psycopg

from harness.engines.protocol import Engine, EngineContext
from harness.loadgen.process import GeneratorProcess
from harness.metrics import cpu_idle
from harness.metrics.cgroups import EngineGroup
from harness.metrics.resources import ResourceSampler, service_cpu_seconds
from harness.stack.probes import kafka_conf
from harness.storage import sink_tables
from harness.storage.completion import CompletionCheck


class Monitor:
    def __init__(self, engine: Engine[Any], ctx: EngineContext[Any], gen: GeneratorProcess, *,
                 group: EngineGroup | None = None, service_pids: dict[str, int] | None = None) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.engine, self.ctx, self.gen = engine, ctx, gen
        self.group, self.service_pids = group, service_pids or {}
        self.t0 = time.monotonic()
        self.resources = ResourceSampler()
        self.rows: list[dict[str, Any]] = []
        self._consumer = Consumer(kafka_conf(ctx.bootstrap, **{"group.id": f"harness-monitor-{ctx.load_id}",
                                                               "enable.auto.commit": False}))
        self._tps = [TopicPartition(ctx.topic, p) for p in range(ctx.scenario.topic.partitions)]
        self._conn: psycopg.Connection | None = psycopg.connect(ctx.dsn, autocommit=True)
        self._completion: CompletionCheck | None = None
        self._completion_frame: pd.DataFrame | None = None
        self._matched: tuple[int, int] = (0, 0)
        # A service's CPU as one counter across a restart (restart_postgres, restart_broker): a new process
        # starts from 0. name -> [pid, CPU of the processes before it, its last reading]
        self._svc: dict[str, list[Any]] = {}
        self._ends: dict[int, int] = {}

    def _db(self) -> psycopg.Connection:
        """The monitor's connection, made again after the database went away (restart_postgres)."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.ctx.dsn, autocommit=True, connect_timeout=2)
            self._completion = None
        return self._conn

    def _lost_db(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn, self._completion = None, None

    def _rows_out(self) -> int | None:
        try:
            return sink_tables.log_rows_since(self._db(), self.ctx.load_id)
        except psycopg.OperationalError:
            self._lost_db()
            return None

    def _service_cpu(self, name: str) -> float | None:
        pid = self.service_pids.get(name)
        if pid is None:
            return None
        st = self._svc.setdefault(name, [pid, 0.0, 0.0])
        if pid != st[0]:
            st[:] = [pid, st[1] + st[2], 0.0]
        now = service_cpu_seconds(pid)
        if now is not None:          # None: stopped right now, the counter holds
            st[2] = now
        return round(st[1] + st[2], 3)

    def _end_offsets(self) -> dict[int, int] | None:
        """The topic's end offsets; None while the broker is away (restart_broker)."""
        from confluent_kafka import KafkaException

        try:
            self._ends = {tp.partition: self._consumer.get_watermark_offsets(tp, timeout=2, cached=False)[1]
                          for tp in self._tps}
            return self._ends
        except KafkaException:
            return None

    def sample(self) -> dict[str, Any]:
        pids = self.engine.pids()
        self.resources.sample(pids, self.t0)
        pos = self.engine.position()
        fresh = self._end_offsets()
        ends = fresh if fresh is not None else self._ends      # the broker away: the last known ends
        offsets = pos.offsets if pos else {}
        read = pos.records_in if pos and pos.records_in is not None else (sum(offsets.values()) if offsets else None)
        lag = sum(max(0, ends[p] - offsets.get(p, 0)) for p in ends) if pos and fresh is not None else None
        st = self.gen.stats
        row = {
            "t": round(time.monotonic() - self.t0, 3), "wall_ms": time.time_ns() // 1_000_000,
            "records_in": read, "lag": lag, "end_offsets": int(sum(ends.values())),
            "acked_records": (st.acked + st.heartbeats_acked) if st else 0,
            "rows_out": self._rows_out(),
            "cpu_s": round(self.resources.cpu_seconds, 3),
            "rss_mb": self.resources.series[-1]["rss_mb"] if self.resources.series else 0,
            "cgroup_cpu_s": self.group.cpu_seconds() if self.group is not None else None,
            "broker_cpu_s": self._service_cpu("kafka"),
            "postgres_cpu_s": self._service_cpu("postgres"),
            "machine_busy_s": cpu_idle.busy_cpu_seconds(),
        }
        self.rows.append(row)
        return row

    def matching(self, expected: pd.DataFrame) -> tuple[int, int]:
        """(promised windows whose final row holds the promised value, promised windows); `expected` is ground
        truth's frame of the promised answer. Incremental: a full join per call grew with the load (minutes at
        110 k windows) while the engine wrote to the same database."""
        try:
            if self._completion is None or self._completion_frame is not expected:
                self._completion = CompletionCheck(self._db(), self.ctx.load_id, expected)
                self._completion_frame = expected
            self._matched = self._completion.check()
        except psycopg.OperationalError:     # the database is away: the last answer stands until it is back
            self._lost_db()
        return self._matched

    def close(self) -> None:
        self._consumer.close()
        self._lost_db()
