"""One scenario run: services, a fresh topic and time base per pass, the load, ground truth, result.json.

Engines plug in per pass (the engine issue adds them through the engine boundary); with none the run is a
load-only pass that writes the load's ground truth, which is what every engine is later judged against.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import psycopg

from harness import environment, groundtruth, paths
from harness.errors import EXIT_FAILED, HarnessError
from harness.loadgen.events import EventModel
from harness.loadgen.generator import LoadGenerator, SendStats
from harness.scenario import Scenario, load_scenario
from harness.stack import topics
from harness.stack.probes import redact
from harness.stack.services import services
from harness.storage import tables
from harness.storage.results import ResultFile, utc_now

LEAD_MS = 1500  # time to create the topic and warm the producer before the load's first instant


@dataclass
class RunOptions:
    scenario_path: Path
    bootstrap: str | None = None
    dsn: str | None = None
    results_dir: Path | None = None
    run_id: str | None = None


@dataclass
class RunHooks:
    """How the runner reports progress; the CLI renders it, tests ignore it."""

    message: Callable[[str], None] = lambda _m: None
    sending: Callable[[str, SendStats], None] = lambda _l, _s: None


@dataclass
class LoadOutcome:
    load_id: str
    topic: str
    time_base_ms: int
    stats: SendStats
    truth: groundtruth.GroundTruth
    entry: dict[str, object] = field(default_factory=dict)


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


def run_load(scenario: Scenario, bootstrap: str, dsn: str, *, run_id: str, load_id: str, engine: str | None,
             repeat: int, results: ResultFile | None, hooks: RunHooks,
             heartbeat_until_ms: int | None = None) -> LoadOutcome:
    """Create the topic, send the load (with heartbeats), write and return its ground truth."""
    topic = f"harness.{load_id}"
    topics.create_topic(bootstrap, topic, scenario.topic.partitions)
    model = EventModel(scenario)
    gen = LoadGenerator(scenario, bootstrap, topic, model=model)
    gen.warm_up()
    tb = next_time_base(scenario)
    until = heartbeat_until_ms if heartbeat_until_ms is not None else tb + close_horizon_ms(scenario)
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables.ensure_schema(conn)
        tables.record_load(conn, load_id=load_id, run_id=run_id, engine=engine, repeat=repeat,
                           scenario=scenario.name, topic=topic, partitions=scenario.topic.partitions,
                           seed=scenario.seed, time_base_ms=tb)
    wait_s = (tb - time.time_ns() // 1_000_000) / 1000
    hooks.message(f"{load_id}: {model.count} events to topic {topic}; load starts at the window boundary "
                  f"{datetime.fromtimestamp(tb / 1000, timezone.utc):%H:%M:%S} UTC (in {wait_s:.1f} s)")
    holder: dict[str, object] = {}

    def send() -> None:
        try:
            holder["stats"] = gen.run(tb, heartbeat_until_ms=until, progress=lambda s: hooks.sending(load_id, s))
        except BaseException as exc:  # surfaced in the main thread below
            holder["error"] = exc

    worker = threading.Thread(target=send, name=f"generator-{load_id}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        gen.stop.set()
        worker.join(60)
        raise
    if "error" in holder:
        raise holder["error"]  # type: ignore[misc]
    stats: SendStats = holder["stats"]  # type: ignore[assignment]
    hooks.message(f"{load_id}: {stats.acked}/{stats.sent} events acknowledged; computing ground truth")
    truth = groundtruth.compute(scenario, model, tb, stats.handoff_ms, stats.sent)
    with psycopg.connect(dsn) as conn:
        tables.write_ground_truth(conn, load_id, truth, stats.sent, stats.acked)
    entry: dict[str, object] = {
        "load_id": load_id, "engine": engine, "repeat": repeat, "topic": topic,
        "partitions": scenario.topic.partitions, "time_base_ms": tb, "encoder": gen.encoder.name,
        "generator": stats.summary(),
        "ground_truth": {
            "windows_complete": len(truth.windows["complete"]),
            "windows_on_time": len(truth.windows["on_time"]),
            "events_by_kind": truth.counts,
        },
        "timeseries": {
            "intended_per_second": _intended_per_second(model, scenario),
            "sent_per_second": stats.sent_per_second,
            "acked_per_second": stats.acked_per_second,
        },
    }
    if results is not None:
        raw = results.raw_dir(load_id)
        for answer, frame in truth.windows.items():
            frame.to_csv(raw / f"expected_{answer}.csv", index=False)
        truth.special.to_csv(raw / "special_events.csv", index=False)
        results.add("loads", entry)
    return LoadOutcome(load_id, topic, tb, stats, truth, entry)


def _intended_per_second(model: EventModel, scenario: Scenario) -> dict[int, float]:
    sched = model.schedule
    secs = -(-scenario.duration // 1000)
    return {s: round(sched.expected_between(s * 1000, min((s + 1) * 1000, scenario.duration)), 3) for s in range(secs)}


def run(opts: RunOptions, hooks: RunHooks | None = None) -> Path:
    """Run a scenario and return its run folder. The folder holds result.json even when the run fails."""
    hooks = hooks or RunHooks()
    scenario = load_scenario(opts.scenario_path)
    run_id = opts.run_id or new_run_id(scenario)
    run_dir = (opts.results_dir or paths.results_dir()) / run_id
    started = time.monotonic()
    results = ResultFile(run_dir, {
        "run_id": run_id, "status": "running", "error": None, "started_at": utc_now(), "finished_at": None,
        "scenario_file": str(opts.scenario_path), "scenario": scenario.model_dump(mode="json"),
        "machine": environment.machine(),
    })
    status, error = "failed", None
    try:
        with services(opts.bootstrap, opts.dsn, scenario_bootstrap=scenario.services.bootstrap_servers,
                      scenario_dsn=scenario.services.postgres_dsn, progress=hooks.message) as svc:
            results.update(services={"kafka": "external" if "kafka" in svc.external else "embedded",
                                     "bootstrap": svc.bootstrap,
                                     "postgres": "external" if "postgres" in svc.external else "embedded",
                                     "postgres_dsn": redact(svc.dsn)},
                           versions=environment.versions(svc.dsn))
            run_load(scenario, svc.bootstrap, svc.dsn, run_id=run_id, load_id=f"{run_id}.load.0", engine=None,
                     repeat=0, results=results, hooks=hooks)
        status = "complete"
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted by the user (Ctrl-C); what was measured is kept"
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
    return run_dir
