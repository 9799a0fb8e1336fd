"""`harness bench producer`: the generator's throughput against Kafka's own perf tool and kafka-python,
and its pacing accuracy at a few target rates. One run each, same broker, same record size."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from harness.loadgen.generator import PRODUCER_SETTINGS, LoadGenerator
from harness.scenario import Scenario, parse_scenario
from harness.stack import jvm, topics


@dataclass
class ThroughputRow:
    producer: str
    records: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _scenario(rate: float, duration_s: float, record_size: int, partitions: int) -> Scenario:
    return parse_scenario({
        "name": "bench-producer", "seed": 1, "duration": f"{int(duration_s * 1000)}ms",
        "topic": {"partitions": partitions},
        "load": {"rate": rate, "keys": 1000, "payload_bytes": record_size},
        "query": {"window": {"type": "tumbling", "size": "1s"}},
    })


def generator_throughput(bootstrap: str, records: int, record_size: int, partitions: int) -> ThroughputRow:
    s = _scenario(records / 10.0, 10, record_size, partitions)
    topic = f"bench.gen.{int(time.time() * 1000)}"
    topics.create_topic(bootstrap, topic, partitions)
    gen = LoadGenerator(s, bootstrap, topic)
    gen.warm_up()
    stats = gen.run(time.time_ns() // 1_000_000, paced=False)
    secs = ((stats.last_ack_ms or 0) - (stats.first_handoff_ms or 0)) / 1000
    return ThroughputRow("harness generator (confluent-kafka, builds + encodes each event)", stats.acked, secs,
                         f"{stats.delivery_errors} errors")


def perf_test_throughput(bootstrap: str, records: int, record_size: int, partitions: int) -> ThroughputRow:
    topic = f"bench.perf.{int(time.time() * 1000)}"
    topics.create_topic(bootstrap, topic, partitions)
    props = [f"bootstrap.servers={bootstrap}", "acks=all", "enable.idempotence=true",
             f"linger.ms={PRODUCER_SETTINGS['linger.ms']}"]
    cmd = [jvm.find_java(), "-Xmx512m", "-cp", jvm.classpath("kafka"), "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(records), "--record-size", str(record_size),
           "--throughput", "-1", "--producer-props", *props]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    m = re.search(r"(\d+) records sent, ([\d.]+) records/sec.*?([\d.]+) ms avg latency, ([\d.]+) ms max latency",
                  out.stdout)
    if not m:
        return ThroughputRow("kafka-producer-perf-test", 0, 0.0, f"failed: {(out.stdout + out.stderr)[-300:]}")
    sent, rate = int(m.group(1)), float(m.group(2))
    return ThroughputRow("kafka-producer-perf-test (Java, one pre-built record)", sent, sent / rate,
                         f"avg latency {m.group(3)} ms")


def kafka_python_throughput(bootstrap: str, records: int, record_size: int, partitions: int) -> ThroughputRow:
    from kafka import KafkaProducer

    topic = f"bench.kpy.{int(time.time() * 1000)}"
    topics.create_topic(bootstrap, topic, partitions)
    payload = b"x" * record_size
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True)
    try:
        p.partitions_for(topic)
        t = time.perf_counter()
        for i in range(records):
            p.send(topic, payload, partition=i % partitions)
        p.flush()
        secs = time.perf_counter() - t
    finally:
        p.close()
    return ThroughputRow("kafka-python (pre-built record)", records, secs)


def pacing(bootstrap: str, rate: float, duration_s: float, record_size: int, partitions: int) -> dict[str, object]:
    s = _scenario(rate, duration_s, record_size, partitions)
    topic = f"bench.pace.{int(rate)}.{int(time.time() * 1000)}"
    topics.create_topic(bootstrap, topic, partitions)
    gen = LoadGenerator(s, bootstrap, topic)
    gen.warm_up()
    start = (time.time_ns() // 1_000_000) + 500
    stats = gen.run(start)
    summary = stats.summary()
    span = ((stats.last_handoff_ms or start) - start) / 1000 or 1.0
    return {"target_rate": rate, "scheduled": stats.scheduled, "acked": stats.acked,
            "achieved_rate": summary["achieved_rate_eps"], "handoff_rate": round(stats.sent / max(span, 1e-9), 1),
            "send_delay_ms": summary["send_delay_ms"], "ack_latency_ms": summary["ack_latency_ms"]}


def run_all(bootstrap: str, *, records: int, record_size: int, partitions: int, rates: list[float],
            pace_seconds: float, kafka_python_records: int, say: Callable[[str], None]) -> dict[str, object]:
    rows = []
    say(f"generator, unpaced: {records} records of {record_size} bytes")
    rows.append(generator_throughput(bootstrap, records, record_size, partitions))
    say("kafka-producer-perf-test (from the Maven-fetched kafka-tools jar)")
    rows.append(perf_test_throughput(bootstrap, records, record_size, partitions))
    say(f"kafka-python: {kafka_python_records} records")
    rows.append(kafka_python_throughput(bootstrap, kafka_python_records, record_size, partitions))
    pace = []
    for r in rates:
        say(f"pacing at {r:g} events/s for {pace_seconds:g} s")
        pace.append(pacing(bootstrap, r, pace_seconds, record_size, partitions))
    return {
        "record_size": record_size, "partitions": partitions,
        "producer_settings": {k: v for k, v in PRODUCER_SETTINGS.items()},
        "throughput": [{"producer": r.producer, "records": r.records, "seconds": round(r.seconds, 3),
                        "records_per_s": round(r.rate, 1), "note": r.note} for r in rows],
        "pacing": pace,
    }
