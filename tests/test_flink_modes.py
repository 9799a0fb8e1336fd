"""Flink beyond the mini-cluster: a local standalone session cluster, and a start that fails cleanly."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import run_cli, scenario_dict
from harness.run import RunOptions, run

pytestmark = pytest.mark.stack


def _tiny(tmp: Path) -> Path:
    d = scenario_dict(name="flink-modes", duration="4s",
                      load={"rate": 300, "keys": 30, "payload_bytes": 120, "heartbeat_interval": "100ms",
                            "malformed_fraction": 0.02})
    p = tmp / "tiny.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _left(marker: str) -> list[list[str]]:
    return [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


def test_session_cluster_mode(stack_dir: Path, tmp_path: Path) -> None:
    run_dir = run(RunOptions(_tiny(tmp_path), results_dir=tmp_path / "results", engines=["flink"],
                             engine_options=["flink.mode=session", "flink.sink_flush_interval=200ms",
                                             "flink.warmup_batches=0"]))   # the contract runs check the warm-up
    doc = json.loads((run_dir / "result.json").read_text())
    [e] = doc["engines"]
    assert e["status"] == "complete", e.get("error")
    c = e["windows"]["correctness"]
    assert c["exact"] == c["expected"] > 0 and e["windows"]["duplicates"] == 0
    assert e["changed_settings"]["mode"] == "session"
    # The JobManager and TaskManager JVMs are measured too: not children of the harness, found by PID file.
    assert e["resources"]["processes_seen"] >= 3
    assert e["engine_metrics"]["state"] == "RUNNING"
    assert not _left(doc["run_id"])


def test_engine_that_fails_to_start(stack_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens: the job cannot be submitted
        r = run_cli("run", str(_tiny(tmp_path)), "--engines", "flink", "-o", "flink.mode=remote",
                    "-o", f"flink.jobmanager=127.0.0.1:{port}", "--results-dir", str(tmp_path / "results"))
    assert r.returncode == 1, r.stderr
    assert "flink" in r.stderr and "exited while starting" in r.stderr
    [run_dir] = list((tmp_path / "results").iterdir())
    doc = json.loads((run_dir / "result.json").read_text())
    assert doc["status"] == "failed" and doc["engines"][0]["status"] == "failed"
    assert not _left(doc["run_id"])
