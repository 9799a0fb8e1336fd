"""The one warm-up every JVM engine runs before its real query, inside start-to-running: the same query over the
same records on a private topic, so the JIT, the engine's generated code and its Kafka client are warm when the
load begins (a cold JVM's first micro-batches take 2-14 s, longer than a late delay allows).

The records look like the load's (every malformed kind, a heartbeat) with event times that close a window per
batch; they go to `<topic>-warmup`, which the engine's job creates and deletes. Jobs import this module (the
project is on their path), so Flink and Spark warm up on identical input.
"""

from __future__ import annotations

import json
from typing import Any

from harness.records import HEARTBEAT_KEY

RECORDS_PER_BATCH = 200
# Far in the past, so no warm-up window can ever meet the load's windows (a fresh topic anyway).
BASE_MS = 1_000_000_000_000


def topic_name(topic: str) -> str:
    return f"{topic}-warmup"


def batch_lines(window: dict[str, Any], watermark_delay_ms: int, batch: int, base_ms: int = BASE_MS) -> list[str]:
    """One batch of warm-up records: RECORDS_PER_BATCH events, a heartbeat past their window, and one record of
    every malformed kind."""
    step = int(window.get("size_ms") or window.get("gap_ms") or 1000) + int(watermark_delay_ms or 0) + 1
    t0 = base_ms + batch * step
    lines = []
    for i in range(RECORDS_PER_BATCH):
        lines.append(json.dumps({"event_id": i, "key": f"w{i % 40:03d}", "value": i % 1000 + 1,
                                 "event_time": t0 + (i * 7) % step, "pad": "x" * 40, "sent_at": t0 + i}))
    lines.append(json.dumps({"event_id": -1, "key": HEARTBEAT_KEY, "value": 0, "event_time": t0 + step,
                             "sent_at": t0}))
    lines += ['{"event_id":1,"key":"w000","value":1,"event_time":', '{"event_id":1,"key":"w000","value":1}',
              '{"event_id":1,"key":"w000","value":1,"event_time":null}',
              '{"event_id":1,"key":7,"value":1,"event_time":%d}' % t0,
              '{"event_id":1,"key":"w000","value":"1","event_time":%d}' % t0,
              '{"event_id":1,"key":"w000","value":1,"event_time":%d.0}' % t0]
    return lines


def batches(cfg: dict[str, Any], count: int) -> list[list[str]]:
    """`count` batches for a job's config (its window and watermark delay)."""
    return [batch_lines(cfg["window"], int(cfg.get("watermark_delay_ms") or 0), b) for b in range(count)]


class WarmupTopic:
    """The private topic holding the warm-up records (partitioned like the load's topic), deleted after."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, lines: list[list[str]]) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient

        from harness.stack.probes import kafka_conf
        from harness.stack.topics import create_topic

        self.name = topic_name(topic)
        self.admin = AdminClient(kafka_conf(bootstrap))
        parts = max(1, int(partitions))
        create_topic(bootstrap, self.name, parts)   # returns once every partition has a leader
        producer = Producer(kafka_conf(bootstrap, **{"linger.ms": 5}))
        self.records = 0
        for batch in lines:
            for i, line in enumerate(batch):
                producer.produce(self.name, value=line.encode(), partition=i % parts)
                self.records += 1
        if producer.flush(30):
            raise RuntimeError(f"could not write the warm-up records to {self.name}")

    def delete(self) -> str | None:
        """Delete the topic; the error text when that failed (the run goes on: the topic is private)."""
        try:
            self.admin.delete_topics([self.name], operation_timeout=30)[self.name].result(timeout=30)
            return None
        except Exception as exc:
            return f"deleting topic {self.name}: {exc}"
