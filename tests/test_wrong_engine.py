"""Verdicts on engines that misbehave, from one run of four engines:

- a wrong engine is judged: a test engine built from the baseline loses every window of one key and adds 1 to
  the sum of every window of another. Its sink goes quiet, the run settles, and it fails max_wrong_windows and
  max_missing_windows with exactly the planted counts, is ranked last on correctness, and its report lists the
  bad windows with expected and got values;
- keeping up: a baseline throttled to about half the load's rate is flagged as not keeping up (headline,
  decision section, terminal table); the baseline and a batch job running every 2 s are not;
- the run's times, with three test-only faults on for the whole run: every hand-off held 200 ms behind its
  intended time (latency from intended time grows by about that, latency from hand-off does not, every run is
  flagged); the database's clock read 500 ms ahead (measured, and corrected out of every sink time); and a
  test engine whose sink sleeps 500 ms between INSERT and COMMIT (commit-time latency grows by about that,
  insert-time latency does not)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import yaml

from conftest import ROOT, Svc, run_cli, scenario_dict
from harness import results
from harness.metrics import cgroups
from harness.metrics import windows as window_metrics
from harness.metrics.stats import percentiles
from harness.storage import sink_tables
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

SEND_DELAY_MS, DB_CLOCK_MS, COMMIT_SLEEP_MS = 200, 500, 500

SLEEPY_JOB_PY = f'''"""The baseline job, whose sink sleeps {COMMIT_SLEEP_MS} ms between its INSERTs and their COMMIT."""
import sys
import time

import psycopg

from pipelines.baseline import job

_commit = psycopg.Connection.commit


def commit(self):
    time.sleep({COMMIT_SLEEP_MS / 1000})
    return _commit(self)


psycopg.Connection.commit = commit
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
            ("slow", "The baseline's job, throttled to about 200 records/s", SLOW_JOB_PY),
            ("sleepy", "The baseline's job, committing 0.5 s after it inserts", SLEEPY_JOB_PY)):
        (plugins / name).mkdir(parents=True)
        (plugins / name / "engine.py").write_text(engine_py(name, description))
        (plugins / name / f"{name}_job.py").write_text(job)
    scen = tmp / "misbehaving.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(
        name="misbehaving", duration="6s", engines={"lossy": {}, "baseline": {}, "slow": {}, "batch": {"interval": "2s"},
                                                         "sleepy": {}},
        slo={"max_wrong_windows": 0, "max_missing_windows": 0, "p99_latency": "10s"})))
    env = {"HARNESS_ENGINE_PATH": os.pathsep.join([str(plugins), str(ROOT / "pipelines")]),
           "PYTHONPATH": str(ROOT), "HARNESS_FAULT_SEND_DELAY_MS": str(SEND_DELAY_MS),
           "HARNESS_FAULT_DB_CLOCK_MS": str(DB_CLOCK_MS)}
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


def _latencies(run_dir: Path, load_id: str, time_col: str) -> pd.DataFrame:
    """The measured windows' latencies recomputed from the raw sink log with one of its time columns."""
    doc = results.load(run_dir)
    load = doc.load(load_id)
    assert load is not None and load.time_base_ms is not None
    raw = run_dir / "raw" / load_id
    log = pd.read_csv(raw / "sink_log.csv")
    expected = pd.read_csv(raw / "expected_on_time.csv")
    per = window_metrics.window_latencies(expected, log.assign(**{window_metrics.SINK_TIME: log[time_col]}))
    per = per[per["window_end"] > load.time_base_ms + doc.scenario.warmup]
    return per.dropna(subset=["final_at_ms"])


def test_latency_from_intended_time_counts_the_send_delay(misbehaving_run: tuple[Path, str]) -> None:
    run_dir, stdout = misbehaving_run
    doc = results.load(run_dir)
    for e in doc.engines:
        load = doc.load(e.load_id)
        assert load is not None and e.windows is not None and e.generator is not None
        delay = load.generator.send_delay_ms
        assert delay.p50 is not None and SEND_DELAY_MS <= delay.p50 < SEND_DELAY_MS + 40, (e.engine, delay)
        intended, handoff = e.windows.event_to_result_ms, e.windows.event_to_result_handoff_ms
        assert e.windows.event_to_result_from == "intended" and handoff is not None
        assert intended.p50 is not None and handoff.p50 is not None
        # per window, the two differ by the send delay of the window's last event
        per = pd.read_csv(run_dir / "raw" / e.load_id / "windows.csv").dropna(subset=["final_at_ms"])
        gap = (per["event_to_result_ms"] - per["event_to_result_handoff_ms"]).to_numpy()
        assert len(gap) and (gap >= SEND_DELAY_MS - 1).all() and (gap < SEND_DELAY_MS + 60).all(), (e.engine, gap)
        assert SEND_DELAY_MS - 1 <= intended.p50 - handoff.p50 < SEND_DELAY_MS + 60, (e.engine, intended, handoff)
        assert e.generator.fell_behind and e.generator.threshold_ms < SEND_DELAY_MS, (e.engine, e.generator)
    md = (run_dir / "report.md").read_text()
    assert "| Generator kept to its schedule | NO: send-delay p99" in md
    assert "The generator fell behind its schedule during the run of" in md
    lines = stdout.splitlines()
    header = next(line for line in lines if "gen on time" in line)
    at = [c.strip() for c in re.split("[│┃]", header)[1:-1]].index("gen on time")
    rows = [line for line in lines if line.startswith("│") and "#0" in line]
    assert len(rows) == len(doc.engines) and all(r.split("│")[1:-1][at].strip() == "NO" for r in rows), rows


def test_database_clock_offset_is_measured_and_corrected(misbehaving_run: tuple[Path, str], svc: Svc) -> None:
    run_dir, _ = misbehaving_run
    doc = results.load(run_dir)
    base = next(e for e in doc.engines if e.engine == "baseline")
    t = base.timing
    assert t is not None and t.clock_before is not None and t.clock_after is not None
    for reading in (t.clock_before, t.clock_after):
        assert abs(reading.offset_ms - DB_CLOCK_MS) < 5 and reading.uncertainty_ms < t.offset_bound_ms, reading
    assert abs(t.offset_applied_ms - DB_CLOCK_MS) < 5
    # the sink times the figures use are the database's own, less the measured offset (the injected clock
    # error cancels): on the harness's clock, not 500 ms ahead of it
    measured = pd.read_csv(run_dir / "raw" / base.load_id / "sink_log.csv")["inserted_at_ms"].sort_values().to_numpy()
    with psycopg.connect(svc.dsn) as conn:
        db = sink_tables.read_log(conn, base.load_id)["inserted_at_ms"].sort_values().to_numpy()
    assert len(db) == len(measured) > 0
    assert abs(float((measured - db).mean())) < 5, (measured - db).mean()
    assert "database clock +" in (run_dir / "report.md").read_text()


def test_sink_time_is_commit_time(misbehaving_run: tuple[Path, str]) -> None:
    run_dir, _ = misbehaving_run
    doc = results.load(run_dir)
    by = {e.engine: e for e in doc.engines}
    for name in ("baseline", "sleepy"):
        assert by[name].timing is not None and by[name].timing.sink_time == "commit", by[name].timing
    lag = by["sleepy"].timing.insert_to_commit_ms
    assert lag is not None and lag.p50 is not None and COMMIT_SLEEP_MS <= lag.p50 < COMMIT_SLEEP_MS + 150, lag
    base_lag = by["baseline"].timing.insert_to_commit_ms
    assert base_lag is not None and base_lag.p50 is not None and base_lag.p50 < 50, base_lag

    def close_p50(engine: str, col: str) -> float:
        return float(percentiles(_latencies(run_dir, by[engine].load_id, col)["window_close_ms"].to_numpy())["p50"])

    sleepy_commit, sleepy_insert = close_p50("sleepy", "committed_at_ms"), close_p50("sleepy", "inserted_at_ms")
    base_commit, base_insert = close_p50("baseline", "committed_at_ms"), close_p50("baseline", "inserted_at_ms")
    assert COMMIT_SLEEP_MS - 50 <= sleepy_commit - sleepy_insert < COMMIT_SLEEP_MS + 150
    assert 0 <= base_commit - base_insert < 50
    assert abs(sleepy_insert - base_insert) < 300, (sleepy_insert, base_insert)     # insert time: no shift
    assert COMMIT_SLEEP_MS - 300 < sleepy_commit - base_commit < COMMIT_SLEEP_MS + 300, (sleepy_commit, base_commit)
    # the headline figure is the commit-time one
    sleepy = by["sleepy"].windows
    assert sleepy is not None and sleepy.window_close_ms.p50 is not None
    assert abs(sleepy.window_close_ms.p50 - sleepy_commit) < 1


def test_cpu_per_engine_run_is_exact_where_cgroups_exist(misbehaving_run: tuple[Path, str]) -> None:
    run_dir, _ = misbehaving_run
    doc = results.load(run_dir)
    probe, why = cgroups.EngineGroup.create("test-probe")
    if probe is not None:
        probe.close()
    for e in doc.engines:
        cpu, res = e.cpu_during_load, e.resources
        assert cpu is not None and res is not None, e.engine
        assert e.cpu_idle_before is not None and not e.cpu_idle_before.enabled     # the tests turn the wait off
        if probe is None:
            assert cpu.method == res.cpu_method == "sampled" and res.cgroup_note and why in res.cgroup_note
            continue
        assert cpu.method == res.cpu_method == "cgroup v1" or cpu.method == res.cpu_method == "cgroup v2", e.engine
        assert res.cgroup_cpu_seconds is not None and res.cgroup_cpu_seconds > 0 and res.cgroup_note is None
        assert res.cgroup_memory_max_mb is not None and res.cgroup_memory_max_mb > 0
        assert cpu.cpu_seconds is not None and 0 < cpu.cpu_seconds <= res.cgroup_cpu_seconds
        # the interval ends when the answer settled: after the last send for every engine here
        assert cpu.until_ms_after_time_base is not None and cpu.until_ms_after_time_base > 0
        assert cpu.broker_cpu_seconds is not None and cpu.broker_cpu_seconds > 0
        # PostgreSQL's share of a run this small is near one clock tick (10 ms), so one engine run may read 0
        assert cpu.postgres_cpu_seconds is not None and cpu.postgres_cpu_seconds >= 0
    if probe is not None:
        assert sum(e.cpu_during_load.postgres_cpu_seconds or 0 for e in doc.engines if e.cpu_during_load) > 0
    leftovers = [p for p in cgroups.ROOT.glob(f"*/**/{cgroups.SUBTREE}/*") if p.is_dir() and doc.run_id in p.name]
    assert not leftovers, leftovers    # every engine run's group is removed when it stops
