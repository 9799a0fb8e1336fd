"""`harness load SCENARIO --shard i/N`: one producer's share of a load, for loads from many producers.

A shard owns the partitions p with p % N == i and sends every event of them, on the single generator's schedule
from a time base the shards share, plus heartbeats to its partitions only. The union of the N shards is the
single generator's load: the same events, the same intended send times, and (a key's windows lie in one
partition) ground truth that is the union of the shards'. Each shard writes its figures, and with --out its
ground truth, so the skew between shards can be read afterwards (shard_skew below).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from harness import groundtruth
from harness.errors import EXIT_FAILED, HarnessError
from harness.loadgen.events import EventModel
from harness.loadgen.generator import LoadGenerator, SendStats, Shard
from harness.loadgen.process import raise_priority
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
            "last_handoff_ms": stats.last_handoff_ms, "last_ack_ms": stats.last_ack_ms, "nice": stats.nice}


def run_shard(scenario: Scenario, bootstrap: str, topic: str, time_base_ms: int, shard: Shard | None, *,
              heartbeat_until_ms: int | None, out: Path | None,
              progress: Callable[[SendStats], None] | None = None, cooperative: bool = False) -> dict[str, Any]:
    """Send this shard's events (every event when shard is None) from time_base_ms; returns its figures and, with
    `out`, writes them (shard.json) and its ground truth (expected_<answer>.csv) there."""
    ensure_topic(bootstrap, topic, scenario)
    model = EventModel(scenario)
    nice = raise_priority()                       # before the producer starts its threads
    gen = LoadGenerator(scenario, bootstrap, topic, model=model, shard=shard, cooperative=cooperative)
    gen.nice = nice
    gen.warm_up()
    if time.time_ns() // 1_000_000 > time_base_ms + 1000:
        raise HarnessError(f"the time base {time_base_ms} is already {(time.time_ns() // 1_000_000 - time_base_ms) / 1000:.1f} s "
                           "past: every shard would start behind its schedule; give one a few seconds ahead")
    stats = gen.run(time_base_ms, heartbeat_until_ms=heartbeat_until_ms, progress=progress)
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


LOCUSTFILE = Path(__file__).resolve().parent.parent / "loadgen" / "locustfile.py"
LOCUST_START_S = 12      # the workers start, import and connect before the shared time base


def run_locust(scenario_path: Path, scenario: Scenario, bootstrap: str, topic: str, workers: int, out: Path,
               say: Callable[[str], None]) -> dict[str, Any]:
    """A headless Locust master and `workers` workers here, each worker one shard of the load; returns every
    shard's figures, the skew between them and Locust's own statistics (out/locust_stats.csv)."""
    import os
    import subprocess
    import sys

    from harness.run.planning import next_time_base
    from harness.stack import net, processes

    ensure_topic(bootstrap, topic, scenario)
    tb = next_time_base(scenario, time.time_ns() // 1_000_000 + LOCUST_START_S * 1000)
    # users that are still sending when it elapses are waited for (--stop-timeout)
    run_s = int((tb - time.time_ns() // 1_000_000) / 1000 + close_horizon_ms(scenario) / 1000 + 5)
    port = net.free_port()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HARNESS_LOCUST_SCENARIO": str(Path(scenario_path).resolve()), "HARNESS_LOCUST_TOPIC": topic,
           "HARNESS_LOCUST_TIME_BASE": str(tb), "HARNESS_LOCUST_SHARDS": str(workers),
           "HARNESS_BOOTSTRAP_SERVERS": bootstrap, "HARNESS_LOCUST_OUT": str(out)}
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    master_cmd = [*base, "--headless", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                  "--expect-workers", str(workers), "-u", str(workers), "-r", str(workers), "--run-time", f"{run_s}s",
                  "--stop-timeout", "30", "--csv", str(out / "locust"), "--only-summary"]
    worker_cmd = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    say(f"locust: a master and {workers} workers, one shard each, sending from {tb} (run time {run_s} s)")
    procs: list[subprocess.Popen[str]] = []
    logs = [open(out / f"locust-{name}.log", "w") for name in ["master", *[f"worker-{i}" for i in range(workers)]]]
    try:
        for cmd, log in zip([master_cmd, *[worker_cmd] * workers], logs):
            p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
            processes.register(p.pid, "locust", topic=topic)
            procs.append(p)
        code = procs[0].wait(timeout=run_s + 120)
        for p in procs[1:]:
            p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            processes.unregister(p.pid)
        for log in logs:
            log.close()
    shards = []
    for i in range(workers):
        f = out / f"shard-{i}" / "shard.json"
        if not f.is_file():
            raise HarnessError(f"locust worker {i} wrote no figures; see {out / f'locust-worker-{i}.log'}",
                               exit_code=EXIT_FAILED)
        shards.append(json.loads(f.read_text()))
    if code != 0:
        raise HarnessError(f"the locust master exited with {code}; see {out / 'locust-master.log'}",
                           exit_code=EXIT_FAILED)
    return {"topic": topic, "time_base_ms": tb, "workers": workers, "shards": shards,
            "skew": shard_skew(shards, scenario), "locust_stats": str(out / "locust_stats.csv")}

