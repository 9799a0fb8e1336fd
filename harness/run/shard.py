"""`harness load SCENARIO --shard i/N`: one producer's share of a load, for loads from many producers.

A shard owns the partitions p with p % N == i and sends every event of them, on the single generator's schedule
from a time base the shards share, plus heartbeats to its partitions only. The union of the N shards is the
single generator's load: the same events, the same intended send times, and (a key's windows lie in one
partition) ground truth that is the union of the shards'. Each shard writes its figures, and with --out its
ground truth, so the skew between shards can be read afterwards (shard_skew below).
"""

from __future__ import annotations

import json
import os
import pickle
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from harness import groundtruth
from harness.errors import EXIT_FAILED, HarnessError
from harness.loadgen.events import EventModel
from harness.loadgen.generator import LoadGenerator, SendStats, Shard
from harness.loadgen.priority import raise_priority
from harness.run.planning import close_horizon_ms
from harness.scenario import Scenario
from harness.stack import topics
from harness.stack.probes import kafka_conf


def ensure_topic(bootstrap: str, topic: str, scenario: Scenario) -> None:
    """Create the topic unless it exists with the scenario's partitions (another shard may have made it)."""
    admin = AdminClient(kafka_conf(bootstrap))
    try:
        meta = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
    except KafkaException as exc:
        raise HarnessError(f"the broker at {bootstrap} did not answer: {exc}", exit_code=EXIT_FAILED) from exc
    if meta is not None and meta.error is None and meta.partitions:
        if len(meta.partitions) != scenario.topic.partitions:
            raise HarnessError(f"topic {topic} has {len(meta.partitions)} partitions; the scenario says "
                               f"{scenario.topic.partitions}")
        return
    limit = scenario.topic.max_message_bytes
    try:
        topics.create_topic(bootstrap, topic, scenario.topic.partitions,
                            config={"max.message.bytes": str(limit)} if limit else None)
    except HarnessError:
        # two shards creating it at once: one wins, and the topic is there for both
        meta = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or len(meta.partitions) != scenario.topic.partitions:
            raise


def summary(stats: SendStats, shard: Shard | None, owned: list[int], topic: str) -> dict[str, Any]:
    s = stats.summary()
    return {"shard": None if shard is None else f"{shard.index}/{shard.count}", "partitions": owned,
            "topic": topic, "time_base_ms": stats.time_base_ms, "events_sent": stats.shard_events,
            "events_acked": stats.acked, "delivery_errors": stats.delivery_errors,
            "heartbeats_sent": stats.heartbeats_sent, "achieved_rate_eps": s["achieved_rate_eps"],
            "send_delay_ms": s["send_delay_ms"], "first_handoff_ms": stats.first_handoff_ms,
            "last_handoff_ms": stats.last_handoff_ms, "last_ack_ms": stats.last_ack_ms, "nice": stats.nice,
            "scheduler": stats.scheduler}


LIVE_FIELDS = ("scheduled", "sent", "acked", "delivery_errors", "heartbeats_sent", "heartbeats_acked", "last_ack_ms")


@dataclass(frozen=True)
class ShardFiles:
    """How a shard in a process the harness did not start itself (a Locust worker) talks to it: through a folder.
    The harness creates `stop` to end the heartbeats; the shard writes live.json as it sends, loaded.pkl (its
    SendStats) once every event is handed over and reported, and done.pkl at the end, or error.txt. A shard
    whose harness (parent_pid) has gone stops as if told to."""

    folder: Path
    parent_pid: int | None = None

    @property
    def stop(self) -> Path:
        return self.folder / "stop"

    @property
    def live(self) -> Path:
        return self.folder / "live.json"

    @property
    def loaded(self) -> Path:
        return self.folder / "loaded.pkl"

    @property
    def done(self) -> Path:
        return self.folder / "done.pkl"

    @property
    def error(self) -> Path:
        return self.folder / "error.txt"

    def write(self, path: Path, data: bytes) -> None:
        tmp = path.with_suffix(".tmp")          # readers never see half a file
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def write_live(self, stats: SendStats) -> None:
        self.write(self.live, json.dumps({k: getattr(stats, k) for k in LIVE_FIELDS}).encode())

    def write_stats(self, path: Path, stats: SendStats) -> None:
        self.write(path, pickle.dumps(stats, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def read_stats(path: Path) -> SendStats:
        stats: SendStats = pickle.loads(path.read_bytes())
        return stats


class _FileLoadDone:
    """Stands in for the generator's load_done event: setting it writes the figures of every sent event."""

    def __init__(self, gen: LoadGenerator, files: ShardFiles) -> None:
        self._gen, self._files, self._set = gen, files, False

    def set(self) -> None:
        if not self._set and self._gen.stats is not None:
            self._set = True
            self._files.write_stats(self._files.loaded, self._gen.stats)

    def is_set(self) -> bool:
        return self._set


def _gone(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False


def _watch_stop(files: ShardFiles, gen: LoadGenerator) -> None:
    def loop() -> None:
        while not gen.stop.is_set():
            if files.stop.exists() or _gone(files.parent_pid):
                gen.stop.set()
            time.sleep(0.2)     # patched by gevent inside a Locust worker: it yields

    threading.Thread(target=loop, name="shard-stop-watch", daemon=True).start()


def run_shard(scenario: Scenario, bootstrap: str, topic: str, time_base_ms: int, shard: Shard | None, *,
              heartbeat_until_ms: int | None, out: Path | None,
              progress: Callable[[SendStats], None] | None = None, cooperative: bool = False,
              files: ShardFiles | None = None) -> dict[str, Any]:
    """Send this shard's events (every event when shard is None) from time_base_ms; returns its figures and, with
    `out`, writes them (shard.json) and its ground truth (expected_<answer>.csv) there. With `files`, the shard
    also reports to a harness that runs it in another process (ShardFiles) and stops when it is told to."""
    if files is not None:
        files.folder.mkdir(parents=True, exist_ok=True)
    ensure_topic(bootstrap, topic, scenario)
    model = EventModel(scenario)
    nice = raise_priority()                       # before the producer starts its threads
    gen = LoadGenerator(scenario, bootstrap, topic, model=model, shard=shard, cooperative=cooperative)
    gen.nice = nice
    gen.warm_up()
    if time.time_ns() // 1_000_000 > time_base_ms + 1000:
        raise HarnessError(f"the time base {time_base_ms} is already {(time.time_ns() // 1_000_000 - time_base_ms) / 1000:.1f} s "
                           "past: every shard would start behind its schedule; give one a few seconds ahead")
    if files is not None:
        gen.load_done = _FileLoadDone(gen, files)  # type: ignore[assignment]
        _watch_stop(files, gen)
        user_progress = progress

        def progress(st: SendStats) -> None:
            files.write_live(st)
            if user_progress is not None:
                user_progress(st)

    stats = gen.run(time_base_ms, heartbeat_until_ms=heartbeat_until_ms, progress=progress)
    if files is not None:
        gen.load_done.set()          # a stopped shard never reached it
    result = summary(stats, shard, gen.owned, topic)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        truth = groundtruth.compute(scenario, model, time_base_ms, stats.handoff_ms, stats.sent, stats.offsets,
                                    partitions=gen.owned)
        for answer, frame in truth.windows.items():
            frame.to_csv(out / f"expected_{answer}.csv", index=False)
        result["ground_truth"] = {"windows_on_time": len(truth.windows["on_time"]),
                                  "windows_complete": len(truth.windows["complete"]), "events_by_kind": truth.counts}
        (out / "shard.json").write_text(json.dumps(result, indent=2))
    if files is not None:            # last: the harness may stop this process once it is there
        files.write_stats(files.done, stats)
    return result


SKEW_NEAR = 0.8   # a skew above this share of the margin is flagged


def shard_skew(shards: list[dict[str, Any]], scenario: Scenario) -> dict[str, Any]:
    """The skew between shards: every shard follows the same schedule, so one runs behind another by at most the
    largest send delay any of them had (its max). Spark's watermark is the maximum over partitions: a shard that
    lags by more than the watermark delay minus the out-of-order delay turns another's on-time events late, so
    a skew near that margin is flagged."""
    worst = [s["send_delay_ms"].get("max") for s in shards if s.get("send_delay_ms")]
    worst = [v for v in worst if v is not None]
    ooo = scenario.load.out_of_order.max_delay if scenario.load.out_of_order.fraction > 0 else 0
    margin = scenario.query.watermark_delay - ooo
    skew = max(worst) if worst else None
    return {"skew_ms": skew, "margin_ms": margin,
            "near_margin": skew is not None and skew >= SKEW_NEAR * margin}
