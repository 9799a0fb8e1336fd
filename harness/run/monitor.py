"""The monitor: samples an engine's processes, position and output, and the topic's end offsets, on one clock."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import psycopg

from harness.engines.protocol import Engine, EngineContext
from harness.loadgen.process import GeneratorProcess
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
        self._conn = psycopg.connect(ctx.dsn, autocommit=True)
        self._completion: CompletionCheck | None = None
        self._completion_frame: pd.DataFrame | None = None

    def sample(self) -> dict[str, Any]:
        pids = self.engine.pids()
        self.resources.sample(pids, self.t0)
        pos = self.engine.position()
        ends = {tp.partition: self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1] for tp in self._tps}
        offsets = pos.offsets if pos else {}
        read = pos.records_in if pos and pos.records_in is not None else (sum(offsets.values()) if offsets else None)
        lag = sum(max(0, ends[p] - offsets.get(p, 0)) for p in ends) if pos else None
        st = self.gen.stats
        row = {
            "t": round(time.monotonic() - self.t0, 3), "wall_ms": time.time_ns() // 1_000_000,
            "records_in": read, "lag": lag, "end_offsets": int(sum(ends.values())),
            "acked_records": (st.acked + st.heartbeats_acked) if st else 0,
            "rows_out": sink_tables.log_rows_since(self._conn, self.ctx.load_id),
            "cpu_s": round(self.resources.cpu_seconds, 3),
            "rss_mb": self.resources.series[-1]["rss_mb"] if self.resources.series else 0,
            "cgroup_cpu_s": self.group.cpu_seconds() if self.group is not None else None,
            "broker_cpu_s": service_cpu_seconds(self.service_pids["kafka"]) if "kafka" in self.service_pids else None,
            "postgres_cpu_s": (service_cpu_seconds(self.service_pids["postgres"])
                               if "postgres" in self.service_pids else None),
        }
        self.rows.append(row)
        return row

    def matching(self, expected: pd.DataFrame) -> tuple[int, int]:
        """(promised windows whose final row holds the promised value, promised windows); `expected` is ground
        truth's frame of the promised answer. Incremental: a full join per call grew with the load (minutes at
        110 k windows) while the engine wrote to the same database."""
        if self._completion is None or self._completion_frame is not expected:
            self._completion = CompletionCheck(self._conn, self.ctx.load_id, expected)
            self._completion_frame = expected
        return self._completion.check()

    def close(self) -> None:
        self._consumer.close()
        self._conn.close()
