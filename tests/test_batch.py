"""The batch engine on the real stack: a run killed before its commit and started again gives no duplicates
and no loss; late data inside the look-back is recomputed; empty intervals are handled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from conftest import ROOT, current_svc, scenario_dict
from harness.run import RunHooks, RunOptions, run, run_load
from harness.scenario import parse_scenario
from harness.stack import topics
from harness.storage import sink_tables as tables

pytestmark = pytest.mark.stack


def _config(tmp: Path, svc, load_id: str, topic: str, started_ms: int, **over: object) -> Path:
    cfg = {"bootstrap": svc.bootstrap, "topic": topic, "partitions": 2, "dsn": svc.dsn, "load_id": load_id,
           "repeat": 0, "window": {"type": "tumbling", "size_ms": 1000, "slide_ms": None, "gap_ms": None},
           "grace_ms": 500, "lookback_ms": 3_600_000, "interval_ms": 1000,
           "status_file": str(tmp / "status.json"), "started_ms": started_ms, **over}
    p = tmp / f"{load_id}.json"
    p.write_text(json.dumps(cfg))
    return p


def _once(cfg: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipelines.batch.job", "once", str(cfg)], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_empty_interval_then_killed_run_then_restart(stack_dir: Path, tmp_path: Path) -> None:
    svc = current_svc(stack_dir)
    started = time.time_ns() // 1_000_000
    # An empty interval: a fresh topic with nothing in it.
    topics.create_topic(svc.bootstrap, f"batch-empty-{started}", 2)
    p = _once(_config(tmp_path, svc, f"batch-empty-{started}", f"batch-empty-{started}", started))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) | {"offsets": None} == {
        "records": 0, "malformed": 0, "late_dropped": 0, "emitted": 0, "offsets": None}

    s = parse_scenario(scenario_dict(name="batch-kill", duration="3s",
                                     load={"rate": 300, "keys": 20, "payload_bytes": 100, "heartbeat_interval": "100ms",
                                           "malformed_fraction": 0.05}))
    load = run_load(s, svc.bootstrap, svc.dsn, run_id="t-batch", load_id=f"t-batch-{started}", engine="batch",
                    repeat=0, results=None, hooks=RunHooks())
    cfg = _config(tmp_path, svc, load.load_id, load.topic, started)
    killed = _once(cfg, {"HARNESS_BATCH_STALL_BEFORE_COMMIT_S": "60"})
    stalled = tmp_path / "stalled"
    deadline = time.monotonic() + 120
    while not stalled.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stalled.exists(), killed.stderr.read() if killed.stderr else ""
    killed.send_signal(signal.SIGKILL)  # rows written, transaction open: the hardest moment to die
    killed.wait(30)
    with psycopg.connect(svc.dsn) as conn:
        assert tables.log_rows_since(conn, load.load_id) == 0 and tables.count_malformed(conn, load.load_id) == (0, 0)

    again = _once(cfg)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    with psycopg.connect(svc.dsn) as conn:
        log = tables.read_log(conn, load.load_id)
        expected = tables.read_expected(conn, load.load_id, "complete")
        malformed = tables.count_malformed(conn, load.load_id)
    assert len(log) == len(log.drop_duplicates(["key", "window_start", "window_end"]))  # no duplicates
    got = {(r.key, r.window_start, r.window_end, r.cnt, r.sum, r.min, r.max) for r in log.itertuples(index=False)}
    want = {(r.key, r.window_start, r.window_end, r.cnt, r.sum, r.min, r.max) for r in expected.itertuples(index=False)}
    assert got == want  # no loss
    assert malformed == (load.truth.counts["malformed"],) * 2 and malformed[0] > 0   # once each, no replay
    # A third run finds nothing new and emits nothing again.
    third = _once(cfg)
    out, err = third.communicate(timeout=120)
    assert third.returncode == 0 and json.loads(out.strip().splitlines()[-1])["emitted"] == 0


def test_late_data_inside_lookback_is_recomputed(stack_dir: Path, tmp_path: Path) -> None:
    d = scenario_dict(name="batch-late", duration="12s",
                      load={"rate": 300, "keys": 10, "payload_bytes": 100, "heartbeat_interval": "100ms",
                            "late": {"fraction": 0.05, "delay": "6s"}},
                      engines={"batch": {"interval": "2s", "lookback": "1m"}})
    f = tmp_path / "late.yaml"
    f.write_text(yaml.safe_dump(d))
    run_dir = run(RunOptions(f, results_dir=tmp_path / "r", engines=["batch"]))
    doc = json.loads((run_dir / "result.json").read_text())
    [e] = doc["engines"]
    assert e["status"] == "complete", e.get("error")
    assert e["promised_answer"] == "complete"
    w = e["windows"]
    assert w["correctness"]["exact"] == w["correctness"]["expected"] and w["correctness"]["extra"] == 0
    assert w["re_emissions"] > 0 and w["duplicates"] == 0 and w["late_events_dropped"] == 0
