"""Reading a run folder for reports: result.json plus raw/, defensively (any key may be missing).

A run that crashed, was interrupted or is still going has a partial result.json; everything here returns None
or an empty frame for what is not there, so a report always builds from whatever was measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.durations import parse_duration
from harness.errors import HarnessError

MEASURED = "complete"   # the only engine status whose figures are judged against SLOs


def dig(d: Any, *path: Any, default: Any = None) -> Any:
    """d[path[0]][path[1]]... or default when any step is missing or of the wrong kind."""
    for p in path:
        if isinstance(d, dict) and p in d:
            d = d[p]
        elif isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return default
    return default if d is None else d


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

    entry: dict[str, Any]
    load: dict[str, Any]
    raw_dir: Path | None
    warmup_ms: float = 0.0
    _frames: dict[str, pd.DataFrame | None] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return str(self.entry.get("engine") or "?")

    @property
    def repeat(self) -> int:
        r = self.entry.get("repeat")
        return int(r) if isinstance(r, int) else 0

    @property
    def status(self) -> str:
        return str(self.entry.get("status") or "unknown")

    @property
    def measured(self) -> bool:
        return self.status == MEASURED

    @property
    def label(self) -> str:
        return f"{self.name} #{self.repeat}"

    @property
    def time_base_ms(self) -> float | None:
        return num(self.load.get("time_base_ms"))

    def get(self, *path: Any) -> Any:
        return dig(self.entry, *path)

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
        w = self.windows()
        if w is None or column not in w or "window_end" not in w:
            return np.array([], dtype=float)
        tb = self.time_base_ms
        if tb is not None:
            w = w[w["window_end"] > tb + self.warmup_ms]
        a = pd.to_numeric(w[column], errors="coerce").to_numpy(dtype=float)
        return a[np.isfinite(a)]

    def timeseries(self) -> pd.DataFrame:
        ts = self.entry.get("timeseries")
        if not isinstance(ts, list) or not ts:
            return pd.DataFrame()
        df = pd.DataFrame([r for r in ts if isinstance(r, dict)])
        if "wall_ms" in df and self.time_base_ms is not None:
            df["t_s"] = (pd.to_numeric(df["wall_ms"], errors="coerce") - self.time_base_ms) / 1000.0
        elif "t" in df:
            df["t_s"] = pd.to_numeric(df["t"], errors="coerce")
        return df


def per_second(d: Any) -> pd.Series:
    """A {"0": 500, "1": 498} mapping (JSON turns the int keys into strings) as a Series indexed by second."""
    if not isinstance(d, dict) or not d:
        return pd.Series(dtype=float)
    items = []
    for k, v in d.items():
        try:
            items.append((int(k), num(v)))
        except (TypeError, ValueError):
            continue
    s = pd.Series({k: v for k, v in items}, dtype=float).sort_index()
    return s


class RunData:
    """A run folder: result.json and raw/, with engine entries grouped by engine name."""

    def __init__(self, run_dir: Path, doc: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.doc = doc

    @classmethod
    def load(cls, run_dir: Path) -> "RunData":
        run_dir = Path(run_dir)
        path = run_dir / "result.json"
        if not path.is_file():
            raise HarnessError(f"{run_dir}: no result.json (not a run folder?)",
                               hint="run folders are results/<run_id>/, written by `harness run`")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{path}: cannot read it: {exc}") from None
        if not isinstance(doc, dict):
            raise HarnessError(f"{path}: not a result document (a JSON object was expected)")
        return cls(run_dir, doc)

    def get(self, *path: Any, default: Any = None) -> Any:
        return dig(self.doc, *path, default=default)

    @property
    def run_id(self) -> str:
        return str(self.doc.get("run_id") or self.run_dir.name)

    @property
    def status(self) -> str:
        return str(self.doc.get("status") or "unknown")

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def scenario(self) -> dict[str, Any]:
        s = self.doc.get("scenario")
        return s if isinstance(s, dict) else {}

    @property
    def slo(self) -> dict[str, Any]:
        s = self.scenario.get("slo")
        return {k: v for k, v in s.items() if v is not None} if isinstance(s, dict) else {}

    @property
    def warmup_ms(self) -> float:
        return millis(self.scenario.get("warmup")) or 0.0

    @cached_property
    def loads(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for ld in self.doc.get("loads") or []:
            if isinstance(ld, dict) and ld.get("load_id"):
                out[str(ld["load_id"])] = ld
        return out

    @cached_property
    def runs(self) -> list[EngineRun]:
        out = []
        for e in self.doc.get("engines") or []:
            if not isinstance(e, dict):
                continue
            load_id = str(e.get("load_id") or "")
            raw = self.run_dir / "raw" / load_id if load_id else None
            out.append(EngineRun(e, self.loads.get(load_id, {}), raw if raw and raw.is_dir() else None,
                                 self.warmup_ms))
        return out

    @cached_property
    def engine_names(self) -> list[str]:
        """Engines in the order requested, then any others that appear."""
        names = [str(n) for n in self.doc.get("engines_requested") or [] if n]
        for r in self.runs:
            if r.name not in names:
                names.append(r.name)
        return names

    @cached_property
    def engine_colours(self) -> dict[str, str]:
        """The colour each engine stated for itself (entries without one get a pick in the plots)."""
        return {r.name: str(r.entry["colour"]) for r in self.runs if r.entry.get("colour")}

    @cached_property
    def floor_engines(self) -> list[str]:
        """Engines whose role is a reference floor rather than an option a team could choose."""
        return [n for n in self.engine_names if any(r.name == n and r.entry.get("role") == "floor" for r in self.runs)]

    def by_engine(self) -> dict[str, list[EngineRun]]:
        out: dict[str, list[EngineRun]] = {n: [] for n in self.engine_names}
        for r in self.runs:
            out.setdefault(r.name, []).append(r)
        for runs in out.values():
            runs.sort(key=lambda r: r.repeat)
        return out

    def load_only(self) -> list[dict[str, Any]]:
        """Loads with no engine (a load-only pass)."""
        return [ld for ld in self.loads.values() if not ld.get("engine")]
