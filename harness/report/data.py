"""Reading a run folder for reports: the typed result document (harness.results) plus raw/.

A run that crashed, was interrupted or is still going has a partial result.json: its unfinished sections are
None, and the raw files may be missing; everything here returns None or an empty frame for what is not there,
so a report always builds from whatever was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import results
from harness.durations import parse_duration
from harness.results.document import Correctness, EngineResult, LoadResult, Percentiles, ResultDocument
from harness.scenario import Scenario

# The engine statuses whose figures are judged against SLOs: finished with every window exact, or settled (the
# sink went quiet with some windows wrong or missing: judged as it stands).
MEASURED = ("complete", "settled")


def num(v: Any) -> float | None:
    """A finite float, or None (strings like 'NaN', None, bools and junk become None)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def millis(v: Any) -> float | None:
    """A duration from result.json ('10s', '200ms', 0, 1500) in milliseconds."""
    if isinstance(v, str):
        try:
            return float(parse_duration(v))
        except ValueError:
            return None
    return num(v)


@dataclass
class EngineRun:
    """One engine entry of result.json (one engine, one repeat) with its load and raw files."""

    entry: EngineResult
    load: LoadResult | None
    raw_dir: Path | None
    warmup_ms: float = 0.0
    _frames: dict[str, pd.DataFrame | None] = field(default_factory=dict, repr=False)
    # figures derived from the raw files (bootstrap intervals), computed once per report rather than per table
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.entry.engine

    @property
    def repeat(self) -> int:
        return self.entry.repeat

    @property
    def status(self) -> str:
        return self.entry.status

    @property
    def measured(self) -> bool:
        return self.status in MEASURED

    @property
    def label(self) -> str:
        return f"{self.name} #{self.repeat}"

    @property
    def time_base_ms(self) -> float | None:
        return float(self.load.time_base_ms) if self.load is not None and self.load.time_base_ms is not None else None

    @property
    def latency(self) -> Percentiles | None:
        """Event-to-result latency of the measured windows (None before the measure phase)."""
        return self.entry.windows.event_to_result_ms if self.entry.windows else None

    @property
    def kept_up(self) -> bool | None:
        """False when the engine did not keep up with the load (its latency then measures its backlog)."""
        return self.entry.keeping_up.kept_up if self.entry.keeping_up else None

    @property
    def correctness(self) -> Correctness | None:
        return self.entry.windows.correctness if self.entry.windows else None

    def _csv(self, name: str) -> pd.DataFrame | None:
        if name not in self._frames:
            frame = None
            if self.raw_dir is not None and (self.raw_dir / name).is_file():
                try:
                    frame = pd.read_csv(self.raw_dir / name)
                except Exception:  # a half-written or empty file: the report notes it as missing
                    frame = None
            self._frames[name] = frame
        return self._frames[name]

    def windows(self) -> pd.DataFrame | None:
        """raw/<load_id>/windows.csv: one row per promised window, with its latencies."""
        return self._csv("windows.csv")

    def latency_samples(self, column: str = "event_to_result_ms") -> np.ndarray:
        """The per-window latencies the summary percentiles were computed from (warm-up windows excluded)."""
        return self.latency_blocks(column)[0]

    def latency_blocks(self, column: str = "event_to_result_ms") -> tuple[np.ndarray, np.ndarray]:
        """The per-window latencies (as latency_samples) and, for each, its window close: the window end. Every
        key's window with one end is closed by the same watermark advance and lands in the same flush, so the
        samples of one close are not independent of each other (harness.metrics.significance)."""
        w = self.windows()
        if w is None or column not in w or "window_end" not in w:
            return np.array([], dtype=float), np.array([], dtype=float)
        tb = self.time_base_ms
        if tb is not None:
            w = w[w["window_end"] > tb + self.warmup_ms]
        a = pd.to_numeric(w[column], errors="coerce").to_numpy(dtype=float)
        ends = pd.to_numeric(w["window_end"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(a) & np.isfinite(ends)
        return a[ok], ends[ok]

    def timeseries(self) -> pd.DataFrame:
        if not self.entry.timeseries:
            return pd.DataFrame()
        df = pd.DataFrame([s.model_dump() for s in self.entry.timeseries])
        tb = self.time_base_ms
        df["t_s"] = (df["wall_ms"] - tb) / 1000.0 if tb is not None else df["t"]
        return df


def per_second(d: dict[int, float] | dict[int, int]) -> pd.Series:
    """A per-second mapping of a load's time series as a Series indexed by second."""
    if not d:
        return pd.Series(dtype=float)
    return pd.Series({int(k): float(v) for k, v in d.items()}, dtype=float).sort_index()


class RunData:
    """A run folder: the typed result document and raw/, with engine entries grouped by engine name."""

    def __init__(self, run_dir: Path, doc: ResultDocument) -> None:
        self.run_dir = Path(run_dir)
        self.doc = doc

    @classmethod
    def load(cls, run_dir: Path) -> "RunData":
        """A run folder, or a result.json path (the report goes beside it)."""
        folder = Path(run_dir).parent if Path(run_dir).suffix == ".json" else Path(run_dir)
        return cls(folder, results.load(run_dir))

    @property
    def run_id(self) -> str:
        return self.doc.run_id

    @property
    def status(self) -> str:
        return self.doc.status

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def scenario(self) -> Scenario:
        return self.doc.scenario

    @property
    def slo(self) -> dict[str, Any]:
        """The SLOs the scenario sets, by Slo field name (durations in ms)."""
        slo = self.scenario.slo   # attributes, not model_dump(): a dump writes durations back as '10s'
        return {k: getattr(slo, k) for k in type(slo).model_fields if getattr(slo, k) is not None}

    @property
    def warmup_ms(self) -> float:
        return float(self.scenario.warmup)

    @cached_property
    def loads(self) -> dict[str, LoadResult]:
        return {ld.load_id: ld for ld in self.doc.loads}

    @cached_property
    def runs(self) -> list[EngineRun]:
        out = []
        for e in self.doc.engines:
            raw = self.run_dir / "raw" / e.load_id
            out.append(EngineRun(e, self.loads.get(e.load_id), raw if raw.is_dir() else None, self.warmup_ms))
        return out

    @cached_property
    def engine_names(self) -> list[str]:
        """Engines in the order requested, then any others that appear."""
        names = list(self.doc.engines_requested)
        for r in self.runs:
            if r.name not in names:
                names.append(r.name)
        return names

    @cached_property
    def engine_colours(self) -> dict[str, str]:
        """The colour each engine stated for itself (entries without one get a pick in the plots)."""
        return {r.name: r.entry.colour for r in self.runs if r.entry.colour}

    @cached_property
    def floor_engines(self) -> list[str]:
        """Engines whose role is a reference floor rather than an option a team could choose."""
        return [n for n in self.engine_names if any(r.name == n and r.entry.role == "floor" for r in self.runs)]

    def by_engine(self) -> dict[str, list[EngineRun]]:
        out: dict[str, list[EngineRun]] = {n: [] for n in self.engine_names}
        for r in self.runs:
            out.setdefault(r.name, []).append(r)
        for runs in out.values():
            runs.sort(key=lambda r: r.repeat)
        return out

    def load_only(self) -> list[LoadResult]:
        """Loads with no engine (a load-only pass)."""
        return [ld for ld in self.doc.loads if not ld.engine]
