"""Reports from run folders (harness.report): the decision summary on hand-made results, build_report and
build_compare on synthetic run folders with a real result's structure, and the HTML opened in headless Chromium.

No services: reports read only result.json and raw/. results/ is git-ignored, so the run folders are made here.
Every hand-made document is a valid current-schema result (harness.results.document), read as `harness report`
reads one.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness import results
from harness.errors import HarnessError
from harness.metrics import significance as S
from harness.report import build_compare, build_report
from harness.report import decision as D
from harness.report import verdicts as M
from harness.report.data import RunData
from harness.results.document import SCHEMA_VERSION
from harness.scenario import Slo, load_scenario

ROOT = Path(__file__).resolve().parent.parent
# The scenario section as `harness run` writes it (the Scenario's JSON dump): quick.yaml with two engines.
SCENARIO: dict[str, Any] = {
    **load_scenario(ROOT / "scenarios" / "quick.yaml").model_dump(mode="json"),
    "description": "Short mixed load; tumbling 5 s windows.",
    "engines": {"baseline": {}, "flink": {"sink_flush_interval": "200ms"}},
}
STARTED = "2026-11-25T17:58:57.536+00:00"
CAPABILITIES = {"window_types": ["session", "sliding", "tumbling"], "triggers": ["continuous"],
                "allowed_lateness": False, "emits": "final"}


@pytest.fixture(autouse=True)
def no_noise_band_on_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Single runs are judged against the noise band in results/bench-noise-latest.json: the tests' own folder, so
    what `harness bench noise` left on this machine cannot change a verdict."""
    folder = tmp_path / "results-dir"
    folder.mkdir()
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(folder))
    return folder


# -- hand-made engine entries ------------------------------------------------------------------------------------
def engine_entry(name: str, repeat: int = 0, *, p50: float = 2000, p99: float = 2400, count: int = 250,
                 wrong: int = 0, missing: int = 0, duplicates: int = 0, cpu_m: float = 100.0, peak: float = 64.0,
                 thr: float = 510.0, status: str = "complete", run_id: str = "r", **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "engine": name, "display_name": name.title(), "repeat": repeat, "load_id": f"{run_id}.{name}.{repeat}",
        "status": status, "description": f"the {name} engine", "settings": {"poll_batch": 2000},
        "changed_settings": {}, "latency_floor_ms": {"watermark_delay_ms": 2000, "heartbeat_interval_ms": 200},
        "capabilities": CAPABILITIES, "promised_answer": "on_time",
        "windows": {"promised_answer": "on_time",
                    "correctness": {"expected": 322, "exact": 322 - wrong - missing, "wrong": wrong,
                                    "missing": missing, "extra": 0},
                    "duplicates": duplicates, "re_emissions": duplicates, "emissions": 322 + duplicates,
                    "late_events_dropped": 138, "on_time_events_missing": 0, "latency_windows_measured": count,
                    "latency_windows_excluded_warmup": 72,
                    "event_to_result_ms": {"count": count, "p50": p50, "p90": p99 * 0.95, "p99": p99,
                                           "p99.9": p99 * 1.1, "max": p99 * 1.1, "min": p50 / 2, "mean": p50,
                                           "unreliable": ["p99", "p99.9"] if count < 1000 else ["p99.9"]},
                    "window_close_ms": {"count": count, "p50": p50 - 40, "p99": p99 - 400,
                                        "unreliable": ["p99", "p99.9"]},
                    "emitted_before_window_close": 0},
        "malformed": {"sent": 157, "counted_by_engine": 157},
        "throughput": {"in_records_per_s": thr, "acked_records_per_s": 515.0, "in_vs_acked": thr / 515.0,
                       "out_rows_per_s": 10.7},
        "cpu_during_load": {"cpu_seconds": cpu_m * 0.015, "cpu_seconds_per_million_events": cpu_m},
        "resources": {"cpu_seconds": cpu_m * 0.02, "cpu_seconds_per_million_events": cpu_m * 1.3,
                      "peak_rss_mb": peak, "peak_hwm_sum_mb": peak, "processes_seen": 1},
        "lag": {"max_records": 100, "final_records": 3},
        "time_to_first_result_s": 4.3, "start_to_running_s": 0.5,
    }
    e.update(extra)
    return e


def skipped(name: str, reason: str = "no session windows in this engine") -> dict[str, Any]:
    return {"engine": name, "display_name": name.title(), "repeat": 0, "load_id": f"r.{name}.0",
            "status": "skipped", "reason": reason, "description": f"the {name} engine", "settings": {},
            "changed_settings": {}, "latency_floor_ms": {}, "capabilities": CAPABILITIES}


def doc(engines: list[dict[str, Any]], slo: dict[str, Any] | None = None, status: str = "complete",
        **extra: Any) -> dict[str, Any]:
    """A result document (the JSON `harness run` writes) around the given engine entries."""
    sc = copy.deepcopy(SCENARIO)
    if slo is not None:
        sc["slo"] = slo
    d = {"schema_version": SCHEMA_VERSION, "run_id": "r", "status": status, "error": None, "started_at": STARTED,
         "scenario_file": "scenarios/quick.yaml", "scenario": sc,
         "engines_requested": list(dict.fromkeys(e["engine"] for e in engines)), "repeat": 1, "loads": [],
         "engines": engines,
         "machine": {"hostname": "vm", "os": "Linux", "cpu_model": "AMD EPYC", "cores": 2, "memory_gb": 8.0}}
    d.update(extra)
    return d


def summarize(d: dict[str, Any], tmp_path: Path) -> D.DecisionSummary:
    """The decision summary of a hand-made document, validated as `harness report` validates result.json."""
    return D.summarize(RunData(tmp_path, results.parse(json.dumps(d))))


def check(s: D.DecisionSummary, field: str, engine: str) -> D.SloCheck:
    return next(c for c in s.checks if c.field == field and c.engine == engine)


def ranking(s: D.DecisionSummary, metric: M.Metric) -> M.Ranking:
    return next(r for r in s.rankings if r.metric is metric)


# -- (1) the decision summary --------------------------------------------------------------------------------------
def test_slo_met_and_missed_with_figure_and_margin(tmp_path: Path) -> None:
    s = summarize(doc([engine_entry("baseline", p99=2441.0), engine_entry("flink", p99=12_500.0, duplicates=2)],
                      slo={"p99_latency": "10s", "max_duplicates": 0, "min_throughput": 400}), tmp_path)
    met = check(s, "p99_latency", "baseline")
    assert met.verdict == D.PASS and met.figure == 2441.0 and met.threshold == 10_000
    assert met.margin == pytest.approx(7559.0) and met.margin_rel == pytest.approx(0.7559)
    assert any("unreliable" in n for n in met.notes)          # p99 from 250 windows is flagged
    missed = check(s, "p99_latency", "flink")
    assert missed.verdict == D.FAIL and missed.margin == pytest.approx(-2500.0)
    assert D.margin_text(missed).endswith("over")
    assert check(s, "max_duplicates", "flink").verdict == D.FAIL
    assert check(s, "min_throughput", "flink").verdict == D.PASS
    assert check(s, "min_throughput", "flink").margin == pytest.approx(110.0)
    assert s.verdicts["baseline"].status == "meets all SLOs"
    assert s.verdicts["flink"].status == "misses" and s.verdicts["flink"].missed == ["p99_latency", "max_duplicates"]
    rec = s.record_md
    for heading in ("## Context", "## Options considered", "## Measured evidence", "## Against the SLOs",
                    "## Cost of the options that qualify", "## Decision", "## Caveats"):
        assert heading in rec
    assert "Meet every SLO: baseline." in rec and "flink misses: p99_latency" in rec


def test_every_slo_field_reads_its_metric(tmp_path: Path) -> None:
    e = engine_entry("baseline", p50=900, p99=1500, wrong=1, missing=2, duplicates=3, cpu_m=80, peak=64, thr=500)
    slo = {"p99_latency": "1s", "p50_latency": "1s", "max_duplicates": 5, "max_wrong_windows": 0,
           "max_missing_windows": 2, "min_throughput": 600, "max_cpu_seconds_per_million": 100,
           "max_peak_memory_mb": 50, "p99_window_close": "1s", "p50_window_close": "1s"}
    assert set(slo) == set(Slo.model_fields)   # a new SLO field needs its line here
    s = summarize(doc([e], slo=slo), tmp_path)
    got = {c.field: (c.verdict, c.figure) for c in s.checks}
    # window close is p50 - 40 and p99 - 400 in engine_entry: its SLOs read it, not event-to-result latency
    assert got == {"p99_latency": (D.FAIL, 1500), "p50_latency": (D.PASS, 900),
                   "p99_window_close": (D.FAIL, 1100), "p50_window_close": (D.PASS, 860),
                   "max_duplicates": (D.PASS, 3),
                   "max_wrong_windows": (D.FAIL, 1), "max_missing_windows": (D.PASS, 2),
                   "min_throughput": (D.FAIL, 500), "max_cpu_seconds_per_million": (D.PASS, 80),
                   "max_peak_memory_mb": (D.FAIL, 64)}
    assert any("unreliable: 250 windows" in n for n in check(s, "p99_window_close", "baseline").notes)
    which = next(line for line in s.record_md.splitlines() if line.startswith("- Which latency:"))
    assert "event-to-result" in which and "window-close" in which


def test_tie_inside_the_repeat_spread(tmp_path: Path) -> None:
    # With 3 repeats nothing is ranked, not even peak memory ten times apart: "not enough repeats".
    engines = [engine_entry("baseline", i, p50=v, peak=64 + i) for i, v in enumerate((2000, 2100, 2300))] + \
              [engine_entry("flink", i, p50=v, peak=640 + i) for i, v in enumerate((2200, 2350, 2500))]
    s = summarize(doc(engines, repeat=3), tmp_path)
    p50 = ranking(s, M.P50)
    assert set(p50.best) == {"baseline", "flink"} and p50.others["flink"].verdict == S.NOT_ENOUGH
    mem = ranking(s, M.PEAK_MB)
    assert set(mem.best) == {"baseline", "flink"} and mem.others["flink"].verdict == S.NOT_ENOUGH
    assert D.ranking_cells(mem)[0].startswith(S.NOT_ENOUGH) and "--repeat 5" in mem.others["flink"].reason
    assert "median with the range" in s.spread_note and "--repeat 5" in s.spread_note
    # With 5: overlapping p50s are a tie (the test does not call them); peak memory is a win.
    five = [engine_entry("baseline", i, p50=v, peak=64 + i) for i, v in enumerate((2000, 2100, 2300, 2050, 2250))] + \
           [engine_entry("flink", i, p50=v, peak=640 + i) for i, v in enumerate((2200, 2350, 2500, 2150, 2280))]
    s5 = summarize(doc(five, repeat=5), tmp_path)
    p50_5 = ranking(s5, M.P50)
    assert set(p50_5.best) == {"baseline", "flink"} and p50_5.others["flink"].verdict == "tie"
    assert "Mann-Whitney" in p50_5.others["flink"].reason
    mem5 = ranking(s5, M.PEAK_MB)
    assert mem5.best == ["baseline"] and mem5.others["flink"].verdict == "a"
    assert mem5.others["flink"].p_value == pytest.approx(2 / 252)
    assert "2,100 ms (2,000..2,300)" in D.fmt_figure(p50.figures["baseline"], M.P50)
    # SLOs with repeats: the worst repeat is the figure, the range beside it
    s2 = summarize(doc(engines, slo={"p50_latency": "2400ms"}, repeat=3), tmp_path)
    c = check(s2, "p50_latency", "flink")
    assert c.verdict == D.FAIL and c.figure == 2500 and c.values == [2200, 2350, 2500]
    assert "1 of 3 repeats miss it" in c.notes


def test_single_run_noise_band(tmp_path: Path, no_noise_band_on_file: Path) -> None:
    d = doc([engine_entry("baseline", cpu_m=100, thr=500), engine_entry("flink", cpu_m=1000, thr=520)])
    # no band measured: nothing is called, however far apart
    s = summarize(d, tmp_path)
    judged = [j for rk in s.rankings for j in rk.others.values()]
    assert judged and all(j.verdict == "tie" for j in judged)
    assert all(S.NO_NOISE_BAND in j.reason for j in judged if j.reason != "equal (single run)")
    assert S.NO_NOISE_BAND in s.spread_note and "--repeat 5" in s.spread_note and S.NO_NOISE_BAND in s.record_md
    # with the band `harness bench noise` measured on this machine
    (no_noise_band_on_file / S.NOISE_FILE).write_text(json.dumps({
        "measured_at": "2026-11-25T10:00:00+00:00", "scenario": "quick", "engine": "baseline", "repeats": 5,
        "machine": {"hostname": "vm", "cpu_model": "AMD EPYC", "cores": 2},
        "bands": {"thr_in": 0.06, "cpu_per_m": 0.12}}))
    s = summarize(d, tmp_path)
    thr = ranking(s, M.THR_IN)
    assert thr.others and all(j.verdict == "tie" for j in thr.others.values())
    assert "noise band" in next(iter(thr.others.values())).reason
    assert "single run" in next(iter(thr.others.values())).reason
    cpu = ranking(s, M.CPU_M)
    assert cpu.best == ["baseline"] and cpu.clear_winner == "baseline"
    assert "Single run per engine" in s.spread_note and "harness bench noise" in s.spread_note
    assert "Single run per engine" in s.record_md
    # a band measured on another kind of machine does not apply
    other = summarize(doc(d["engines"], machine={"hostname": "big", "os": "Linux", "cpu_model": "Xeon",
                                                   "cores": 64, "memory_gb": 256.0}), tmp_path)
    assert ranking(other, M.CPU_M).others["flink"].verdict == "tie" and "another machine" in other.spread_note


def test_percentile_confidence_interval_makes_a_tie() -> None:
    rng = np.random.default_rng(1)
    closes = np.repeat(np.arange(5), 8)          # 40 samples from 5 window closes
    ca = S.block_bootstrap_ci(rng.normal(100, 40, 40), closes, 99)
    cb = S.block_bootstrap_ci(rng.normal(140, 40, 40), closes, 99)
    a = M.Figure([100.0], ci=(ca.lo, ca.hi), bootstrap=ca)
    b = M.Figure([140.0], ci=(cb.lo, cb.hi), bootstrap=cb)
    assert ca.unreliable and ca.n_blocks == 5 and ca.hi == float("inf")   # 40 samples cannot bound a p99 above
    band = S.NoiseBand({"p99": 0.1}, Path("bench-noise-latest.json"), "2026-11-25")
    j = M.judge(a, b, M.P99, band)
    assert j.verdict == "tie" and "95% intervals" in j.reason


def test_skipped_and_failed_engines_are_never_a_pass(tmp_path: Path) -> None:
    failed = engine_entry("spark", status="failed", error="the spark pipeline stopped during the run")
    s = summarize(doc([engine_entry("baseline"), skipped("batch", "the batch engine has no session windows"), failed],
                      slo={"p99_latency": "10s", "max_wrong_windows": 0}, status="failed"), tmp_path)
    for e in ("batch", "spark"):
        for f in ("p99_latency", "max_wrong_windows"):
            c = check(s, f, e)
            assert c.verdict == D.NOT_MEASURED and c.figure is None
        assert s.verdicts[e].status == "not measured"
    assert "no session windows" in " ".join(check(s, "p99_latency", "batch").notes)
    assert "stopped during the run" in " ".join(s.verdicts["spark"].reasons)
    assert s.verdicts["baseline"].status == "meets all SLOs"
    assert "spark: not measured" in s.record_md and "batch" in s.record_md
    assert all(set(r.figures) == {"baseline"} for r in s.rankings)   # unmeasured engines are not ranked


def test_no_slos_and_no_engines(tmp_path: Path) -> None:
    s = summarize(doc([engine_entry("baseline")], slo={}), tmp_path)
    assert not s.checks and s.verdicts["baseline"].status == "no SLOs"
    empty = summarize(doc([], status="running", run_id="x"), tmp_path)
    assert not empty.checks and not empty.verdicts and "No engine produced" in empty.record_md


# -- synthetic run folders with a real result's structure -----------------------------------------------------------
def make_run(root: Path, run_id: str, *, engines: tuple[str, ...] = ("baseline", "flink"), repeats: int = 1,
             status: str = "complete", shift_ms: float = 0.0, seed: int = 0, failed: str | None = None,
             skip: str | None = None) -> Path:
    """A run folder like `harness run` writes: result.json plus raw/<load_id>/ with windows.csv and sink_log.csv."""
    rng = np.random.default_rng(seed)
    run_dir = root / run_id
    (run_dir / "raw").mkdir(parents=True)
    base_lat = {"baseline": 2050.0, "flink": 2200.0, "spark": 5200.0}
    loads, entries = [], []
    tb0 = 1_795_629_540_000
    for rep in range(repeats):
        for k, name in enumerate(engines):
            load_id = f"{run_id}.{name}.{rep}"
            tb = tb0 + (rep * len(engines) + k) * 60_000
            if name == skip:
                entries.append({**skipped(name, f"{name} cannot run this scenario"), "load_id": load_id,
                                "repeat": rep})
                continue
            raw = run_dir / "raw" / load_id
            raw.mkdir()
            rows = []
            for w in range(7):
                for key in range(20):
                    last_sent = tb + w * 5000 + 4800 + rng.uniform(0, 190)
                    lat = base_lat.get(name, 3000.0) + shift_ms + rng.lognormal(4, 0.6)
                    final = last_sent + lat
                    rows.append({"key": f"k{key:06d}", "window_start": tb + w * 5000, "window_end": tb + (w + 1) * 5000,
                                 "cnt": 50, "sum": 25_000, "min": 1, "max": 999, "last_sent_at": last_sent,
                                 "final_at_ms": final, "first_emit_ms": final, "emissions": 1,
                                 "event_to_result_ms": lat, "window_close_ms": final - (tb + (w + 1) * 5000),
                                 "first_emission_ms": lat})
            wdf = pd.DataFrame(rows)
            wdf.to_csv(raw / "windows.csv", index=False)
            wdf[["key", "window_start", "window_end", "cnt", "sum", "min", "max", "last_sent_at"]] \
                .assign(inserted_at_ms=wdf["final_at_ms"]).to_csv(raw / "sink_log.csv", index=False)
            measured = wdf[wdf["window_end"] > tb + 5000]["event_to_result_ms"].to_numpy()
            ts = []
            for i in range(72):
                t = -2.0 + i * 0.5
                sent = max(0.0, min(t, 30.0)) * 515
                ts.append({"t": i * 0.5, "wall_ms": int(tb + t * 1000), "records_in": int(sent * 0.99),
                           "lag": int(rng.integers(0, 120)), "end_offsets": int(sent), "acked_records": int(sent),
                           "rows_out": int(max(0, t - 7) * 10.7), "cpu_s": round(0.3 + 0.04 * (i + 1), 3),
                           "rss_mb": 64.0 if name == "baseline" else 620 + i * 0.4})
            e = engine_entry(name, rep, p50=float(np.percentile(measured, 50, method="higher")),
                             p99=float(np.percentile(measured, 99, method="higher")), count=int(measured.size),
                             cpu_m=80.0 if name == "baseline" else 975.0, peak=64.0 if name == "baseline" else 650.0,
                             run_id=run_id, timeseries=ts)
            e["windows"]["event_to_result_ms"]["max"] = float(measured.max())
            if name == failed:
                e["status"], e["error"] = "failed", f"the {name} pipeline stopped during the run"
            entries.append(e)
            loads.append({"load_id": load_id, "engine": name, "repeat": rep, "topic": f"harness.{load_id}",
                          "time_base_ms": tb, "partitions": 3, "encoder": "json",
                          "generator": {"events_scheduled": 15000, "events_sent": 15000, "events_acked": 15000,
                                        "delivery_errors": 0, "achieved_rate_eps": 500.0,
                                        "send_delay_ms": {"count": 15000, "p99": 0.75},
                                        "ack_latency_ms": {"count": 15000, "p99": 8.5}},
                          "ground_truth": {"windows_complete": 358, "windows_on_time": 322,
                                           "events_by_kind": {"late": 138, "malformed": 157}},
                          "timeseries": {"intended_per_second": {str(s): 500.0 for s in range(30)},
                                         "sent_per_second": {str(s): 500 for s in range(30)},
                                         "acked_per_second": {str(s): 500 + int(rng.integers(-2, 3))
                                                              for s in range(30)}}})
    d = doc(entries, status=status, run_id=run_id, loads=loads, repeat=repeats,
            engines_requested=list(engines), started_at=STARTED,
            versions={"harness": "0.1.0", "python": "3.11.7", "commit": {"sha": "e330ef5", "dirty": False},
                      "engines": {"flink": {"apache_flink": "2.0.2"}}},
            machine={"hostname": "vm", "os": "Linux", "cpu_model": "AMD EPYC", "cores": 2, "memory_gb": 23.5})
    if status != "complete":
        d["error"] = failed and f"{failed}#0: the {failed} pipeline stopped during the run" or "interrupted"
    (run_dir / "result.json").write_text(json.dumps(d, indent=2))
    return run_dir


IMG = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]*)\"")


def assert_self_contained(html: str) -> list[str]:
    srcs = IMG.findall(html)
    assert srcs, "no plot images in the report"
    assert all(s.startswith("data:image/png;base64,") for s in srcs), [s[:40] for s in srcs]
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "the report must not load anything from a network"
    return srcs


# -- (2) build_report ---------------------------------------------------------------------------------------------
def test_build_report_on_a_realistic_run(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "20261125T175857Z-quick-test", engines=("baseline", "flink", "spark"), skip="spark")
    html_path, md_path = build_report(run_dir)
    assert html_path == run_dir / "report.html" and md_path == run_dir / "report.md"
    html, md = html_path.read_text(), md_path.read_text()
    assert 'id="headline"' in html and 'id="decision"' in html
    assert len(assert_self_contained(html)) == 6                 # every plot drew something
    assert "INCOMPLETE" not in html and "INCOMPLETE" not in md
    assert "spark cannot run this scenario" in html and "spark cannot run this scenario" in md
    assert "unreliable" in html and "†" in md                     # p99 from 120 windows
    assert "Decision record (draft)" in md and "| Status | complete | complete | skipped |" in md
    assert "lines of pipeline code" in html.lower()


def test_build_report_on_a_minimal_result(tmp_path: Path) -> None:
    run_dir = tmp_path / "20261125T000000Z-quick-min"
    run_dir.mkdir()
    # what a run that has only just started has written: the required fields, nothing measured yet
    (run_dir / "result.json").write_text(json.dumps({
        "schema_version": SCHEMA_VERSION, "run_id": run_dir.name, "status": "running", "started_at": STARTED,
        "scenario_file": "scenarios/quick.yaml", "scenario": SCENARIO}))
    html_path, md_path = build_report(run_dir)
    html, md = html_path.read_text(), md_path.read_text()
    assert 'id="headline"' in html and 'id="decision"' in html and "INCOMPLETE" in html and "INCOMPLETE" in md
    assert "<img" not in html                                     # nothing to plot: said in words instead
    assert "no data" in html


def test_build_report_marks_a_failed_run_incomplete(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "20261125T175857Z-quick-fail", status="failed", failed="flink")
    html_path, md_path = build_report(run_dir)
    html, md = html_path.read_text(), md_path.read_text()
    assert '<div class="banner incomplete"' in html and "<title>[INCOMPLETE]" in html
    assert md.startswith("# INCOMPLETE") and "flink pipeline stopped during the run" in md
    assert_self_contained(html)
    s = D.summarize(RunData.load(run_dir))
    assert s.verdicts["flink"].status == "not measured"
    assert all(c.verdict == D.NOT_MEASURED for c in s.checks if c.engine == "flink")


def test_build_report_survives_missing_sections_and_files(tmp_path: Path) -> None:
    """Sections a run did not reach are None (or left out), raw files may be missing or empty: the report still
    builds from what is there. A document with a value of the wrong type is refused with a clear error."""
    run_dir = make_run(tmp_path, "20261125T175857Z-quick-gaps")
    d = json.loads((run_dir / "result.json").read_text())
    d["engines"][0]["windows"] = None
    d["engines"][0]["throughput"] = None
    del d["engines"][1]["resources"]
    d["engines"][1]["lag"] = None
    d["engines"][1]["cpu_during_load"] = None
    d["engines"][1]["timeseries"] = []
    d["loads"][0].pop("timeseries")
    del d["scenario"]["slo"]
    del d["machine"]
    del d["versions"]
    (run_dir / "result.json").write_text(json.dumps(d))
    shutil.rmtree(run_dir / "raw" / d["engines"][1]["load_id"])
    (run_dir / "raw" / d["engines"][0]["load_id"] / "windows.csv").write_text("")
    html_path, md_path = build_report(run_dir)
    assert 'id="headline"' in html_path.read_text() and "Decision record (draft)" in md_path.read_text()

    d["engines"][1]["timeseries"] = "garbage"
    (run_dir / "result.json").write_text(json.dumps(d))
    with pytest.raises(HarnessError, match=r"engines\.1\.timeseries"):
        build_report(run_dir)


# -- compare --------------------------------------------------------------------------------------------------------
def test_build_compare_marks_changes_inside_the_spread_as_ties(tmp_path: Path) -> None:
    before = make_run(tmp_path, "20261125T100000Z-quick-aaaa", repeats=5, seed=1)
    after = make_run(tmp_path, "20261125T110000Z-quick-bbbb", repeats=5, seed=2, shift_ms=3000)
    out = tmp_path / "cmp"
    html_path, md_path = build_compare([before, after], out)
    assert html_path == out / "compare.html" and md_path.is_file()
    html, md = html_path.read_text(), md_path.read_text()
    assert 'id="headline"' in html and 'id="changes"' in html
    assert_self_contained(html)
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| baseline: ")}
    assert "worse" in lines["baseline: Event-to-result latency p50 (ms, lower is better)"]   # +3 s: outside the spread
    assert "tie" in lines["baseline: Peak memory (sampled RSS sum) (MB, lower is better)"]
    with pytest.raises(Exception):
        build_compare([before], out)


# -- (3) headless Chromium -------------------------------------------------------------------------------------------
def chromium() -> str | None:
    """The browser on PATH: Debian's package installs `chromium`, other distributions `chromium-browser`."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    browser = chromium()
    assert browser, "chromium is not on PATH"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def require_chromium() -> None:
    """Skip without Chromium locally; fail in CI (or with HARNESS_REQUIRE_CHROMIUM, which .ci/run sets)."""
    if chromium() is None:
        msg = "chromium is not on PATH: run `make setup` as root (it installs Debian's chromium package)"
        if os.environ.get("CI") or os.environ.get("HARNESS_REQUIRE_CHROMIUM"):
            pytest.fail(msg)
        pytest.skip(msg)


def render_in_chromium(html_path: Path, tmp: Path, keep_as: str) -> tuple[int, int, str]:
    """Open a report headless: (images loaded, images on the page, DOM after scripts ran). A screenshot is
    kept as test-output/<keep_as>."""
    url = html_path.resolve().as_uri()
    dom = _chromium(url, tmp / "profile-dom", "--dump-dom", "--virtual-time-budget=5000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert loaded and total, f"the page's load script did not run: {body.group(0)}"
    shot = tmp / "shot.png"
    res = _chromium(url, tmp / "profile-shot", f"--screenshot={shot}", "--window-size=1400,3000",
                    "--hide-scrollbars")
    assert res.returncode == 0 and shot.is_file() and shot.stat().st_size > 50_000, res.stderr[-2000:]
    keep = ROOT / "test-output"
    keep.mkdir(exist_ok=True)
    shutil.copyfile(shot, keep / keep_as)
    return int(loaded.group(1)), int(total.group(1)), dom.stdout


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    require_chromium()
    run_dir = make_run(tmp_path, "20261125T175857Z-quick-chromium", engines=("baseline", "flink", "spark"),
                       skip="spark")
    html_path, _ = build_report(run_dir)
    loaded, total, dom = render_in_chromium(html_path, tmp_path, "report-screenshot.png")
    assert total == 6 and loaded == total
    assert 'id="headline"' in dom and 'id="decision"' in dom


def test_bench_noise_from_a_run_folder_takes_the_widest_band_of_the_engines(tmp_path: Path) -> None:
    from harness.bench.noise import from_run, summarise_run

    run_dir = make_run(tmp_path, "noise", repeats=3, seed=4)
    res = from_run(run_dir, "all")
    one = {e: summarise_run(RunData.load(run_dir), e)["bands"] for e in ("baseline", "flink")}
    assert res["repeats"] == 3 and set(res["by_engine"]) == {"baseline", "flink"}
    for key in ("p50", "p99"):
        assert one["baseline"][key] != one["flink"][key]   # the seeded repeats move differently
        assert res["bands"][key] == max(one["baseline"][key], one["flink"][key])
    assert res["bands"]["bad_windows"] == 0.0              # a count that never moved: band 0
    assert from_run(run_dir, "flink")["bands"] == one["flink"]
    single = make_run(tmp_path, "single", repeats=1)
    with pytest.raises(HarnessError, match="1 measured repeat"):
        from_run(single, "baseline")
