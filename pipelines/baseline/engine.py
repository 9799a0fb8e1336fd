"""The baseline engine: a plain Python Kafka consumer doing the same windows (pipelines/baseline/job.py).

It marks the floor every other engine is compared against: produce -> consume -> PostgreSQL on this machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from pydantic import Field

from harness import paths
from harness.engine import Capabilities, EngineContext, EngineSettings, Position
from harness.errors import EXIT_FAILED, HarnessError
from harness.scenario import Scenario
from harness.stack import processes


class BaselineSettings(EngineSettings):
    poll_batch: int = Field(2000, ge=1, le=100_000, description="records per consumer poll")


class BaselineEngine:
    name = "baseline"
    description = "Plain Python Kafka consumer computing the windows itself: the machine's floor"
    capabilities = Capabilities(window_types=frozenset({"tumbling", "sliding", "session"}), triggers=("continuous",),
                                allowed_lateness=False, emits="final")
    settings_model = BaselineSettings

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctx: EngineContext | None = None

    def cannot_run(self, scenario: Scenario, settings: Any) -> str | None:
        if scenario.query.allowed_lateness > 0:
            return "the baseline closes a window when the watermark passes its end; it has no allowed lateness"
        return None

    def promised_answer(self, scenario: Scenario, settings: Any) -> str:
        return "on_time"

    def max_trigger_interval_ms(self, settings: Any) -> int:
        return 0

    def latency_floor(self, scenario: Scenario, settings: Any) -> dict[str, int]:
        return {"watermark_delay_ms": scenario.query.watermark_delay,
                "heartbeat_interval_ms": scenario.load.heartbeat_interval}

    def changed_settings(self, settings: Any) -> dict[str, Any]:
        return settings.model_dump(exclude_defaults=True)

    def start(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        w = ctx.scenario.query.window
        cfg = {
            "bootstrap": ctx.bootstrap, "topic": ctx.topic, "partitions": ctx.scenario.topic.partitions,
            "dsn": ctx.dsn, "load_id": ctx.load_id, "engine": self.name, "repeat": ctx.repeat,
            "window": {"type": w.type, "size": w.size, "slide": w.slide, "gap": w.gap},
            "watermark_delay_ms": ctx.scenario.query.watermark_delay, "poll_batch": ctx.settings.poll_batch,
            "status_file": str(ctx.work_dir / "status.json"),
        }
        (ctx.work_dir / "config.json").write_text(json.dumps(cfg, indent=2))
        log = open(ctx.work_dir / "job.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "pipelines.baseline.job", str(ctx.work_dir / "config.json")],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=paths.PROJECT_ROOT)
        log.close()

    def wait_running(self, timeout_s: float) -> None:
        assert self.ctx is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"the baseline job exited while starting:\n{processes.tail(self.ctx.work_dir / 'job.log')}",
                                   exit_code=EXIT_FAILED)
            if (self.ctx.work_dir / "status.json").exists():
                return
            time.sleep(0.1)
        raise HarnessError(f"the baseline job did not start within {timeout_s:.0f} s", exit_code=EXIT_FAILED)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.alive() and self.proc else []

    def _status(self) -> dict[str, Any]:
        assert self.ctx is not None
        try:
            return json.loads((self.ctx.work_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def position(self) -> Position | None:
        st = self._status()
        if not st:
            return None
        return Position({int(p): int(o) for p, o in st.get("offsets", {}).items()}, st.get("records_in"))

    def engine_metrics(self) -> dict[str, Any]:
        st = self._status()
        return {k: st[k] for k in ("records_in", "malformed", "late_dropped", "heartbeats", "emitted") if k in st} | (
            {"late_dropped_counts": "events dropped by the baseline because their window had closed"} if st else {})

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                processes.terminate_tree(self.proc.pid)


ENGINE = BaselineEngine
