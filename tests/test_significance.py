"""The statistics behind every verdict (harness.metrics.significance, harness.report.verdicts.judge/rank) and the
pure part of `harness bench noise`. No services."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.bench.noise import bands_from_figures, relative_spread
from harness.metrics import significance as S
from harness.report import verdicts as M

BAND = S.NoiseBand({"p50": 0.07, "p99": 0.10, "cpu_per_m": 0.12}, Path("bench-noise-latest.json"), "2026-11-25")


def figs(values: list[float]) -> M.Figure:
    return M.Figure(list(values))


# -- identical samples are never a win --------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 5])
def test_identical_repeats_are_never_a_win(n: int) -> None:
    rng = np.random.default_rng(n)
    same = list(rng.normal(2000, 100, n))
    for metric in (M.P50, M.THR_IN, M.CPU_M):
        j = M.judge(figs(same), figs(same), metric)
        assert j.verdict in ("tie", S.NOT_ENOUGH) and not j.called
        rk = M.rank({"x": figs(same), "y": figs(same), "z": figs(same)}, metric)
        assert sorted(rk.best) == ["x", "y", "z"] and rk.clear_winner is None
    constant = [5.0] * n
    assert M.judge(figs(constant), figs(constant), M.BAD).verdict in ("tie", S.NOT_ENOUGH)


def test_identical_single_runs_are_never_a_win() -> None:
    for noise in (None, BAND):
        assert M.judge(figs([2000.0]), figs([2000.0]), M.P50, noise).verdict == "tie"
    # one engine's samples shown twice, each with its interval over window closes
    rng = np.random.default_rng(0)
    x = rng.lognormal(7, 0.3, 250)
    ci = S.block_bootstrap_ci(x, np.repeat(np.arange(5), 50), 50)
    a = M.Figure([ci.estimate], ci=(ci.lo, ci.hi), bootstrap=ci)
    assert M.judge(a, a, M.P50, BAND).verdict == "tie"


def test_single_runs_without_a_measured_band_are_ties() -> None:
    j = M.judge(figs([100.0]), figs([1000.0]), M.CPU_M, None)
    assert j.verdict == "tie" and S.NO_NOISE_BAND in j.reason
    assert M.judge(figs([100.0]), figs([1000.0]), M.CPU_M, BAND).verdict == "a"
    within = M.judge(figs([100.0]), figs([110.0]), M.CPU_M, BAND)
    assert within.verdict == "tie" and "single run" in within.reason


# -- a real difference is found ---------------------------------------------------------------------------------
def test_a_planted_30_percent_difference_is_found_at_five_repeats() -> None:
    rng = np.random.default_rng(42)
    found = 0
    for _ in range(20):
        a = list(1000 * (1 + rng.normal(0, 0.05, 5)))
        b = list(1300 * (1 + rng.normal(0, 0.05, 5)))
        j = M.judge(figs(a), figs(b), M.P50)
        found += j.verdict == "a"
        assert j.verdict != "b"
    assert found == 20
    # and with Holm over three engine pairs (one engine equal to the best)
    a = list(1000 * (1 + rng.normal(0, 0.05, 5)))
    a2 = list(1000 * (1 + rng.normal(0, 0.05, 5)))
    b = list(1300 * (1 + rng.normal(0, 0.05, 5)))
    rk = M.rank({"a": figs(a), "a2": figs(a2), "b": figs(b)}, M.P50)
    assert "b" not in rk.best and rk.others["b"].called and set(rk.best) == {"a", "a2"}
    assert rk.others["b"].p_value is not None and rk.others["b"].p_value < S.ALPHA


def test_a_significant_but_tiny_difference_is_a_tie() -> None:
    a, b = [100.0, 100.1, 100.2, 100.3, 100.4], [101.0, 101.1, 101.2, 101.3, 101.4]
    c = S.compare_repeats(a, b, lower_is_better=True)
    assert c.p_value == pytest.approx(2 / 252) and not c.practical and c.verdict() == "tie"
    assert M.judge(figs(a), figs(b), M.P50).verdict == "tie"


def test_not_enough_repeats_at_three() -> None:
    a, b = [1000.0, 1010.0, 990.0], [3000.0, 3010.0, 2990.0]
    j = M.judge(figs(a), figs(b), M.P50)
    assert j.verdict == S.NOT_ENOUGH and not j.called and "--repeat 5" in j.reason
    c = S.compare_repeats(a, b, lower_is_better=True)
    assert c.p_value is None and not c.enough and c.verdict() == S.NOT_ENOUGH
    rk = M.rank({"a": figs(a), "b": figs(b)}, M.P50)
    assert set(rk.best) == {"a", "b"} and rk.others["b"].verdict == S.NOT_ENOUGH
    # one run against five is not enough either
    assert M.judge(figs([1000.0]), figs([3000.0] * 5), M.P50, BAND).verdict == S.NOT_ENOUGH


# -- Holm -------------------------------------------------------------------------------------------------------
def test_holm_matches_a_hand_computed_example() -> None:
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> raised to 0.06 (monotone)
    got = S.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])     # capped at 1
    assert S.holm([]).size == 0


def test_smallest_exact_p_at_five_survives_holm_over_three_pairs() -> None:
    p = S.compare_repeats([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], lower_is_better=True).p_value
    assert p == pytest.approx(2 / 252)
    assert S.holm([p, 1.0, 1.0])[0] < S.ALPHA


# -- intervals over window closes -------------------------------------------------------------------------------
def test_interval_widens_when_the_same_samples_come_from_fewer_closes() -> None:
    rng = np.random.default_rng(7)
    # 5 closes of 50 keys: each close shifts all of its keys together (one flush), as in the quick run
    shift = rng.normal(0, 150, 5)
    x = np.concatenate([2000 + s + rng.normal(0, 20, 50) for s in shift])
    five = S.block_bootstrap_ci(x, np.repeat(np.arange(5), 50), 50)
    each = S.block_bootstrap_ci(x, np.arange(x.size), 50)        # the same values as 250 independent closes
    assert five.n_blocks == 5 and each.n_blocks == 250 and five.n_samples == each.n_samples == 250
    assert five.estimate == each.estimate == float(np.percentile(x, 50, method="higher"))
    assert five.half_width > 2 * each.half_width
    assert five.lo <= five.estimate <= five.hi


def test_bootstrap_is_deterministic_and_flags_wide_intervals() -> None:
    rng = np.random.default_rng(3)
    x = rng.lognormal(7, 0.4, 3000)
    closes = np.repeat(np.arange(60), 50)
    a = S.block_bootstrap_ci(x, closes, 99)
    assert a == S.block_bootstrap_ci(x, closes, 99)
    assert not a.unreliable and a.half_width <= S.RELIABLE_HALF_WIDTH * a.estimate
    one = S.block_bootstrap_ci(x, np.zeros(x.size), 50)             # one close: nothing to resample
    assert one.n_blocks == 1 and one.unreliable and one.hi == float("inf")
    few = S.block_bootstrap_ci(x[:200], closes[:200], 99)            # 200 samples cannot bound a p99 above
    assert few.unreliable and few.hi == float("inf")
    with pytest.raises(ValueError):
        S.block_bootstrap_ci([float("nan")], [0], 50)


def test_bootstrap_matches_explicit_resamples() -> None:
    """The vectorised replicate percentiles equal those of resampling the blocks one by one."""
    rng = np.random.default_rng(11)
    x = rng.lognormal(5, 0.5, 400)
    b = rng.integers(0, 23, 400)
    got = S.block_bootstrap_ci(x, b, 90, n_boot=200, seed=5)
    _, blk = np.unique(b, return_inverse=True)
    nb = int(blk.max()) + 1
    order = np.argsort(x, kind="stable")
    xs, bs = x[order], blk[order]
    draws = np.random.default_rng(5).integers(0, nb, size=(200, nb))
    stats = [np.percentile(np.repeat(xs, np.bincount(d, minlength=nb)[bs]), 90, method="higher") for d in draws]
    lo, hi = np.quantile(stats, [0.025, 0.975])
    assert (got.lo, got.hi) == pytest.approx((lo, hi), rel=1e-12)


# -- the noise band on file ---------------------------------------------------------------------------------------
def test_noise_band_file_round_trip(tmp_path: Path) -> None:
    assert S.measured_noise_band(tmp_path / S.NOISE_FILE) is None
    (tmp_path / S.NOISE_FILE).write_text(json.dumps({
        "measured_at": "2026-11-25T10:00:00+00:00", "scenario": "quick", "engine": "baseline", "repeats": 5,
        "machine": {"hostname": "vm", "cpu_model": "AMD EPYC", "cores": 2}, "bands": {"p50": 0.07, "duplicates": None}}))
    band = S.measured_noise_band(tmp_path / S.NOISE_FILE)
    assert band is not None and band.band("p50") == 0.07 and band.band("duplicates") is None
    assert "harness bench noise" in band.source and "2026-11-25" in band.source
    assert band.applies_to({"cpu_model": "AMD EPYC", "cores": 2}) and not band.applies_to({"cores": 64})
    (tmp_path / S.NOISE_FILE).write_text("{broken")
    assert S.measured_noise_band(tmp_path / S.NOISE_FILE) is None


def test_bench_noise_spread() -> None:
    assert relative_spread([100, 110, 90, 105, 95]) == pytest.approx(0.2)
    assert relative_spread([0, 0, 0]) == 0.0
    assert relative_spread([0, 0, 2]) is None          # median 0: no relative band
    assert relative_spread([5]) is None
    assert bands_from_figures({"p50": [2000, 2100, 1900, 2050, 1950], "bad_windows": [0, 0, 0, 0, 0]}) == \
        {"p50": 0.1, "bad_windows": 0.0}
