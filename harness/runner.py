"""One scenario run: services, then for each engine and repeat a fresh topic, the engine, the load, the wait
for its final answer, and the measurements, all written to results/<run_id>/result.json as the run goes.

Isolated mode: engines run one after another, each against the same deterministic load. With no engine the
run is a load-only pass that writes the load's ground truth. The runner never names an engine.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psycopg

from harness import environment, groundtruth, paths
from harness.engine import EngineContext, EngineRefused, discover, parse_engine_options, validate_settings
from harness.errors import EXIT_FAILED, HarnessError
from harness.loadgen.events import EventModel
from harness.loadgen.generator import LoadGenerator, SendStats
from harness.metrics import windows as window_metrics
from harness.metrics.resources import ResourceSampler
from harness.scenario import Scenario, load_scenario
from harness.stack import topics
from harness.stack.probes import kafka_conf, redact
from harness.stack.services import services
from harness.storage import tables
from harness.storage.results import ResultFile, utc_now

LEAD_MS = 1500          # time to warm the producer before the load's first instant
START_TIMEOUT_S = 180   # an engine that is not reading its topic by then has failed to start
WAIT_GRACE_MS = 30_000  # after the last window should have closed, how long to wait for the final answer
SAMPLE_S = 0.5
RATE_SKIP_MS = 2000


@dataclass
class RunOptions:
    scenario_path: Path
    bootstrap: str | None = None
    dsn: str | None = None
    results_dir: Path | None = None
    run_id: str | None = None
    engines: list[str] | None = None          # None: the scenario's engines section
    engine_options: list[str] = field(default_factory=list)
    repeat: int = 1


@dataclass
class RunHooks:
    """How the runner reports progress; the CLI renders it, tests ignore it."""

    message: Callable[[str], None] = lambda _m: None
    sending: Callable[[str, SendStats], None] = lambda _l, _s: None
    monitor: Callable[[str, dict[str, Any]], None] = lambda _l, _d: None
    started: Callable[[Path], None] = lambda _d: None  # the run folder exists (result.json is being written)


@dataclass
class LoadOutcome:
    load_id: str
    topic: str
    time_base_ms: int
    stats: SendStats
    truth: groundtruth.GroundTruth
    entry: dict[str, object] = field(default_factory=dict)


@dataclass
class EnginePlan:
    name: str
    cls: type
    settings: Any


def new_run_id(scenario: Scenario) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{scenario.name}-{secrets.token_hex(2)}"


def next_time_base(scenario: Scenario, now_ms: int | None = None) -> int:
    """The first window boundary at least LEAD_MS from now: event time then follows the wall clock."""
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    grid = scenario.query.window.grid
    return -(-(now_ms + LEAD_MS) // grid) * grid


def close_horizon_ms(scenario: Scenario) -> int:
    """Offset from the time base after which every window has closed in a watermark-based engine."""
    q = scenario.query
    return scenario.duration + q.window.length + q.watermark_delay + q.allowed_lateness + scenario.load.heartbeat_interval


def windows_per_event(scenario: Scenario) -> int:
    w = scenario.query.window
    return (w.size // w.slide) if w.type == "sliding" and w.size and w.slide else 1


# -- planning: everything is validated before anything starts ---------------------------------------------
def plan_engines(scenario: Scenario, source: str, requested: list[str] | None, options: list[str]) -> list[EnginePlan]:
    found = discover()
    overrides = parse_engine_options(options)
    names = requested if requested is not None else list(scenario.engines)
    unknown = [n for n in [*names, *overrides, *scenario.engines] if n not in found]
    if unknown:
        raise HarnessError(f"unknown engine {unknown[0]!r} (in --engines, --engine-option or {source} engines:); "
                           f"discovered engines: {', '.join(sorted(found)) or 'none'}")
    plans = []
    for n in dict.fromkeys(names):
        raw = {**scenario.engines.get(n, {}), **overrides.get(n, {})}
        settings = validate_settings(found[n], raw, source)
        margin = found[n]().late_margin_ms(settings)
        try:
            scenario.check_late_delay(margin, n)
        except ValueError as exc:
            raise HarnessError(f"{source}: {exc}") from None
        plans.append(EnginePlan(n, found[n], settings))
    return plans


# -- the load ----------------------------------------------------------------------------------------
def _prepare_load(scenario: Scenario, bootstrap: str, dsn: str, run_id: str, load_id: str, engine: str | None,
                  repeat: int) -> tuple[str, EventModel, LoadGenerator]:
    topic = f"harness.{load_id}"
    topics.create_topic(bootstrap, topic, scenario.topic.partitions)
    model = EventModel(scenario)
    gen = LoadGenerator(scenario, bootstrap, topic, model=model)
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables.ensure_schema(conn)
    return topic, model, gen


def _record_load(dsn: str, scenario: Scenario, run_id: str, load_id: str, engine: str | None, repeat: int,
                 topic: str, tb: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables.record_load(conn, load_id=load_id, run_id=run_id, engine=engine, repeat=repeat,
                           scenario=scenario.name, topic=topic, partitions=scenario.topic.partitions,
                           seed=scenario.seed, time_base_ms=tb)


def _truth(scenario: Scenario, model: EventModel, tb: int, stats: SendStats, dsn: str, load_id: str,
           results: ResultFile | None) -> groundtruth.GroundTruth:
    truth = groundtruth.compute(scenario, model, tb, stats.handoff_ms, stats.sent)
    with psycopg.connect(dsn) as conn:
        tables.write_ground_truth(conn, load_id, truth, stats.sent, stats.acked)
    if results is not None:
        raw = results.raw_dir(load_id)
        for answer, frame in truth.windows.items():
            frame.to_csv(raw / f"expected_{answer}.csv", index=False)
        truth.special.to_csv(raw / "special_events.csv", index=False)
    return truth


def _load_entry(load_id: str, engine: str | None, repeat: int, topic: str, scenario: Scenario, tb: int,
                gen: LoadGenerator, model: EventModel, stats: SendStats, truth: groundtruth.GroundTruth) -> dict[str, Any]:
    sched = model.schedule
    secs = -(-scenario.duration // 1000)
    return {
        "load_id": load_id, "engine": engine, "repeat": repeat, "topic": topic,
        "partitions": scenario.topic.partitions, "time_base_ms": tb, "encoder": gen.encoder.name,
        "generator": stats.summary(),
        "ground_truth": {"windows_complete": len(truth.windows["complete"]),
                         "windows_on_time": len(truth.windows["on_time"]), "events_by_kind": truth.counts},
        "timeseries": {
            "intended_per_second": {s: round(sched.expected_between(s * 1000, min((s + 1) * 1000, scenario.duration)), 3)
                                    for s in range(secs)},
            "sent_per_second": stats.sent_per_second, "acked_per_second": stats.acked_per_second,
        },
    }


def _start_generator(gen: LoadGenerator, tb: int, until: int | None, load_id: str, hooks: RunHooks,
                     holder: dict[str, Any]) -> threading.Thread:
    def send() -> None:
        try:
            holder["stats"] = gen.run(tb, heartbeat_until_ms=until, progress=lambda s: hooks.sending(load_id, s))
        except BaseException as exc:  # surfaced in the main thread
            holder["error"] = exc
            gen.load_done.set()

    worker = threading.Thread(target=send, name=f"generator-{load_id}", daemon=True)
    worker.start()
    return worker


def _announce(hooks: RunHooks, load_id: str, model: EventModel, topic: str, tb: int) -> None:
    wait_s = (tb - time.time_ns() // 1_000_000) / 1000
    hooks.message(f"{load_id}: {model.count} events to topic {topic}; load starts at the window boundary "
                  f"{datetime.fromtimestamp(tb / 1000, timezone.utc):%H:%M:%S} UTC (in {wait_s:.1f} s)")


def run_load(scenario: Scenario, bootstrap: str, dsn: str, *, run_id: str, load_id: str, engine: str | None,
             repeat: int, results: ResultFile | None, hooks: RunHooks,
             heartbeat_until_ms: int | None = None) -> LoadOutcome:
    """A load with no engine: create the topic, send the load (with heartbeats), write its ground truth."""
    topic, model, gen = _prepare_load(scenario, bootstrap, dsn, run_id, load_id, engine, repeat)
    gen.warm_up()
    tb = next_time_base(scenario)
    _record_load(dsn, scenario, run_id, load_id, engine, repeat, topic, tb)
    until = heartbeat_until_ms if heartbeat_until_ms is not None else tb + close_horizon_ms(scenario)
    _announce(hooks, load_id, model, topic, tb)
    holder: dict[str, Any] = {}
    worker = _start_generator(gen, tb, until, load_id, hooks, holder)
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        gen.stop.set()
        worker.join(60)
        raise
    if "error" in holder:
        raise holder["error"]
    stats: SendStats = holder["stats"]
    hooks.message(f"{load_id}: {stats.acked}/{stats.sent} events acknowledged; computing ground truth")
    truth = _truth(scenario, model, tb, stats, dsn, load_id, results)
    entry = _load_entry(load_id, engine, repeat, topic, scenario, tb, gen, model, stats, truth)
    if results is not None:
        results.add("loads", entry)
    return LoadOutcome(load_id, topic, tb, stats, truth, entry)


# -- one engine on one load -------------------------------------------------------------------------------
class _Monitor:
    """Samples the engine's processes, position and output, and the topic's end offsets, on one clock."""

    def __init__(self, engine: Any, ctx: EngineContext, gen: LoadGenerator) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.engine, self.ctx, self.gen = engine, ctx, gen
        self.t0 = time.monotonic()
        self.resources = ResourceSampler()
        self.rows: list[dict[str, Any]] = []
        self._consumer = Consumer(kafka_conf(ctx.bootstrap, **{"group.id": f"harness-monitor-{ctx.load_id}",
                                                               "enable.auto.commit": False}))
        self._tps = [TopicPartition(ctx.topic, p) for p in range(ctx.scenario.topic.partitions)]
        self._conn = psycopg.connect(ctx.dsn, autocommit=True)

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
            "rows_out": tables.log_rows_since(self._conn, self.ctx.load_id),
            "cpu_s": round(self.resources.cpu_seconds, 3),
            "rss_mb": self.resources.series[-1]["rss_mb"] if self.resources.series else 0,
        }
        self.rows.append(row)
        return row

    def matching(self, answer: str) -> tuple[int, int]:
        """(promised windows whose final row holds the promised value, promised windows)."""
        return tables.count_final_matching(self._conn, self.ctx.load_id, answer)

    def close(self) -> None:
        self._consumer.close()
        self._conn.close()


def _rate_between(rows: list[dict[str, Any]], col: str, a_ms: int, b_ms: int) -> float | None:
    """Per-second slope of a counter between a and b, by least squares over the samples in between.

    A slope, not a difference of two readings: engines report counters through metric caches that lag by up
    to a refresh interval, and a constant lag shifts the line without changing its slope.
    """
    pts = [(r["wall_ms"], r[col]) for r in rows if r.get(col) is not None and a_ms <= r["wall_ms"] <= b_ms]
    if len(pts) < 3 or b_ms <= a_ms:
        return None
    t = np.array([p[0] for p in pts], dtype=float)
    v = np.array([p[1] for p in pts], dtype=float)
    if t[-1] - t[0] < 1000:
        return None
    return float(np.polyfit(t, v, 1)[0] * 1000)


def _value_at(rows: list[dict[str, Any]], col: str, at_ms: int) -> float | None:
    pts = [(r["wall_ms"], r[col]) for r in rows if r.get(col) is not None]
    if not pts:
        return None
    return float(np.interp(at_ms, [p[0] for p in pts], [p[1] for p in pts]))


def run_engine(plan: EnginePlan, scenario: Scenario, bootstrap: str, dsn: str, *, run_id: str, repeat: int,
               results: ResultFile, hooks: RunHooks) -> dict[str, Any]:
    load_id = f"{run_id}.{plan.name}.{repeat}"
    engine = plan.cls()
    base: dict[str, Any] = {
        "engine": plan.name, "repeat": repeat, "load_id": load_id, "description": engine.description,
        "settings": plan.settings.model_dump(mode="json"), "changed_settings": engine.changed_settings(plan.settings),
        "latency_floor_ms": engine.latency_floor(scenario, plan.settings),
        "capabilities": _capabilities(engine),
    }
    reason = engine.cannot_run(scenario, plan.settings)
    if reason:
        hooks.message(f"{plan.name}: skipped: {reason}")
        return results.add("engines", {**base, "status": "skipped", "reason": reason})
    entry = results.add("engines", {**base, "status": "starting", "started_at": utc_now()})
    work_dir = results.run_dir / "engines" / f"{plan.name}-{repeat}"
    work_dir.mkdir(parents=True, exist_ok=True)
    topic, model, gen = _prepare_load(scenario, bootstrap, dsn, run_id, load_id, plan.name, repeat)
    ctx = EngineContext(run_id, load_id, repeat, scenario, plan.settings, bootstrap, dsn, topic, work_dir)
    holder: dict[str, Any] = {}
    worker: threading.Thread | None = None
    monitor: _Monitor | None = None
    t_start_ms = time.time_ns() // 1_000_000
    try:
        hooks.message(f"{plan.name}: starting ({engine.description})")
        engine.start(ctx)
        entry["capabilities"] = _capabilities(engine)  # an engine may narrow them to the settings it started with
        engine.wait_running(START_TIMEOUT_S)
        running_ms = time.time_ns() // 1_000_000
        entry.update(status="running", start_to_running_s=round((running_ms - t_start_ms) / 1000, 3))
        results.save()
        gen.warm_up()
        tb = next_time_base(scenario)
        _record_load(dsn, scenario, run_id, load_id, plan.name, repeat, topic, tb)
        _announce(hooks, load_id, model, topic, tb)
        monitor = _Monitor(engine, ctx, gen)
        worker = _start_generator(gen, tb, 2**62, load_id, hooks, holder)
        truth = None
        promised = engine.promised_answer(scenario, plan.settings)
        entry["promised_answer"] = promised
        deadline_ms: int | None = None
        matched = total = 0
        status = "complete"
        while True:
            row = monitor.sample()
            if "error" in holder:
                raise holder["error"]
            if not engine.alive():
                status = "failed"
                entry["error"] = f"the {plan.name} pipeline stopped during the run; see {work_dir}"
                break
            if truth is None and gen.load_done.is_set():
                stats = gen.stats
                assert stats is not None
                hooks.message(f"{load_id}: {stats.sent} events sent; computing ground truth")
                truth = _truth(scenario, model, tb, stats, dsn, load_id, results)
                deadline_ms = (stats.last_handoff_ms or tb) + (close_horizon_ms(scenario) - scenario.duration) \
                    + engine.max_trigger_interval_ms(plan.settings) + WAIT_GRACE_MS
            if truth is not None:
                matched, total = monitor.matching(promised)
                if matched == total:
                    break
                if deadline_ms is not None and row["wall_ms"] > deadline_ms:
                    status = "timeout"
                    entry["error"] = (f"{total - matched} of {total} windows did not hold their promised value by the "
                                      f"deadline (last send + window + watermark delay + trigger interval + "
                                      f"{WAIT_GRACE_MS // 1000} s)")
                    break
            hooks.monitor(plan.name, {**row, "windows_matched": matched, "windows_expected": total})
            time.sleep(SAMPLE_S)
        # Let a replay or a late duplicate show up before measuring: one more sink flush and sample.
        time.sleep(1.0)
        monitor.sample()
        entry["engine_metrics"] = _safe(engine.engine_metrics)
        gen.stop.set()
        worker.join(60)
        stats = holder.get("stats") or gen.stats
        if truth is None:
            raise HarnessError(f"{plan.name}: the load did not finish", exit_code=EXIT_FAILED)
        load = _load_entry(load_id, plan.name, repeat, topic, scenario, tb, gen, model, stats, truth)
        results.add("loads", load)
        entry.update(_measure(plan, engine, scenario, dsn, load_id, tb, t_start_ms, truth, stats, monitor, results,
                              promised))
        entry["status"] = status
        hooks.message(f"{plan.name}: {status}; {matched}/{total} windows hold their promised value")
    except KeyboardInterrupt:
        entry.update(status="interrupted", error="interrupted (Ctrl-C or SIGTERM)")
        raise
    except EngineRefused as exc:
        entry.update(status="skipped", reason=exc.message)
        hooks.message(f"{plan.name}: skipped: {exc.message}")
    except HarnessError as exc:
        entry.update(status="failed", error=exc.message)
        hooks.message(f"{plan.name}: failed: {exc.message}")
    except Exception as exc:  # an engine bug must not lose the other engines' results
        entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        hooks.message(f"{plan.name}: failed: {type(exc).__name__}: {exc}")
    finally:
        gen.stop.set()
        engine.stop()
        if worker is not None:
            worker.join(60)
        if monitor is not None:
            entry["timeseries"] = monitor.rows
            entry["resources"] = monitor.resources.summary((gen.stats.sent if gen.stats else 0))
            monitor.close()
        entry["finished_at"] = utc_now()
        results.save()
    return entry


def _capabilities(engine: Any) -> dict[str, Any]:
    caps = engine.capabilities
    return {"window_types": sorted(caps.window_types), "triggers": list(caps.triggers),
            "allowed_lateness": caps.allowed_lateness, "emits": caps.emits}


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # metrics are extras: note the failure, keep the run
        return {"error": f"{type(exc).__name__}: {exc}"}


def _measure(plan: EnginePlan, engine: Any, scenario: Scenario, dsn: str, load_id: str, tb: int, t_start_ms: int,
             truth: groundtruth.GroundTruth, stats: SendStats, monitor: _Monitor, results: ResultFile,
             promised: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        log = tables.read_log(conn, load_id)
        final = tables.read_final(conn, load_id)
        malformed_counted = tables.count_malformed(conn, load_id)
    ooo = scenario.load.out_of_order.max_delay if scenario.load.out_of_order.fraction > 0 else 0
    rep = window_metrics.report(
        promised=promised, expected=truth.windows, log=log, final=final, time_base_ms=tb,
        warmup_ms=scenario.warmup, watermark_delay_ms=scenario.query.watermark_delay, ooo_slack_ms=ooo,
        emits=engine.capabilities.emits, windows_per_event=windows_per_event(scenario))
    raw = results.raw_dir(load_id)
    rep.per_window.to_csv(raw / "windows.csv", index=False)
    log.to_csv(raw / "sink_log.csv", index=False)
    final.to_csv(raw / "sink_final.csv", index=False)
    # The first seconds after the warm-up are skipped: engine counters read through metric caches are stale by
    # up to a refresh interval, which bends the start of the line while the rate ramps up.
    a, b = tb + scenario.warmup + RATE_SKIP_MS, stats.last_handoff_ms or tb
    rate_in = _rate_between(monitor.rows, "records_in", a, b)
    rate_acked = _rate_between(monitor.rows, "acked_records", a, b)
    out_rate = None
    if len(log) > 1:
        span = (log["inserted_at_ms"].max() - log["inserted_at_ms"].min()) / 1000
        out_rate = round(len(log) / span, 2) if span > 0 else None
    lags = [r["lag"] for r in monitor.rows if r.get("lag") is not None]
    cpu_a, cpu_b = _value_at(monitor.rows, "cpu_s", tb), _value_at(monitor.rows, "cpu_s", b)
    load_cpu = (cpu_b - cpu_a) if cpu_a is not None and cpu_b is not None else None
    return {
        "cpu_during_load": {
            "cpu_seconds": round(load_cpu, 3) if load_cpu is not None else None,
            "cpu_seconds_per_million_events": round(load_cpu / (stats.sent / 1e6), 2) if load_cpu and stats.sent else None,
            "interval": "from the time base to the last send: excludes start-up, which `resources` includes",
        },
        "windows": rep.summary,
        "malformed": {"sent": truth.counts.get("malformed", 0), "counted_by_engine": malformed_counted},
        "throughput": {
            "in_records_per_s": round(rate_in, 1) if rate_in is not None else None,
            "acked_records_per_s": round(rate_acked, 1) if rate_acked is not None else None,
            "in_vs_acked": round(rate_in / rate_acked, 4) if rate_in and rate_acked else None,
            "interval": "least-squares slope from time base + warmup + 2 s to the last send; records include "
                        "heartbeats and malformed ones",
            "out_rows_per_s": out_rate,
        },
        "lag": {"max_records": max(lags) if lags else None, "final_records": lags[-1] if lags else None},
        "time_to_first_result_s": round((log["inserted_at_ms"].min() - t_start_ms) / 1000, 3) if len(log) else None,
    }


# -- the whole run ----------------------------------------------------------------------------------------
def run(opts: RunOptions, hooks: RunHooks | None = None) -> Path:
    """Run a scenario and return its run folder. The folder holds result.json even when the run fails."""
    hooks = hooks or RunHooks()
    scenario = load_scenario(opts.scenario_path)
    if opts.repeat < 1:
        raise HarnessError(f"--repeat must be 1 or more, got {opts.repeat}")
    plans = plan_engines(scenario, str(opts.scenario_path), opts.engines, opts.engine_options)
    run_id = opts.run_id or new_run_id(scenario)
    run_dir = (opts.results_dir or paths.results_dir()) / run_id
    started = time.monotonic()
    results = ResultFile(run_dir, {
        "run_id": run_id, "status": "running", "error": None, "started_at": utc_now(), "finished_at": None,
        "scenario_file": str(opts.scenario_path), "scenario": scenario.model_dump(mode="json"),
        "engines_requested": [p.name for p in plans], "repeat": opts.repeat, "mode": "isolated",
        "machine": environment.machine(),
    })
    hooks.started(run_dir)
    status, error = "failed", None
    try:
        with services(opts.bootstrap, opts.dsn, scenario_bootstrap=scenario.services.bootstrap_servers,
                      scenario_dsn=scenario.services.postgres_dsn, progress=hooks.message) as svc:
            results.update(services={"kafka": "external" if "kafka" in svc.external else "embedded",
                                     "bootstrap": svc.bootstrap,
                                     "postgres": "external" if "postgres" in svc.external else "embedded",
                                     "postgres_dsn": redact(svc.dsn)},
                           versions=environment.versions(svc.dsn))
            if not plans:
                run_load(scenario, svc.bootstrap, svc.dsn, run_id=run_id, load_id=f"{run_id}.load.0", engine=None,
                         repeat=0, results=results, hooks=hooks)
            for repeat in range(opts.repeat):
                for plan in plans:
                    run_engine(plan, scenario, svc.bootstrap, svc.dsn, run_id=run_id, repeat=repeat,
                               results=results, hooks=hooks)
        failed = [e for e in results.doc["engines"] if e["status"] in ("failed", "timeout")]
        status = "complete" if not failed else "failed"
        if failed:
            error = "; ".join(f"{e['engine']}#{e['repeat']}: {e.get('error')}" for e in failed)
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted (Ctrl-C or SIGTERM); what was measured is kept"
        raise
    except HarnessError as exc:
        error = exc.message
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise HarnessError(f"run {run_id} failed: {error}; what was measured is in {run_dir}",
                           exit_code=EXIT_FAILED) from exc
    finally:
        results.update(status=status, error=error, finished_at=utc_now(),
                       wall_seconds=round(time.monotonic() - started, 3))
    if status == "failed":
        raise HarnessError(f"run {run_id} finished with failures: {error}; results in {run_dir}", exit_code=EXIT_FAILED)
    return run_dir
