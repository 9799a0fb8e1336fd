"""A load session: the topic, the event model, the generator in its own process, and the ground truth. The same
session serves a load-only pass (run_load) and an engine run (phases.EngineRun)."""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg

from harness import groundtruth
from harness.errors import HarnessError
from harness.loadgen.events import EventModel
from harness.loadgen.generator import DELIVERY_WAIT_S, SendStats
from harness.loadgen.process import GeneratorProcess
from harness.run.locust_load import LocustLoad
from harness.run.planning import backlog_time_base, close_horizon_ms, next_time_base
from harness.scenario import Scenario
from harness.stack import topics
from harness.storage import sink_tables
from harness.results.document import (GeneratorStats, GroundTruthSummary, LoadResult, LoadSeries, ShardFigures,
                                      ShardedLoad)
from harness.storage.results import ResultFile

if TYPE_CHECKING:
    from harness.run.hooks import RunHooks


@dataclass(frozen=True)
class LoadSource:
    """Who sends the load: the single generator in its own process, or Locust (`--load locust`): a master and
    `workers` workers here, each one shard of the same load."""

    kind: Literal["generator", "locust"] = "generator"
    workers: int = 2

    def check(self, scenario: Scenario) -> None:
        """Refuse what this source cannot send, before anything starts."""
        if self.kind != "locust":
            return
        if self.workers < 1 or self.workers > scenario.topic.partitions:
            raise HarnessError(f"--locust-workers {self.workers}: each worker owns at least one of the topic's "
                               f"partitions; allowed: 1..{scenario.topic.partitions} for this scenario")
        if scenario.load.mode == "backlog":
            raise HarnessError("--load locust sends on the open-loop schedule; backlog mode (--backlog) fills the "
                               "topic unpaced from one generator: use one or the other")


@dataclass
class LoadOutcome:
    load_id: str
    topic: str
    time_base_ms: int
    stats: SendStats
    truth: groundtruth.GroundTruth
    entry: LoadResult | None = None


class LoadSession:
    """One load from topic to ground truth: prepare() → begin() → (the generator sends) → finish()."""

    def __init__(self, scenario: Scenario, bootstrap: str, dsn: str, *, run_id: str, load_id: str,
                 engine: str | None, repeat: int, results: ResultFile | None, hooks: RunHooks,
                 source: LoadSource | None = None) -> None:
        self.scenario, self.bootstrap, self.dsn = scenario, bootstrap, dsn
        self.source = source or LoadSource()
        self.run_id, self.load_id, self.engine, self.repeat = run_id, load_id, engine, repeat
        self.results, self.hooks = results, hooks
        self.topic = f"harness.{load_id}"
        self.model: EventModel | None = None
        self.gen: GeneratorProcess | LocustLoad | None = None
        self.time_base_ms: int | None = None
        self.truth: groundtruth.GroundTruth | None = None
        self._worker: threading.Thread | None = None
        self._holder: dict[str, Any] = {}

    def prepare(self) -> None:
        """The topic, the event model and the generator; the sink tables exist."""
        limit = self.scenario.topic.max_message_bytes
        topics.create_topic(self.bootstrap, self.topic, self.scenario.topic.partitions,
                            config={"max.message.bytes": str(limit)} if limit else None)
        self.model = EventModel(self.scenario)
        owner = {"run_id": self.run_id, "load_id": self.load_id}
        if self.source.kind == "locust":
            folder = (self.results.raw_dir(self.load_id) if self.results is not None else
                      Path(tempfile.mkdtemp(prefix="harness-locust-")))
            # the workers read the scenario as this run has it (engine options and all), not the file's
            effective = folder / "scenario.json"
            effective.write_text(self.scenario.model_dump_json())
            self.gen = LocustLoad(self.scenario, effective, self.bootstrap, self.topic, self.source.workers,
                                  folder / "locust", owner=owner)
        else:
            self.gen = GeneratorProcess(self.scenario, self.bootstrap, self.topic, owner=owner)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            sink_tables.ensure_schema(conn)

    @property
    def backlog(self) -> bool:
        return self.scenario.load.mode == "backlog"

    def begin(self, heartbeat_until_ms: int | None) -> int:
        """Start the generator's process and warm its producer, pick the time base, record the load and start
        sending (a thread here waits on the process); returns the time base. In backlog mode the time base is
        `duration` before now (on a window boundary) and the generator sends unpaced: every event is already
        due, and heartbeats carry the schedule's time, so none overtakes an event."""
        assert self.gen is not None and self.model is not None
        self.gen.warm_up()
        lead = self.gen.start_lead_ms if isinstance(self.gen, LocustLoad) else 0   # Locust's processes start after
        tb = self.time_base_ms = (backlog_time_base(self.scenario) if self.backlog else
                                  next_time_base(self.scenario, time.time_ns() // 1_000_000 + lead))
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            sink_tables.record_load(conn, load_id=self.load_id, run_id=self.run_id, engine=self.engine,
                                    repeat=self.repeat, scenario=self.scenario.name, topic=self.topic,
                                    partitions=self.scenario.topic.partitions, seed=self.scenario.seed,
                                    time_base_ms=tb)
        wait_s = (tb - time.time_ns() // 1_000_000) / 1000
        at = f"{datetime.fromtimestamp(tb / 1000, timezone.utc):%H:%M:%S} UTC"
        self.hooks.message(f"{self.load_id}: {self.model.count} events to topic {self.topic}; " + (
            f"backlog: filling the topic as fast as the generator can, event times from {at}" if self.backlog else
            f"load starts at the window boundary {at} (in {wait_s:.1f} s)"))
        until = heartbeat_until_ms if heartbeat_until_ms is not None else tb + close_horizon_ms(self.scenario)
        gen, holder = self.gen, self._holder

        def send() -> None:
            try:
                holder["stats"] = gen.run(tb, heartbeat_until_ms=until, paced=not self.backlog,
                                          progress=lambda s: self.hooks.sending(self.load_id, s))
            except BaseException as exc:  # surfaced in the main thread by raise_if_failed()
                holder["error"] = exc
                gen.load_done.set()

        self._worker = threading.Thread(target=send, name=f"generator-{self.load_id}", daemon=True)
        self._worker.start()
        return tb

    @property
    def sending(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    @property
    def load_done(self) -> bool:
        return self.gen is not None and self.gen.load_done.is_set()

    @property
    def stats(self) -> SendStats | None:
        return self._holder.get("stats") or (self.gen.stats if self.gen else None)

    def raise_if_failed(self) -> None:
        if "error" in self._holder:
            raise self._holder["error"]

    def compute_truth(self) -> groundtruth.GroundTruth:
        """Ground truth of what was sent, written to PostgreSQL and the run folder."""
        stats = self.stats
        assert stats is not None and self.model is not None and self.time_base_ms is not None
        truth = groundtruth.compute(self.scenario, self.model, self.time_base_ms, stats.handoff_ms, stats.sent,
                                    stats.offsets)
        with psycopg.connect(self.dsn) as conn:
            sink_tables.write_ground_truth(conn, self.load_id, truth, stats.sent, stats.acked)
        if self.results is not None:
            raw = self.results.raw_dir(self.load_id)
            for answer, frame in truth.windows.items():
                frame.to_csv(raw / f"expected_{answer}.csv", index=False)
            truth.special.to_csv(raw / "special_events.csv", index=False)
        self.truth = truth
        return truth

    def stop(self, join_s: float = DELIVERY_WAIT_S + 10) -> None:
        """Stop sending (heartbeats included); unless join_s is 0, wait for the generator and make sure its
        process has gone."""
        if self.gen is not None:
            self.gen.stop.set()
        if join_s <= 0:
            return
        if self._worker is not None:
            self._worker.join(join_s)
        if self.gen is not None:
            self.gen.close(timeout=10)

    def entry(self) -> LoadResult:
        """The load's section of result.json."""
        stats, truth = self.stats, self.truth
        assert stats is not None and truth is not None and self.model is not None and self.gen is not None
        sched, scenario = self.model.schedule, self.scenario
        secs = -(-scenario.duration // 1000)
        return LoadResult(
            load_id=self.load_id, engine=self.engine, repeat=self.repeat, topic=self.topic,
            partitions=scenario.topic.partitions, time_base_ms=self.time_base_ms,
            encoder=self.gen.encoder.name, generator=GeneratorStats.model_validate(stats.summary()),
            shards=self._shards(),
            ground_truth=GroundTruthSummary(windows_complete=len(truth.windows["complete"]),
                                            windows_on_time=len(truth.windows["on_time"]),
                                            events_by_kind=truth.counts),
            timeseries=LoadSeries(
                intended_per_second={s: round(sched.expected_between(s * 1000, min((s + 1) * 1000, scenario.duration)), 3)
                                     for s in range(secs)},
                sent_per_second=stats.sent_per_second, acked_per_second=stats.acked_per_second))

    def _shards(self) -> ShardedLoad | None:
        gen = self.gen
        if not isinstance(gen, LocustLoad) or not gen.shards or gen.skew is None:
            return None
        return ShardedLoad(workers=gen.workers, skew_ms=gen.skew["skew_ms"], margin_ms=gen.skew["margin_ms"],
                           near_margin=gen.skew["near_margin"],
                           shards=[ShardFigures.model_validate({k: s[k] for k in ShardFigures.model_fields})
                                   for s in gen.shards])


def run_load(scenario: Scenario, bootstrap: str, dsn: str, *, run_id: str, load_id: str, engine: str | None,
             repeat: int, results: ResultFile | None, hooks: RunHooks,
             heartbeat_until_ms: int | None = None, source: LoadSource | None = None) -> LoadOutcome:
    """A load with no engine: create the topic, send the load (with heartbeats), write its ground truth."""
    session = LoadSession(scenario, bootstrap, dsn, run_id=run_id, load_id=load_id, engine=engine, repeat=repeat,
                          results=results, hooks=hooks, source=source)
    session.prepare()
    tb = session.begin(heartbeat_until_ms)
    try:
        while session.sending:
            session._worker.join(0.2)  # type: ignore[union-attr]
    except KeyboardInterrupt:
        session.stop()
        raise
    session.raise_if_failed()
    stats = session.stats
    if stats is None:
        raise HarnessError(f"{load_id}: the generator ended without its figures")
    hooks.message(f"{load_id}: {stats.acked}/{stats.sent} events acknowledged; computing ground truth")
    truth = session.compute_truth()
    entry = session.entry()
    if results is not None:
        results.add_load(entry)
    return LoadOutcome(load_id, session.topic, tb, stats, truth, entry)
