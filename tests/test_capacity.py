"""`harness capacity` on the real stack, one run: a baseline throttled to about 200 records/s by a test-only job
(the slow engine of test_wrong_engine) takes the staircase, and the search brackets the planted knee; a batch
job in the same run is skipped with its reason; every step is in result.json and the capacity report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli, scenario_dict
from test_wrong_engine import SLOW_JOB_PY, engine_py

pytestmark = pytest.mark.stack

THROTTLE = 200      # records per second the slow job reads at most: 20 per call, 0.1 s apart


@pytest.fixture(scope="module")
def capacity_run(stack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    tmp = tmp_path_factory.mktemp("capacity")
    plugins = tmp / "plugins"
    (plugins / "slow").mkdir(parents=True)
    (plugins / "slow" / "engine.py").write_text(engine_py("slow", "The baseline's job, throttled to 200 records/s"))
    (plugins / "slow" / "slow_job.py").write_text(SLOW_JOB_PY)
    scen = tmp / "capacity.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(
        name="capacity", duration="12s", warmup="2s", engines={"slow": {}, "batch": {"interval": "2s"}},
        load={"rate": 100, "keys": 20, "payload_bytes": 120, "heartbeat_interval": "100ms",
              "late": {"fraction": 0.05, "delay": "3s"}})))
    env = {"HARNESS_ENGINE_PATH": os.pathsep.join([str(plugins), str(ROOT / "pipelines")]),
           "PYTHONPATH": str(ROOT)}
    r = run_cli("capacity", str(scen), "--step", "12s", "--max-steps", "8", "--no-confirm", "--results-dir", str(tmp / "r"), env=env,
                timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [run_dir] = list((tmp / "r").iterdir())
    return json.loads((run_dir / "result.json").read_text()), r.stdout + r.stderr, run_dir


def test_staircase_brackets_a_planted_knee(capacity_run: tuple[dict, str, Path]) -> None:
    doc, _, _ = capacity_run
    assert doc["mode"] == "capacity" and doc["status"] == "complete", doc.get("error")
    slow = next(c for c in doc["capacity"] if c["engine"] == "slow")
    assert slow["status"] == "complete", slow.get("error")
    steps = slow["steps"]
    assert [s["rate"] for s in steps[:2]] == [100, 200] and steps[0]["phase"] == "doubling"
    low, high = slow["sustainable_rate"], slow["bracket_high"]
    # the job reads at most THROTTLE records/s, heartbeats included: it cannot sustain that many events
    assert low is not None and high is not None and 100 <= low < THROTTLE and high <= THROTTLE, (low, high)
    assert slow["bracket_narrow"] and high - low < 0.10 * low
    for s in steps:
        assert s["events_sent"] > 0 and s["windows_expected"] > 0
        if s["rate"] >= THROTTLE:
            assert s["verdict"] == "not sustainable" and "did not keep up" in s["reason"], s["reason"]
            assert s["keeping_up"]["kept_up"] is False and s["drained_s"] is not None
        if s["verdict"] == "sustainable":
            # an exact answer, its latency within the bound, and the CPU it took
            assert s["windows_exact"] == s["windows_expected"]
            assert s["window_close_ms"]["p99"] <= slow["latency_bound_ms"]
            assert s["cpu_seconds_per_million"] > 0 and s["cores"]["generator"] > 0
    assert slow["latency_bound_metric"] == "window_close" and slow["latency_bound_ms"] == 500 + 5000


def test_interval_engine_is_skipped_with_its_reason(capacity_run: tuple[dict, str, Path]) -> None:
    doc, _, _ = capacity_run
    batch = next(c for c in doc["capacity"] if c["engine"] == "batch")
    assert batch["status"] == "skipped" and "backlog mode" in batch["reason"] and not batch["steps"]


def test_capacity_report_and_summary(capacity_run: tuple[dict, str, Path]) -> None:
    doc, output, run_dir = capacity_run
    slow = next(c for c in doc["capacity"] if c["engine"] == "slow")
    md = (run_dir / "report.md").read_text()
    assert "## Capacity" in md and f"| slow | complete | {slow['sustainable_rate']:,.0f} |" in md
    assert slow["bound_by"] == "engine"
    assert sum(md.count(f"| {p} |") for p in ("doubling", "bisection", "halving", "confirmation")) == len(slow["steps"])
    html = (run_dir / "report.html").read_text()
    assert "id='capacity'" in html and "data:image/png;base64," in html
    assert f"slow: sustainable {slow['sustainable_rate']:,.0f} events/s" in output and "closed by the engine" in output
    assert "step 1 (doubling): 100 events/s" in output                 # progress while it runs


def test_bad_step_is_refused_before_anything_starts(tmp_path: Path) -> None:
    r = run_cli("capacity", str(ROOT / "scenarios" / "quick.yaml"), "--step", "5s", "--results-dir", str(tmp_path))
    assert r.returncode == 2 and "--step must be at least 13 s" in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())
