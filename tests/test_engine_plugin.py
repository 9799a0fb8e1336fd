"""An engine is one folder: a throwaway engine outside the repository, a few lines of subclassing, found through
HARNESS_ENGINE_PATH as the only engine, runs through `harness run` and passes the contract tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli, scenario_dict

pytestmark = pytest.mark.stack

ENGINE_PY = '''"""A throwaway engine: the baseline's job under another name."""
from pipelines.baseline.engine import BaselineEngine


class EchoEngine(BaselineEngine):
    name = "echo"
    display_name = "Echo (a plug-in)"
    role = "option"
    colour = None
    description = "A plug-in engine, registered from a folder outside the project"


ENGINE = EchoEngine
'''


@pytest.fixture(scope="module")
def engine_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plugins")
    (root / "echo").mkdir()
    (root / "echo" / "engine.py").write_text(ENGINE_PY)
    return root


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


def test_plugin_engine_runs_and_passes_the_contract(stack_dir: Path, engine_path: Path, tmp_path: Path) -> None:
    before = _git_status()
    env = {"HARNESS_ENGINE_PATH": str(engine_path)}
    listed = run_cli("engines", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {m for m in re.findall(r"^│ (\w+) ", listed.stdout, re.M)} == {"echo"}, listed.stdout

    scen = tmp_path / "echo.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(name="echo", duration="4s", engines={"echo": {}})))
    r = run_cli("run", str(scen), "--results-dir", str(tmp_path / "r"), env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    [run_dir] = list((tmp_path / "r").iterdir())
    doc = json.loads((run_dir / "result.json").read_text())
    [e] = doc["engines"]
    c = e["windows"]["correctness"]
    assert e["engine"] == "echo" and e["display_name"] == "Echo (a plug-in)" and e["status"] == "complete"
    assert c["expected"] > 0 and c["exact"] == c["expected"]
    assert (run_dir / "report.html").is_file()

    # The same contract tests every shipped engine passes, with the plug-in as the only engine (one window type
    # keeps it short; the window types differ only in the query, which this engine inherits).
    contract = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_engine_contract.py"),
         "-k", "not sliding and not session and not discovered"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, **env, "HARNESS_STACK_DIR": str(tmp_path / "stack")})
    assert contract.returncode == 0, contract.stdout[-4000:] + contract.stderr[-2000:]
    results = [ln for ln in contract.stdout.splitlines() if "::" in ln and (" PASSED" in ln or " FAILED" in ln
                                                                           or " SKIPPED" in ln or " ERROR" in ln)]
    echo = [ln for ln in results if "echo" in ln]
    assert echo and all(" PASSED" in ln for ln in echo), "\n".join(results)
    assert not any(n in ln for ln in results for n in ("[baseline", "[flink", "[spark", "[batch"))
    assert any("test_live_exact_and_counted" in ln for ln in echo)
    # Nothing was added to the project for it: no folder, no file naming it, no change to a tracked file.
    assert not (ROOT / "pipelines" / "echo").exists() and "echo" not in _git_status()
    assert not [ln for ln in _git_status().splitlines() if ln not in before.splitlines() and not ln.startswith("??")], \
        "a tracked file changed during the run"
