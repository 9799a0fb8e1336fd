"""One embedded stack per test session (real Kafka broker, real PostgreSQL), in a private stack folder.

pytest's temporary folders are root-only (0700), so as root this also exercises the relocation of
PostgreSQL's data for the unprivileged service user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests measure no speed: no wait for idle CPUs before an engine starts. And a noise band this machine measured
# (results/bench-noise-latest.json) must not change the verdicts a test asserts, so results go elsewhere.
os.environ["HARNESS_IDLE_WAIT"] = "0"
os.environ["HARNESS_RESULTS_DIR"] = tempfile.mkdtemp(prefix="harness-test-results-")
HARNESS = [sys.executable, "-m", "harness"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


@dataclass
class Svc:
    bootstrap: str
    dsn: str


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("stack")
    os.environ["HARNESS_STACK_DIR"] = str(d)
    os.environ.pop("HARNESS_BOOTSTRAP_SERVERS", None)
    os.environ.pop("HARNESS_POSTGRES_DSN", None)
    up = run_cli("stack", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    yield d
    down = run_cli("stack", "down", "--purge")
    assert down.returncode == 0, down.stdout + down.stderr


def current_svc(stack_dir: Path) -> Svc:
    """The session stack's addresses as they are now (a test may restart it)."""
    from harness.stack.embedded import EmbeddedStack

    st = EmbeddedStack(stack_dir)
    assert st.bootstrap and st.dsn, "the session stack is not running"
    return Svc(st.bootstrap, st.dsn)


@pytest.fixture
def svc(stack_dir: Path) -> Svc:
    return current_svc(stack_dir)


def scenario_dict(**overrides: Any) -> dict[str, Any]:
    """A short scenario for tests; nested dicts in overrides replace whole sections."""
    base: dict[str, Any] = {
        "name": "test",
        "seed": 7,
        "duration": "4s",
        "topic": {"partitions": 2},
        "load": {"rate": 400, "keys": 20, "payload_bytes": 120, "heartbeat_interval": "100ms"},
        "query": {"window": {"type": "tumbling", "size": "1s"}, "watermark_delay": "500ms"},
    }
    base.update(overrides)
    return base


def assert_complete_and_exact(e: dict[str, Any]) -> dict[str, Any]:
    """An engine run of result.json finished and its final table is the promised answer; returns the counts."""
    assert e["status"] == "complete", e.get("error")
    c = e["windows"]["correctness"]
    assert c["exact"] == c["expected"] > 0 and c["wrong"] == c["missing"] == c["extra"] == 0, c
    return c


Record = tuple[int, int, bytes | None, bytes | None]  # partition, offset, key, value


def consume_topic(bootstrap: str, topic: str, partitions: int) -> list[Record]:
    """Every record in the topic up to its end offsets now, read by a consumer of the test's own."""
    from collections import defaultdict

    from confluent_kafka import Consumer, TopicPartition

    from harness.stack.probes import kafka_conf

    c = Consumer(kafka_conf(bootstrap, **{"group.id": "test-reader", "enable.auto.commit": False}))
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[Record] = []
    got: dict[int, int] = defaultdict(int)
    try:
        while any(got[p] < ends[p] for p in ends):
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            out.append((m.partition(), m.offset(), m.key(), m.value()))
            got[m.partition()] = m.offset() + 1
    finally:
        c.close()
    return out


# The kinds classify() returns for records that are well-formed (they count in their window).
WELL_FORMED = ("well_formed", "extra_fields", "deep_nesting_extra", "near_size_limit")
LAYOUT = {"event_id", "key", "value", "event_time", "pad", "sent_at"}   # the generator's own fields


def classify(value: bytes | None, size_limit: int | None = None) -> str:
    """A record's kind by the README rule, applied here with orjson rather than harness.records: "heartbeat",
    one of WELL_FORMED, or the malformed kind the generator meant (its MALFORMED_KINDS and load.bad_input's)."""
    import orjson

    if value is None:
        return "tombstone"
    if value == b"":
        return "empty_value"
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "invalid_json"
    if not isinstance(obj, dict) or not {"event_id", "key", "value", "event_time"} <= obj.keys():
        return "missing_field"
    if obj["event_time"] is None:
        return "null_event_time"
    if not isinstance(obj["key"], str):
        return "key_not_string"
    if isinstance(obj["value"], dict):
        return "deep_nesting"
    if type(obj["value"]) is not int:
        return "value_not_integer"
    if type(obj["event_time"]) is not int:
        return "event_time_not_integer"
    if obj["key"] == "__heartbeat__":
        return "heartbeat"
    if type(obj.get("sent_at")) is int and obj["event_time"] - obj["sent_at"] > 12 * 3_600_000:
        return "far_future"
    if "nest" in obj:
        return "deep_nesting_extra"
    if obj.keys() - LAYOUT:
        return "extra_fields"
    if size_limit is not None and len(value) > size_limit - 2048:
        return "near_size_limit"
    return "well_formed"
