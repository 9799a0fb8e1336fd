"""Verdicts on engines that misbehave, from one run of four engines:

- a wrong engine is judged: a test engine built from the baseline loses every window of one key and adds 1 to
  the sum of every window of another. Its sink goes quiet, the run settles, and it fails max_wrong_windows and
  max_missing_windows with exactly the planted counts, is ranked last on correctness, and its report lists the
  bad windows with expected and got values;
- keeping up: a baseline throttled to about half the load's rate is flagged as not keeping up (headline,
  decision section, terminal table); the baseline and a batch job running every 2 s are not."""

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

def engine_py(name: str, description: str) -> str:
    """A test engine: the baseline engine, starting its own job file (NAME_job.py) beside it."""
    return f'''"""{description} (a test engine)."""
import sys
from pathlib import Path

from harness.engines.launcher import job_config
from pipelines.baseline.engine import BaselineEngine


class TestEngine(BaselineEngine):
    name = "{name}"
    display_name = "{name.title()} (test engine)"
    role = "option"
    colour = None
    description = "{description}"

    def start(self, ctx):
        self.job.launch([sys.executable, str(Path(__file__).with_name("{name}_job.py"))], ctx,
                        job_config(ctx, self.name, poll_batch=ctx.settings.poll_batch))


ENGINE = TestEngine
'''


SLOW_JOB_PY = '''"""The baseline job with a consumer that returns at most 20 records per call and then sleeps 0.1 s."""
import sys
import time

from pipelines.baseline import job


class SlowConsumer(job.Consumer):
    def consume(self, num_messages=1, timeout=-1):
        msgs = super().consume(num_messages=min(num_messages, 20), timeout=timeout)
        time.sleep(0.1)
        return msgs


job.Consumer = SlowConsumer
sys.exit(job.main(sys.argv[1]))
'''

LOSSY_JOB_PY = f'''"""The baseline job, whose fired windows lose key {LOST} and gain 1 in the sum of key {CORRUPTED}."""
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


@pytest.fixture(scope="module")
def misbehaving_run(stack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("verdicts")
    plugins = tmp / "plugins"
    for name, description, job in (
            ("lossy", "The baseline's job with windows lost and corrupted on their way to the sink", LOSSY_JOB_PY),
            ("slow", "The baseline's job, throttled to about 200 records/s", SLOW_JOB_PY)):
        (plugins / name).mkdir(parents=True)
        (plugins / name / "engine.py").write_text(engine_py(name, description))
        (plugins / name / f"{name}_job.py").write_text(job)
    scen = tmp / "misbehaving.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(
        name="misbehaving", duration="6s", engines={"lossy": {}, "baseline": {}, "slow": {}, "batch": {"interval": "2s"}},
        slo={"max_wrong_windows": 0, "max_missing_windows": 0, "p99_latency": "10s"})))
    env = {"HARNESS_ENGINE_PATH": os.pathsep.join([str(plugins), str(ROOT / "pipelines")]),
           "PYTHONPATH": str(ROOT)}
    r = run_cli("run", str(scen), "--results-dir", str(tmp / "r"), env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]   # a wrong engine is a verdict, not a failed run
    [run_dir] = list((tmp / "r").iterdir())
    return run_dir, r.stdout


def test_wrong_engine_is_judged_and_ranked_last(misbehaving_run: tuple[Path, str]) -> None:
    run_dir, _ = misbehaving_run
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
    assert "lossy" not in bad_rank.best and bad_rank.others["lossy"].verdict != "tie"
    assert max(bad_rank.figures, key=lambda e: bad_rank.figures[e].mid) == "lossy"   # last on correctness
    assert bad_rank.figures["lossy"].mid == planted_wrong + planted_missing

    md = (run_dir / "report.md").read_text()
    assert "## Bad windows" in md and f"| lossy #0 | wrong ⚠ | {CORRUPTED} |" in md
    assert "| `max_wrong_windows` | `windows.correctness.wrong` | lossy | **fail** |" in md


def test_engine_that_falls_behind_is_flagged(misbehaving_run: tuple[Path, str]) -> None:
    run_dir, stdout = misbehaving_run
    doc = results.load(run_dir)
    by = {e.engine: e for e in doc.engines}
    slow = by["slow"].keeping_up
    assert by["slow"].status == "complete" and slow is not None
    assert slow.kept_up is False and slow.rule == "continuous", slow
    assert slow.in_vs_acked is not None and slow.in_vs_acked < 0.8, slow
    for name, rule in (("baseline", "continuous"), ("batch", "interval")):
        k = by[name].keeping_up
        assert k is not None and k.kept_up is True and k.rule == rule, (name, k)
    md = (run_dir / "report.md").read_text()
    lines = md.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| Kept up with the load |"))
    cells = [c.strip() for c in lines[at].strip("|").split("|")][1:]
    header = lines[at - 3]   # the headline's engine row, its separator, then Status
    names = [c.strip() for c in header.strip("|").split("|")][1:]
    got = dict(zip(names, cells))
    assert got["slow"].startswith("NO: did not keep up") and got["baseline"] == "yes" and got["batch"] == "yes", got
    assert "Did not keep up at this rate: slow;" in md
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
            for line in stdout.splitlines() if line.startswith("│") and "#0" in line}
    assert "NO" in rows["slow#0"] and "yes" in rows["baseline#0"] and "yes" in rows["batch#0"], rows
