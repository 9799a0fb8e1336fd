"""A wrong engine is judged: a test engine built from the baseline loses every window of one key and adds 1 to
the sum of every window of another. Its sink goes quiet, the run settles, and it fails max_wrong_windows and
max_missing_windows with exactly the planted counts, is ranked last on correctness, and its report lists the
bad windows with expected and got values."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_cli, scenario_dict
from harness import results
from harness.report import decision as D
from harness.report import verdicts as M
from harness.report.data import RunData

pytestmark = pytest.mark.stack

LOST, CORRUPTED = "k000003", "k000004"

ENGINE_PY = '''"""The baseline, with a sink that loses one key's windows and corrupts another's (a test engine)."""
import sys
from pathlib import Path

from harness.engines.launcher import job_config
from pipelines.baseline.engine import BaselineEngine


class LossyEngine(BaselineEngine):
    name = "lossy"
    display_name = "Lossy (test engine)"
    role = "option"
    colour = None
    description = "The baseline's job with windows lost and corrupted on their way to the sink"

    def start(self, ctx):
        self.job.launch([sys.executable, str(Path(__file__).with_name("lossy_job.py"))], ctx,
                        job_config(ctx, self.name, poll_batch=ctx.settings.poll_batch))


ENGINE = LossyEngine
'''

JOB_PY = f'''"""The baseline job, whose fired windows lose key {LOST} and gain 1 in the sum of key {CORRUPTED}."""
import sys

from pipelines.baseline import job

_fire = job.Windows.fire


def fire(self, watermark):
    out = []
    for row in _fire(self, watermark):
        if row[0] == "{LOST}":
            continue
        if row[0] == "{CORRUPTED}":
            row = (*row[:4], row[4] + 1, *row[5:])   # key, start, end, cnt, sum, ...
        out.append(row)
    return out


job.Windows.fire = fire
sys.exit(job.main(sys.argv[1]))
'''


def test_wrong_engine_is_judged_and_ranked_last(stack_dir: Path, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "lossy").mkdir(parents=True)
    (plugins / "lossy" / "engine.py").write_text(ENGINE_PY)
    (plugins / "lossy" / "lossy_job.py").write_text(JOB_PY)
    scen = tmp_path / "wrong.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(
        name="wrong", engines={"lossy": {}, "baseline": {}},
        slo={"max_wrong_windows": 0, "max_missing_windows": 0, "p99_latency": "10s"})))
    env = {"HARNESS_ENGINE_PATH": os.pathsep.join([str(plugins), str(ROOT / "pipelines")]),
           "PYTHONPATH": str(ROOT)}
    r = run_cli("run", str(scen), "--results-dir", str(tmp_path / "r"), env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]   # a wrong engine is a verdict, not a failed run
    [run_dir] = list((tmp_path / "r").iterdir())
    doc = results.load(run_dir)
    lossy, base = (next(e for e in doc.engines if e.engine == n) for n in ("lossy", "baseline"))
    assert base.status == "complete" and lossy.status == "settled", (lossy.status, lossy.error)
    assert lossy.error and "judged as it stands" in lossy.error

    # the planted counts, from the ground truth written beside the result
    expected = pd.read_csv(run_dir / "raw" / lossy.load_id / "expected_on_time.csv")
    planted_missing = int((expected["key"] == LOST).sum())
    planted_wrong = int((expected["key"] == CORRUPTED).sum())
    assert planted_missing > 0 and planted_wrong > 0
    assert lossy.windows is not None
    c = lossy.windows.correctness
    assert (c.wrong, c.missing, c.extra) == (planted_wrong, planted_missing, 0)
    assert c.exact == c.expected - planted_wrong - planted_missing

    bad = lossy.windows.bad_windows
    assert len(bad) == min(10, planted_wrong + planted_missing)
    assert [b.key for b in bad] == sorted(b.key for b in bad)     # key order: the lost key comes first
    for b in bad:
        assert (b.kind, b.key) in (("missing", LOST), ("wrong", CORRUPTED))
        if b.kind == "missing":
            assert b.got is None and b.expected is not None
        else:
            assert b.got is not None and b.expected is not None
            assert b.got.sum == b.expected.sum + 1 and b.got.cnt == b.expected.cnt

    run = RunData.load(run_dir)
    s = D.summarize(run)
    checks = {(ch.field, ch.engine): ch for ch in s.checks}
    assert checks["max_wrong_windows", "lossy"].verdict == D.FAIL
    assert checks["max_wrong_windows", "lossy"].figure == planted_wrong
    assert checks["max_missing_windows", "lossy"].verdict == D.FAIL
    assert checks["max_missing_windows", "lossy"].figure == planted_missing
    assert checks["max_wrong_windows", "baseline"].verdict == D.PASS
    assert s.verdicts["lossy"].status == "misses" and s.verdicts["baseline"].status == "meets all SLOs"
    bad_rank = next(rk for rk in s.rankings if rk.metric is M.BAD)
    assert bad_rank.best == ["baseline"] and bad_rank.others["lossy"].verdict != "tie"
    assert bad_rank.figures["lossy"].mid == planted_wrong + planted_missing

    md = (run_dir / "report.md").read_text()
    assert "## Bad windows" in md and f"| lossy #0 | wrong ⚠ | {CORRUPTED} |" in md
    assert "| `max_wrong_windows` | `windows.correctness.wrong` | lossy | **fail** |" in md
