"""The quick scenario end to end through the CLI (baseline engine, to keep the suite short): the engine read
the load at the rate it was acknowledged (within 5%, over 30 s), and its HTML report opened in headless
Chromium: headline table, decision section, every plot image loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
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
    html = run_dir / "report.html"
    assert html.is_file() and (run_dir / "report.md").is_file() and str(html) in r.stdout
    require_chromium()
    loaded, total, dom = render_in_chromium(html, tmp_path, "quick-report.png")
    assert total >= 6 and loaded == total
    assert 'id="headline"' in dom and 'id="decision"' in dom and "meets all SLOs" in dom
