"""The embedded stack on the real broker and the real PostgreSQL: serving, stopping, reuse, bad input."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import Svc, run_cli, scenario_dict

pytestmark = pytest.mark.stack


def _stack_processes(stack_dir: Path) -> list[psutil.Process]:
    marker = str(stack_dir)
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid():
                found.append(p)
        except psutil.NoSuchProcess:
            continue
    return found


def _health_stats(dsn: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables "
                           "WHERE relname = 'harness_health'").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_up_serves_both(svc: Svc) -> None:
    """`stack up` already returned in the fixture; it must have left both serving. Each probe is checked by what
    it left behind, seen by a client of the test's own: the Kafka probe's record in its topic, and the PostgreSQL
    probe's insert and delete in the server's table statistics."""
    import re

    from confluent_kafka import Consumer, TopicPartition

    from conftest import consume_topic
    from harness.stack import probes

    def end_offset() -> int:
        c = Consumer(probes.kafka_conf(svc.bootstrap, **{"group.id": "test-health"}))
        try:
            return c.get_watermark_offsets(TopicPartition(probes.HEALTH_TOPIC, 0), timeout=10)[1]
        except Exception:  # the topic does not exist yet
            return 0
        finally:
            c.close()

    before = end_offset()
    probes.probe_kafka(svc.bootstrap)
    records = consume_topic(svc.bootstrap, probes.HEALTH_TOPIC, 1)
    assert len(records) == before + 1 and re.fullmatch(rb"[0-9a-f]{32}", records[-1][3] or b""), records[-3:]

    ins, dels = _health_stats(svc.dsn)
    probes.probe_postgres(svc.dsn)
    deadline = time.monotonic() + 10  # a backend reports its table statistics when it ends
    while _health_stats(svc.dsn) != (ins + 1, dels + 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _health_stats(svc.dsn) == (ins + 1, dels + 1)
    r = run_cli("stack", "status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("running") == 2


def test_postgres_runs_unprivileged(stack_dir: Path) -> None:
    from harness.stack.embedded import EmbeddedStack

    pid = EmbeddedStack(stack_dir).state.postgres["pid"]
    user = psutil.Process(int(pid)).username()  # type: ignore[arg-type]
    assert user != "root"


def test_down_leaves_nothing_and_up_reuses_storage(svc: Svc, stack_dir: Path) -> None:
    from confluent_kafka.admin import AdminClient

    from harness.stack import probes, topics
    from harness.stack.embedded import EmbeddedStack

    topics.create_topic(svc.bootstrap, "reuse-marker", 1)
    with __import__("psycopg").connect(svc.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS reuse_marker (x int)")
    pg_pid = int(EmbeddedStack(stack_dir).state.postgres["pid"])  # type: ignore[arg-type]

    down = run_cli("stack", "down")
    assert down.returncode == 0, down.stderr
    assert "kafka" in down.stdout and "postgres" in down.stdout
    assert not _stack_processes(stack_dir), "a process of the stack outlived `stack down`"
    assert not psutil.pid_exists(pg_pid) or psutil.Process(pg_pid).status() == psutil.STATUS_ZOMBIE

    up = run_cli("stack", "up")
    assert up.returncode == 0, up.stderr
    assert "existing storage" in up.stderr and "existing data" in up.stderr
    st = EmbeddedStack(stack_dir)
    assert "reuse-marker" in AdminClient(probes.kafka_conf(str(st.bootstrap))).list_topics(timeout=10).topics
    with __import__("psycopg").connect(str(st.dsn)) as conn:
        assert conn.execute("SELECT to_regclass('reuse_marker')").fetchone()[0] is not None


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("stack", "up", "--kafka-port", str(port), env={"HARNESS_STACK_DIR": str(tmp_path / "st")})
    assert r.returncode == 2
    assert f"port {port}" in r.stderr and "already in use" in r.stderr
    assert not _stack_processes(tmp_path / "st")


def test_missing_java_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)
    env["HARNESS_STACK_DIR"] = str(tmp_path / "st")
    import subprocess

    r = subprocess.run([sys.executable, "-m", "harness", "stack", "up"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 2
    assert "java not found" in r.stderr
    assert not _stack_processes(tmp_path / "st")


def test_unreachable_external_broker_exits_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        r = run_cli("stack", "status", "--bootstrap-servers", f"127.0.0.1:{port}")
    assert r.returncode == 2
    assert "cannot reach the Kafka broker" in r.stderr and str(port) in r.stderr


def test_unreachable_external_postgres_exits_2() -> None:
    r = run_cli("stack", "status", "--postgres-dsn", "postgresql://nobody@127.0.0.1:1/none")
    assert r.returncode == 2
    assert "cannot connect to PostgreSQL" in r.stderr


def test_external_services_are_honoured(svc: Svc, tmp_path: Path) -> None:
    """A run pointed at external services starts no embedded stack and writes where it was told."""
    import json

    import psycopg
    import yaml

    empty_stack = tmp_path / "unused-stack"
    scen = tmp_path / "tiny.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(name="tiny-external", duration="2s")))
    r = run_cli("run", str(scen), "--bootstrap-servers", svc.bootstrap, "--postgres-dsn", svc.dsn,
                "--results-dir", str(tmp_path / "results"), env={"HARNESS_STACK_DIR": str(empty_stack)})
    assert r.returncode == 0, r.stderr
    assert not (empty_stack / "stack.json").exists() and not _stack_processes(empty_stack)
    [run_dir] = list((tmp_path / "results").iterdir())
    doc = json.loads((run_dir / "result.json").read_text())
    assert doc["status"] == "complete"
    assert doc["services"]["kafka"] == "external" and doc["services"]["bootstrap"] == svc.bootstrap
    load_id = doc["loads"][0]["load_id"]
    with psycopg.connect(svc.dsn) as conn:
        n = conn.execute("SELECT count(*) FROM harness_expected_windows WHERE load_id = %s", (load_id,)).fetchone()[0]
    assert n == doc["loads"][0]["ground_truth"]["windows_complete"] + doc["loads"][0]["ground_truth"]["windows_on_time"]
    assert n > 0
