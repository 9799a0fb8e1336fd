"""Report figures: matplotlib (Agg), returned as PNG bytes, one colour per engine kept across every plot.

Every function takes Items (an engine run, its legend label, colour key and line style) so the run report and
`compare` draw the same plots; each returns None when there is nothing to draw (the report says so instead).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from harness.report.data import EngineRun, per_second  # noqa: E402
from harness.results.document import LoadResult, WindowSummary  # noqa: E402

# An engine states its colour (its class's `colour`, recorded in result.json); others get a stable pick.
PALETTE = ["#9467bd", "#d62728", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#843c39"]
RUN_STYLES = ["-", "--", ":", "-."]
HATCHES = {"-": None, "--": "//", ":": "..", "-.": "xx"}     # bars: the hatch that stands for a line style
RUN_HATCHES = [None, "//", "..", "xx", "\\\\", "++"]
DPI = 110
SIZE = (7.2, 4.2)


def colour_map(names: Iterable[str], stated: Mapping[str, str] | None = None) -> dict[str, str]:
    """Engine -> colour: the colour an engine stated (result.json); each other engine gets a stable pick by name
    from PALETTE (a hash of the name), moved to the next free colour on a clash, resolved in name order."""
    names = list(names)
    out = {n: (stated or {})[n] for n in names if n in (stated or {})}
    taken = set(out.values())
    for n in sorted(set(names) - set(out)):
        i = zlib.crc32(n.encode()) % len(PALETTE)
        for _ in range(len(PALETTE)):
            if PALETTE[i] not in taken:
                break
            i = (i + 1) % len(PALETTE)
        out[n] = PALETTE[i]
        taken.add(PALETTE[i])
    return out


@dataclass
class Item:
    """One line in a plot: an engine run with its legend label and style."""

    run: EngineRun
    label: str
    colour: str
    style: str = "-"
    show_label: bool = True      # repeats after the first share the colour and are not repeated in the legend


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _new(nrows: int = 1, height: float | None = None, sharex: bool = True) -> tuple[Any, Any]:
    fig, axes = plt.subplots(nrows, 1, figsize=(SIZE[0], height or SIZE[1]), sharex=sharex, squeeze=False)
    for ax in axes[:, 0]:
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes[:, 0]


def _legend(ax: Any, **kw: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, frameon=False, **kw)


def _ms_formatter(v: float, _pos: Any) -> str:
    if v >= 60_000:
        return f"{v / 60_000:g} min"
    if v >= 1000:
        return f"{v / 1000:g} s"
    return f"{v:g} ms"


def _lw(it: Item) -> float:
    return 1.8 if it.show_label else 1.0


def _label(it: Item) -> str | None:
    return it.label if it.show_label else None


def _warmup(ax: Any, items: list[Item]) -> None:
    wu = max((it.run.warmup_ms for it in items), default=0) / 1000
    if wu > 0:
        ax.axvspan(0, wu, color="#000000", alpha=0.05, lw=0)
        ax.text(wu / 2, 0.98, "warm-up", transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=7,
                color="#555555")


def _faults(ax: Any, items: list[Item]) -> None:
    """Each fault that fired as a dashed line in its engine's colour, its recovery interval shaded; one label
    per moment, naming every kind that fired then."""
    labels: dict[float, list[str]] = {}
    for it in items:
        tb = it.run.time_base_ms
        for f in (it.run.entry.faults or []) if tb is not None else []:
            if f.fired_at_ms is None or tb is None:
                continue
            x = (f.fired_at_ms - tb) / 1000
            ax.axvline(x, color=it.colour, ls="--", lw=1)
            kinds = labels.setdefault(round(x), [])
            if f.kind not in kinds:
                kinds.append(f.kind)
            if f.recovery_ms is not None:
                ax.axvspan(x, x + f.recovery_ms / 1000, color=it.colour, alpha=0.08, lw=0)
    for x, kinds in labels.items():
        ax.text(x, 0.98, " " + "\n ".join(kinds), transform=ax.get_xaxis_transform(), va="top", fontsize=7,
                color="#333333")


# -- latency -----------------------------------------------------------------------------------------------
def latency_cdf(items: list[Item], slo_p99_ms: float | None = None, slo_p50_ms: float | None = None) -> bytes | None:
    """CDF of event-to-result latency per window (warm-up excluded), log-scale x."""
    data = [(it, np.sort(it.run.latency_samples())) for it in items]
    data = [(it, a) for it, a in data if a.size]
    if not data:
        return None
    fig, (ax,) = _new()
    for it, a in data:
        y = np.arange(1, a.size + 1) / a.size
        lab = f"{it.label} (n={a.size})" if it.show_label else None
        ax.step(np.maximum(a, 1e-3), y, where="post", color=it.colour, ls=it.style, lw=_lw(it), label=lab)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(1, 10) * 1.0))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(_ms_formatter))
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        ax.axhline(q, color="#333333", lw=0.6, ls=":")
        ax.text(1.0, q, f" {name}", transform=ax.get_yaxis_transform(), va="center", fontsize=7, color="#333333")
    for v, name in ((slo_p99_ms, "p99 SLO"), (slo_p50_ms, "p50 SLO")):
        if v:
            ax.axvline(v, color="#c0392b", lw=1.2, ls="--", label=f"{name} ({_ms_formatter(v, None)})")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("event-to-result latency per window (log scale)")
    ax.set_ylabel("fraction of windows ≤ x")
    ax.set_title("Latency distribution (CDF): further left is faster")
    _legend(ax, loc="lower right")
    return _png(fig)


def latency_over_time(items: list[Item]) -> bytes | None:
    """Event-to-result latency of every window against its end, in seconds from the load's start."""
    fig, (ax,) = _new()
    drawn = 0
    lo, hi = np.inf, 0.0
    for it in items:
        w = it.run.windows()
        tb = it.run.time_base_ms
        if w is None or tb is None or not {"window_end", "event_to_result_ms"} <= set(w.columns):
            continue
        x = (pd.to_numeric(w["window_end"], errors="coerce") - tb) / 1000
        y = pd.to_numeric(w["event_to_result_ms"], errors="coerce")
        ok = x.notna() & y.notna()
        if not ok.any():
            continue
        drawn += 1
        per = pd.DataFrame({"x": x[ok], "y": y[ok]}).groupby("x")["y"]
        ax.scatter(x[ok], y[ok], s=6, color=it.colour, alpha=0.25, lw=0)
        med = per.median()
        ax.plot(med.index, med.values, color=it.colour, ls=it.style, lw=_lw(it), marker="o", ms=3,
                label=f"{it.label} (median per window end)" if it.show_label else None)
        lo, hi = min(lo, float(y[ok].min())), max(hi, float(y[ok].max()))
    if not drawn:
        plt.close(fig)
        return None
    if lo > 0 and hi / lo > 20:
        ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_ms_formatter))
    _warmup(ax, items)
    ax.set_xlabel("window end (s after the load started)")
    ax.set_ylabel("event-to-result latency")
    ax.set_title("Latency over time: one dot per key and window")
    _legend(ax, loc="lower right")
    return _png(fig)


# -- throughput, lag, resources -------------------------------------------------------------------------------
def _rate(ts: pd.DataFrame, col: str, window_s: float = 3.0, step_s: float = 0.5) -> pd.Series:
    """Per-second slope of a counter over a sliding window of window_s, on a regular grid.

    Engines publish counters through metric caches that refresh every second or so; a per-sample difference
    then swings between 0 and several times the true rate. A slope over a few seconds reads true.
    """
    if col not in ts or "t_s" not in ts:
        return pd.Series(dtype=float)
    df = ts[["t_s", col]].apply(pd.to_numeric, errors="coerce").dropna().sort_values("t_s")
    if len(df) < 2:
        return pd.Series(dtype=float)
    t, v = df["t_s"].to_numpy(), df[col].to_numpy()
    if t[-1] - t[0] < window_s:
        window_s = max(t[-1] - t[0], 1e-9)
    grid = np.arange(t[0] + window_s / 2, t[-1] - window_s / 2 + 1e-9, step_s)
    if grid.size == 0:
        grid = np.array([(t[0] + t[-1]) / 2])
    rate = (np.interp(grid + window_s / 2, t, v) - np.interp(grid - window_s / 2, t, v)) / window_s
    return pd.Series(rate, index=grid)


def throughput_lag(items: list[Item]) -> bytes | None:
    """Records read per second (slope of the engine's records_in between samples) and lag over time."""
    fig, (a1, a2) = _new(2, height=5.6)
    drawn = 0
    for it in items:
        ts = it.run.timeseries()
        if ts.empty:
            continue
        r = _rate(ts, "records_in")
        if not r.empty:
            drawn += 1
            a1.plot(r.index, r.values, color=it.colour, ls=it.style, lw=_lw(it), label=_label(it))
        if "lag" in ts and "t_s" in ts:
            # an unknown lag (an engine down after a kill, the broker away) stays a gap in the line
            lag = ts[["t_s", "lag"]].apply(pd.to_numeric, errors="coerce").dropna(subset=["t_s"])
            if lag["lag"].notna().any():
                drawn += 1
                a2.plot(lag["t_s"], lag["lag"], color=it.colour, ls=it.style, lw=_lw(it), label=_label(it))
    if not drawn:
        plt.close(fig)
        return None
    for ax in (a1, a2):
        _warmup(ax, items)
        _faults(ax, items)
    a1.set_ylabel("records/s read")
    a1.set_title("Throughput in (slope over a sliding 3 s window) and lag")
    a2.set_ylabel("lag (records)")
    a2.set_xlabel("time (s after the load started; negative: engine running, load not yet started)")
    a2.set_ylim(bottom=0)
    a1.set_ylim(bottom=0)
    _legend(a1, loc="lower center")
    return _png(fig)


def resources(items: list[Item]) -> bytes | None:
    """CPU in use (cores, from cpu_s) and resident memory (RSS summed over the engine's processes) over time."""
    fig, (a1, a2) = _new(2, height=5.6)
    drawn = 0
    for it in items:
        ts = it.run.timeseries()
        if ts.empty or "t_s" not in ts:
            continue
        c = _rate(ts, "cpu_s")
        if not c.empty:
            drawn += 1
            a1.plot(c.index, c.values, color=it.colour, ls=it.style, lw=_lw(it), label=_label(it))
        if "rss_mb" in ts:
            m = ts[["t_s", "rss_mb"]].apply(pd.to_numeric, errors="coerce").dropna()
            if not m.empty:
                drawn += 1
                a2.plot(m["t_s"], m["rss_mb"], color=it.colour, ls=it.style, lw=_lw(it), label=_label(it))
    if not drawn:
        plt.close(fig)
        return None
    for ax in (a1, a2):
        _warmup(ax, items)
        ax.set_ylim(bottom=0)
    a1.set_ylabel("CPU (cores busy)")
    a1.set_title("Resource use: CPU (slope of cpu_s over 3 s) and memory")
    a2.set_ylabel("RSS (MB)")
    a2.set_xlabel("time (s after the load started)")
    _legend(a1, loc="upper right")
    return _png(fig)


# -- correctness ----------------------------------------------------------------------------------------------
# (bar label, the count it shows) for the counts that should be zero
COUNT_BARS: list[tuple[str, Callable[[WindowSummary], int]]] = [
    ("wrong", lambda w: w.correctness.wrong), ("missing", lambda w: w.correctness.missing),
    ("extra", lambda w: w.correctness.extra), ("duplicates", lambda w: w.duplicates),
    ("re-emissions", lambda w: w.re_emissions), ("on-time events\nmissing", lambda w: w.on_time_events_missing)]


def correctness_bars(items: list[Item]) -> bytes | None:
    """Exact windows as a share of the promised ones, and the counts that should be zero, per engine run."""
    rows = [(it, it.run.entry.windows) for it in items if it.run.entry.windows is not None]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(SIZE[0], SIZE[1] + 0.4), gridspec_kw={"width_ratios": [1, 2.4]})
    a1, a2 = axes
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(True, axis="y", alpha=0.3)
    names = [it.label for it, _ in rows]
    for i, (it, w) in enumerate(rows):
        exp, ex = w.correctness.expected, w.correctness.exact
        v = 100 * ex / exp if exp else 0.0
        a1.bar(i, v, color=it.colour, hatch=HATCHES.get(it.style), edgecolor="white")
        a1.text(i, v + 1, f"{ex}/{exp if exp else '?'}", ha="center",
                va="bottom", fontsize=8 if len(rows) <= 3 else 6, rotation=0 if len(rows) <= 3 else 90)
    a1.set_xticks(range(len(rows)), names, rotation=30 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center",
                  fontsize=8)
    a1.set_ylim(0, 112)
    a1.set_ylabel("exact windows (% of promised)")
    a1.set_title("Correctness", fontsize=10)
    width = 0.8 / len(rows)
    ymax = 0.0
    for i, (it, w) in enumerate(rows):
        vals = [float(count(w)) for _, count in COUNT_BARS]
        xs = np.arange(len(COUNT_BARS)) + (i - (len(rows) - 1) / 2) * width
        a2.bar(xs, vals, width=width, color=it.colour, label=it.label, hatch=HATCHES.get(it.style), edgecolor="white")
        for x, v in zip(xs, vals):
            a2.text(x, v, f"{v:g}", ha="center", va="bottom", fontsize=7)
        ymax = max(ymax, *vals)
    a2.set_xticks(range(len(COUNT_BARS)), [n for n, _ in COUNT_BARS], fontsize=8)
    if ymax == 0:
        a2.text(0.5, 0.55, "all zero", transform=a2.transAxes, ha="center", va="center", fontsize=16,
                color="#2e7d32")
    a2.set_ylim(0, max(1.0, ymax * 1.15))
    a2.set_ylabel("count (should be 0)")
    a2.set_title("Wrong, missing, extra windows; duplicate and re-emitted rows", fontsize=10)
    _legend(a2, loc="upper right")
    fig.suptitle("Correctness and duplicates against the promised (on-time) answer")
    fig.tight_layout()
    return _png(fig)


# -- the load -------------------------------------------------------------------------------------------------
@dataclass
class LoadItem:
    load: LoadResult
    label: str
    colour: str
    style: str = "-"


def load_sent(loads: list[LoadItem]) -> bytes | None:
    """Events per second: intended by the schedule, handed to the producer (sent), acknowledged by the broker."""
    data = []
    for li in loads:
        ts = li.load.timeseries
        i, s, a = per_second(ts.intended_per_second), per_second(ts.sent_per_second), per_second(ts.acked_per_second)
        if not (i.empty and s.empty and a.empty):
            data.append((li, i, s, a))
    if not data:
        return None
    fig, (a1, a2) = _new(2, height=5.6)
    intended_drawn: list[pd.Series] = []
    for li, i, s, a in data:
        if not i.empty and not any(len(p) == len(i) and np.allclose(p.values, i.values) for p in intended_drawn):
            a1.step(i.index, i.values, where="post", color="black", ls="--", lw=1.2,
                    label="intended" if not intended_drawn else None)
            intended_drawn.append(i)
        if not s.empty:
            a1.step(s.index, s.values, where="post", color=li.colour, ls=li.style, lw=1.6, label=f"{li.label} sent")
        if not a.empty:
            a1.step(a.index, a.values, where="post", color=li.colour, ls=":", lw=1.0, alpha=0.8,
                    label=f"{li.label} acked")
        if not i.empty:
            if not s.empty:
                d = (s - i).dropna()
                a2.step(d.index, d.values, where="post", color=li.colour, ls=li.style, lw=1.4, label=f"{li.label} sent")
            if not a.empty:
                d = (a - i).dropna()
                a2.step(d.index, d.values, where="post", color=li.colour, ls=":", lw=1.0, label=f"{li.label} acked")
    a2.axhline(0, color="black", lw=0.8)
    a1.set_ylim(bottom=0)
    a1.set_ylabel("events per second")
    a1.set_title("Load: intended vs sent (handed to the producer) vs acknowledged")
    a2.set_ylabel("minus intended (events)")
    a2.set_xlabel("second of the load")
    handles, labels = a1.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return _png(fig)


# -- comparisons across runs ----------------------------------------------------------------------------------
def figure_bars(title: str, ylabel: str, groups: list[tuple[str, list[tuple[str, str, float | None, float | None,
                                                                           float | None]]]]) -> bytes | None:
    """Grouped bars with min..max whiskers: groups (an engine each: its colour) of bars (a run each: its hatch),
    as (group label, [(bar label, colour, mid, lo, hi)])."""
    from matplotlib.patches import Patch

    if not groups or not any(v is not None for _, bars in groups for _, _, v, _, _ in bars):
        return None
    fig, (ax,) = _new()
    nb = max(len(b) for _, b in groups)
    width = 0.8 / nb
    runs: dict[str, str | None] = {}
    for gi, (_, bars) in enumerate(groups):
        for bi, (lab, colour, mid, lo, hi) in enumerate(bars):
            hatch = RUN_HATCHES[bi % len(RUN_HATCHES)]
            runs.setdefault(lab, hatch)
            if mid is None:
                continue
            x = gi + (bi - (len(bars) - 1) / 2) * width
            ax.bar(x, mid, width=width, color=colour, edgecolor="white", hatch=hatch)
            if lo is not None and hi is not None and hi > lo:
                ax.errorbar(x, mid, yerr=[[mid - lo], [hi - mid]], color="black", capsize=3, lw=1)
            ax.text(x, mid, f"{mid:,.0f}" if mid >= 100 else f"{mid:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.08)
    ax.set_title(title)
    ax.legend([Patch(facecolor="#dddddd", edgecolor="#555555", hatch=h) for h in runs.values()], list(runs),
              fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)
