"""The figures a report shows and compares, each read from one typed engine entry of result.json, and how to judge
a difference between two engines (or two runs) honestly.

Judging (used by the decision summary and by `compare`):
- with repeats on both sides (two or more measured runs each), the spread is min..max over the repeats, and
  two figures whose ranges overlap are a tie;
- otherwise no spread was measured: a difference is a win only when it is larger than NOISE_BAND (relative to
  the better figure) and, for latency percentiles with the per-window samples at hand, when the two
  distribution-free 95% confidence intervals of the percentile do not overlap (the percentile's resolution:
  a p99 from 250 windows cannot be told apart from its neighbouring samples). Else it is a tie.
"""

from __future__ import annotations

import ast
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from harness import paths
from harness.report.data import EngineRun, num
from harness.results.document import Percentiles

NOISE_BAND = 0.10          # relative difference a single run must exceed to be called a win
Z95 = 1.959964


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    read: Callable[[EngineRun], float | None]
    better: str | None = None            # "lower", "higher" or None (shown, never ranked)
    percentile: str | None = None        # "p50", "p99"...: a latency percentile (flag, confidence interval)
    digits: int = 0
    column: str = "event_to_result_ms"   # for a percentile: which per-window latency (windows.csv column)

    def value(self, run: EngineRun) -> float | None:
        """The figure as a finite float, or None when the engine run did not reach it (or it is NaN)."""
        return num(self.read(run))

    def summary(self, run: EngineRun) -> Percentiles | None:
        """For a percentile: the distribution it is read from."""
        w = run.entry.windows
        return None if w is None else w.window_close_ms if self.column == "window_close_ms" else w.event_to_result_ms

    def unreliable(self, run: EngineRun) -> bool:
        lat = self.summary(run)
        return bool(self.percentile) and lat is not None and self.percentile in lat.unreliable


def _bad_windows(r: EngineRun) -> float | None:
    c = r.correctness
    return None if c is None else c.wrong + c.missing + c.extra


P50 = Metric("p50", "Event-to-result latency p50", "ms", lambda r: r.latency.p50 if r.latency else None, "lower",
             "p50")
P99 = Metric("p99", "Event-to-result latency p99", "ms", lambda r: r.latency.p99 if r.latency else None, "lower",
             "p99")
WC50 = Metric("wc_p50", "Window-close latency p50", "ms",
              lambda r: r.entry.windows.window_close_ms.p50 if r.entry.windows else None, "lower", "p50",
              column="window_close_ms")
WC99 = Metric("wc_p99", "Window-close latency p99", "ms",
              lambda r: r.entry.windows.window_close_ms.p99 if r.entry.windows else None, "lower", "p99",
              column="window_close_ms")
PMAX = Metric("max", "Event-to-result latency max", "ms", lambda r: r.latency.max if r.latency else None, "lower")
THR_IN = Metric("thr_in", "Throughput in", "records/s",
                lambda r: r.entry.throughput.in_records_per_s if r.entry.throughput else None, "higher", digits=1)
THR_OUT = Metric("thr_out", "Throughput out", "rows/s",
                 lambda r: r.entry.throughput.out_rows_per_s if r.entry.throughput else None, None, digits=2)
BAD = Metric("bad_windows", "Windows wrong + missing + extra", "windows", _bad_windows, "lower")
WRONG = Metric("wrong", "Wrong windows", "windows", lambda r: r.correctness.wrong if r.correctness else None,
               "lower")
MISSING = Metric("missing", "Missing windows", "windows",
                 lambda r: r.correctness.missing if r.correctness else None, "lower")
DUPS = Metric("duplicates", "Duplicates", "rows", lambda r: r.entry.windows.duplicates if r.entry.windows else None,
              "lower")
REEM = Metric("re_emissions", "Re-emissions", "rows",
              lambda r: r.entry.windows.re_emissions if r.entry.windows else None, None)
CPU_M = Metric("cpu_per_m", "CPU per million events (during load)", "CPU s",
               lambda r: r.entry.cpu_during_load.cpu_seconds_per_million_events if r.entry.cpu_during_load else None,
               "lower", digits=1)
CPU_TOTAL = Metric("cpu_total", "CPU total (start-up included)", "CPU s",
                   lambda r: r.entry.resources.cpu_seconds if r.entry.resources else None, "lower", digits=1)
PEAK_MB = Metric("peak_mb", "Peak memory (sampled RSS sum)", "MB",
                 lambda r: r.entry.resources.peak_rss_mb if r.entry.resources else None, "lower")
LAG = Metric("max_lag", "Max lag", "records", lambda r: r.entry.lag.max_records if r.entry.lag else None, "lower")
FIRST = Metric("first_result", "Time to first result", "s", lambda r: r.entry.time_to_first_result_s, "lower",
               digits=1)
START = Metric("start", "Start to running", "s", lambda r: r.entry.start_to_running_s, "lower", digits=1)

# What the decision summary and `compare` rank, in order.
RANKED = [P50, P99, PMAX, WC50, WC99, THR_IN, BAD, DUPS, CPU_M, CPU_TOTAL, PEAK_MB, LAG, FIRST, START]


# -- spreads and judging -------------------------------------------------------------------------------------
@dataclass
class Figure:
    """One engine's figure for one metric over its measured repeats."""

    values: list[float]
    unreliable: bool = False
    ci: tuple[float, float] | None = None      # single run, latency percentile: 95% CI (may be +-inf)
    samples: int | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    @property
    def mid(self) -> float:
        return statistics.median(self.values)

    @property
    def has_spread(self) -> bool:
        return self.n >= 2


def quantile_ci(samples: np.ndarray, pct: float, z: float = Z95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of a percentile from order statistics (binomial ranks).

    Bounds that fall beyond the samples are infinite: too few samples to bound the percentile on that side.
    """
    a = np.sort(np.asarray(samples, dtype=float))
    n = a.size
    if n == 0:
        return None
    p = pct / 100.0
    half = z * math.sqrt(n * p * (1 - p))
    lo_rank, hi_rank = math.floor(n * p - half), math.ceil(n * p + half) + 1   # 1-based order statistics
    lo = float(a[lo_rank - 1]) if lo_rank >= 1 else -math.inf
    hi = float(a[hi_rank - 1]) if hi_rank <= n else math.inf
    return lo, hi


def figure(runs: list[EngineRun], metric: Metric) -> Figure | None:
    """The metric over an engine's measured (complete) repeats, or None when none measured it."""
    measured = [r for r in runs if r.measured]
    vals = [(r, metric.value(r)) for r in measured]
    vals = [(r, v) for r, v in vals if v is not None]
    if not vals:
        return None
    fig = Figure([v for _, v in vals], unreliable=any(metric.unreliable(r) for r, _ in vals))
    if fig.n == 1 and metric.percentile:
        samples = vals[0][0].latency_samples(metric.column)
        if samples.size:
            fig.samples = int(samples.size)
            fig.ci = quantile_ci(samples, float(metric.percentile[1:]))
    return fig


@dataclass
class Judgement:
    verdict: str        # "a", "b" (which is better) or "tie"
    reason: str
    rel: float | None = None     # relative difference to the better figure


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def apart(rel: float) -> str:
    """A relative difference as people read it: 7.8% apart, or 12.3x the better figure."""
    if math.isinf(rel):
        return "one is zero, the other not"
    return f"{rel:.1%} apart" if rel < 1 else f"{1 + rel:.1f}x the better figure"


def judge(a: Figure, b: Figure, metric: Metric, band: float = NOISE_BAND) -> Judgement:
    """Is a better than b, b better than a, or is the difference inside what was (or was not) measured?"""
    lower = metric.better != "higher"
    am, bm = a.mid, b.mid
    best, worst = (am, bm) if (am <= bm) == lower else (bm, am)
    rel = (abs(worst - best) / abs(best)) if best != 0 else (math.inf if worst != best else 0.0)
    winner = "a" if ((am < bm) if lower else (am > bm)) else "b"
    if am == bm:
        return Judgement("tie", "equal", 0.0)
    if a.has_spread or b.has_spread:
        overlap = a.lo <= b.hi and b.lo <= a.hi
        spread = f"{_fmt(a.lo)}..{_fmt(a.hi)} vs {_fmt(b.lo)}..{_fmt(b.hi)}"
        if overlap:
            return Judgement("tie", f"inside the repeat spread ({spread})", rel)
        if a.has_spread and b.has_spread:
            return Judgement(winner, f"the repeat ranges do not overlap ({spread})", rel)
        # one side ran once: its value has no spread of its own, so the noise band applies as well
        if rel <= band:
            return Judgement("tie", f"outside the other's spread but within the ±{band:.0%} noise band", rel)
        return Judgement(winner, f"outside the spread ({spread}) and beyond the ±{band:.0%} noise band", rel)
    if rel <= band:
        return Judgement("tie", f"{apart(rel)}: within the ±{band:.0%} noise band (single run, no spread measured)",
                         rel)
    if metric.percentile:
        if a.ci is not None and b.ci is not None:
            if a.ci[0] <= b.ci[1] and b.ci[0] <= a.ci[1]:
                return Judgement("tie", f"{apart(rel)}, but the 95% intervals of the {metric.percentile} overlap "
                                        f"({_fmt(a.ci[0])}..{_fmt(a.ci[1])} vs {_fmt(b.ci[0])}..{_fmt(b.ci[1])} ms)",
                                 rel)
            return Judgement(winner, f"{apart(rel)}, beyond the ±{band:.0%} noise band and the 95% intervals of "
                                     f"the {metric.percentile}", rel)
        if a.unreliable or b.unreliable:
            return Judgement("tie", f"{apart(rel)}, but the {metric.percentile} is from too few samples "
                                    "(flagged unreliable) and no raw samples were found to bound it", rel)
    return Judgement(winner, f"{apart(rel)}: beyond the ±{band:.0%} noise band (single run)", rel)


@dataclass
class Ranking:
    """For one metric: the best engine(s) and how every other engine compares with the best."""

    metric: Metric
    figures: dict[str, Figure]
    best: list[str] = field(default_factory=list)               # the best, plus engines tied with it
    others: dict[str, Judgement] = field(default_factory=dict)  # engine -> judgement against the best

    @property
    def clear_winner(self) -> str | None:
        return self.best[0] if len(self.best) == 1 and len(self.figures) > 1 else None


def rank(figures: dict[str, Figure], metric: Metric, band: float = NOISE_BAND) -> Ranking:
    rk = Ranking(metric, figures)
    if not figures or metric.better is None:
        return rk
    lower = metric.better != "higher"
    order = sorted(figures, key=lambda e: figures[e].mid if lower else -figures[e].mid)
    top = order[0]
    rk.best = [top]
    for e in order[1:]:
        j = judge(figures[top], figures[e], metric, band)
        rk.others[e] = j
        if j.verdict == "tie":
            rk.best.append(e)
    return rk


# -- lines of pipeline code ------------------------------------------------------------------------------------
def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return lines


def count_code_lines(path: Path) -> int:
    """Non-blank lines that are neither comments nor docstrings."""
    text = path.read_text(errors="replace")
    try:
        doc = _docstring_lines(ast.parse(text))
    except SyntaxError:
        doc = set()
    return sum(1 for i, line in enumerate(text.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and i not in doc)


def pipeline_code_lines(engine: str, root: Path | None = None) -> tuple[int, list[str]] | None:
    """Lines of code in pipelines/<engine>/*.py (from the project as it is now), and the files counted."""
    folder = (root or paths.pipelines_dir()) / engine
    if not folder.is_dir() or "/" in engine or engine.startswith("."):
        return None
    files = sorted(f for f in folder.glob("*.py") if f.is_file())
    if not files:
        return None
    return sum(count_code_lines(f) for f in files), [f.name for f in files]
