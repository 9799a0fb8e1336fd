"""The batch engine: an interval-scheduled job (pipelines/batch/job.py), each run its own process, as cron
would start an hourly job. It answers "do we need streaming at all?" with the same figures as the others."""

from __future__ import annotations

import sys
import time
from typing import Any

from pydantic import Field

from harness.durations import Millis, format_duration
from harness.engines.launcher import job_config
from harness.engines.local_job import LocalJobEngine, StatusFileJob
from harness.engines.protocol import Capabilities, EngineContext, EngineSettings, Plan, Skip
from harness.scenario import Scenario


class BatchSettings(EngineSettings):
    interval: Millis = Field(3_600_000, description="time between runs (an hourly job by default)")
    grace: Millis | None = Field(None, description="a window is computed once its end plus this has passed on the "
                                                   "wall clock (default: the scenario's watermark delay)")
    lookback: Millis = Field(3_600_000, description="late records for windows ending within this of a run are "
                                                    "recomputed; older ones are dropped (0: never recompute)")


class BatchEngine(LocalJobEngine[BatchSettings]):
    name = "batch"
    display_name = "Batch job (interval)"
    colour = "#2ca02c"  # green, in every plot and report
    description = "Interval-scheduled batch job (pandas), each run its own process; recomputes late windows"
    capabilities = Capabilities(window_types=frozenset({"tumbling", "sliding", "session"}), triggers=("interval",),
                                allowed_lateness=False, emits="final")
    settings_model = BatchSettings
    stop_grace_s = 60  # a run in progress may finish its transaction
    # The default (an hourly job) suits benchmarks, not tests.
    test_settings = {"interval": "2s"}

    # Its offsets commit with its results in PostgreSQL, so a restarted scheduler goes on from the last run that
    # committed: that is its checkpoint, and the only start it has. Its config is unchanged (started_ms too: a
    # kill before the first commit must not make the windows before the restart look computed).
    restart_policies = frozenset({"checkpoint"})
    restart_refusals = {p: "the batch job always starts from the offsets it committed with its last results "
                           "(restart_policy: checkpoint)" for p in ("earliest", "latest", "committed", "timestamp")}

    def __init__(self) -> None:
        self.job = StatusFileJob("batch scheduler")

    def _grace(self, scenario: Scenario, settings: Any) -> int:
        return settings.grace if settings.grace is not None else scenario.query.watermark_delay

    def plan(self, scenario: Scenario, settings: BatchSettings) -> Plan | Skip:
        if scenario.query.allowed_lateness > 0:
            return Skip("the batch job's look-back plays the role of allowed lateness; set query.allowed_lateness: 0")
        grace = self._grace(scenario, settings)
        ooo = scenario.load.out_of_order.max_delay if scenario.load.out_of_order.fraction > 0 else 0
        if grace <= ooo:
            return Skip(f"grace ({format_duration(grace)}) must exceed the out-of-order delay ({format_duration(ooo)}), "
                        "or on-time records would arrive after their window was computed")
        late = scenario.load.late
        if late.fraction > 0 and 0 < settings.lookback < late.delay + settings.interval:
            return Skip(f"lookback ({format_duration(settings.lookback)}) is neither 0 (late records dropped: the "
                        f"on-time answer) nor at least late.delay + interval "
                        f"({format_duration(late.delay + settings.interval)}, late records recomputed: the complete "
                        "answer); in between the answer depends on timing")
        # With a look-back the job promises the complete answer: a late record is recomputed whenever it comes,
        # so "late" needs no margin here. Without one, a run judges what arrived since the last run by its own
        # clock, so a record up to one interval late may still be counted.
        return Plan("complete" if settings.lookback > 0 else "on_time", self.capabilities,
                    max_trigger_interval_ms=settings.interval,
                    late_margin_ms=0 if settings.lookback > 0 else settings.interval,
                    latency_floor_ms={"interval_ms": settings.interval, "grace_ms": grace})

    def versions(self) -> dict[str, str | None]:
        from importlib.metadata import version

        return {"pandas": version("pandas")}

    def start(self, ctx: EngineContext[BatchSettings]) -> None:
        self.job.launch([sys.executable, "-m", "pipelines.batch.job", "schedule"], ctx, job_config(
            ctx, self.name, grace_ms=self._grace(ctx.scenario, ctx.settings), lookback_ms=ctx.settings.lookback,
            interval_ms=ctx.settings.interval, **self._schedule(ctx)))

    @staticmethod
    def _schedule(ctx: EngineContext[BatchSettings]) -> dict[str, Any]:
        """Live: the job first runs one interval after it starts, and windows that ended before it started are
        not its to compute (started_ms). Backlog: it owns the topic from offset 0 and runs once at start, the
        scheduled run over a full interval of data whose cost backlog mode measures."""
        if ctx.scenario.load.mode == "backlog":
            return {"started_ms": 0, "run_at_start": True}
        return {"started_ms": time.time_ns() // 1_000_000, "run_at_start": False}

    def engine_metrics(self) -> dict[str, Any]:
        st = self.job.status()
        return {k: st[k] for k in ("runs", "failed_runs", "records_in", "malformed", "late_dropped", "emitted") if k in st}


ENGINE = BatchEngine
