"""`build_report(run_dir)`: report.html (self-contained) and report.md next to result.json, from the run folder
alone (result.json and raw/), no running stack needed. Works on complete, failed, interrupted and still-running
results: whatever is missing is shown as missing, and anything but a complete run is marked INCOMPLETE.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import jinja2
from markupsafe import Markup

from harness.report import decision as D
from harness.report import plots as P
from harness.report import table_builders as T
from harness.report.data import RunData
from harness.report.template import CSS, HTML

METRIC_DEFINITIONS = [
    ("Event-to-result latency", "per window: when the sink first held the window's final value (and kept it) minus "
     "the send time of the window's last contributing event. Windows ending in the warm-up are left out."),
    ("Window-close latency", "the same instant minus the window's end (event time): what the engine adds after the "
     "window could close."),
    ("Percentiles", "p50/p99/max over the measured windows. The sample count shown is the number of window "
     "closes (all keys of a window close in one flush, so they are not independent samples), with the windows "
     "beside it. A percentile is flagged unreliable when its 95% interval from a block bootstrap over window closes "
     "is wider than ±10% of it."),
    ("Throughput in", "records per second read by the engine's source: a least-squares slope from time base + warm-up "
     "+ 2 s to the last send, beside the broker-acknowledged rate (heartbeats and malformed records included). "
     "Out: sink rows per second."),
    ("Lag", "the topic's end offsets minus the engine's reported position, sampled every 0.5 s."),
    ("Correctness", "the engine's final table against the answer its semantics promise (on-time for watermark "
     "engines): exact, wrong (other values), missing, extra windows."),
    ("Duplicates, re-emissions", "from the append log: a re-emission is any emission of a window after its first; a "
     "duplicate is one equal to an earlier emission (a replay)."),
    ("CPU", "CPU seconds of every process the engine owns (children included). Per million events during load: "
     "from the time base to the last send. Total: the whole engine run, start-up included."),
    ("Peak memory", "the largest sampled sum of RSS over the engine's processes; beside it the sum of each "
     "process's kernel high-water mark (an upper bound)."),
    ("Time to first result / start to running", "from engine start to its first sink row / to reading its topic."),
    ("Latency floor", "settings that bound an engine's latency from below (watermark delay, heartbeat interval, "
     "buffer timeout, sink flush, trigger interval): no tuning of the engine itself goes under them."),
]

PLOT_CAPTIONS = {
    "cdf": "Share of windows whose final value was readable within x. Lines further left are faster; the gap between "
           "the p50 and p99 crossings is the tail. Red dashed: the latency SLO.",
    "over_time": "Latency of every window by window end: a rising trend means the engine falls behind; steps show "
                 "trigger or flush intervals. Shaded: warm-up, left out of the figures.",
    "throughput": "Top: records per second the engine read. Bottom: records on the topic it had not read yet. A "
                  "growing lag means it cannot keep up with this load; a saw-tooth of about a second's worth of "
                  "records comes from counters the engine refreshes periodically, not from falling behind. A "
                  "dashed line marks a fault in the engine's colour; the shaded span after it is its recovery time "
                  "(while an engine is down after a kill its lag is not known and is not drawn).",
    "resources": "CPU cores busy (slope of CPU seconds) and resident memory of all the engine's processes.",
    "correctness": "Left: exact windows as a share of the promised answer. Right: the counts that should be zero.",
    "load": "What the generator was asked to send each second, what it handed to the producer and what the broker "
            "acknowledged: the load every engine actually faced. Bottom: the shortfall (negative) or catch-up.",
}


@dataclass
class PlotOut:
    title: str
    caption: str
    uri: str | None = None
    why: str = ""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def make_plot(title: str, caption: str, fn: Callable[[], bytes | None], empty: str) -> PlotOut:
    try:
        png = fn()
    except Exception as exc:  # a plotting problem must never cost the report
        return PlotOut(title, caption, None, f"the plot failed: {type(exc).__name__}: {exc}")
    return PlotOut(title, caption, data_uri(png) if png else None, "" if png else empty)


def run_items(run: RunData, colours: dict[str, str], style: str = "-", suffix: str = "",
              per_repeat_labels: bool = False) -> list[P.Item]:
    items = []
    for name, runs in run.by_engine().items():
        shown = [r for r in runs if r.status != "skipped"]
        for i, r in enumerate(shown):
            label = f"{name}{suffix}"
            if per_repeat_labels and len(shown) > 1:
                label = f"{name} #{r.repeat}{suffix}"
            elif len(shown) > 1:
                label = f"{name}{suffix} ({len(shown)} repeats)"
            items.append(P.Item(r, label, colours.get(name, "#999999"), style,
                                show_label=per_repeat_labels or i == 0))
    return items


def load_items(run: RunData, colours: dict[str, str], style: str = "-", suffix: str = "") -> list[P.LoadItem]:
    out = []
    many = len(run.loads) > len({ld.engine for ld in run.loads.values()})
    for ld in run.loads.values():
        eng = ld.engine or "load only"
        label = eng + (f" #{ld.repeat}" if many else "") + suffix
        out.append(P.LoadItem(ld, label, colours.get(eng, "#555555"), style))
    return out


def run_plots(run: RunData, colours: dict[str, str]) -> list[PlotOut]:
    items = run_items(run, colours)
    bars = run_items(run, colours, per_repeat_labels=True)
    slo = run.scenario.slo
    return [
        make_plot("Latency distribution", PLOT_CAPTIONS["cdf"],
                  lambda: P.latency_cdf(items, slo.p99_latency, slo.p50_latency),
                  "no per-window latencies in raw/*/windows.csv"),
        make_plot("Latency over time", PLOT_CAPTIONS["over_time"], lambda: P.latency_over_time(items),
                  "no per-window latencies in raw/*/windows.csv"),
        make_plot("Throughput and lag", PLOT_CAPTIONS["throughput"], lambda: P.throughput_lag(items),
                  "no engine time series in result.json"),
        make_plot("Resource use", PLOT_CAPTIONS["resources"], lambda: P.resources(items),
                  "no engine time series in result.json"),
        make_plot("Correctness and duplicates", PLOT_CAPTIONS["correctness"], lambda: P.correctness_bars(bars),
                  "no engine reached the correctness check"),
        make_plot("Load sent vs intended", PLOT_CAPTIONS["load"], lambda: P.load_sent(load_items(run, colours)),
                  "no load time series in result.json"),
    ]


def _css_verdict(v: str) -> str:
    return {"pass": "v-pass", "fail": "v-fail", "meets all SLOs": "v-meets", "misses": "v-misses"}.get(
        v, "v-not-measured")


def decision_view(run: RunData, s: D.DecisionSummary) -> dict[str, Any]:
    engines = [e for e in run.by_engine() if any(r.measured for r in run.by_engine()[e])]
    checks = [{"field": c.field, "path": D.SLO_PATHS[c.field], "engine": c.engine, "verdict": c.verdict,
               "css": _css_verdict(c.verdict), "figure": D.figure_text(c), "threshold": D.threshold_text(c),
               "margin": D.margin_text(c), "notes": "; ".join(c.notes)} for c in s.checks]
    verdicts = [{"engine": v.engine, "status": v.status, "css": _css_verdict(v.status), "missed": v.missed,
                 "reasons": v.reasons} for v in s.verdicts.values()]
    rankings = []
    for rk in s.rankings:
        result, why = D.ranking_cells(rk)
        rankings.append({"label": f"{rk.metric.label} ({rk.metric.unit}, {rk.metric.better} is better)",
                         "cells": [D.fmt_figure(rk.figures.get(e), rk.metric) if e in rk.figures else "–"
                                    for e in engines],
                         "result": result, "why": why})
    return {"spread_note": s.spread_note, "slo": s.slo, "checks": checks, "verdicts": verdicts,
            "rankings": rankings, "engines": engines, "record": s.record_md, "unknown": s.unknown_slo_fields}


def _facts_html(pairs: list[tuple[str, str]]) -> Markup:
    if not pairs:
        return Markup("<p>not recorded</p>")
    return Markup('<dl class="facts">') + Markup("").join(
        Markup("<dt>{}</dt><dd>{}</dd>").format(k, v) for k, v in pairs) + Markup("</dl>")


def _settings_html(run: RunData) -> Markup:
    out = Markup("")
    for name, items in T.settings(run):
        body = Markup(", ").join(Markup("<b>{}={}</b>").format(k, v) if ch else Markup("{}={}").format(k, v)
                                 for k, v, ch in items) if items else Markup("–")
        out += Markup("<p><b>{}</b>: ").format(name) + body + Markup("</p>")
    return out


def incomplete_text(run: RunData) -> str:
    if run.complete:
        return ""
    err = run.doc.error
    extra = {"running": "the run had not finished when this report was built (or it was killed without a chance to "
                        "record it)",
             "interrupted": "the run was interrupted",
             "failed": "the run failed"}.get(run.status, f"run status {run.status!r}")
    return (f"— {extra}" + (f": {err}" if err else "") +
            ". The figures below are what was measured before it stopped; missing ones are shown as –.")


def not_run_html(run: RunData) -> Markup:
    rows = T.not_run(run)
    if not rows:
        return Markup("<p>Every requested engine ran to completion.</p>")
    return Markup("<ul>") + Markup("").join(
        Markup("<li><b>{}</b>: {} — {}</li>").format(a, b, c) for a, b, c in rows) + Markup("</ul>")


def _defs_html() -> Markup:
    return Markup('<ul class="defs">') + Markup("").join(
        Markup("<li><b>{}</b>: {}</li>").format(k, v) for k, v in METRIC_DEFINITIONS) + Markup("</ul>")


def _table_section(id_: str, title: str, tables: list[tuple[str, T.Table]], intro: str = "",
                   html: Markup | None = None) -> dict[str, Any]:
    return {"id": id_, "title": title, "intro": intro, "tables": [{"caption": c, "table": t} for c, t in tables],
            "html": html}


def _skew(run: RunData) -> str:
    from harness.durations import format_duration

    skew = run.scenario.query.max_clock_skew
    return "none (the rule is off: engines read them as events)" if skew is None else \
        f"{format_duration(skew)} (such records are malformed)"


def _commit_sha(run: RunData) -> str | None:
    return run.doc.versions.commit.sha if run.doc.versions is not None else None


def colours_for(names: list[str], runs: list[RunData]) -> dict[str, str]:
    stated = {k: v for r in runs for k, v in r.engine_colours.items()}
    cmap = P.colour_map(names, stated)
    return {n: cmap[n] for n in names}


def report_context(run: RunData) -> dict[str, Any]:
    names = run.engine_names
    colours = colours_for(names, [run])
    summary = D.summarize(run)
    scen = run.scenario.name
    subtitle = (f"Run {run.run_id} · scenario {scen} · {run.doc.started_at or 'start not recorded'} · "
                f"machine {D._machine_line(run)}")
    sections = [
        _table_section("latency-floor", "Latency floor and changed settings", [("", T.latency_floor(run))],
                       "The settings that bound each engine's latency from below, beside the measured window-close "
                       "latency: the part of the latency an engine adds after a window could close.",
                       Markup("<h3>All settings (changed from the engine's defaults, by the tuning or explicitly, in bold)</h3>") + _settings_html(run)),
        _table_section("moving-parts", "Moving parts each engine needed", [("", T.moving_parts(run))],
                       "Operational complexity is half of the decision: processes and JVMs to run, settings to tune, "
                       "code to maintain. Lines of code: non-blank lines that are not comments or docstrings in "
                       "pipelines/<engine>/*.py, counted in the project as it is when the report is built (commit of "
                       f"the run: {_commit_sha(run) or 'not recorded'})."),
        *([_table_section("faults", "Faults", [("", T.faults(run))],
                          "Each fault the scenario injected, per engine run. Downtime: from the kill to reading the "
                          "topic again. Recovery: from the fault until, for 10 s, the lag stays within max(2 x its "
                          "pre-fault maximum, 1 s of load) and every window that lands has a latency within 1.5 x "
                          "the pre-fault p99, pre-fault meaning before the run's first fault (docs/faults.md). "
                          "Duplicates are counted in the append log: those written between a fault and the next "
                          "one, and the run's total; wrong / missing / extra judge the final table against the "
                          "promised answer. The lag plot under Plots marks the faults.")] if run.scenario.faults else []),
        *([_table_section("bad-input", "Bad input", [("", bad_in), *(
            [(f"Records planted a day ahead, with query.max_clock_skew {_skew(run)}: windows after each plant "
              "(until the next) that the final table got wrong or left out", ff)] if (ff := T.far_future(run)).rows
            else [])],
                          "Per record kind: what the generator sent, what the topic holds (the broker refuses a "
                          "record over its size limit), and per engine run the records it wrote as malformed (all "
                          "of a malformed kind, none of a well-formed one) and the windows holding a record of the "
                          "kind that its final table got wrong or left out (README \"What counts as malformed\").")]
          if (bad_in := T.bad_input(run)).rows else []),
        *([_table_section("backlog", "Backlog", [("", back)],
                          "Backlog mode: each engine's topic was filled first, as fast as the generator could, with "
                          "event times in the past, and the engine then drained it. Drain: from the engine running to "
                          "its lag within the sampling noise; answer: to its final answer. Cores and CPU from its "
                          "cgroup where it had one. Latencies elsewhere in this report measure the backlog's age, not "
                          "the engine. For an interval (batch) job the one run over the whole load is the cost of a "
                          "scheduled run, and its latency is modelled: each window waits for the next run at or after "
                          "its end plus grace, then the measured run time (harness/metrics/backlog.py); the streaming "
                          "engines' latencies come from a live run of the same scenario.")]
          if (back := T.backlog(run)).rows else []),
        _table_section("not-run", "Engines skipped or failed", [], html=not_run_html(run)),
        *([_table_section("bad-windows", "Bad windows", [("", bad)],
                          "Windows whose final value is not the promised one, with both values (the first 10 of "
                          "each engine run, in key and window order): wrong, missing (never written) or extra "
                          "(not in the promised answer).")] if (bad := T.bad_windows(run)).rows else []),
        _table_section("all-runs", "Every engine run", [("", T.repeats(run)), ("Loads", T.loads(run))],
                       "One line per engine and repeat: the figures behind the headline."),
        _table_section("scenario", "Scenario, run, machine and versions", [],
                       html=Markup("<div class='cols'><div><h3>Run</h3>") + _facts_html(T.run_facts(run))
                       + Markup("<h3>Machine</h3>") + _facts_html(T.machine(run))
                       + Markup("<h3>Versions</h3>") + _facts_html(T.versions(run))
                       + Markup("</div><div><h3>Scenario</h3><pre>{}</pre></div></div>").format(T.scenario_yaml(run))),
        _table_section("definitions", "Metric definitions", [], html=_defs_html()),
    ]
    incomplete = incomplete_text(run)
    nav = [("headline-section", "Headline"), ("decision", "Decision"), ("plots", "Plots"),
           ("latency-floor", "Latency floor"), ("moving-parts", "Moving parts"),
           *([("faults", "Faults")] if run.scenario.faults else []), ("not-run", "Skipped/failed"),
           ("all-runs", "Every run"), ("scenario", "Scenario & machine"), ("definitions", "Definitions")]
    if any(sec["id"] == "backlog" for sec in sections):
        nav.insert(nav.index(("not-run", "Skipped/failed")), ("backlog", "Backlog"))
    if any(sec["id"] == "bad-input" for sec in sections):
        nav.insert(nav.index(("not-run", "Skipped/failed")), ("bad-input", "Bad input"))
    if any(sec["id"] == "bad-windows" for sec in sections):
        nav.insert(nav.index(("not-run", "Skipped/failed")) + 1, ("bad-windows", "Bad windows"))
    return {
        "title": f"Stream harness report: {scen}",
        "subtitle": subtitle,
        "incomplete": incomplete,
        "banner_ok": "" if incomplete else None,
        "nav": nav,
        "glance": D.glance(run, summary),
        "headlines": [{"title": "Headline: engines side by side", "table": T.headline(run), "colours": colours,
                       "intro": "" if names else "No engine ran in this run (a load-only pass, or it stopped first)."}],
        "decision": decision_view(run, summary),
        "colours": colours,
        "styles_note": "",
        "plots": run_plots(run, colours),
        "sections": sections,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(run.run_dir / "result.json"),
        "summary": summary,
        "run": run,
    }


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=False)


def render_html(ctx: dict[str, Any]) -> str:
    return _ENV.from_string(HTML).render(css=Markup(CSS), **ctx)


# -- Markdown ---------------------------------------------------------------------------------------------------
def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def md_cell(c: T.Cell) -> str:
    marks = {"unreliable": " †", "partial": " ‡", "bad": " ⚠"}
    return _md(c.text) + "".join(marks.get(f, "") for f in c.flag.split())


def md_table(t: T.Table) -> list[str]:
    lines = ["| " + " | ".join(_md(c) if c else " " for c in t.columns) + " |",
             "|" + " --- |" * len(t.columns)]
    for r in t.rows:
        lines.append("| " + " | ".join([_md(r.label), *[md_cell(c) for c in r.cells]]) + " |")
    return lines


def render_markdown(ctx: dict[str, Any]) -> str:
    run: RunData = ctx["run"]
    s: D.DecisionSummary = ctx["summary"]
    dv = ctx["decision"]
    out = [f"# {'INCOMPLETE: ' if ctx['incomplete'] else ''}{ctx['title']}", "", ctx["subtitle"], ""]
    if ctx["incomplete"]:
        out += [f"> **INCOMPLETE** {ctx['incomplete']}", ""]
    out += ["**At a glance**", ""] + [f"- {g}" for g in D.glance(run, s)] + [""]
    out += ["Plots: open `report.html` next to this file (self-contained, no network needed).", "",
            "## Headline", ""]
    for hl in ctx["headlines"]:
        if len(ctx["headlines"]) > 1:
            out += [f"### {hl['title']}", ""]
        out += md_table(hl["table"]) + [""]
    out += ["† unreliable percentile (95% interval over window closes wider than ±10%; n counts window closes); ‡ from an engine run that did not complete; ⚠ should be "
            "zero or equal. Several repeats: median (min..max, n).", "", "## Decision summary", "", s.spread_note, ""]
    for v in dv["verdicts"]:
        extra = f" ({', '.join(v['missed'])})" if v["missed"] else ""
        why = f": {'; '.join(v['reasons'])}" if v["reasons"] else ""
        out.append(f"- **{v['engine']}**: {v['status']}{extra}{why}")
    out.append("")
    if dv["checks"]:
        out += ["| SLO | checks | engine | verdict | figure | threshold | margin | notes |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for c in dv["checks"]:
            out.append("| " + " | ".join(_md(x) for x in (f"`{c['field']}`", f"`{c['path']}`", c["engine"],
                                                            f"**{c['verdict']}**", c["figure"], c["threshold"],
                                                            c["margin"], c["notes"])) + " |")
        out.append("")
    elif not s.slo:
        out += ["No SLOs are set in the scenario.", ""]
    if len(dv["engines"]) == 1:
        out += [f"Only {dv['engines'][0]} was measured: there is nothing to compare it with.", ""]
    elif dv["rankings"]:
        out += ["### Figure by figure", "", "| figure | " + " | ".join(dv["engines"]) + " | result | why |",
                "|" + " --- |" * (len(dv["engines"]) + 3)]
        for r in dv["rankings"]:
            out.append("| " + " | ".join(_md(x) for x in [r["label"], *r["cells"], r["result"], r["why"]]) + " |")
        out.append("")
    for sec in ctx["sections"]:
        if sec["id"] in ("scenario", "definitions", "not-run", "all-runs"):
            continue
        out += [f"## {sec['title']}", ""]
        if sec["intro"]:
            out += [sec["intro"], ""]
        for t in sec["tables"]:
            if t["caption"]:
                out += [f"**{t['caption']}**", ""]
            out += md_table(t["table"]) + [""]
    out += ["## Engines skipped or failed", ""]
    rows = T.not_run(run)
    out += [f"- **{a}**: {b}: {c}" for a, b, c in rows] or ["- none: every requested engine completed."]
    out += ["", "## Run, machine and versions", ""]
    out += [f"- {k}: {v}" for k, v in T.run_facts(run) + T.machine(run)]
    out += [f"- version {k}: {v}" for k, v in T.versions(run)]
    out += ["", "## Metric definitions", ""] + [f"- **{k}**: {v}" for k, v in METRIC_DEFINITIONS]
    out += ["", "---", "", s.record_md]
    return "\n".join(out) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def build_report(run_dir: Path) -> tuple[Path, Path]:
    """Write report.html and report.md next to run_dir/result.json and return their paths (html, md).

    report.html is one self-contained page (plots embedded as data: URIs, inline CSS, no network needed): the
    headline table (id="headline"), the decision summary (id="decision": every SLO for every engine, the
    figure-by-figure comparison with ties called where the figures don't separate the engines, and a decision
    record draft), the plots, latency floors and settings, moving parts, skipped and failed engines, scenario,
    machine and versions, and the metric definitions. report.md holds the same tables and the decision record.
    Reads only the run folder (result.json and raw/); a run that is not complete is marked INCOMPLETE. A capacity
    run (`harness capacity`) gets its own report instead (harness/report/capacity.py). Raises
    HarnessError when run_dir holds no readable result.json.
    """
    run = RunData.load(Path(run_dir))
    html_path, md_path = run.run_dir / "report.html", run.run_dir / "report.md"
    if run.doc.mode == "capacity":
        from harness.report import capacity

        _write(html_path, capacity.render_html(run))
        _write(md_path, capacity.render_markdown(run))
        return html_path, md_path
    ctx = report_context(run)
    _write(html_path, render_html(ctx))
    _write(md_path, render_markdown(ctx))
    return html_path, md_path


__all__ = ["build_report"]
