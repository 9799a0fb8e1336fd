"""Flink beyond the mini-cluster: a local standalone session cluster, and a start that fails cleanly."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from conftest import run_cli, scenario_dict
from harness.run import RunOptions, run

pytestmark = pytest.mark.stack


def _tiny(tmp: Path, **extra: Any) -> Path:
    d = scenario_dict(**{"name": "flink-modes", "duration": "4s",
                         "load": {"rate": 300, "keys": 30, "payload_bytes": 120, "heartbeat_interval": "100ms",
                                  "malformed_fraction": 0.02}, **extra})
    p = tmp / "tiny.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _left(marker: str) -> list[list[str]]:
    return [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


def test_session_cluster_mode(stack_dir: Path, tmp_path: Path) -> None:
    """A session cluster run with two faults. Its TaskManager is killed mid-load (kill_worker): the harness starts
    a replacement and Flink restarts the job from its last checkpoint. Later the whole cluster and the client
    are killed (kill_job, policy checkpoint): the harness starts a new session cluster and submits the job to it
    again from the newest checkpoint. The final table is exact."""
    # windows of 250 ms and checkpoints every 3 s, the kill 4.5 s in: windows land between the last checkpoint
    # and the kill unless that checkpoint fell in the last quarter second before it (about 1 run in 12)
    run_dir = run(RunOptions(_tiny(tmp_path, duration="19s",
                                   query={"window": {"type": "tumbling", "size": "250ms"}, "watermark_delay": "500ms"},
                                   faults=[{"kind": "kill_worker", "at": "4500ms", "restart_after": "2s"},
                                           {"kind": "kill_job", "at": "16s", "restart_after": "1s",
                                            "restart_policy": "checkpoint"}]),
                             results_dir=tmp_path / "results", engines=["flink"],
                             engine_options=["flink.mode=session", "flink.sink_flush_interval=200ms",
                                             "flink.checkpoint_interval=3s",
                                             "flink.warmup_batches=0"]))   # the contract runs check the warm-up
    doc = json.loads((run_dir / "result.json").read_text())
    [e] = doc["engines"]
    assert e["status"] == "complete", e.get("error")
    c = e["windows"]["correctness"]
    assert c["exact"] == c["expected"] > 0 and c["wrong"] == c["missing"] == c["extra"] == 0
    assert e["changed_settings"]["mode"] == "session"
    # The JobManager and TaskManager JVMs are measured too: not children of the harness, found by PID file.
    assert e["resources"]["processes_seen"] >= 4     # the JobManager, both TaskManagers, the client
    m = e["engine_metrics"]
    assert m["state"] == "RUNNING", m
    kw, kj = e["faults"]
    assert kw["kind"] == "kill_worker" and kw["error"] is None and kw["skipped"] is None, kw
    assert kw["killed_pids"] and kw["engine_survived"] is True and kw["downtime_ms"] >= 2000, kw
    assert kw["recovery_ms"] is not None, kw       # seen to recover: lag and latency back within bounds
    # kill_job took the client, the JobManager and the TaskManager; the new cluster's JVMs are in the registry
    assert kj["kind"] == "kill_job" and kj["error"] is None and kj["skipped"] is None, kj
    assert len(kj["killed_pids"]) >= 3 and kj["registered_pids"], kj
    assert not set(kj["registered_pids"]) & set(kj["killed_pids"]), kj
    assert kj["fired_at_ms"] > kw["ended_at_ms"], (kw, kj)     # the two did not overlap
    [killed_job] = m["killed_jobs"]
    [restored_kj] = m["restored_checkpoints"]
    assert killed_job and killed_job != m["job_id"]        # submitted again: a new job, from the old one's state
    assert restored_kj["trigger_ms"] and restored_kj["trigger_ms"] < kj["fired_at_ms"], restored_kj
    # Each restored checkpoint replays what came after it (the claim the course notes make). Every duplicate is a
    # window first written after the trigger of the checkpoint a fault restored and before that fault, and every
    # window first written after that checkpoint completed and before the kill is written again. Whether any was
    # depends on where a kill fell between checkpoints: in most runs some were (they are the duplicates).
    [kill] = m["worker_kills"]
    restored = kill["restored"]
    assert restored and restored["trigger_ms"] and restored["completed_ms"], kill
    assert e["windows"]["duplicates"] == kw["duplicates_after"] + kj["duplicates_after"], (e["windows"], kw, kj)
    import pandas as pd

    log = pd.read_csv(run_dir / "raw" / e["load_id"] / "sink_log.csv")
    firsts = log.groupby(["key", "window_start", "window_end"])["inserted_at_ms"].agg(["min", "count"])
    again = firsts[firsts["count"] > 1]
    spans = [(restored["trigger_ms"], kill["killed_at_ms"]), (restored_kj["trigger_ms"], kj["fired_at_ms"])]
    inside = pd.Series(False, index=again.index)
    for lo, hi in spans:
        inside |= (again["min"] > lo) & (again["min"] < hi)
    assert inside.all(), (spans, again[~inside])
    after = firsts[(firsts["min"] > restored["completed_ms"]) & (firsts["min"] < kill["killed_at_ms"])]
    assert (after["count"] > 1).all(), (restored, kill["killed_at_ms"], after)
    assert int((again["count"] - 1).sum()) == e["windows"]["duplicates"]
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
