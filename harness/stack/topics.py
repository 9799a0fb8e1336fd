"""Topics: one fresh topic per engine run, so a replayed topic never makes sent_at latencies meaningless."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from harness.errors import HarnessError
from harness.stack.probes import kafka_conf


def create_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0) -> None:
    admin = AdminClient(kafka_conf(bootstrap))
    fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                              operation_timeout=timeout)[name]
    try:
        fut.result(timeout=timeout)
    except KafkaException as exc:
        raise HarnessError(f"could not create topic {name} with {partitions} partitions on {bootstrap}: {exc}",
                           exit_code=1) from exc


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(kafka_conf(bootstrap, **{"group.id": "harness-offsets", "enable.auto.commit": False}))
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()
