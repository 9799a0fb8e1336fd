"""Topics: one fresh topic per engine run, so a replayed topic never makes sent_at latencies meaningless."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from harness.errors import HarnessError
from harness.stack.probes import kafka_conf


def create_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0,
                 config: dict[str, str] | None = None) -> None:
    admin = AdminClient(kafka_conf(bootstrap))
    fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
                              operation_timeout=timeout)[name]
    try:
        fut.result(timeout=timeout)
    except KafkaException as exc:
        raise HarnessError(f"could not create topic {name} with {partitions} partitions on {bootstrap}: {exc}",
                           exit_code=1) from exc
    # CreateTopics returns when the controller has the topic; a client asking a broker right after may still be
    # told "unknown partition" (seen on a loaded machine). Return once the metadata shows every partition led.
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic=name, timeout=max(1.0, deadline - time.monotonic())).topics.get(name)
        if meta is not None and meta.error is None and len(meta.partitions) == partitions and all(
                p.leader >= 0 for p in meta.partitions.values()):
            return
        if time.monotonic() > deadline:
            raise HarnessError(f"topic {name} was created on {bootstrap} but its {partitions} partitions had no "
                               f"leader after {timeout:.0f} s", exit_code=1)
        time.sleep(0.1)


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(kafka_conf(bootstrap, **{"group.id": "harness-offsets", "enable.auto.commit": False}))
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def offsets_for_time(bootstrap: str, topic: str, partitions: int, ts_ms: int) -> dict[int, int]:
    """Per partition, the first offset whose record timestamp is at or after ts_ms (-1: none yet)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(kafka_conf(bootstrap, **{"group.id": "harness-offsets", "enable.auto.commit": False}))
    try:
        found = c.offsets_for_times([TopicPartition(topic, p, ts_ms) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        c.close()
