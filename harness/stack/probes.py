"""Health probes that prove a service serves: Kafka-protocol calls Redpanda also answers, and plain SQL."""

from __future__ import annotations

import logging
import time
import uuid

from harness.errors import HarnessError
from harness.stack import net

HEALTH_TOPIC = "__harness_health"
_quiet = logging.getLogger("harness.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def kafka_conf(bootstrap: str, **extra: object) -> dict[str, object]:
    # librdkafka logs every refused connection to stderr; the harness reports reachability itself.
    return {"bootstrap.servers": bootstrap, "logger": _quiet, **extra}


def check_reachable_kafka(bootstrap: str, timeout: float = 10.0) -> None:
    """Fail with exit 2 when no broker in the bootstrap list opens a TCP connection or answers metadata."""
    from confluent_kafka.admin import AdminClient

    reasons = []
    for address in bootstrap.split(","):
        host, port = net.split_host_port(address, 9092)
        why = net.can_connect(host, port)
        if why is None:
            break
        reasons.append(f"{address}: {why}")
    else:
        raise HarnessError(
            f"cannot reach the Kafka broker at {bootstrap} ({'; '.join(reasons)})",
            hint="check --bootstrap-servers / HARNESS_BOOTSTRAP_SERVERS, or leave it out to use the embedded broker",
        )
    try:
        AdminClient(kafka_conf(bootstrap)).list_topics(timeout=timeout)
    except Exception as exc:  # confluent_kafka raises KafkaException with a KafkaError inside
        raise HarnessError(f"the broker at {bootstrap} accepted a connection but did not answer Kafka metadata "
                           f"within {timeout:.0f} s: {exc}") from exc


def probe_kafka(bootstrap: str, timeout: float = 30.0) -> float:
    """Create a topic, produce one record and consume it back. Returns the seconds it took."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    started = time.monotonic()
    admin = AdminClient(kafka_conf(bootstrap))
    if HEALTH_TOPIC not in admin.list_topics(timeout=timeout).topics:
        fut = admin.create_topics([NewTopic(HEALTH_TOPIC, num_partitions=1, replication_factor=1)])[HEALTH_TOPIC]
        try:
            fut.result(timeout=timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise HarnessError(f"the broker at {bootstrap} refused to create a topic: {exc}") from exc
    token = uuid.uuid4().hex.encode()
    delivered: list[object] = []
    producer = Producer(kafka_conf(bootstrap, acks="all"))
    producer.produce(HEALTH_TOPIC, token, partition=0, on_delivery=lambda err, msg: delivered.append(err or msg))
    producer.flush(timeout)
    if not delivered or not hasattr(delivered[0], "offset"):
        raise HarnessError(f"the broker at {bootstrap} did not acknowledge a probe record: {delivered}")
    offset = delivered[0].offset()  # type: ignore[attr-defined]
    consumer = Consumer(kafka_conf(bootstrap, **{"group.id": f"harness-health-{uuid.uuid4().hex[:8]}",
                                                 "enable.auto.commit": False}))
    try:
        consumer.assign([TopicPartition(HEALTH_TOPIC, 0, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error() and msg.value() == token:
                return time.monotonic() - started
    finally:
        consumer.close()
    raise HarnessError(f"a probe record produced to {bootstrap} could not be consumed back within {timeout:.0f} s")


def check_reachable_postgres(dsn: str, timeout: int = 10) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise HarnessError(
            f"cannot connect to PostgreSQL at {redact(dsn)}: {str(exc).strip()}",
            hint="check --postgres-dsn / HARNESS_POSTGRES_DSN, or leave it out to use the embedded server",
        ) from exc


def probe_postgres(dsn: str) -> float:
    """Write a row to a table and read it back. Returns the seconds it took."""
    import psycopg

    started = time.monotonic()
    token = uuid.uuid4().hex
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS harness_health (token text PRIMARY KEY, at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO harness_health (token) VALUES (%s)", (token,))
        conn.commit()
        row = conn.execute("SELECT token FROM harness_health WHERE token = %s", (token,)).fetchone()
        conn.execute("DELETE FROM harness_health WHERE token = %s", (token,))
    if not row:
        raise HarnessError(f"PostgreSQL at {redact(dsn)} lost a row it had just committed")
    return time.monotonic() - started


def redact(dsn: str) -> str:
    """A DSN without its password, for messages."""
    if "://" in dsn and "@" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return dsn
