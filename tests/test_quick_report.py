"""The quick scenario end to end through the CLI (baseline engine, to keep the suite short), and its HTML report
opened in headless Chromium: headline table, decision section, every plot image loaded."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from test_report import CHROMIUM, _chromium

pytestmark = pytest.mark.stack


def test_quick_scenario_report_in_chromium(stack_dir: Path, tmp_path: Path) -> None:
    r = run_cli("run", "scenarios/quick.yaml", "--engines", "baseline", "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr[-3000:]
    [run_dir] = list((tmp_path / "r").iterdir())
    html = run_dir / "report.html"
    assert html.is_file() and (run_dir / "report.md").is_file() and str(html) in r.stdout
    if not CHROMIUM.exists():
        msg = f"{CHROMIUM} is missing: run `make setup` (it installs Debian's chromium package)"
        if os.environ.get("CI") or os.environ.get("HARNESS_REQUIRE_CHROMIUM"):
            pytest.fail(msg)
        pytest.skip(msg)
    dom = _chromium(html.resolve().as_uri(), tmp_path / "profile", "--dump-dom", "--virtual-time-budget=5000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert loaded and total and int(total.group(1)) >= 6 and loaded.group(1) == total.group(1), body.group(0)
    assert 'id="headline"' in dom.stdout and 'id="decision"' in dom.stdout and "meets all SLOs" in dom.stdout
    shot = tmp_path / "quick.png"
    res = _chromium(html.resolve().as_uri(), tmp_path / "profile-shot", f"--screenshot={shot}",
                    "--window-size=1400,3000", "--hide-scrollbars")
    assert res.returncode == 0 and shot.is_file()
    (ROOT / "test-output").mkdir(exist_ok=True)
    shutil.copyfile(shot, ROOT / "test-output" / "quick-report.png")
