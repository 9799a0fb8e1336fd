"""Tidy pandas DataFrames from a run folder, for notebooks (docs/results.md lists every column)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.results.document import EngineResult, ResultDocument

RUN_COLUMNS = ["engine", "repeat", "status", "load_id", "promised_answer", "windows_expected", "windows_exact",
               "windows_wrong", "windows_missing", "windows_extra", "duplicates", "re_emissions",
               "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "latency_windows", "in_records_per_s",
               "in_vs_acked", "max_lag_records", "cpu_seconds_per_million_events", "peak_rss_mb", "error"]


@dataclass(frozen=True)
class Frames:
    runs: pd.DataFrame        # one row per engine run: its headline figures
    windows: pd.DataFrame     # one row per promised window per engine run: its latencies (raw/<load_id>/windows.csv)
    timeseries: pd.DataFrame  # one row per monitor sample per engine run
    loads: pd.DataFrame       # one row per load and second: intended, sent and acknowledged events


def _run_row(e: EngineResult) -> dict[str, object]:
    w, c = e.windows, (e.windows.correctness if e.windows else None)
    lat = w.event_to_result_ms if w else None
    return {
        "engine": e.engine, "repeat": e.repeat, "status": e.status, "load_id": e.load_id,
        "promised_answer": e.promised_answer,
        "windows_expected": c.expected if c else None, "windows_exact": c.exact if c else None,
        "windows_wrong": c.wrong if c else None, "windows_missing": c.missing if c else None,
        "windows_extra": c.extra if c else None,
        "duplicates": w.duplicates if w else None, "re_emissions": w.re_emissions if w else None,
        "latency_p50_ms": lat.p50 if lat else None, "latency_p99_ms": lat.p99 if lat else None,
        "latency_max_ms": lat.max if lat else None, "latency_windows": lat.count if lat else None,
        "in_records_per_s": e.throughput.in_records_per_s if e.throughput else None,
        "in_vs_acked": e.throughput.in_vs_acked if e.throughput else None,
        "max_lag_records": e.lag.max_records if e.lag else None,
        "cpu_seconds_per_million_events": e.cpu_during_load.cpu_seconds_per_million_events
        if e.cpu_during_load else None,
        "peak_rss_mb": e.resources.peak_rss_mb if e.resources else None,
        "error": e.error or e.reason,
    }


def _tagged(frame: pd.DataFrame, e: EngineResult) -> pd.DataFrame:
    return frame.assign(engine=e.engine, repeat=e.repeat)[["engine", "repeat", *frame.columns]]


def frames(run: str | Path | ResultDocument, run_dir: str | Path | None = None) -> Frames:
    """The four frames of a run folder (or of a document already loaded, with its folder for raw/)."""
    from harness.results.reading import load

    if isinstance(run, ResultDocument):
        doc, folder = run, Path(run_dir) if run_dir is not None else None
    else:
        doc, folder = load(run), Path(run)
    runs = pd.DataFrame([_run_row(e) for e in doc.engines], columns=RUN_COLUMNS)
    windows, series = [], []
    for e in doc.engines:
        csv = folder / "raw" / e.load_id / "windows.csv" if folder is not None else None
        if csv is not None and csv.is_file():
            windows.append(_tagged(pd.read_csv(csv), e))
        if e.timeseries:
            ts = pd.DataFrame([s.model_dump() for s in e.timeseries])
            load = doc.load(e.load_id)
            if load is not None and load.time_base_ms is not None:
                ts["t_s"] = (ts["wall_ms"] - load.time_base_ms) / 1000.0
            series.append(_tagged(ts, e))
    load_rows = [{"load_id": ld.load_id, "engine": ld.engine, "repeat": ld.repeat, "second": s,
                  "intended": ld.timeseries.intended_per_second.get(s),
                  "sent": ld.timeseries.sent_per_second.get(s), "acked": ld.timeseries.acked_per_second.get(s)}
                 for ld in doc.loads for s in sorted({*ld.timeseries.intended_per_second,
                                                      *ld.timeseries.sent_per_second})]
    return Frames(runs=runs,
                  windows=pd.concat(windows, ignore_index=True) if windows else pd.DataFrame(),
                  timeseries=pd.concat(series, ignore_index=True) if series else pd.DataFrame(),
                  loads=pd.DataFrame(load_rows, columns=["load_id", "engine", "repeat", "second", "intended",
                                                         "sent", "acked"]))
