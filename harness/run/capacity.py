"""`harness capacity`: per engine, one running instance takes a staircase of offered rates on one topic.

Each step is a load of its own (a generator process, a time base on a window boundary after the previous step,
heartbeats to close its last windows, its own ground truth); the windows of two steps never overlap, so each
step's latency and correctness are read from the sink's rows of its own windows. The step is judged by
harness/metrics/capacity.py, and the next rate follows from the verdicts so far. After a step that was not
sustainable the lag drains before the next one starts. Every finished step is saved in result.json at once.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import psycopg

from harness import environment, groundtruth, paths
from harness.engines.protocol import Engine, EngineContext, Plan
from harness.errors import EXIT_FAILED, HarnessError
from harness.loadgen.events import EventModel
from harness.loadgen.process import GeneratorProcess
from harness.metrics import capacity as cap
from harness.metrics import cgroups, keeping_up
from harness.metrics import throughput as flow
from harness.metrics import windows as window_metrics
from harness.metrics.resources import service_cpu_seconds
from harness.metrics.stats import percentiles
from harness.results.document import CapacityStep, CoresUsed, EngineCapacity, Machine, Percentiles, ResultDocument
from harness.run.hooks import RunHooks
from harness.run.monitor import Monitor
from harness.run.scenario_run import record_services
from harness.run.planning import PlannedEngine, close_horizon_ms, new_run_id, next_time_base, plan_engines
from harness.scenario import ConstantShape, Scenario, load_scenario
from harness.stack import topics
from harness.stack.services import services
from harness.storage import clock, sink_tables
from harness.storage.results import ResultFile, utc_now

START_TIMEOUT_S = 180
SAMPLE_S = 0.5
ANSWER_GRACE_MS = 15_000     # after a step's last window should have closed, how long its answer may take
DRAIN_TIMEOUT_S = 120        # a backlog that does not drain by then ends the engine's search
DEFAULT_STEP_MS = 20_000
MIN_JUDGED_MS = 6_000        # the shortest span a step's lag slope is fitted over
DEFAULT_MAX_RATE = 200_000.0
DEFAULT_MAX_STEPS = 20


@dataclass
class CapacityOptions:
    scenario_path: Path
    engines: list[str] | None = None
    engine_options: list[str] = field(default_factory=list)
    step_ms: int = DEFAULT_STEP_MS
    start_rate: float | None = None       # None: the scenario's load.rate
    max_rate: float = DEFAULT_MAX_RATE
    max_steps: int = DEFAULT_MAX_STEPS
    confirm: bool = True                  # run a step that was not sustainable once more (capacity.py)
    bootstrap: str | None = None
    dsn: str | None = None
    results_dir: Path | None = None
    run_id: str | None = None


def step_scenario(scenario: Scenario, rate: float, step_ms: int) -> Scenario:
    """The scenario's load at a constant `rate` for one step. Faults are not part of a capacity search, and late
    records are left out: one may belong to an earlier step's window."""
    late = scenario.load.late.model_copy(update={"fraction": 0.0})
    load = scenario.load.model_copy(update={"rate": float(rate), "shape": ConstantShape(), "late": late})
    return scenario.model_copy(update={"load": load, "duration": step_ms, "faults": []})


def check_options(scenario: Scenario, opts: CapacityOptions) -> None:
    least = scenario.warmup + flow.RATE_SKIP_MS + MIN_JUDGED_MS
    if opts.step_ms < least:
        raise HarnessError(f"--step must be at least {least / 1000:g} s: the scenario's warm-up "
                           f"({scenario.warmup / 1000:g} s), {flow.RATE_SKIP_MS / 1000:g} s while engine counters "
                           f"catch up, and {MIN_JUDGED_MS / 1000:g} s for the lag slope to fit; got {opts.step_ms / 1000:g} s")
    if opts.start_rate is not None and not cap.MIN_RATE <= opts.start_rate <= opts.max_rate:
        raise HarnessError(f"--start-rate must be between {cap.MIN_RATE:g} and --max-rate ({opts.max_rate:g}); "
                           f"got {opts.start_rate:g}")
    if opts.max_steps < 2:
        raise HarnessError(f"--max-steps must be 2 or more, got {opts.max_steps}")


def run_capacity(opts: CapacityOptions, hooks: RunHooks | None = None) -> Path:
    """The capacity search for each engine, one after another; returns the run folder."""
    hooks = hooks or RunHooks()
    scenario = load_scenario(opts.scenario_path)
    check_options(scenario, opts)
    planned = plan_engines(scenario, str(opts.scenario_path), opts.engines, opts.engine_options)
    run_id = opts.run_id or new_run_id(scenario).replace(f"-{scenario.name}-", f"-{scenario.name}-capacity-")
    run_dir = (opts.results_dir or paths.results_dir()) / run_id
    started = time.monotonic()
    results = ResultFile(run_dir, ResultDocument(
        run_id=run_id, status="running", started_at=utc_now(), scenario_file=str(opts.scenario_path),
        scenario=scenario, engines_requested=[p.name for p in planned], mode="capacity",
        machine=Machine.model_validate(environment.machine())))
    hooks.started(run_dir)
    status, error = "failed", None
    try:
        with services(opts.bootstrap, opts.dsn, scenario_bootstrap=scenario.services.bootstrap_servers,
                      scenario_dsn=scenario.services.postgres_dsn, progress=hooks.message) as svc:
            record_services(results, svc, planned)
            for p in planned:
                EngineStaircase(p, scenario, opts, svc.bootstrap, svc.dsn, run_id=run_id, results=results,
                                hooks=hooks, service_pids=svc.service_pids).run()
        failed = [c for c in results.doc.capacity if c.status == "failed"]
        status = "failed" if failed else "complete"
        error = "; ".join(f"{c.engine}: {c.error}" for c in failed) or None
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted (Ctrl-C or SIGTERM); the finished steps are kept"
        raise
    except HarnessError as exc:
        error = exc.message
        raise
    finally:
        doc = results.doc
        doc.status, doc.error, doc.finished_at = status, error, utc_now()  # type: ignore[assignment]
        doc.wall_seconds = round(time.monotonic() - started, 3)
        results.save()
    if status == "failed":
        raise HarnessError(f"capacity run {run_id} finished with failures: {error}; results in {run_dir}",
                           exit_code=EXIT_FAILED)
    return run_dir


class EngineStaircase:
    def __init__(self, planned: PlannedEngine, scenario: Scenario, opts: CapacityOptions, bootstrap: str, dsn: str,
                 *, run_id: str, results: ResultFile, hooks: RunHooks, service_pids: dict[str, int]) -> None:
        self.planned, self.scenario, self.opts = planned, scenario, opts
        self.bootstrap, self.dsn, self.results, self.hooks = bootstrap, dsn, results, hooks
        self.service_pids = service_pids
        self.name = planned.name
        self.load_id = f"{run_id}.{self.name}.capacity"
        self.topic = f"harness.{self.load_id}"
        self.engine: Engine[Any] = planned.cls()
        self.work_dir = results.run_dir / "engines" / f"{self.name}-capacity"
        plan = planned.plan if isinstance(planned.plan, Plan) else None
        self.plan = plan
        # the engine is planned on the scenario as written; it reads one topic across every step
        self.ctx = EngineContext(run_id, self.load_id, 0, step_scenario(scenario, scenario.load.rate, opts.step_ms),
                                 planned.settings, bootstrap, dsn, self.topic, self.work_dir, plan)
        bound = cap.latency_bound(scenario.slo.p99_latency if scenario.slo else None, scenario.query.watermark_delay)
        self.bound = bound
        self.entry = EngineCapacity(
            engine=self.name, display_name=getattr(planned.cls, "display_name", self.name),
            role=getattr(planned.cls, "role", "option"), settings=planned.settings.model_dump(mode="json"),
            status="running", latency_bound_metric=bound.metric, latency_bound_ms=bound.limit_ms,
            latency_bound_source=bound.source)
        self.group: cgroups.EngineGroup | None = None
        self.monitor: Monitor | None = None
        self.offset_ms = 0.0
        self.time_cursor_ms = 0   # no step's time base before this: the windows of two steps never overlap

    def skip_reason(self) -> str | None:
        if self.plan is None:
            return getattr(self.planned.plan, "reason", "not planned")
        if self.plan.max_trigger_interval_ms >= keeping_up.CONTINUOUS_BELOW_MS:
            return (f"runs every {self.plan.max_trigger_interval_ms / 1000:g} s: an interval engine's lag is a "
                    "sawtooth by design, so its capacity comes from backlog mode, not from the lag slope")
        return None

    def run(self) -> EngineCapacity:
        self.results.doc.capacity.append(self.entry)
        why = self.skip_reason()
        if why is not None:
            self.entry.status, self.entry.reason = "skipped", why
            self.hooks.message(f"{self.name}: skipped: {why}")
            self.results.save()
            return self.entry
        try:
            self._start()
            self._staircase()
            self.entry.status = "complete"
        except KeyboardInterrupt:
            self.entry.status, self.entry.error = "interrupted", "interrupted (Ctrl-C or SIGTERM)"
            raise
        except HarnessError as exc:
            self.entry.status, self.entry.error = "failed", exc.message
            self.hooks.message(f"{self.name}: failed: {exc.message}")
        except Exception as exc:  # an engine bug must not lose the other engines' staircases
            self.entry.status, self.entry.error = "failed", f"{type(exc).__name__}: {exc}"
            self.hooks.message(f"{self.name}: failed: {type(exc).__name__}: {exc}")
        finally:
            self._stop()
        return self.entry

    def _start(self) -> None:
        limit = self.scenario.topic.max_message_bytes
        topics.create_topic(self.bootstrap, self.topic, self.scenario.topic.partitions,
                            config={"max.message.bytes": str(limit)} if limit else None)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            sink_tables.ensure_schema(conn)
            sink_tables.record_load(conn, load_id=self.load_id, run_id=self.ctx.run_id, engine=self.name, repeat=0,
                                    scenario=self.scenario.name, topic=self.topic,
                                    partitions=self.scenario.topic.partitions, seed=self.scenario.seed,
                                    time_base_ms=next_time_base(self.scenario))
        self.offset_ms = clock.checked_offset(self.dsn, self.name).offset_ms
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.group, _why = cgroups.EngineGroup.create(self.load_id)
        cgroups.activate(self.group)
        t0 = time.monotonic()
        self.hooks.message(f"{self.name}: starting ({self.engine.description})")
        self.engine.start(self.ctx)
        self.engine.wait_running(START_TIMEOUT_S)
        self.entry.start_to_running_s = round(time.monotonic() - t0, 3)
        self.results.save()

    def _stop(self) -> None:
        try:
            self.engine.stop()
        finally:
            cgroups.activate(None)
            if self.monitor is not None:
                pd.DataFrame(self.monitor.rows).to_csv(self.results.raw_dir(self.load_id) / "timeseries.csv",
                                                       index=False)
                self.monitor.close()
            if self.group is not None:
                self.group.close()
            self.results.save()

    def _staircase(self) -> None:
        assert self.plan is not None
        start = self.opts.start_rate or self.scenario.load.rate
        slow = self.plan.settles_slowly
        long_ms = self.opts.step_ms * cap.SETTLE_FACTOR
        if slow:
            self.entry.long_step_ms = long_ms
        done: list[cap.LongStep] = []
        while len(done) < self.opts.max_steps:
            plain = [(r, v) for r, v, _ in done]
            judged = cap.settled(done)      # without long steps (any engine that settles fast): every step
            b = cap.bracket(judged)
            long = slow and b.high is not None          # after the doubling's first failure
            if self.opts.confirm and cap.needs_confirmation(plain) and not done[-1][2]:
                rate, phase, long = done[-1][0], "confirmation", False
            else:
                nxt = cap.next_rate(judged, start=start, max_rate=self.opts.max_rate)
                if nxt is None and slow and cap.needs_hold(done):
                    assert b.low is not None
                    rate, phase, long = b.low, "hold", True
                elif nxt is None:
                    break
                else:
                    rate, phase = nxt, "doubling" if b.high is None else "halving" if b.low is None else "bisection"
            step = self._step(len(done), rate, phase, long_ms if long else self.opts.step_ms)
            done.append((rate, step.verdict, long))
            b = cap.bracket(cap.settled(done))
            self.entry.sustainable_rate, self.entry.bracket_high, self.entry.bracket_narrow = b.low, b.high, b.narrow
            top = next((v for r, v, _ in reversed(done) if r == b.high), None)
            self.entry.bound_by = None if top is None else "machine" if top == "machine-bound" else "engine"
            self.results.save()
            self.hooks.message(f"{self.name}: step {step.index + 1} at {rate:,.0f} events/s: {step.verdict} "
                               f"({step.reason}); bracket {_rate(b.low)} .. {_rate(b.high)}")
            if step.verdict != "sustainable" and not self._drain(step):
                self.entry.reason = (f"the lag did not drain within {DRAIN_TIMEOUT_S} s after the step at "
                                     f"{rate:,.0f} events/s; the search stopped there")
                return
        b = cap.bracket(cap.settled(done))
        if not b.narrow or (slow and cap.needs_hold(done)):
            self.entry.reason = (f"the search ended after {len(done)} steps (--max-steps {self.opts.max_steps}, "
                                 f"--max-rate {self.opts.max_rate:,.0f}) with the bracket "
                                 f"{_rate(b.low)} .. {_rate(b.high)}, not yet within {cap.BRACKET_SHARE:.0%}"
                                 + (" and its lower end not yet held for a long step" if b.narrow else ""))

    # -- one step ----------------------------------------------------------------------------------------------
    def _sample(self) -> dict[str, Any]:
        assert self.monitor is not None
        row = self.monitor.sample()
        if not self.engine.alive():
            raise HarnessError(f"the {self.name} pipeline stopped during the capacity search; see {self.work_dir}")
        return row

    def _step(self, index: int, rate: float, phase: str, step_ms: int) -> CapacityStep:
        assert self.plan is not None
        scen = step_scenario(self.scenario, rate, step_ms)
        gen = GeneratorProcess(scen, self.bootstrap, self.topic,
                               owner={"run_id": self.ctx.run_id, "load_id": self.load_id})
        try:
            gen.warm_up()
            if self.monitor is None:
                self.monitor = Monitor(self.engine, self.ctx, gen, group=self.group, service_pids=self.service_pids)
            self.monitor.gen = gen
            tb = next_time_base(scen, now_ms=max(_now(), self.time_cursor_ms))
            horizon = close_horizon_ms(scen)
            self.time_cursor_ms = tb + horizon
            holder: dict[str, Any] = {}

            def send() -> None:
                try:
                    holder["stats"] = gen.run(tb, heartbeat_until_ms=tb + horizon)
                except BaseException as exc:
                    holder["error"] = exc
                    gen.load_done.set()

            self.hooks.message(f"{self.name}: step {index + 1} ({phase}): {rate:,.0f} events/s for "
                               f"{scen.duration / 1000:g} s")
            worker = threading.Thread(target=send, name=f"capacity-{self.name}-{index}", daemon=True)
            first = len(self.monitor.rows)
            worker.start()
            gen_cpu0 = None
            while not gen.load_done.is_set():
                row = self._sample()
                if gen_cpu0 is None and gen.pid is not None:
                    gen_cpu0 = service_cpu_seconds(gen.pid)
                self.hooks.monitor(self.name, {**row, "step": index + 1, "rate": rate})
                time.sleep(SAMPLE_S)
            gen_cpu1 = service_cpu_seconds(gen.pid) if gen.pid is not None else None
            if "error" in holder:
                raise holder["error"]
            stats = gen.stats
            assert stats is not None
            model = EventModel(scen)
            truth = groundtruth.compute(scen, model, tb, stats.handoff_ms, stats.sent, stats.offsets)
            expected = truth.windows[self.plan.promised_answer]
            deadline = tb + horizon + self.plan.max_trigger_interval_ms + ANSWER_GRACE_MS
            matched, total = 0, len(expected)
            while True:
                row = self._sample()
                matched, total = self.monitor.matching(expected)
                self.hooks.monitor(self.name, {**row, "step": index + 1, "rate": rate, "windows_matched": matched,
                                               "windows_expected": total})
                if matched == total or row["wall_ms"] > deadline:
                    break
                time.sleep(SAMPLE_S)
            worker.join(max(0.0, (tb + horizon - _now()) / 1000) + 10)
            rows = self.monitor.rows[first:]
            step = self._judge(index, rate, phase, scen, model, tb, stats, expected, rows,
                               gen_cpu=(gen_cpu0, gen_cpu1))
        finally:
            gen.stop.set()
            gen.close(timeout=10)
        self.entry.steps.append(step)
        return step

    def _judge(self, index: int, rate: float, phase: str, scen: Scenario, model: EventModel, tb: int, stats: Any,
               expected: pd.DataFrame, rows: list[dict[str, Any]], *, gen_cpu: tuple[Any, Any]) -> CapacityStep:
        assert self.plan is not None
        summary = stats.summary()
        a, b = flow.rate_interval(tb, scen.warmup, stats.last_handoff_ms)
        tp = flow.throughput(rows, a, b, [])
        ku = keeping_up.judge(rows, a, b, trigger_interval_ms=self.plan.max_trigger_interval_ms,
                              acked_rate=tp["acked_records_per_s"], in_rate=tp["in_records_per_s"])
        with psycopg.connect(self.dsn) as conn:
            log = sink_tables.read_log(conn, self.load_id)
        first = int(expected["window_start"].min()) if len(expected) else tb  # out-of-order events reach before tb
        log = log[(log["window_start"] >= first) & (log["window_start"] < tb + scen.duration)].copy()
        log = clock.to_harness_clock(log, self.offset_ms, ("inserted_at_ms",))
        log[window_metrics.SINK_TIME] = log["inserted_at_ms"]
        per = window_metrics.window_latencies(expected, log)
        # windows wholly inside the judged span: a window the step's end cuts short waits for its end all the same
        after = per[(per["window_start"] >= tb + scen.warmup) & (per["window_end"] <= tb + scen.duration)]
        e2r = percentiles(after["event_to_result_ms"].dropna().to_numpy())
        close = percentiles(after["window_close_ms"].dropna().to_numpy())
        without = int(per["final_at_ms"].isna().sum())
        measured = (e2r if self.bound.metric == "event_to_result" else close)["p99"]
        delay = send_delay_after_warmup(stats, model, scen.warmup)
        send_p99 = delay["p99"]
        span_end = tb + scen.duration
        span_s = scen.duration / 1000
        # the machine's CPUs over the judged span, the one the lag and latency verdicts are drawn from
        judged_s = (span_end - (tb + scen.warmup)) / 1000
        busy = _per_s(flow.used_between(rows, "machine_busy_s", tb + scen.warmup, span_end), judged_s)
        ncpu = os.cpu_count()
        verdict, reason = cap.judge_step(
            offered=rate, achieved=summary["achieved_rate_eps"], send_delay_p99_ms=send_p99, kept_up=ku.kept_up,
            keeping_up_reason=ku.reason, latency_p99_ms=measured, bound=self.bound, windows_without_final=without,
            machine_busy_cores=busy, machine_cores=ncpu)
        method = self.group.method if self.group is not None else "sampled"
        engine_cpu = flow.used_between(rows, "cgroup_cpu_s" if method != "sampled" else "cpu_s", tb, span_end)
        gen_used = gen_cpu[1] - gen_cpu[0] if None not in gen_cpu else None
        rss = [r["rss_mb"] for r in rows if r.get("rss_mb") is not None]
        raw = self.results.raw_dir(self.load_id)
        per.to_csv(raw / f"step{index + 1:02d}_windows.csv", index=False)
        return CapacityStep(
            index=index, rate=rate, phase=phase, time_base_ms=tb, duration_ms=scen.duration, warmup_ms=scen.warmup,
            events_sent=stats.sent, achieved_rate_eps=summary["achieved_rate_eps"],
            send_delay_ms=Percentiles.model_validate(delay), verdict=verdict, reason=reason,
            keeping_up=ku, event_to_result_ms=Percentiles.model_validate(e2r),
            window_close_ms=Percentiles.model_validate(close), windows_expected=len(expected),
            windows_exact=int((per["final_at_ms"].notna()).sum()), windows_without_final=without,
            cpu_seconds_per_million=(round(engine_cpu / (stats.sent / 1e6), 2)
                                     if engine_cpu is not None and stats.sent else None),
            cpu_method=method,
            cores=CoresUsed(engine=_per_s(engine_cpu, span_s),
                            broker=_per_s(flow.used_between(rows, "broker_cpu_s", tb, span_end), span_s),
                            postgres=_per_s(flow.used_between(rows, "postgres_cpu_s", tb, span_end), span_s),
                            generator=_per_s(gen_used, span_s), machine=busy, machine_cores=ncpu),
            peak_rss_mb=max(rss) if rss else None)

    def _drain(self, step: CapacityStep) -> bool:
        """Sample until the engine has read what the topic holds (within the lag's sampling noise)."""
        t0 = time.monotonic()
        allowed = max(keeping_up.LAG_NOISE_RECORDS, keeping_up.LAG_NOISE_SECONDS * step.rate)
        while time.monotonic() - t0 < DRAIN_TIMEOUT_S:
            row = self._sample()
            self.hooks.monitor(self.name, {**row, "step": step.index + 1, "rate": step.rate, "draining": True})
            if row["lag"] is not None and row["lag"] <= allowed:
                step.drained_s = round(time.monotonic() - t0, 1)
                return True
            time.sleep(SAMPLE_S)
        return False


def send_delay_after_warmup(stats: Any, model: EventModel, warmup_ms: int) -> dict[str, Any]:
    """Send-delay percentiles of the events due after the warm-up, the span a step is judged on."""
    due = model.schedule.due_ms(0, stats.sent)
    return percentiles(stats.send_delay_ms[: stats.sent][due >= warmup_ms])


def _per_s(cpu: Optional[float], span_s: float) -> Optional[float]:
    return round(cpu / span_s, 3) if cpu is not None and span_s > 0 else None


def _rate(r: float | None) -> str:
    return "?" if r is None else f"{r:,.0f}"


def _now() -> int:
    return time.time_ns() // 1_000_000
