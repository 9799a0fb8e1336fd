"""The quick scenario end to end through the CLI (baseline engine, to keep the suite short), and its HTML report
opened in headless Chromium: headline table, decision section, every plot image loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from test_report import render_in_chromium, require_chromium

pytestmark = pytest.mark.stack


def test_quick_scenario_report_in_chromium(stack_dir: Path, tmp_path: Path) -> None:
    r = run_cli("run", "scenarios/quick.yaml", "--engines", "baseline", "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr[-3000:]
    [run_dir] = list((tmp_path / "r").iterdir())
    html = run_dir / "report.html"
    assert html.is_file() and (run_dir / "report.md").is_file() and str(html) in r.stdout
    require_chromium()
    loaded, total, dom = render_in_chromium(html, tmp_path, "quick-report.png")
    assert total >= 6 and loaded == total
    assert 'id="headline"' in dom and 'id="decision"' in dom and "meets all SLOs" in dom
