"""One engine on one load, as phases: prepare → start engine → load → wait → measure → stop.

Each phase is a method of EngineRun and reads or writes the engine's entry of result.json, which is saved after
every phase, so an interrupted run keeps what the finished phases measured.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import pandas as pd
import psycopg
from pydantic import JsonValue, TypeAdapter

from harness.engines.protocol import Engine, EngineContext, EngineRefused, Plan
from harness.errors import EXIT_FAILED, HarnessError
from harness.run.hooks import RunHooks
from harness.run.load import LoadSession, LoadSource
from harness.run.faults import FaultInjector
from harness.run.measure import measure, promised_after_restart, skipping_restart
from harness.run.monitor import Monitor
from harness.run.planning import PlannedEngine, close_horizon_ms
from harness.scenario import Scenario
from harness.metrics import backlog, cgroups, cpu_idle, keeping_up, recovery
from harness import environment
from harness.results.document import (BacklogDrain, Capabilities, CpuIdleBefore, EngineResult, EngineStatus,
                                      JvmProcess, Percentiles, Resources, Sample, Timing)
from harness.stack.embedded import EmbeddedStack
from harness.metrics import windows as window_metrics
from harness.storage import clock, sink_tables
from harness.storage.results import ResultFile, utc_now

START_TIMEOUT_S = 180   # an engine that is not reading its topic by then has failed to start
WAIT_GRACE_MS = 30_000  # after the last window should have closed, how long to wait for the final answer
SAMPLE_S = 0.5
SETTLE_S = 1.0          # one more sink flush and sample, so a replay or a late duplicate shows up
QUIET_MIN_MS = 5_000    # the sink quiet this long (or 2 trigger intervals) after every window closed: settled
FOREVER_MS = 2**62      # heartbeats go on until the run stops the generator
BACKLOG_DRAIN_TIMEOUT_MS = 30 * 60_000   # backlog mode: an engine that has not drained the topic by then has failed
BACKLOG_DRAIN_AFTER_ANSWER_MS = 30_000   # backlog mode: how long after its answer an engine may still report it read all


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class EngineRun:
    def __init__(self, planned: PlannedEngine, scenario: Scenario, bootstrap: str, dsn: str, *, run_id: str,
                 repeat: int, results: ResultFile, hooks: RunHooks, service_pids: dict[str, int] | None = None,
                 stack: EmbeddedStack | None = None, external: list[str] | None = None,
                 source: LoadSource | None = None) -> None:
        self.planned, self.scenario, self.results, self.hooks = planned, scenario, results, hooks
        self.service_pids = service_pids if service_pids is not None else {}
        self.stack, self.external = stack, external or []   # for faults that restart an embedded service
        self.group: cgroups.EngineGroup | None = None
        self.group_note: str | None = None
        self.answer_ms: int | None = None   # when the sink last changed: where CPU during the load ends
        self.name = planned.name
        self.load_id = f"{run_id}.{self.name}.{repeat}"
        self.engine: Engine[Any] = planned.cls()
        self.work_dir = results.run_dir / "engines" / f"{self.name}-{repeat}"
        self.load = LoadSession(scenario, bootstrap, dsn, run_id=run_id, load_id=self.load_id, engine=self.name,
                                repeat=repeat, results=results, hooks=hooks, source=source)
        self.ctx = EngineContext(run_id, self.load_id, repeat, scenario, planned.settings, bootstrap, dsn,
                                 self.load.topic, self.work_dir, planned.plan if isinstance(planned.plan, Plan) else None)
        self.monitor: Monitor | None = None
        self.faults: FaultInjector | None = None
        self._promised: pd.DataFrame | None = None   # what a latest/timestamp restart promises (_target)
        self.entry = self.describe(status="starting")
        self.started_ms = 0
        # backlog mode: when the engine ran, when its lag first drained, when its answer was complete
        self.running_ms: int | None = None
        self.drained_ms: int | None = None
        self.complete_ms: int | None = None
        self._fill: tuple[float, float | None] | None = None

    # -- phases ----------------------------------------------------------------------------------------------
    def prepare(self, plan: Plan) -> None:
        self.entry.promised_answer = plan.promised_answer
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.load.prepare()

    def start_engine(self) -> None:
        idle = cpu_idle.wait_for_idle()
        self.entry.cpu_idle_before = CpuIdleBefore(enabled=idle.enabled, idle=None if idle.idle is None else
                                                   round(idle.idle, 3), waited_s=idle.waited_s, reached=idle.reached)
        if idle.enabled and not idle.reached:
            self.hooks.message(f"{self.name}: the CPUs were only {idle.idle or 0:.0%} idle after {idle.waited_s:g} s "
                               "of waiting; starting anyway (recorded)")
        self.entry.timing = Timing(sink_time="insert", offset_bound_ms=clock.OFFSET_BOUND_MS,
                                   clock_before=clock.checked_offset(self.load.dsn, self.name))
        self.group, why = cgroups.EngineGroup.create(self.load_id)
        self.group_note = None if self.group is not None else f"CPU sampled: {why}"
        cgroups.activate(self.group)
        self.started_ms = now_ms()
        self.hooks.message(f"{self.name}: starting ({self.engine.description})")
        self.engine.start(self.ctx)
        self.engine.wait_running(START_TIMEOUT_S)
        self.entry.status = "running"
        self.entry.start_to_running_s = round((now_ms() - self.started_ms) / 1000, 3)
        self.entry.jvms = jvm_processes(self.engine.pids())
        self.results.save()

    def fill(self) -> None:
        """Backlog mode: the whole load is in the topic, and its ground truth known, before the engine starts.
        Heartbeats go on after it, so the last windows close in every engine."""
        t0 = now_ms()
        self.load.begin(heartbeat_until_ms=FOREVER_MS)
        while not self.load.load_done:
            self.load.raise_if_failed()
            time.sleep(0.2)
        self.load.raise_if_failed()
        stats = self.load.stats
        assert stats is not None
        fill_s = (now_ms() - t0) / 1000
        self.hooks.message(f"{self.load_id}: backlog of {stats.sent:,} events in the topic after {fill_s:.1f} s; "
                           "computing ground truth")
        self.load.compute_truth()
        self._fill = (round(fill_s, 3), stats.summary()["achieved_rate_eps"])

    def run_load(self) -> int:
        assert self.load.gen is not None
        self.monitor = Monitor(self.engine, self.ctx, self.load.gen, group=self.group, service_pids=self.service_pids)
        if self.load.backlog:       # filled before the engine started
            assert self.load.time_base_ms is not None
            self.running_ms = now_ms()
            return self.load.time_base_ms
        time_base = self.load.begin(heartbeat_until_ms=FOREVER_MS)
        if self.scenario.faults:
            self.faults = FaultInjector(self.scenario.faults, self.load.dsn, time_base, engine=self.engine,
                                        settings=self.planned.settings, load_id=self.load_id,
                                        start_timeout_s=START_TIMEOUT_S, stack=self.stack, external=self.external,
                                        service_pids=self.service_pids,
                                        say=lambda m: self.hooks.message(f"{self.name}: {m}"),
                                        bootstrap=self.load.bootstrap, topic=self.load.topic,
                                        partitions=self.scenario.topic.partitions).start()
        return time_base

    def wait(self, plan: Plan) -> tuple[str, int, int]:
        """Sample until every promised window holds its value ("complete"), the sink has been quiet for the
        settle interval after every window should have closed ("settled": judged as it stands, wrong or not),
        the engine stops, or the deadline passes while it still emits ("timeout").
        Returns (status, windows matched, windows promised)."""
        assert self.monitor is not None
        deadline_ms: int | None = None
        closed_ms: int | None = None       # every window closed, trigger and late margin included
        quiet_ms = settle_interval_ms(plan)
        last_rows, changed_ms = -1, now_ms()
        matched = total = 0
        if self.load.backlog:   # until the topic is drained, only this bounds the wait
            deadline_ms = now_ms() + BACKLOG_DRAIN_TIMEOUT_MS
        while True:
            row = self.monitor.sample()
            if self.load.backlog and self.drained_ms is None and backlog.drained(
                    row, self.monitor.rows[0], self.scenario.load.rate):
                self.drained_ms = row["wall_ms"]
                self.hooks.message(f"{self.name}: drained the backlog in "
                                   f"{(self.drained_ms - self.running_ms) / 1000:.1f} s")
                closed_ms = self.drained_ms + plan.max_trigger_interval_ms + plan.late_margin_ms
                deadline_ms = closed_ms - plan.late_margin_ms + WAIT_GRACE_MS
            if row["rows_out"] is not None and row["rows_out"] != last_rows:   # None: the database was away
                last_rows, changed_ms = row["rows_out"], row["wall_ms"]
            self.answer_ms = changed_ms
            self.load.raise_if_failed()
            if not self.engine.alive() and not (self.faults is not None and self.faults.down):
                self.entry.error = f"the {self.name} pipeline stopped during the run; see {self.work_dir}"
                return "failed", matched, total
            if self.load.truth is None and self.load.load_done:
                stats = self.load.stats
                assert stats is not None and self.load.time_base_ms is not None
                self.hooks.message(f"{self.load_id}: {stats.sent} events sent; computing ground truth")
                self.load.compute_truth()
                closed_ms = (stats.last_handoff_ms or self.load.time_base_ms) \
                    + (close_horizon_ms(self.scenario) - self.scenario.duration) \
                    + plan.max_trigger_interval_ms + plan.late_margin_ms
                deadline_ms = closed_ms - plan.late_margin_ms + WAIT_GRACE_MS
            if self.load.truth is not None:
                matched, total = self.monitor.matching(self._target(plan))
                # after a fault, "complete", the settle interval and the deadline wait for it to end (the engine
                # runs again, the lock is released)
                faults_end = self.faults.busy_until_ms() if self.faults is not None else 0
                if matched == total and faults_end < row["wall_ms"]:
                    self.complete_ms = self.complete_ms or row["wall_ms"]
                    # an interval job reports its offsets after its run has committed the answer: the drain ends
                    # then, a moment later
                    if not self.load.backlog or self.drained_ms is not None \
                            or row["wall_ms"] - self.complete_ms > BACKLOG_DRAIN_AFTER_ANSWER_MS:
                        return "complete", matched, total
                if closed_ms is not None and row["wall_ms"] - max(changed_ms, closed_ms, faults_end) >= quiet_ms:
                    self.entry.error = (f"{total - matched} of {total} windows do not hold their promised value; the "
                                        f"sink was quiet for {quiet_ms / 1000:g} s after every window should have "
                                        f"closed, so the run is judged as it stands")
                    return "settled", matched, total
                if deadline_ms is not None and row["wall_ms"] > max(deadline_ms, faults_end + WAIT_GRACE_MS):
                    self.entry.error = (f"{total - matched} of {total} windows did not hold their promised value "
                                           f"by the deadline (last send + window + watermark delay + trigger "
                                           f"interval + {WAIT_GRACE_MS // 1000} s)")
                    return "timeout", matched, total
            self.hooks.monitor(self.name, {**row, "windows_matched": matched, "windows_expected": total})
            time.sleep(SAMPLE_S)

    def watch_recovery(self) -> None:
        """After a fault, sample one recovery span more once the answer is in, so recovery can be seen even
        when the fault ended near the end of the load (harness/metrics/recovery.py)."""
        assert self.monitor is not None
        if self.faults is None or not any(r.fired_at_ms for r in self.faults.records):
            return
        end = now_ms() + recovery.RECOVERY_HOLD_MS + 1000
        while now_ms() < end and self.engine.alive():
            self.monitor.sample()
            time.sleep(SAMPLE_S)

    def _target(self, plan: Plan) -> pd.DataFrame:
        """The windows "complete" waits for: ground truth's promised answer, or, once a restart that skips
        records on purpose ran and the load is done, what that restart promises (computed once)."""
        truth = self.load.truth
        assert truth is not None
        f = skipping_restart(self.faults.records) if self.faults is not None else None
        stats = self.load.stats
        if f is None or f.restarted_at_ms is None or not self.load.load_done or stats is None:
            return truth.windows[plan.promised_answer]
        if self._promised is None:
            with psycopg.connect(self.load.dsn) as conn:
                log = sink_tables.read_log(conn, self.load_id)
            log[window_metrics.SINK_TIME] = log["inserted_at_ms"]   # measure() judges on the corrected clock
            assert self.load.time_base_ms is not None
            self._promised = promised_after_restart(f, plan=plan, scenario=self.scenario, truth=truth, stats=stats,
                                                    log=log, time_base_ms=self.load.time_base_ms)
        return self._promised

    def measure(self, plan: Plan, status: str) -> None:
        assert self.monitor is not None
        self.watch_recovery()
        time.sleep(SETTLE_S)
        self.monitor.sample()
        self.entry.engine_metrics = _metrics(self.engine.engine_metrics)
        self.load.stop()
        self.read_clock_after()
        stats, truth, tb = self.load.stats, self.load.truth, self.load.time_base_ms
        if truth is None or stats is None or tb is None:
            raise HarnessError(f"{self.name}: the load did not finish", exit_code=EXIT_FAILED)
        self.results.add_load(self.load.entry())
        measure(self.entry, plan=plan, scenario=self.scenario, dsn=self.load.dsn, load_id=self.load_id,
                                  time_base_ms=tb, started_ms=self.started_ms, truth=truth, stats=stats,
                rows=self.monitor.rows, results=self.results, answer_ms=self.answer_ms,
                cpu_method=self.group.method if self.group is not None else "sampled",
                faults=self.faults.records if self.faults is not None else None)
        if self.load.backlog:
            self.entry.backlog = self._backlog(plan, stats, truth)
        self.entry.status = status

    def _backlog(self, plan: Plan, stats: Any, truth: Any) -> BacklogDrain:
        assert self.monitor is not None and self.running_ms is not None and self.load.time_base_ms is not None
        rows = self.monitor.rows
        method = self.group.method if self.group is not None else "sampled"
        d = BacklogDrain.model_validate({
            "fill_s": self._fill[0] if self._fill else None, "fill_events_per_s": self._fill[1] if self._fill else None,
            **backlog.drain(rows, running_ms=self.running_ms, drained_ms=self.drained_ms, answer_ms=self.complete_ms or self.answer_ms,
                            events=stats.sent, records_in_topic=rows[0]["end_offsets"] if rows else None,
                            cpu_col="cpu_s" if method == "sampled" else "cgroup_cpu_s")})
        if self.group is not None and (mem := self.group.memory_max_bytes()) is not None:
            d.cgroup_memory_max_mb = round(mem / 2**20, 1)
        if plan.max_trigger_interval_ms >= keeping_up.CONTINUOUS_BELOW_MS and d.answer_s is not None:
            ends = truth.windows[plan.promised_answer]["window_end"].to_numpy()
            d.modelled_interval_ms = plan.max_trigger_interval_ms
            d.modelled_latency_ms = Percentiles.model_validate(backlog.modelled_interval_latency(
                ends, time_base_ms=self.load.time_base_ms, interval_ms=plan.max_trigger_interval_ms,
                grace_ms=int(plan.latency_floor_ms.get("grace_ms", 0)), run_ms=d.answer_s * 1000))
        return d

    def read_clock_after(self) -> None:
        """The offset after the run too, so drift shows; a reading past the bound is kept but not applied."""
        timing = self.entry.timing
        assert timing is not None
        with psycopg.connect(self.load.dsn, autocommit=True) as conn:
            timing.clock_after = clock.read_offset(conn)
        usable = timing.clock_after if timing.clock_after.uncertainty_ms <= timing.offset_bound_ms else None
        timing.offset_applied_ms = clock.applied_offset(timing.clock_before, usable)

    def stop(self) -> None:
        if self.faults is not None:
            self.entry.faults = self.faults.stop()
        self.load.stop(join_s=0)
        try:
            self.engine.stop()
        finally:
            cgroups.activate(None)
        self.load.stop()
        if self.monitor is not None:
            self.entry.timeseries = [Sample.model_validate(r) for r in self.monitor.rows]
            stats = self.load.stats
            res = Resources.model_validate(self.monitor.resources.summary(stats.sent if stats else 0))
            if self.group is not None:
                res.cpu_method = self.group.method  # type: ignore[assignment]
                cpu, mem = self.group.cpu_seconds(), self.group.memory_max_bytes()
                res.cgroup_cpu_seconds = None if cpu is None else round(cpu, 3)
                res.cgroup_memory_max_mb = None if mem is None else round(mem / 2**20, 1)
            res.cgroup_note = self.group_note
            self.entry.resources = res
            self.monitor.close()
        if self.group is not None:
            self.group.close()
        self.entry.finished_at = utc_now()
        self.results.save()

    # -- the sequence ----------------------------------------------------------------------------------------
    def describe(self, status: EngineStatus) -> EngineResult:
        p = self.planned
        plan = p.plan if isinstance(p.plan, Plan) else None
        cls = p.cls
        return EngineResult(
            engine=self.name, display_name=getattr(cls, "display_name", self.name),
            role=getattr(cls, "role", "option"), colour=getattr(cls, "colour", None), repeat=self.ctx.repeat,
            load_id=self.load_id, description=self.engine.description,
            settings=p.settings.model_dump(mode="json"), changed_settings=p.changed_settings,
            tuned_settings=p.tuned_settings,
            latency_floor_ms=dict(plan.latency_floor_ms) if plan else {},
            capabilities=Capabilities.model_validate((plan.capabilities if plan else cls.capabilities).to_json()),
            status=status)

    def run(self) -> EngineResult:
        plan = self.planned.plan
        if not isinstance(plan, Plan):
            self.hooks.message(f"{self.name}: skipped: {plan.reason}")
            self.entry.status, self.entry.reason = "skipped", plan.reason
            return self.results.add_engine(self.entry)
        self.entry.started_at = utc_now()
        self.results.add_engine(self.entry)
        try:
            self.prepare(plan)
            if self.load.backlog:
                self.fill()
            self.start_engine()
            self.run_load()
            status, matched, total = self.wait(plan)
            self.measure(plan, status)
            self.hooks.message(f"{self.name}: {status}; {matched}/{total} windows hold their promised value")
        except KeyboardInterrupt:
            self.entry.status, self.entry.error = "interrupted", "interrupted (Ctrl-C or SIGTERM)"
            raise
        except EngineRefused as exc:
            self.entry.status, self.entry.reason = "skipped", exc.message
            self.hooks.message(f"{self.name}: skipped: {exc.message}")
        except HarnessError as exc:
            self.entry.status, self.entry.error = "failed", exc.message
            self.hooks.message(f"{self.name}: failed: {exc.message}")
        except Exception as exc:  # an engine bug must not lose the other engines' results
            self.entry.status, self.entry.error = "failed", f"{type(exc).__name__}: {exc}"
            self.hooks.message(f"{self.name}: failed: {type(exc).__name__}: {exc}")
        finally:
            self.stop()
        return self.entry


def jvm_processes(pids: list[int]) -> list[JvmProcess]:
    """The JVMs among an engine's processes and their children, with the options that set their resources."""
    import psutil

    seen: dict[int, JvmProcess] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            if p.pid not in seen and environment.is_java(cmd):
                seen[p.pid] = JvmProcess(pid=p.pid, options=environment.jvm_options(cmd))
    return list(seen.values())


def settle_interval_ms(plan: Plan) -> int:
    """How long the sink must stay quiet, once every window should have closed, to call an engine finished."""
    return max(QUIET_MIN_MS, 2 * plan.max_trigger_interval_ms)


def _metrics(fn: Callable[[], dict[str, Any]]) -> dict[str, JsonValue]:
    """The engine's own counters as JSON; they are extras, so a failure is noted and the run kept."""
    try:
        metrics = fn()
        return TypeAdapter(dict[str, JsonValue]).validate_python(json.loads(json.dumps(metrics, default=_plain)))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _plain(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    return str(o)
