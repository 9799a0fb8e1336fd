"""The quick scenario end to end through the CLI (baseline engine, to keep the suite short): the engine read
the load at the rate it was acknowledged (within 5%, over 30 s), the notebook frames of the run hold its
figures, and its HTML report opened in headless Chromium: headline table, decision section, every plot image
loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from harness import results
from harness.results.frames import RUN_COLUMNS
from test_report import render_in_chromium, require_chromium

pytestmark = pytest.mark.stack


def test_quick_scenario_report_in_chromium(stack_dir: Path, tmp_path: Path) -> None:
    r = run_cli("run", "scenarios/quick.yaml", "--engines", "baseline", "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr[-3000:]
    [run_dir] = list((tmp_path / "r").iterdir())
    [e] = json.loads((run_dir / "result.json").read_text())["engines"]
    assert e["engine"] == "baseline" and e["status"] == "complete", e.get("error")
    ratio = e["throughput"]["in_vs_acked"]  # records read per second over records acknowledged per second
    assert ratio is not None and abs(ratio - 1) <= 0.05, e["throughput"]
    # the notebook frames of the same run (docs/results.md lists their columns)
    f = results.frames(run_dir)
    assert list(f.runs.columns) == RUN_COLUMNS and len(f.runs) == 1
    assert f.runs.loc[0, "latency_p99_ms"] == e["windows"]["event_to_result_ms"]["p99"]
    assert f.runs.loc[0, "windows_exact"] == e["windows"]["correctness"]["exact"]
    per_window = pd.read_csv(run_dir / "raw" / e["load_id"] / "windows.csv")
    assert len(f.windows) == len(per_window) == e["windows"]["correctness"]["expected"]
    assert {"engine", "repeat", "key", "window_end", "event_to_result_ms"} <= set(f.windows.columns)
    assert len(f.timeseries) == len(e["timeseries"]) and f.timeseries["t_s"].is_monotonic_increasing
    assert f.loads["sent"].sum() == 15000 and len(f.loads) == 30
    html = run_dir / "report.html"
    assert html.is_file() and (run_dir / "report.md").is_file() and str(html) in r.stdout
    require_chromium()
    loaded, total, dom = render_in_chromium(html, tmp_path, "quick-report.png")
    assert total >= 6 and loaded == total
    assert 'id="headline"' in dom and 'id="decision"' in dom and "meets all SLOs" in dom
