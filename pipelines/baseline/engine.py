"""The baseline engine: a plain Python Kafka consumer doing the same windows (pipelines/baseline/job.py).

It marks the floor every other engine is compared against: produce -> consume -> PostgreSQL on this machine.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import Field

from harness.engines.launcher import job_config
from harness.engines.local_job import LocalJobEngine, StatusFileJob
from harness.engines.protocol import Capabilities, EngineContext, EngineSettings, Plan, Restart, Skip
from harness.scenario import Scenario


class BaselineSettings(EngineSettings):
    poll_batch: int = Field(2000, ge=1, le=100_000, description="records per consumer poll")


class BaselineEngine(LocalJobEngine[BaselineSettings]):
    name = "baseline"
    display_name = "Baseline (plain consumer)"
    colour = "#7f7f7f"  # grey: the floor, in every plot and report
    role = "floor"
    description = "Plain Python Kafka consumer computing the windows itself: the machine's floor"
    capabilities = Capabilities(window_types=frozenset({"tumbling", "sliding", "session"}), triggers=("continuous",),
                                allowed_lateness=False, emits="final")
    settings_model = BaselineSettings
    restart_policies = frozenset({"earliest", "latest", "timestamp"})
    restart_refusals = {
        "checkpoint": "the baseline keeps its open windows in memory and saves no checkpoint",
        "committed": "the baseline commits no consumer-group offsets"}

    def __init__(self) -> None:
        self.job = StatusFileJob("baseline job")

    def plan(self, scenario: Scenario, settings: BaselineSettings) -> Plan | Skip:
        if scenario.query.allowed_lateness > 0:
            return Skip("the baseline closes a window when the watermark passes its end; it has no allowed lateness")
        return Plan("on_time", self.capabilities, latency_floor_ms={
            "watermark_delay_ms": scenario.query.watermark_delay,
            "heartbeat_interval_ms": scenario.load.heartbeat_interval})

    def versions(self) -> dict[str, str | None]:
        import confluent_kafka

        return {"confluent_kafka": confluent_kafka.version()[0], "librdkafka": confluent_kafka.libversion()[0]}

    def start(self, ctx: EngineContext[BaselineSettings]) -> None:
        self.job.launch([sys.executable, "-m", "pipelines.baseline.job"], ctx,
                        job_config(ctx, self.name, poll_batch=ctx.settings.poll_batch))

    restart_from_offsets = True

    def restart_config(self, restart: Restart) -> dict[str, Any]:
        if restart.offsets is not None:   # latest/timestamp, resolved by the harness: the promised answer's records
            return {"start_offsets": {"offsets": {str(p): o for p, o in restart.offsets.items()}}}
        start: Any = {"timestamp": restart.timestamp_ms} if restart.policy == "timestamp" else restart.policy
        return {"start_offsets": start}

    def engine_metrics(self) -> dict[str, Any]:
        st = self.job.status()
        return {k: st[k] for k in ("records_in", "malformed", "late_dropped", "heartbeats", "emitted", "db_retries")
                if k in st} | (
            {"late_dropped_counts": "events dropped by the baseline because their window had closed"} if st else {})


ENGINE = BaselineEngine
