"""The baseline engine: a plain Python Kafka consumer doing the same windows (pipelines/baseline/job.py).

It marks the floor every other engine is compared against: produce -> consume -> PostgreSQL on this machine.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import Field

from harness.engine import Capabilities, EngineContext, EngineSettings
from harness.engine_process import LocalJobEngine, StatusFileJob
from harness.scenario import Scenario


class BaselineSettings(EngineSettings):
    poll_batch: int = Field(2000, ge=1, le=100_000, description="records per consumer poll")


class BaselineEngine(LocalJobEngine):
    name = "baseline"
    description = "Plain Python Kafka consumer computing the windows itself: the machine's floor"
    capabilities = Capabilities(window_types=frozenset({"tumbling", "sliding", "session"}), triggers=("continuous",),
                                allowed_lateness=False, emits="final")
    settings_model = BaselineSettings

    def __init__(self) -> None:
        self.job = StatusFileJob("baseline job")

    def cannot_run(self, scenario: Scenario, settings: Any) -> str | None:
        if scenario.query.allowed_lateness > 0:
            return "the baseline closes a window when the watermark passes its end; it has no allowed lateness"
        return None

    def promised_answer(self, scenario: Scenario, settings: Any) -> str:
        return "on_time"

    def max_trigger_interval_ms(self, settings: Any) -> int:
        return 0

    def late_margin_ms(self, settings: Any) -> int:
        return 0

    def latency_floor(self, scenario: Scenario, settings: Any) -> dict[str, int]:
        return {"watermark_delay_ms": scenario.query.watermark_delay,
                "heartbeat_interval_ms": scenario.load.heartbeat_interval}

    def changed_settings(self, settings: Any) -> dict[str, Any]:
        return settings.model_dump(exclude_defaults=True)

    def start(self, ctx: EngineContext) -> None:
        w = ctx.scenario.query.window
        self.job.launch([sys.executable, "-m", "pipelines.baseline.job"], ctx.work_dir, {
            "bootstrap": ctx.bootstrap, "topic": ctx.topic, "partitions": ctx.scenario.topic.partitions,
            "dsn": ctx.dsn, "load_id": ctx.load_id, "engine": self.name, "repeat": ctx.repeat,
            "window": {"type": w.type, "size": w.size, "slide": w.slide, "gap": w.gap},
            "watermark_delay_ms": ctx.scenario.query.watermark_delay, "poll_batch": ctx.settings.poll_batch,
            "status_file": str(ctx.work_dir / "status.json"),
        })

    def engine_metrics(self) -> dict[str, Any]:
        st = self.job.status()
        return {k: st[k] for k in ("records_in", "malformed", "late_dropped", "heartbeats", "emitted") if k in st} | (
            {"late_dropped_counts": "events dropped by the baseline because their window had closed"} if st else {})


ENGINE = BaselineEngine
