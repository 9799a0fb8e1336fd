"""When is a difference a difference: confidence intervals over window closes, a rank test across repeats with
Holm's correction, and the noise band `harness bench noise` measured for single runs.

Why blocks: there is one latency sample per key and window, but all the keys of a window are closed by the same
watermark advance and land in the same sink flush, so their latencies move together. The quick run's 250 samples
come from 5 window closes; treating them as 250 independent draws makes an interval far too narrow. Resampling
whole closes (a block bootstrap) keeps that dependence, so an interval widens when the same samples come from
fewer closes.

Why a rank test with a practical minimum: across repeats each engine has a handful of figures. An exact
Mann-Whitney test makes no assumption about their distribution; Holm's step-down correction keeps the chance of
calling any of a metric's engine pairs different by luck at 5%; and a difference smaller than MIN_PRACTICAL of
the better median is not worth a decision even when it is real.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness import paths
from harness.metrics.stats import min_samples_for

ALPHA = 0.05                 # family-wise error rate per metric (Holm over its engine pairs)
MIN_REPEATS = 5              # 5 vs 5 is the smallest design whose exact two-sided p (2/252) survives Holm over 3 pairs
MIN_PRACTICAL = 0.05         # a real difference below 5% of the better median is not a win
RELIABLE_HALF_WIDTH = 0.10   # a percentile whose 95% interval is wider than ±10% of it is flagged unreliable
CI_LEVEL = 0.95
N_BOOT = 2000

NOT_ENOUGH = "not enough repeats"          # a verdict beside "a", "b" and "tie": never a win
NOISE_FILE = "bench-noise-latest.json"
NO_NOISE_BAND = "no noise band measured on this machine (run harness bench noise)"

_CHUNK_CELLS = 2_000_000     # replicate x block cells per vectorised step (16 MB of float64)


# -- within a run: block bootstrap over window closes ---------------------------------------------------------
@dataclass(frozen=True)
class BootstrapCI:
    """A percentile with its block-bootstrap confidence interval. Bounds are infinite with fewer than two
    blocks: one window close cannot say how the next one would have gone."""

    pct: float
    estimate: float
    lo: float
    hi: float
    n_blocks: int
    n_samples: int
    level: float = CI_LEVEL

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0

    @property
    def unreliable(self) -> bool:
        hw = self.half_width
        if math.isinf(hw) or math.isnan(hw):
            return True
        return hw > RELIABLE_HALF_WIDTH * abs(self.estimate) if self.estimate != 0 else hw > 0


def _higher_index(n: np.ndarray | int, q: float) -> np.ndarray:
    """0-based order statistic numpy's percentile(method="higher") picks from n sorted values, with numpy's own
    arithmetic ((n - 1) * q, then ceil), so each replicate's percentile is the one np.percentile would give."""
    n_arr = np.asarray(n, dtype=np.float64)
    return np.clip(np.ceil((n_arr - 1) * q), 0, n_arr - 1).astype(np.int64)


def block_bootstrap_ci(samples: Sequence[float] | np.ndarray, block_ids: Sequence[Any] | np.ndarray, pct: float, *,
                       n_boot: int = N_BOOT, seed: int = 0, level: float = CI_LEVEL) -> BootstrapCI:
    """Confidence interval of the pct-th percentile (method "higher", as in harness.metrics.stats) by resampling
    whole blocks with replacement; a block is one window close (all samples sharing a window end).

    Each replicate draws as many blocks as there are, so its sample count varies as block sizes do. The interval
    is the percentile interval of the replicates' percentiles. A resample never holds a value above the largest
    sample, so with fewer than 10/(1-p) samples (harness.metrics.stats.min_samples_for) the upper bound of a tail
    percentile is not known and is infinite. Deterministic for a given seed. Raises ValueError for mismatched
    lengths or no finite sample.
    """
    x = np.asarray(samples, dtype=np.float64)
    b = np.asarray(block_ids)
    if x.shape != b.shape or x.ndim != 1:
        raise ValueError(f"samples and block_ids must be 1-d and of one length, got {x.shape} and {b.shape}")
    keep = np.isfinite(x)
    x, b = x[keep], b[keep]
    if x.size == 0:
        raise ValueError("no finite samples")
    q = float(pct) / 100.0
    estimate = float(np.percentile(x, pct, method="higher"))
    _, block = np.unique(b, return_inverse=True)
    n_blocks = int(block.max()) + 1
    if n_blocks < 2:
        return BootstrapCI(float(pct), estimate, -math.inf, math.inf, n_blocks, int(x.size), level)

    order = np.argsort(x, kind="stable")
    xs, bs = x[order], block[order]
    n = xs.size
    # A replicate's weight on a sample is how often the sample's block was drawn; its percentile is the sorted
    # sample where the cumulative weight passes the wanted rank. The cumulative weight is taken first at every
    # step-th sorted position (one matrix product over blocks), then within the one step that holds the rank.
    step = max(1, math.isqrt(n))
    n_grid = -(-n // step)
    per_chunk = np.bincount(bs * n_grid + np.arange(n) // step,
                            minlength=n_blocks * n_grid).reshape(n_blocks, n_grid).astype(np.float64)
    at_grid = np.concatenate([np.zeros((n_blocks, 1)), np.cumsum(per_chunk, axis=1)], axis=1)  # before position k*step
    within = np.arange(step)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot, dtype=np.float64)
    rows = max(1, _CHUNK_CELLS // max(n_blocks, n_grid + 1))
    for start in range(0, n_boot, rows):
        k_rows = min(rows, n_boot - start)
        drawn = rng.integers(0, n_blocks, size=(k_rows, n_blocks))   # multinomial counts, fast for many blocks
        counts = np.bincount((drawn + np.arange(k_rows)[:, None] * n_blocks).ravel(),
                             minlength=k_rows * n_blocks).reshape(k_rows, n_blocks).astype(np.float64)
        cum_grid = counts @ at_grid                                     # replicates x (n_grid + 1)
        want = _higher_index(cum_grid[:, -1], q)
        k = (cum_grid[:, :-1] <= want[:, None]).sum(axis=1) - 1         # the step holding the wanted rank
        pos = np.minimum(k[:, None] * step + within, n - 1)
        w = np.take_along_axis(counts, bs[pos], axis=1)
        w[k[:, None] * step + within >= n] = 0.0                        # past the last sample of a short last step
        cum = cum_grid[np.arange(k_rows), k][:, None] + np.cumsum(w, axis=1)
        stats[start:start + k_rows] = xs[pos[np.arange(k_rows), (cum > want[:, None]).argmax(axis=1)]]
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    if n < min_samples_for(float(pct)):
        hi = math.inf
    return BootstrapCI(float(pct), estimate, float(lo), float(hi), n_blocks, int(x.size), level)


# -- across repeats: exact rank test, Holm ----------------------------------------------------------------------
@dataclass(frozen=True)
class RepeatComparison:
    """Two engines' per-repeat figures of one metric, before the family's correction."""

    n_a: int
    n_b: int
    median_a: float
    median_b: float
    better: str | None          # "a", "b", or None when the medians are equal
    rel_diff: float             # |median difference| / |better median| (inf when the better one is 0)
    p_value: float | None       # exact two-sided Mann-Whitney; None when there are too few repeats to test
    min_practical: float = MIN_PRACTICAL

    @property
    def enough(self) -> bool:
        return self.n_a >= MIN_REPEATS and self.n_b >= MIN_REPEATS

    @property
    def practical(self) -> bool:
        return self.rel_diff >= self.min_practical

    def verdict(self, p_adjusted: float | None = None, alpha: float = ALPHA) -> str:
        """"a" or "b" only with enough repeats, a (Holm-adjusted) p below alpha and a practical difference."""
        if not self.enough:
            return NOT_ENOUGH
        p = self.p_value if p_adjusted is None else p_adjusted
        if self.better is None or p is None or p >= alpha or not self.practical:
            return "tie"
        return self.better


def _rel(best: float, worst: float) -> float:
    if best == worst:
        return 0.0
    return abs(worst - best) / abs(best) if best != 0 else math.inf


def compare_repeats(a_values: Sequence[float], b_values: Sequence[float], *, lower_is_better: bool,
                    min_practical: float = MIN_PRACTICAL) -> RepeatComparison:
    """The exact two-sided Mann-Whitney U test of two engines' per-repeat figures and the relative difference of
    their medians. The test runs only with MIN_REPEATS or more on both sides (fewer cannot reach a p that survives
    the correction); identical samples give p = 1."""
    a = [float(v) for v in a_values]
    b = [float(v) for v in b_values]
    if not a or not b:
        raise ValueError("compare_repeats needs at least one value on each side")
    ma, mb = statistics.median(a), statistics.median(b)
    better: str | None = None
    if ma != mb:
        better = "a" if ((ma < mb) if lower_is_better else (ma > mb)) else "b"
    best, worst = (ma, mb) if better in ("a", None) else (mb, ma)
    p: float | None = None
    if len(a) >= MIN_REPEATS and len(b) >= MIN_REPEATS:
        if len(set(a) | set(b)) == 1:
            p = 1.0     # every value equal: nothing to rank (scipy's exact method would too, with a warning)
        else:
            from scipy.stats import mannwhitneyu

            p = float(mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue)
    return RepeatComparison(len(a), len(b), ma, mb, better, _rel(best, worst), p, min_practical)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input's order: the k-th smallest of m is multiplied by m-k+1,
    made non-decreasing in that order, and capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (m - np.arange(m)))
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


# -- single runs: the measured noise band ---------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseBand:
    """The repeat-to-repeat spread `harness bench noise` measured, per metric key (harness.report.verdicts):
    a relative band, or None where it could not be expressed relative to the median (a median of 0)."""

    bands: dict[str, float | None]
    path: Path
    measured_at: str
    machine: dict[str, Any] = field(default_factory=dict)
    scenario: str = ""
    engine: str = ""
    repeats: int = 0
    method: str = ""

    def band(self, key: str) -> float | None:
        return self.bands.get(key)

    def applies_to(self, machine: dict[str, Any] | None) -> bool:
        """False when a run was measured on another kind of machine than the band (CPU model or core count)."""
        if not machine or not self.machine:
            return True
        return all(machine.get(k) == self.machine.get(k) for k in ("cpu_model", "cores")
                   if machine.get(k) is not None and self.machine.get(k) is not None)

    @property
    def source(self) -> str:
        m = self.machine
        where = ", ".join(str(x) for x in (m.get("hostname"), f"{m['cores']} cores" if m.get("cores") else None,
                                           m.get("cpu_model")) if x)
        what = f"{self.engine} on {self.scenario}, {self.repeats} repeats" if self.engine else f"{self.repeats} repeats"
        return f"harness bench noise, {self.measured_at} ({what}; {where or 'machine not recorded'}): {self.path}"


def measured_noise_band(path: Path | None = None) -> NoiseBand | None:
    """The latest noise band on file (results/bench-noise-latest.json under harness.paths.results_dir()), or None
    when none was measured or the file cannot be read: then single runs are not judged against any band."""
    p = path or paths.results_dir() / NOISE_FILE
    try:
        d = json.loads(p.read_text())
        raw = d["bands"]
        bands = {str(k): (None if v is None else float(v)) for k, v in raw.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return NoiseBand(bands, p, str(d.get("measured_at", "unknown date")), dict(d.get("machine") or {}),
                     str(d.get("scenario", "")), str(d.get("engine", "")), int(d.get("repeats") or 0),
                     str(d.get("method", "")))
