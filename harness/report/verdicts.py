"""The figures a report shows and compares, each read from one typed engine entry of result.json, and how to judge
a difference between two engines (or two runs) honestly (the statistics: harness.metrics.significance).

Judging (used by the decision summary and by `compare`):
- with MIN_REPEATS (5) or more measured repeats on both sides, a difference is called only when the exact
  two-sided Mann-Whitney test, Holm-corrected over the engine pairs of the metric, gives p < 0.05 and the
  medians differ by at least MIN_PRACTICAL (5%) of the better one; else it is a tie;
- with 2-4 repeats on either side (or one run against repeats) the verdict is "not enough repeats": such a test
  cannot reach 5%, and min..max ranges of a few repeats do not overlap by chance far too often;
- with a single run on both sides, a difference is a win only beyond the noise band `harness bench noise`
  measured on this machine (and MIN_PRACTICAL), and, for latency percentiles, when their block-bootstrap 95%
  intervals over window closes do not overlap. Without a measured band every single-run difference is a tie.
- counts checked against ground truth (Metric.exact: wrong, missing, extra windows, duplicates) are not samples:
  a single run's counts are compared as they are.
"""

from __future__ import annotations

import ast
import itertools
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.metrics import significance as S
from harness import paths
from harness.report.data import EngineRun, num
from harness.results.document import Percentiles

NOT_ENOUGH = S.NOT_ENOUGH


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
    exact: bool = False                  # a count checked against ground truth, not a sample: no noise to allow for

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
BAD = Metric("bad_windows", "Windows wrong + missing + extra", "windows", _bad_windows, "lower", exact=True)
WRONG = Metric("wrong", "Wrong windows", "windows", lambda r: r.correctness.wrong if r.correctness else None,
               "lower", exact=True)
MISSING = Metric("missing", "Missing windows", "windows",
                 lambda r: r.correctness.missing if r.correctness else None, "lower", exact=True)
DUPS = Metric("duplicates", "Duplicates", "rows", lambda r: r.entry.windows.duplicates if r.entry.windows else None,
              "lower", exact=True)
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
    ci: tuple[float, float] | None = None      # single run, latency percentile: 95% CI over window closes
    samples: int | None = None                 # ... and the number of window closes it rests on
    bootstrap: S.BootstrapCI | None = None

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


def run_bootstrap(run: EngineRun, metric: Metric) -> S.BootstrapCI | None:
    """The block-bootstrap interval of a percentile figure of one engine run (None without raw samples)."""
    if not metric.percentile:
        return None
    key = ("bootstrap", metric.column, metric.percentile)
    if key not in run.memo:
        samples, closes = run.latency_blocks(metric.column)
        run.memo[key] = S.block_bootstrap_ci(samples, closes, float(metric.percentile[1:])) if samples.size else None
    ci: S.BootstrapCI | None = run.memo[key]
    return ci


def percentile_unreliable(run: EngineRun, metric: Metric) -> bool:
    """One engine run's percentile is unreliable when its 95% interval over window closes is wider than ±10% of
    it; a run without raw samples (an older result) keeps the sample-count rule (Metric.unreliable)."""
    boot = run_bootstrap(run, metric)
    return boot.unreliable if boot is not None else metric.unreliable(run)


def figure(runs: list[EngineRun], metric: Metric) -> Figure | None:
    """The metric over an engine's measured (complete) repeats, or None when none measured it."""
    measured = [r for r in runs if r.measured]
    vals = [(r, metric.value(r)) for r in measured]
    vals = [(r, v) for r, v in vals if v is not None]
    if not vals:
        return None
    fig = Figure([v for _, v in vals], unreliable=any(metric.unreliable(r) for r, _ in vals))
    if fig.n == 1 and metric.percentile:
        boot = run_bootstrap(vals[0][0], metric)
        if boot is not None:
            # a single run's percentile is as trustworthy as its interval over window closes, whatever the count
            fig.bootstrap, fig.ci, fig.samples, fig.unreliable = boot, (boot.lo, boot.hi), boot.n_blocks, \
                boot.unreliable
    return fig


@dataclass
class Judgement:
    verdict: str        # "a", "b" (which is better), "tie" or NOT_ENOUGH ("not enough repeats")
    reason: str
    rel: float | None = None     # relative difference to the better figure
    p_value: float | None = None  # across repeats: the (Holm-adjusted) p of the test

    @property
    def called(self) -> bool:
        """A difference was called: one engine (or run) is better."""
        return self.verdict in ("a", "b")


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def apart(rel: float) -> str:
    """A relative difference as people read it: 7.8% apart, or 12.3x the better figure."""
    if math.isinf(rel):
        return "one is zero, the other not"
    return f"{rel:.1%} apart" if rel < 1 else f"{1 + rel:.1f}x the better figure"


def _spread(f: Figure) -> str:
    return f"{_fmt(f.lo)}..{_fmt(f.hi)} (n={f.n})" if f.has_spread else f"{_fmt(f.mid)} (single run)"


def repeat_p(a: Figure, b: Figure, metric: Metric) -> float | None:
    """The raw p of the repeats test for a pair, or None when the pair has too few repeats to be tested."""
    if a.n < S.MIN_REPEATS or b.n < S.MIN_REPEATS:
        return None
    return S.compare_repeats(a.values, b.values, lower_is_better=metric.better != "higher").p_value


def judge(a: Figure, b: Figure, metric: Metric, noise: S.NoiseBand | None = None, *,
          p_adjusted: float | None = None, family: int = 1) -> Judgement:
    """Is a better than b, b better than a, or is the difference not shown by what was measured?

    p_adjusted is the pair's Holm-adjusted p when it is one of `family` pairs of the metric judged together
    (rank() and compare pass it); without it the pair's own p is used.
    """
    lower = metric.better != "higher"
    if a.n >= 2 or b.n >= 2:
        return _judge_repeats(a, b, lower, p_adjusted, family)
    return _judge_single(a, b, metric, lower, noise)


def _judge_repeats(a: Figure, b: Figure, lower: bool, p_adjusted: float | None, family: int) -> Judgement:
    c = S.compare_repeats(a.values, b.values, lower_is_better=lower)
    spread = f"{_spread(a)} vs {_spread(b)}"
    if not c.enough:
        return Judgement(NOT_ENOUGH, f"{a.n} vs {b.n} repeats ({spread}): a test at 95% needs {S.MIN_REPEATS} or "
                                     f"more on each side (--repeat {S.MIN_REPEATS})", c.rel_diff)
    p = c.p_value if p_adjusted is None else p_adjusted
    test = "exact Mann-Whitney" + (f", Holm-adjusted over {family} pairs" if family > 1 else "")
    if c.better is None or p is None:
        return Judgement("tie", f"equal medians ({spread})", c.rel_diff, p)
    if p >= S.ALPHA:
        return Judgement("tie", f"{apart(c.rel_diff)}, but p = {p:.3f} ({test}) is not below {S.ALPHA:g}: not "
                                f"shown to differ ({spread})", c.rel_diff, p)
    if not c.practical:
        return Judgement("tie", f"p = {p:.3f} ({test}), but {apart(c.rel_diff)} is under the "
                                f"{S.MIN_PRACTICAL:.0%} minimum practical difference ({spread})", c.rel_diff, p)
    return Judgement(c.better or "tie", f"{apart(c.rel_diff)}, p = {p:.3f} ({test}) ({spread})", c.rel_diff, p)


def _judge_single(a: Figure, b: Figure, metric: Metric, lower: bool, noise: S.NoiseBand | None) -> Judgement:
    am, bm = a.mid, b.mid
    if am == bm:
        return Judgement("tie", "equal (single run)", 0.0)
    best, worst = (am, bm) if (am < bm) == lower else (bm, am)
    rel = (abs(worst - best) / abs(best)) if best != 0 else math.inf
    winner = "a" if ((am < bm) if lower else (am > bm)) else "b"
    if metric.exact:
        return Judgement(winner, f"counted against ground truth: {_fmt(am)} vs {_fmt(bm)} (single run)", rel)
    if noise is None:
        return Judgement("tie", f"{apart(rel)}; single run: {S.NO_NOISE_BAND}", rel)
    band = noise.band(metric.key)
    if band is None:
        return Judgement("tie", f"{apart(rel)}; single run: the measured noise band has no figure for this metric "
                                "(its repeats' median was 0)", rel)
    need = max(band, S.MIN_PRACTICAL)
    if rel <= need:
        return Judgement("tie", f"{apart(rel)}: within the measured ±{band:.0%} noise band"
                                + (f" and the {S.MIN_PRACTICAL:.0%} minimum" if band < S.MIN_PRACTICAL else "")
                                + " (single run)", rel)
    if metric.percentile:
        if a.ci is not None and b.ci is not None:
            if a.ci[0] <= b.ci[1] and b.ci[0] <= a.ci[1]:
                return Judgement("tie", f"{apart(rel)}, beyond the measured ±{band:.0%} noise band, but the 95% "
                                        f"intervals of the {metric.percentile} over window closes overlap "
                                        f"({_fmt(a.ci[0])}..{_fmt(a.ci[1])} vs {_fmt(b.ci[0])}..{_fmt(b.ci[1])} ms; "
                                        f"single run)", rel)
            return Judgement(winner, f"{apart(rel)}, beyond the measured ±{band:.0%} noise band and the 95% "
                                     f"intervals of the {metric.percentile} over window closes (single run)", rel)
        if a.unreliable or b.unreliable:
            return Judgement("tie", f"{apart(rel)}, but the {metric.percentile} is from too few samples "
                                    "(flagged unreliable) and no raw samples were found to bound it (single run)", rel)
    return Judgement(winner, f"{apart(rel)}: beyond the measured ±{band:.0%} noise band (single run)", rel)


@dataclass
class Ranking:
    """For one metric: the best engine(s) and how every other engine compares with the best."""

    metric: Metric
    figures: dict[str, Figure]
    best: list[str] = field(default_factory=list)               # the best, plus engines not shown to be behind it
    others: dict[str, Judgement] = field(default_factory=dict)  # engine -> judgement against the best

    @property
    def clear_winner(self) -> str | None:
        return self.best[0] if len(self.best) == 1 and len(self.figures) > 1 else None


def holm_family(figures: dict[str, Figure], metric: Metric) -> dict[frozenset[str], float]:
    """Holm-adjusted p of every testable pair of engines of one metric (all pairs, not only those with the best:
    the correction must count every comparison a reader could draw from the table)."""
    pairs, raw = [], []
    for x, y in itertools.combinations(figures, 2):
        p = repeat_p(figures[x], figures[y], metric)
        if p is not None:
            pairs.append(frozenset((x, y)))
            raw.append(p)
    return dict(zip(pairs, (float(v) for v in S.holm(raw))))


def rank(figures: dict[str, Figure], metric: Metric, noise: S.NoiseBand | None = None) -> Ranking:
    rk = Ranking(metric, figures)
    if not figures or metric.better is None:
        return rk
    lower = metric.better != "higher"
    order = sorted(figures, key=lambda e: figures[e].mid if lower else -figures[e].mid)
    adjusted = holm_family(figures, metric)
    top = order[0]
    rk.best = [top]
    for e in order[1:]:
        j = judge(figures[top], figures[e], metric, noise, p_adjusted=adjusted.get(frozenset((top, e))),
                  family=len(adjusted))
        rk.others[e] = j
        if not j.called:
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
