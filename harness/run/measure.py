"""The measure phase: read what the engine wrote, judge it against ground truth, and compute the figures
(all defined in harness/metrics/) for the engine's section of result.json."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import psycopg

from harness import groundtruth
from harness.engines.protocol import Plan
from harness.loadgen.generator import SendStats
from harness.loadgen.events import EventModel
from harness.metrics import bad_input, keeping_up, promised, recovery, send_delay
from harness.metrics import throughput as flow
from harness.metrics import windows as window_metrics
from harness.metrics.stats import percentiles
from harness.results.document import (CpuDuringLoad, EngineResult, FarFutureDamage, FaultRecord, KindCount, Lag,
                                      MalformedCount, Percentiles, Throughput, Timing, WindowSummary)
from harness.run.planning import windows_per_event
from harness.scenario import Scenario
from harness.storage import clock, sink_tables
from harness.storage.results import ResultFile


def measure(entry: EngineResult, *, plan: Plan, scenario: Scenario, dsn: str, load_id: str, time_base_ms: int,
            started_ms: int, truth: groundtruth.GroundTruth, stats: SendStats, rows: list[dict[str, Any]],
            results: ResultFile, answer_ms: int | None = None, cpu_method: str = "sampled",
            faults: list[FaultRecord] | None = None) -> None:
    """Fill in the entry's measured sections."""
    with psycopg.connect(dsn) as conn:
        log = sink_tables.read_log(conn, load_id)
        final = sink_tables.read_final(conn, load_id)
        malformed_counted, malformed_rows = sink_tables.count_malformed(conn, load_id)
        pairs = sink_tables.malformed_pairs(conn, load_id)
        malformed_rows_log = sink_tables.read_malformed(conn, load_id) if faults else None
        commit_times = sink_tables.commit_times_available(conn)
    if entry.timing is None:
        entry.timing = Timing(sink_time="insert", offset_bound_ms=clock.OFFSET_BOUND_MS)
    log = sink_times(log, entry.timing, commit_times)
    ooo = scenario.load.out_of_order.max_delay if scenario.load.out_of_order.fraction > 0 else 0
    expected = dict(truth.windows)
    skipping = skipping_restart(faults)
    if skipping is not None:   # a restart that skips records on purpose: judged against the answer it promises
        expected[plan.promised_answer] = promised_after_restart(skipping, plan=plan, scenario=scenario, truth=truth,
                                                                stats=stats, log=log, time_base_ms=time_base_ms)
    rep = window_metrics.report(
        promised=plan.promised_answer, expected=expected, log=log, final=final, time_base_ms=time_base_ms,
        warmup_ms=scenario.warmup, watermark_delay_ms=scenario.query.watermark_delay, ooo_slack_ms=ooo,
        emits=plan.capabilities.emits, windows_per_event=windows_per_event(scenario))
    raw = results.raw_dir(load_id)
    if skipping is not None:
        expected[plan.promised_answer].to_csv(raw / "expected_after_restart.csv", index=False)
    rep.per_window.to_csv(raw / "windows.csv", index=False)
    log.to_csv(raw / "sink_log.csv", index=False)
    final.to_csv(raw / "sink_final.csv", index=False)
    a, b = flow.rate_interval(time_base_ms, scenario.warmup, stats.last_handoff_ms)
    until = max(b, answer_ms) if answer_ms is not None else b   # an interval engine works after the last send
    entry.cpu_during_load = CpuDuringLoad.model_validate(
        flow.cpu_during_load(rows, time_base_ms, until, stats.sent, method=cpu_method))
    entry.windows = WindowSummary.model_validate(rep.summary)
    kinds = bad_input.by_kind(truth.special, pairs, expected[plan.promised_answer], final, scenario.query.window)
    truth_pairs = bad_input.malformed_pairs(truth.special)
    entry.malformed = MalformedCount(
        sent=truth.counts.get("malformed", 0), counted_by_engine=malformed_counted, rows_written=malformed_rows,
        by_kind={k: KindCount.model_validate(v) for k, v in kinds.items()},
        far_future=[FarFutureDamage.model_validate(d) for d in bad_input.far_future_damage(
            truth.special, expected[plan.promised_answer], final, time_base_ms=time_base_ms,
            plants=[(ff.at, ff.partitions) for ff in scenario.load.bad_input.far_future])],
        not_malformed_counted=None if truth_pairs is None else len(pairs - truth_pairs))
    entry.throughput = Throughput.model_validate(flow.throughput(rows, a, b, log[window_metrics.SINK_TIME] if len(log) else []))
    entry.keeping_up = keeping_up.judge(
        rows, a, b, trigger_interval_ms=plan.max_trigger_interval_ms,
        acked_rate=entry.throughput.acked_records_per_s, in_rate=entry.throughput.in_records_per_s)
    entry.lag = Lag.model_validate(flow.lag(rows))
    entry.generator = send_delay.judge(stats.summary()["send_delay_ms"]["p99"],  # type: ignore[index]
                                       entry.windows.event_to_result_ms.p50)
    entry.faults = judge_faults(faults or [], rows, rep.per_window, log,
                                rate_per_s=stats.sent / max(1.0, scenario.duration / 1000))
    if malformed_rows_log is not None:
        malformed_rows_log = clock.to_harness_clock(malformed_rows_log, entry.timing.offset_applied_ms,
                                                    ("inserted_at_ms",))
        count_malformed_around_faults(entry.faults, truth.special, malformed_rows_log)
    entry.time_to_first_result_s = round((log[window_metrics.SINK_TIME].min() - started_ms) / 1000, 3) if len(log) else None


def judge_faults(faults: list[FaultRecord], rows: list[dict[str, Any]], per_window: pd.DataFrame, log: pd.DataFrame,
                 *, rate_per_s: float) -> list[FaultRecord]:
    """Each fault that fired gets its time to first result, its recovery time and the duplicates written
    between it and the next fault (harness/metrics/recovery.py)."""
    fired = sorted((f for f in faults if f.fired_at_ms is not None), key=lambda f: f.fired_at_ms or 0)
    times = log[window_metrics.SINK_TIME] if len(log) else []
    for i, f in enumerate(fired):
        assert f.fired_at_ms is not None
        # after a restart, from when it was asked to start: its tasks may emit before it reports them all running
        f.first_result_after_ms = recovery.first_result_after(times, f.restarted_at_ms or f.fired_at_ms, f.fired_at_ms)
        rec = recovery.recovery(rows, per_window, f.fired_at_ms, rate_per_s, undisturbed_until_ms=fired[0].fired_at_ms)
        f.recovery_ms, f.recovery_note = rec.recovery_ms, rec.note
        f.duplicates_after = recovery.duplicates_between(log, window_metrics.SINK_TIME, f.fired_at_ms,
                                                         fired[i + 1].fired_at_ms if i + 1 < len(fired) else None)
    return faults


def count_malformed_around_faults(faults: list[FaultRecord], special: pd.DataFrame, written: pd.DataFrame) -> None:
    """Each fault that fired gets the malformed records it cost the count and those a replay wrote again
    (harness/metrics/bad_input.py)."""
    fired = sorted((f for f in faults if f.fired_at_ms is not None), key=lambda f: f.fired_at_ms or 0)
    counts = bad_input.malformed_around_faults(special, written, [f.fired_at_ms or 0 for f in fired])
    for f, (lost, rewritten) in zip(fired, counts):
        f.malformed_lost, f.malformed_rewritten = lost, rewritten


def skipping_restart(faults: list[FaultRecord] | None) -> FaultRecord | None:
    """The last kill_job that restarted from offsets the harness resolved (latest/timestamp), if any fired."""
    done = [f for f in faults or [] if f.start_offsets is not None and f.fired_at_ms is not None]
    return done[-1] if done else None


def promised_after_restart(f: FaultRecord, *, plan: Plan, scenario: Scenario, truth: groundtruth.GroundTruth,
                           stats: SendStats, log: pd.DataFrame, time_base_ms: int) -> pd.DataFrame:
    """What such a restart promises (harness/metrics/promised.py); log carries SINK_TIME on the harness's clock."""
    assert f.fired_at_ms is not None and f.start_offsets is not None
    ev = groundtruth.events(scenario, EventModel(scenario), time_base_ms, stats.handoff_ms, stats.sent, stats.offsets)
    return promised.after_restart(truth.windows[plan.promised_answer], log, ev, kill_ms=f.fired_at_ms,
                                  start_offsets=f.start_offsets, window=scenario.query.window,
                                  on_time=plan.promised_answer == "on_time")


def sink_times(log: pd.DataFrame, timing: Timing, commit_times: bool) -> pd.DataFrame:
    """The log on the harness's clock, with each row's sink time (commit time where the database tracks it,
    else insert time); records in `timing` which one was used and how far commits lagged inserts."""
    log = clock.to_harness_clock(log, timing.offset_applied_ms, ("inserted_at_ms", "committed_at_ms"))
    committed = log["committed_at_ms"] if "committed_at_ms" in log else pd.Series(np.nan, index=log.index)
    missing = int(committed.isna().sum())
    if commit_times and len(log) and missing < len(log):
        timing.sink_time = "commit"
        timing.sink_time_note = (f"{missing} of {len(log)} rows had no commit time (committed before "
                                 f"track_commit_timestamp was on); their insert time is used") if missing else None
        lagged = (committed - log["inserted_at_ms"]).dropna().to_numpy()
        timing.insert_to_commit_ms = Percentiles.model_validate(percentiles(lagged))
    else:
        timing.sink_time = "insert"
        timing.sink_time_note = (None if not len(log) else
                                 "the database does not track commit times (track_commit_timestamp is off), so a "
                                 "row's insert time stands in for when readers could see it")
    log[window_metrics.SINK_TIME] = committed.fillna(log["inserted_at_ms"]) if timing.sink_time == "commit" \
        else log["inserted_at_ms"]
    return log
