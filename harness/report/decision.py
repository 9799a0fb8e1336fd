"""The decision summary: every `slo` field of the scenario checked for every engine, the honest comparison of
the engines on each ranked figure, and a decision-record draft a team can paste into its decision log.

Rules (docs/reports.md explains them to readers):
- An SLO is judged only on complete engine runs. Skipped, failed, timed-out, interrupted or unfinished runs are
  "not measured" with their reason, never a pass. With repeats, an engine meets an SLO only when every repeat
  was measured and meets it; the figure shown is the worst repeat, with the range beside it.
- A pass whose margin is within BORDERLINE of the threshold, or that rests on a percentile flagged unreliable, is
  marked as such: it may not hold on the next run.
- No engine is called better where the figures don't show it (see harness.report.verdicts.judge): across
  repeats only the exact rank test with Holm's correction calls a difference, 2-4 repeats are "not enough
  repeats", and a single run is judged against the noise band measured on this machine, or not at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from harness.durations import format_duration
from harness.metrics import significance as S
from harness.metrics.stats import min_samples_for
from harness.report import verdicts as M
from harness.report.data import EngineRun, RunData, num
from harness.results.document import Percentiles

# slo field -> (metric, direction: "max" = figure must be <= the value, "min" = figure must be >= it, its kind:
# "duration" = int milliseconds in the scenario, shown as a duration)
SLO_FIELDS: dict[str, tuple[M.Metric, str, str]] = {
    "p99_latency": (M.P99, "max", "duration"),
    "p50_latency": (M.P50, "max", "duration"),
    "p99_window_close": (M.WC99, "max", "duration"),
    "p50_window_close": (M.WC50, "max", "duration"),
    "max_duplicates": (M.DUPS, "max", "number"),
    "max_wrong_windows": (M.WRONG, "max", "number"),
    "max_missing_windows": (M.MISSING, "max", "number"),
    "min_throughput": (M.THR_IN, "min", "number"),
    "max_cpu_seconds_per_million": (M.CPU_M, "max", "number"),
    "max_peak_memory_mb": (M.PEAK_MB, "max", "number"),
}
SLO_PATHS = {
    "p99_latency": "windows.event_to_result_ms.p99", "p50_latency": "windows.event_to_result_ms.p50",
    "p99_window_close": "windows.window_close_ms.p99", "p50_window_close": "windows.window_close_ms.p50",
    "max_duplicates": "windows.duplicates", "max_wrong_windows": "windows.correctness.wrong",
    "max_missing_windows": "windows.correctness.missing", "min_throughput": "throughput.in_records_per_s",
    "max_cpu_seconds_per_million": "cpu_during_load.cpu_seconds_per_million_events",
    "max_peak_memory_mb": "resources.peak_rss_mb",
}

PASS, FAIL, NOT_MEASURED = "pass", "fail", "not measured"
BORDERLINE = 0.10   # a pass this close to its threshold (relative) is noted: the next run may miss it


@dataclass
class SloCheck:
    field: str
    engine: str
    threshold: float | None
    verdict: str                          # pass / fail / not measured
    figure: float | None = None           # the worst measured repeat
    values: list[float] = field(default_factory=list)
    margin: float | None = None           # positive: room left; negative: by how much it missed
    margin_rel: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def metric(self) -> M.Metric:
        return SLO_FIELDS[self.field][0]

    @property
    def direction(self) -> str:
        return SLO_FIELDS[self.field][1]


@dataclass
class EngineVerdict:
    engine: str
    status: str                 # "meets all SLOs", "misses", "not measured", "no SLOs"
    repeats: int
    measured: int
    missed: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)     # why not measured (skip reasons, errors)


@dataclass
class DecisionSummary:
    slo: dict[str, Any]
    checks: list[SloCheck]
    verdicts: dict[str, EngineVerdict]
    rankings: list[M.Ranking]
    spread_note: str
    record_md: str
    unknown_slo_fields: list[str] = field(default_factory=list)
    noise: S.NoiseBand | None = None      # the measured band single runs were judged against


def _threshold(raw: Any) -> float | None:
    """An SLO value of the scenario (durations are int milliseconds) as a float."""
    return num(raw)


def _why_not(run: EngineRun) -> str:
    e = run.entry
    if run.status == "skipped":
        return f"skipped: {e.reason or 'no reason recorded'}"
    detail = e.error or e.reason
    if run.status in ("starting", "running"):
        return f"{run.status} when the result was written (unfinished)" + (f": {detail}" if detail else "")
    return f"{run.status}" + (f": {detail}" if detail else "")


def _tag(r: EngineRun, runs: list[EngineRun]) -> str:
    """'#2 ' when the engine ran several times (which repeat), else nothing."""
    return f"#{r.repeat} " if len(runs) > 1 else ""


def check_slo(name: str, raw_threshold: Any, engine: str, runs: list[EngineRun],
              band: float = BORDERLINE) -> SloCheck:
    metric, direction, _ = SLO_FIELDS[name]
    thr = _threshold(raw_threshold)
    chk = SloCheck(name, engine, thr, NOT_MEASURED)
    if thr is None:
        chk.notes.append(f"threshold {raw_threshold!r} is not a number")
        return chk
    if name in BACKLOG_NOT_APPLICABLE and any(r.entry.backlog is not None for r in runs):
        chk.notes.append("backlog mode: latency and throughput measure the backlog's age and the drain, not a live "
                         "load (see the Backlog section)")
        return chk
    unmeasured = [r for r in runs if not r.measured]
    vals = [(r, metric.value(r)) for r in runs if r.measured]
    missing_fig = [r for r, v in vals if v is None]
    vals = [(r, v) for r, v in vals if v is not None]
    for r in unmeasured:
        chk.notes.append(_tag(r, runs) + _why_not(r))
    for r in missing_fig:
        chk.notes.append(f"{_tag(r, runs)}no {SLO_PATHS[name]} in result.json")
    if not runs:
        chk.notes.append("no run of this engine in result.json")
    if not vals:
        return chk
    chk.values = [v for _, v in vals]
    worst = max(chk.values) if direction == "max" else min(chk.values)
    chk.figure = worst
    chk.margin = (thr - worst) if direction == "max" else (worst - thr)
    chk.margin_rel = chk.margin / thr if thr else None
    ok = chk.margin >= 0
    if unmeasured or missing_fig:
        chk.verdict = FAIL if not ok else NOT_MEASURED
        if ok:
            chk.notes.insert(0, f"the measured repeats pass ({len(vals)} of {len(runs)}), but not every repeat was "
                                "measured")
        return chk
    chk.verdict = PASS if ok else FAIL
    if len(chk.values) > 1:
        failing = sum(1 for v in chk.values if (v > thr if direction == "max" else v < thr))
        if failing and failing < len(chk.values):
            chk.notes.append(f"{failing} of {len(chk.values)} repeats miss it")
    if ok and chk.margin_rel is not None and abs(chk.margin_rel) <= band and chk.margin > 0:
        chk.notes.append(f"borderline: within {band:.0%} of the threshold")
    if ok and chk.margin == 0 and metric not in (M.DUPS, M.WRONG, M.MISSING):
        chk.notes.append("exactly at the threshold")
    shaky = [r for r, _ in vals if M.percentile_unreliable(r, metric)]
    boots = [b for r in shaky if (b := M.run_bootstrap(r, metric)) is not None]
    if boots:
        closes = min(b.n_blocks for b in boots)
        chk.notes.append(f"{metric.percentile} unreliable: its 95% interval over {closes} window closes is wider "
                         "than ±10% of it")
    elif shaky:
        # no raw samples (an older result): the sample-count rule
        n = min((metric.summary(r) or Percentiles()).count for r, _ in vals)
        need = min_samples_for(float((metric.percentile or "p0")[1:]))
        chk.notes.append(f"{metric.percentile} unreliable: {n} windows measured, {need} needed")
    return chk


def _verdicts(run: RunData, slo: dict[str, Any], checks: list[SloCheck]) -> dict[str, EngineVerdict]:
    out = {}
    for engine, runs in run.by_engine().items():
        mine = [c for c in checks if c.engine == engine]
        v = EngineVerdict(engine, "", len(runs), sum(1 for r in runs if r.measured))
        v.reasons = [_tag(r, runs) + _why_not(r) for r in runs if not r.measured]
        v.missed = [c.field for c in mine if c.verdict == FAIL]
        if v.missed:
            v.status = "misses"
        elif not runs or v.measured < len(runs) or any(c.verdict == NOT_MEASURED for c in mine):
            v.status = "not measured"
        elif not slo:
            v.status = "no SLOs"
        else:
            v.status = "meets all SLOs"
        out[engine] = v
    return out


def noise_for(run: RunData, noise: S.NoiseBand | None | Literal["file"] = "file") -> tuple[S.NoiseBand | None, str]:
    """The noise band single runs of this run are judged against, and why there is none: the file `harness bench
    noise` wrote, unless it was measured on another kind of machine than the run."""
    band = S.measured_noise_band() if noise == "file" else noise
    machine = run.doc.machine.model_dump(mode="json") if run.doc.machine else None
    if band is not None and not band.applies_to(machine):
        return None, (f"the noise band on file was measured on another machine ({band.source}), so it does not "
                      "apply to this run")
    return band, ""


def _band_text(noise: S.NoiseBand) -> str:
    shown = [f"{m.key} ±{b:.0%}" for m in M.RANKED if (b := noise.band(m.key)) is not None]
    return ", ".join(shown) or "no figures"


def spread_note(run: RunData, noise: S.NoiseBand | None = None, why_no_band: str = "") -> str:
    """How differences were judged in this run, in words (the rules of harness.report.verdicts.judge)."""
    counts = {e: sum(1 for r in runs if r.measured) for e, runs in run.by_engine().items()}
    counts = {e: n for e, n in counts.items() if n}
    advice = (f"Use --repeat {S.MIN_REPEATS} for a decision: with {S.MIN_REPEATS} or more repeats per engine a "
              f"difference is called by an exact Mann-Whitney test at 95%, Holm-corrected over the engine pairs of "
              f"each figure, when it is also at least {S.MIN_PRACTICAL:.0%} of the better median.")
    if counts and min(counts.values()) >= S.MIN_REPEATS:
        n = min(counts.values())
        return (f"Each engine was measured {n} or more times; figures are the median with the range (min..max) over "
                f"the repeats. A difference is called only when an exact two-sided Mann-Whitney test, Holm-corrected "
                f"over the engine pairs of each figure, gives p < {S.ALPHA:g} and the medians differ by at least "
                f"{S.MIN_PRACTICAL:.0%} of the better one; otherwise it is a tie.")
    if counts and max(counts.values()) >= 2:
        few = ", ".join(f"{e} {n}" for e, n in counts.items())
        return (f"Not enough repeats to rank ({few} measured repeats): with 2-{S.MIN_REPEATS - 1} repeats an engine's "
                "figures are shown as the median with the range (min..max), and no difference across repeats is "
                f"called (\"{S.NOT_ENOUGH}\"). " + advice)
    if noise is None:
        why = why_no_band or S.NO_NOISE_BAND
        return ("Single run per engine, and no difference is called: " + why + ". Every difference between "
                "single runs is a tie; latency percentiles carry a 95% interval from a bootstrap over window "
                "closes. " + advice)
    return (f"Single run per engine: a difference counts as a win only beyond the noise band measured on this "
            f"machine ({_band_text(noise)}; from {noise.source}) and at least {S.MIN_PRACTICAL:.0%}, and for "
            "latency percentiles only when their 95% intervals from a bootstrap over window closes do not "
            "overlap; otherwise it is a tie. " + advice)


def summarize(run: RunData, noise: S.NoiseBand | None | Literal["file"] = "file") -> DecisionSummary:
    """The decision summary. noise: the band single runs are judged against; "file" reads the one `harness bench
    noise` wrote (results/bench-noise-latest.json), None judges without one."""
    band, why_no_band = noise_for(run, noise)
    slo = run.slo
    unknown = [k for k in slo if k not in SLO_FIELDS]
    groups = run.by_engine()
    checks = [check_slo(name, slo[name], engine, runs)
              for name in SLO_FIELDS if name in slo for engine, runs in groups.items()]
    verdicts = _verdicts(run, slo, checks)
    rankings = []
    for metric in M.RANKED:
        figs = {e: f for e, runs in groups.items() if (f := M.figure(runs, metric)) is not None}
        if figs:
            rankings.append(M.rank(figs, metric, band))
    summary = DecisionSummary(slo, checks, verdicts, rankings, spread_note(run, band, why_no_band), "", unknown,
                              band)
    summary.record_md = decision_record(run, summary)
    return summary


# -- formatting shared with the builder -----------------------------------------------------------------------
def fmt(v: float | None, unit: str = "", digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if math.isinf(v):
        return "∞"
    s = f"{v:,.{digits}f}" if digits or abs(v) >= 1 or v == 0 else f"{v:,.3g}"
    return f"{s} {unit}".strip() if unit else s


def fmt_figure(f: M.Figure | None, metric: M.Metric) -> str:
    if f is None:
        return "not measured"
    if f.has_spread:
        return f"{fmt(f.mid, metric.unit, metric.digits)} ({fmt(f.lo, '', metric.digits)}..{fmt(f.hi, '', metric.digits)})"
    text = fmt(f.mid, metric.unit, metric.digits)
    if f.bootstrap is not None:
        b = f.bootstrap
        closes = f"{b.n_blocks} window close{'s' if b.n_blocks != 1 else ''}"
        bounds = f"{fmt(b.lo, '', metric.digits)}..{fmt(b.hi, '', metric.digits)}" if b.n_blocks >= 2 else "unbounded"
        text += f" (95% CI {bounds}, {closes})"
    return text + (" (unreliable)" if f.unreliable else "")


def threshold_text(c: SloCheck) -> str:
    op = "≤" if c.direction == "max" else "≥"
    return f"{op} {fmt(c.threshold, c.metric.unit, c.metric.digits)}"


def margin_text(c: SloCheck) -> str:
    if c.margin is None:
        return "–"
    word = "to spare" if c.margin >= 0 else "over" if c.direction == "max" else "short"
    rel = f" ({abs(c.margin_rel):.0%})" if c.margin_rel is not None else ""
    return f"{fmt(abs(c.margin), c.metric.unit, c.metric.digits)}{rel} {word}"


def figure_text(c: SloCheck) -> str:
    if c.figure is None:
        return "not measured"
    s = fmt(c.figure, c.metric.unit, c.metric.digits)
    if len(c.values) > 1:
        s += f" (worst of {len(c.values)}; range {fmt(min(c.values), '', c.metric.digits)}.." \
             f"{fmt(max(c.values), '', c.metric.digits)})"
    return s


def ranking_text(rk: M.Ranking) -> str:
    m = rk.metric
    word = "lowest" if m.better == "lower" else "highest"
    if len(rk.figures) < 2:
        only = next(iter(rk.figures))
        return f"only {only} measured ({fmt_figure(rk.figures[only], m)})"
    top = rk.best[0]
    if len(rk.best) == len(rk.figures):
        details = "; ".join(f"{e} {fmt_figure(rk.figures[e], m)}" for e in [top, *rk.others])
        reasons = "; ".join(f"{e}: {j.reason}" for e, j in rk.others.items())
        word = S.NOT_ENOUGH if any(j.verdict == S.NOT_ENOUGH for j in rk.others.values()) else "tie"
        return f"{word}: {details} ({reasons})"
    s = f"{word}: {', '.join(rk.best)}" if len(rk.best) > 1 else f"{word}: {top}"
    s += f" ({fmt_figure(rk.figures[top], m)})"
    parts = []
    for e, j in rk.others.items():
        kind = "behind" if j.called else "tied" if j.verdict == "tie" else S.NOT_ENOUGH
        parts.append(f"{e} {fmt_figure(rk.figures[e], m)} {kind}: {j.reason}")
    return s + ("; " + "; ".join(parts) if parts else "")


# -- the decision record draft --------------------------------------------------------------------------------
def _scenario_line(run: RunData) -> str:
    s = run.scenario
    ld, q, w = s.load, s.query, s.query.window
    sizes = {"size": w.size, "slide": w.slide, "gap": w.gap}
    win = f"{w.type} windows" + "".join(f", {k} {format_duration(v)}" for k, v in sizes.items() if v is not None)
    bits = [f"{fmt(ld.rate)} events/s ({ld.shape.type})", f"for {format_duration(s.duration)}",
            f"{ld.keys} keys ({ld.key_distribution})", win,
            f"watermark delay {format_duration(q.watermark_delay)}"]
    extras = []
    if ld.out_of_order.fraction:
        extras.append(f"{ld.out_of_order.fraction:.0%} out of order")
    if ld.late.fraction:
        extras.append(f"{ld.late.fraction:.0%} late")
    if ld.malformed_fraction:
        extras.append(f"{ld.malformed_fraction:.0%} malformed")
    return ", ".join(bits) + (f"; {', '.join(extras)}" if extras else "")


def _machine_line(run: RunData) -> str:
    m = run.doc.machine
    if m is None:
        return "not recorded"
    return ", ".join(x for x in [f"{m.cores} cores" if m.cores else "",
                                 f"{m.memory_gb} GB RAM" if m.memory_gb else "",
                                 m.cpu_model, m.os] if x) or "not recorded"


def _slo_line(slo: dict[str, Any]) -> str:
    if not slo:
        return "none set in the scenario (add an `slo:` section to judge the engines)"
    parts = []
    for k, v in slo.items():
        spec = SLO_FIELDS.get(k)
        if spec:
            shown = format_duration(v) if spec[2] == "duration" else v
            parts.append(f"{spec[0].label} {'≤' if spec[1] == 'max' else '≥'} {shown}")
        else:
            parts.append(f"{k}: {v} (unknown field, not checked)")
    return "; ".join(parts)


LATENCY_SLOS = {"p99_latency", "p50_latency"}
BACKLOG_NOT_APPLICABLE = {"p99_latency", "p50_latency", "p99_window_close", "p50_window_close", "min_throughput"}
WINDOW_CLOSE_SLOS = {"p99_window_close", "p50_window_close"}


def latency_slo_line(slo: dict[str, Any]) -> str:
    """Which latency the scenario's latency SLOs check, and what each one fits."""
    e2r, wc = sorted(LATENCY_SLOS & set(slo)), sorted(WINDOW_CLOSE_SLOS & set(slo))
    said = []
    if e2r:
        said.append(f"{', '.join(f'`{k}`' for k in e2r)} check{'s' if len(e2r) == 1 else ''} event-to-result latency: from the window's last "
                    "event to its final value being readable, what a reader of the results waits. It includes how "
                    "long the window stayed open after that event, so with sparse keys it approaches the window "
                    "length whatever the engine; it fits a freshness promise made to readers")
    if wc:
        said.append(f"{', '.join(f'`{k}`' for k in wc)} check{'s' if len(wc) == 1 else ''} window-close latency: from the window's end (event "
                    "time) to its final value being readable, what the engine adds once the window could close; "
                    "it fits comparing engines, and does not depend on how dense the keys are")
    if not said:
        return ""
    return "; ".join(said) + "."


def decision_record(run: RunData, s: DecisionSummary) -> str:
    groups = run.by_engine()
    v = s.verdicts
    lines = [f"# Decision record (draft): stream-processing engine for `{run.scenario.name}`", ""]
    when = run.doc.started_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    sha = run.doc.versions.commit.sha if run.doc.versions else None
    status = "" if run.complete else f" **Run status: {run.status.upper()} (incomplete): treat as partial evidence.**"
    lines += [f"- Status: draft, generated from harness run `{run.run_id}` ({when}).{status}",
              f"- Commit: `{sha or 'unknown'}`", "",
              "## Context", "",
              f"- Workload: {_scenario_line(run)}.",
              f"- Objectives (SLOs): {_slo_line(s.slo)}.",
              *([f"- Which latency: {latency_slo_line(s.slo)}"] if latency_slo_line(s.slo) else []),
              f"- Machine: {_machine_line(run)}; engines ran one after another on the same deterministic load.",
              "", "## Options considered", ""]
    for engine, runs in groups.items():
        desc = next((r.entry.description for r in runs if r.entry.description), "")
        note = ""
        if runs and all(r.status == "skipped" for r in runs):
            note = f" Not run: {runs[0].entry.reason or 'skipped'}."
        elif v[engine].reasons:
            note = " " + "; ".join(v[engine].reasons) + "."
        lines.append(f"- **{engine}**: {desc or 'no description'}.{note}")
    lines += ["", "## Measured evidence", "", s.spread_note, ""]
    shown = [M.P50, M.P99, M.THR_IN, M.BAD, M.DUPS, M.CPU_M, M.PEAK_MB, M.START]
    measured_engines = [e for e, runs in groups.items() if any(r.measured for r in runs)]
    if measured_engines:
        lines.append("| figure | " + " | ".join(measured_engines) + " |")
        lines.append("| --- |" + " --- |" * len(measured_engines))
        for m in shown:
            cells = [fmt_figure(M.figure(groups[e], m), m) for e in measured_engines]
            lines.append(f"| {m.label} ({m.unit}) | " + " | ".join(cells) + " |")
        lines.append("")
        for rk in s.rankings:
            if rk.metric in (M.P50, M.P99, M.CPU_M, M.PEAK_MB, M.BAD, M.START) and len(rk.figures) > 1:
                lines.append(f"- {rk.metric.label}: {ranking_text(rk)}.")
        lines.append("")
    else:
        lines += ["No engine produced a complete measurement in this run.", ""]
    lines += ["## Against the SLOs", ""]
    meets = [e for e, x in v.items() if x.status == "meets all SLOs"]
    misses = [e for e, x in v.items() if x.status == "misses"]
    unmeasured = [e for e, x in v.items() if x.status == "not measured"]
    if not s.slo:
        lines.append("- No SLOs were set, so no engine can be said to meet or miss them.")
    else:
        lines.append(f"- Meet every SLO: {', '.join(meets) if meets else 'none'}.")
        for e in misses:
            why = [c for c in s.checks if c.engine == e and c.verdict == FAIL]
            lines.append(f"- {e} misses: " + "; ".join(
                f"{c.field} ({figure_text(c)} vs {threshold_text(c)})" for c in why) + ".")
        for e in unmeasured:
            lines.append(f"- {e}: not measured ({'; '.join(v[e].reasons) or 'some figures missing'}); it cannot be "
                         "said to meet the SLOs.")
        weak = [c for c in s.checks if c.verdict == PASS and c.notes]
        for c in weak:
            lines.append(f"- Caution, {c.engine} {c.field}: " + "; ".join(c.notes) + ".")
    lines += ["", "## Cost of the options that qualify", ""]
    cand = meets if s.slo else [e for e in groups if any(r.measured for r in groups[e])]
    if not cand:
        lines.append("- No engine qualifies on this evidence.")
    for e in cand:
        runs = groups[e]
        cpu = fmt_figure(M.figure(runs, M.CPU_M), M.CPU_M)
        mem = fmt_figure(M.figure(runs, M.PEAK_MB), M.PEAK_MB)
        start = fmt_figure(M.figure(runs, M.START), M.START)
        procs = max((r.entry.resources.processes_seen if r.entry.resources else 0 for r in runs), default=0)
        loc = M.pipeline_code_lines(e)
        loc_s = f"{loc[0]} lines of pipeline code" if loc else "pipeline code not found"
        changed = next((r.entry.changed_settings for r in runs if r.entry.changed_settings), {})
        ch = f"{len(changed)} setting(s) changed from defaults ({', '.join(changed)})" if changed else "default settings"
        tuned = next((r.entry.tuned_settings for r in runs if r.entry.tuned_settings), {})
        if tuned:
            ch += f", tuning {run.scenario.tuning} (" + ", ".join(f"{k}={v}" for k, v in tuned.items()) + ")"
        lines.append(f"- **{e}**: {cpu} per million events, peak memory {mem}, start-up {start}, "
                     f"{int(procs)} process(es), {loc_s}, {ch}.")
    lines += ["", "## Decision", "",
              "_To be written by the team._ This record states only what was measured: where the evidence calls "
              "two engines a tie, it does not support choosing one over the other on that figure.", "",
              "## Caveats", ""]
    cav = [f"Measured on one machine ({_machine_line(run)}); engines ran in isolation, one at a time."]
    measured_n = [len([r for r in runs if r.measured]) for runs in groups.values()]
    measured_n = [n for n in measured_n if n]
    if measured_n and max(measured_n) < 2:
        cav.append("Single run per engine: no run-to-run spread was measured"
                   + (f"; differences were judged against the noise band of {s.noise.source}." if s.noise else
                      f", and {S.NO_NOISE_BAND}, so no difference is called.")
                   + f" Use --repeat {S.MIN_REPEATS} for a decision.")
    elif measured_n and min(measured_n) < S.MIN_REPEATS:
        cav.append(f"Fewer than {S.MIN_REPEATS} repeats for some engine: no difference across repeats is called "
                   f"({S.NOT_ENOUGH}). Use --repeat {S.MIN_REPEATS} for a decision.")
    shaky = sorted({r.name for r in run.runs if r.measured and M.percentile_unreliable(r, M.P99)})
    if shaky:
        cav.append(f"The p99 latency of {', '.join(f'`{e}`' for e in shaky)} is flagged unreliable: its 95% interval "
                   "over window closes is wider than ±10% of it. A longer run (more window closes) narrows it.")
    for e in behind_engines(run):
        cav.append(f"`{e}` did not keep up at this rate: its latency figures measure its backlog and grow with "
                   "the run's length; compare it at a rate it sustains.")
    for e in off_schedule_engines(run):
        cav.append(f"The generator fell behind its schedule during `{e}`'s run (send-delay p99 over its threshold): "
                   "that run measured the machine as much as the engine; rerun with fewer processes competing.")
    for floor in run.floor_engines:
        cav.append(f"`{floor}` marks this machine's floor, a reference point more than a product option.")
    if not run.complete:
        cav.append(f"The run ended as {run.status!r}: {run.doc.error or 'no error recorded'}.")
    lines += [f"- {c}" for c in cav]
    return "\n".join(lines) + "\n"


def ranking_cells(rk: M.Ranking) -> tuple[str, str]:
    """(result, why) for one ranked figure: who is best, who is tied with the best, and the reasons."""
    if len(rk.figures) < 2:
        return (f"only {next(iter(rk.figures))} measured" if rk.figures else "not measured"), ""
    behind = [e for e, j in rk.others.items() if j.called]
    few = [e for e, j in rk.others.items() if j.verdict == S.NOT_ENOUGH]
    tied = [rk.best[0], *(e for e, j in rk.others.items() if j.verdict == "tie")]
    if behind:
        word = "lower" if rk.metric.better == "lower" else "higher"
        result = f"tie: {', '.join(tied)}; ahead of {', '.join(behind)}" if len(tied) > 1 else \
            f"{tied[0]} {word} than {', '.join(behind)}"
        if few:
            result += f"; {S.NOT_ENOUGH} for {', '.join(few)}"
    elif few:
        result = f"{S.NOT_ENOUGH}: {', '.join(rk.best)}"
    else:
        result = "tie: " + ", ".join(rk.best)
    why = "; ".join(f"{e} vs {rk.best[0]}: {j.reason}" for e, j in rk.others.items())
    return result, why


def behind_engines(run: RunData) -> list[str]:
    """Engines with a measured run that did not keep up with the load (harness/metrics/keeping_up.py)."""
    return [e for e, runs in run.by_engine().items() if any(r.measured and r.kept_up is False for r in runs)]


def off_schedule_engines(run: RunData) -> list[str]:
    """Engines with a measured run during which the generator fell behind its schedule (metrics/send_delay.py)."""
    return [e for e, runs in run.by_engine().items()
            if any(r.measured and r.entry.generator is not None and r.entry.generator.fell_behind for r in runs)]


def glance(run: RunData, s: DecisionSummary) -> list[str]:
    """A few lines for the top of the report: SLO verdicts, clear differences, ties, and how much to trust them."""
    out = []
    v = s.verdicts
    if not v:
        out.append("No engine ran in this run.")
    elif s.slo:
        meets = [e for e, x in v.items() if x.status == "meets all SLOs"]
        misses = [f"{e} ({', '.join(x.missed)})" for e, x in v.items() if x.status == "misses"]
        nm = [e for e, x in v.items() if x.status == "not measured"]
        parts = [f"meet every SLO: {', '.join(meets) if meets else 'none'}"]
        if misses:
            parts.append(f"miss: {'; '.join(misses)}")
        if nm:
            parts.append(f"not measured: {', '.join(nm)}")
        out.append(f"{len(s.slo)} SLO(s) set; " + "; ".join(parts) + ".")
    else:
        out.append("No SLOs set in the scenario: nothing is judged pass or fail.")
    ahead: dict[str, list[str]] = {}
    ties = []
    few = []
    for rk in s.rankings:
        if len(rk.figures) < 2:
            continue
        if len(rk.best) == len(rk.figures):
            (few if any(j.verdict == S.NOT_ENOUGH for j in rk.others.values()) else ties).append(rk.metric.label)
        else:
            who = " and ".join(rk.best) + (" (tied)" if len(rk.best) > 1 else "")
            ahead.setdefault(who, []).append(rk.metric.label)
    behind = behind_engines(run)
    if behind:
        out.append(f"Did not keep up at this rate: {', '.join(behind)}; {'its' if len(behind) == 1 else 'their'} "
                   "latency measures a growing backlog, not what the engine adds per window.")
    off = off_schedule_engines(run)
    if off:
        out.append(f"The generator fell behind its schedule during the run of {', '.join(off)}: latency from "
                   "intended send time includes that delay, so the machine was part of what was measured.")
    for who, labels in ahead.items():
        out.append(f"{who} ahead on: {', '.join(labels)}.")
    if few:
        out.append(f"{S.NOT_ENOUGH.capitalize()} to rank: {', '.join(few)}.")
    if ties:
        out.append(f"Ties (differences the test or the measured noise band does not call): {', '.join(ties)}.")
    out.append(s.spread_note.split(":")[0] + ".")
    return out
