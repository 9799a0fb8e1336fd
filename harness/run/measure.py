"""The measure phase: read what the engine wrote, judge it against ground truth, and compute the figures
(all defined in harness/metrics/) for the engine's section of result.json."""

from __future__ import annotations

from typing import Any

import psycopg

from harness import groundtruth
from harness.engines.protocol import Plan
from harness.loadgen.generator import SendStats
from harness.metrics import keeping_up
from harness.metrics import throughput as flow
from harness.metrics import windows as window_metrics
from harness.results.document import (CpuDuringLoad, EngineResult, Lag, MalformedCount, Throughput,
                                         WindowSummary)
from harness.run.planning import windows_per_event
from harness.scenario import Scenario
from harness.storage import sink_tables
from harness.storage.results import ResultFile


def measure(entry: EngineResult, *, plan: Plan, scenario: Scenario, dsn: str, load_id: str, time_base_ms: int,
            started_ms: int, truth: groundtruth.GroundTruth, stats: SendStats, rows: list[dict[str, Any]],
            results: ResultFile) -> None:
    """Fill in the entry's measured sections."""
    with psycopg.connect(dsn) as conn:
        log = sink_tables.read_log(conn, load_id)
        final = sink_tables.read_final(conn, load_id)
        malformed_counted = sink_tables.count_malformed(conn, load_id)
    ooo = scenario.load.out_of_order.max_delay if scenario.load.out_of_order.fraction > 0 else 0
    rep = window_metrics.report(
        promised=plan.promised_answer, expected=truth.windows, log=log, final=final, time_base_ms=time_base_ms,
        warmup_ms=scenario.warmup, watermark_delay_ms=scenario.query.watermark_delay, ooo_slack_ms=ooo,
        emits=plan.capabilities.emits, windows_per_event=windows_per_event(scenario))
    raw = results.raw_dir(load_id)
    rep.per_window.to_csv(raw / "windows.csv", index=False)
    log.to_csv(raw / "sink_log.csv", index=False)
    final.to_csv(raw / "sink_final.csv", index=False)
    a, b = flow.rate_interval(time_base_ms, scenario.warmup, stats.last_handoff_ms)
    entry.cpu_during_load = CpuDuringLoad.model_validate(flow.cpu_during_load(rows, time_base_ms, b, stats.sent))
    entry.windows = WindowSummary.model_validate(rep.summary)
    entry.malformed = MalformedCount(sent=truth.counts.get("malformed", 0), counted_by_engine=malformed_counted)
    entry.throughput = Throughput.model_validate(flow.throughput(rows, a, b, log["inserted_at_ms"] if len(log) else []))
    entry.keeping_up = keeping_up.judge(
        rows, a, b, trigger_interval_ms=plan.max_trigger_interval_ms,
        acked_rate=entry.throughput.acked_records_per_s, in_rate=entry.throughput.in_records_per_s)
    entry.lag = Lag.model_validate(flow.lag(rows))
    entry.time_to_first_result_s = round((log["inserted_at_ms"].min() - started_ms) / 1000, 3) if len(log) else None
