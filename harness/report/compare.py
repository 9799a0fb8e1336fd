"""`build_compare(run_dirs, out_dir)`: the same headline tables and main plots across runs (before and after a
tuning change, two machines, two versions), with every change judged against the run-to-run spread.

Each later run is compared with the first one, engine by engine, by the rules of harness.report.verdicts.judge: with
5 or more repeats in both runs a change is "better" or "worse" only when the exact Mann-Whitney test, Holm-corrected
over every comparison of that figure in the table, gives p < 0.05 and the change is at least 5%; with 2-4
repeats it is "not enough repeats"; single runs are judged against the noise band `harness bench noise` measured on
this machine (and, for latency percentiles, their intervals over window closes), and are ties without one.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from markupsafe import Markup

from harness.errors import HarnessError
from harness.metrics import significance as S
from harness.report import builder as B
from harness.report import decision as D
from harness.report import verdicts as M
from harness.report import plots as P
from harness.report import table_builders as T
from harness.report.data import RunData

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RULE = (f"With {S.MIN_REPEATS} or more repeats in both runs, a change is better or worse only when an exact "
        f"Mann-Whitney test (Holm-corrected over the comparisons of that figure) gives p < {S.ALPHA:g} and it is at "
        f"least {S.MIN_PRACTICAL:.0%}; with 2-{S.MIN_REPEATS - 1} repeats it is \"{S.NOT_ENOUGH}\"; single runs are "
        "judged against the noise band measured on this machine (and percentile intervals over window closes); "
        "otherwise a tie.")


def _flat(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(d, default=str)
    return out


def _versions(r: RunData) -> dict[str, Any]:
    """The run's versions as they are listed: the harness's own, then each engine's under its name."""
    v = r.doc.versions
    if v is None:
        return {}
    own = v.model_dump(mode="json", exclude={"engines"})
    return {**own, **{name: dict(libs) for name, libs in v.engines.items() if name not in own}}


def differences(runs: list[RunData]) -> T.Table:
    """Every scenario field, engine setting, machine fact and version whose value differs between the runs."""
    labels = [LABELS[i % 26] for i in range(len(runs))]
    flats = []
    for r in runs:
        scenario = r.scenario.model_dump(mode="json")
        f = {f"scenario.{k}": v for k, v in _flat(scenario).items() if not k.startswith("description")}
        for name, rs in r.by_engine().items():
            if rs:
                f.update({f"engine {name}.{k}": v for k, v in _flat(rs[0].entry.settings).items()})
        machine = r.doc.machine.model_dump(mode="json") if r.doc.machine else {}
        f.update({f"machine.{k}": v for k, v in _flat(machine).items() if k != "hostname"})
        f.update({f"versions.{k}": v for k, v in _flat(_versions(r)).items()})
        f["engines run"] = ", ".join(r.engine_names)
        f["repeats"] = str(r.doc.repeat)
        flats.append(f)
    keys = list(dict.fromkeys(k for f in flats for k in f))
    t = T.Table(["what", *[f"run {x}" for x in labels]])
    for k in keys:
        vals = [f.get(k, "(absent)") for f in flats]
        if len(set(vals)) > 1:
            t.rows.append(T.Row(k, [T.Cell(v.strip('"')) for v in vals]))
    return t


def runs_table(runs: list[RunData]) -> T.Table:
    t = T.Table(["run", "run id", "status", "scenario", "started", "commit", "machine", "repeats", "engines"])
    for i, r in enumerate(runs):
        commit = r.doc.versions.commit if r.doc.versions else None
        sha = (commit.sha if commit else None) or ""
        dirty = commit.dirty if commit else None
        t.rows.append(T.Row(LABELS[i % 26], [
            T.Cell(r.run_id), T.Cell(r.status.upper() if not r.complete else r.status, "" if r.complete else "bad"),
            T.Cell(r.scenario.name), T.Cell(r.doc.started_at or "–"),
            T.Cell((sha[:10] + (" (dirty)" if dirty else "")) if sha else "–"), T.Cell(D._machine_line(r)),
            T.Cell(str(r.doc.repeat or 1)), T.Cell(", ".join(r.engine_names) or "none"),
        ]))
    return t


def noise_for_runs(runs: list[RunData]) -> tuple[S.NoiseBand | None, str]:
    """The measured noise band, when it applies to every run's machine (single-run changes are judged by it)."""
    band, why = None, ""
    for r in runs:
        band, why = D.noise_for(r)
        if band is None:
            break
    return band, why


def changes(runs: list[RunData], noise: S.NoiseBand | None = None) -> tuple[T.Table, list[str]]:
    """Per engine and ranked figure: the value in every run, and each later run judged against the first."""
    labels = [LABELS[i % 26] for i in range(len(runs))]
    engines = list(dict.fromkeys(e for r in runs for e in r.engine_names))
    cols = ["engine", "figure", *[f"run {x}" for x in labels]]
    t = T.Table(cols[1:])
    glance: list[str] = []
    groups_by_engine = {e: [r.by_engine().get(e, []) for r in runs] for e in engines}
    figs_by = {(e, m.key): [M.figure(g, m) for g in groups_by_engine[e]] for e in engines for m in M.RANKED}
    # One family per figure: every later run against run A, for every engine; Holm keeps the chance of any false
    # "better"/"worse" among that figure's rows at 5%.
    adjusted: dict[tuple[str, str, int], float] = {}
    family: dict[str, int] = {}
    for m in M.RANKED:
        keys, raw = [], []
        for e in engines:
            figs = figs_by[(e, m.key)]
            for i, f in enumerate(figs[1:], 1):
                base = figs[0]
                if f is not None and base is not None and (p := M.repeat_p(base, f, m)) is not None:
                    keys.append((e, m.key, i))
                    raw.append(p)
        adjusted.update(zip(keys, (float(v) for v in S.holm(raw))))
        family[m.key] = len(keys)
    for e in engines:
        groups = groups_by_engine[e]
        per_run_better: dict[int, list[str]] = {}
        per_run_worse: dict[int, list[str]] = {}
        per_run_few: dict[int, list[str]] = {}
        for m in M.RANKED:
            figs = figs_by[(e, m.key)]
            if all(f is None for f in figs):
                continue
            cells = [T.Cell(D.fmt_figure(figs[0], m), "unreliable" if figs[0] and figs[0].unreliable else "")]
            for i, f in enumerate(figs[1:], 1):
                text = D.fmt_figure(f, m)
                base = figs[0]
                if f is None or base is None:
                    cells.append(T.Cell(text))
                    continue
                j = M.judge(base, f, m, noise, p_adjusted=adjusted.get((e, m.key, i)), family=family[m.key])
                delta = f.mid - base.mid
                rel = f" ({delta / abs(base.mid):+.0%})" if base.mid else ""
                if j.called:
                    better = j.verdict == "b"
                    word, flag = ("better" if better else "worse"), ("" if better else "bad")
                    (per_run_better if better else per_run_worse).setdefault(i, []).append(m.label)
                else:
                    word, flag = j.verdict, ""
                    if j.verdict == S.NOT_ENOUGH:
                        per_run_few.setdefault(i, []).append(m.label)
                cells.append(T.Cell(f"{text}; {D.fmt(delta, '', m.digits)}{rel}: {word}", flag, j.reason))
            t.rows.append(T.Row(f"{e}: {m.label} ({m.unit}, {m.better} is better)", cells))
        for i in range(1, len(runs)):
            b, w, few = per_run_better.get(i, []), per_run_worse.get(i, []), per_run_few.get(i, [])
            if not any(groups[i]) or not any(groups[0]):
                glance.append(f"{e}: not in both run A and run {labels[i]}.")
            elif few and not b and not w:
                glance.append(f"{e}, run {labels[i]} vs A: {S.NOT_ENOUGH} to call a change (use --repeat "
                              f"{S.MIN_REPEATS} in both runs).")
            elif not b and not w:
                glance.append(f"{e}, run {labels[i]} vs A: no change the test or the measured noise band calls.")
            else:
                glance.append(f"{e}, run {labels[i]} vs A: " + "; ".join(
                    x for x in [f"better on {', '.join(b)}" if b else "", f"worse on {', '.join(w)}" if w else ""] if x)
                    + "; every other figure a tie" + (f" or {S.NOT_ENOUGH}" if few else "") + ".")
    return t, glance


def slo_table(runs: list[RunData]) -> T.Table:
    labels = [LABELS[i % 26] for i in range(len(runs))]
    engines = list(dict.fromkeys(e for r in runs for e in r.engine_names))
    t = T.Table(["engine", *[f"run {x}" for x in labels]])
    sums = [D.summarize(r) for r in runs]
    for e in engines:
        cells = []
        for s in sums:
            v = s.verdicts.get(e)
            if v is None:
                cells.append(T.Cell("not in this run"))
            else:
                cells.append(T.Cell(v.status + (f" ({', '.join(v.missed)})" if v.missed else ""),
                                    "bad" if v.status == "misses" else "warn" if v.status == "not measured" else ""))
        t.rows.append(T.Row(e, cells))
    return t


def compare_context(runs: list[RunData]) -> dict[str, Any]:
    labels = [LABELS[i % 26] for i in range(len(runs))]
    names = list(dict.fromkeys(e for r in runs for e in r.engine_names))
    colours = B.colours_for(names, runs)
    styles = {lab: P.RUN_STYLES[i % len(P.RUN_STYLES)] for i, lab in enumerate(labels)}
    items: list[P.Item] = []
    bars: list[P.Item] = []
    loads: list[P.LoadItem] = []
    for lab, r in zip(labels, runs):
        for it in B.run_items(r, colours, styles[lab], f" · {lab}"):
            items.append(it)
        for it in B.run_items(r, colours, styles[lab], f" · {lab}", per_repeat_labels=True):
            bars.append(it)
        loads += B.load_items(r, colours, styles[lab], f" · {lab}")
    slo = runs[0].scenario.slo
    slo_p99 = float(slo.p99_latency) if slo.p99_latency is not None else None
    slo_p50 = float(slo.p50_latency) if slo.p50_latency is not None else None
    plots = [
        B.make_plot("Latency distribution", B.PLOT_CAPTIONS["cdf"] + " Line style: run.",
                    lambda: P.latency_cdf(items, slo_p99, slo_p50),
                    "no per-window latencies"),
        B.make_plot("Latency over time", B.PLOT_CAPTIONS["over_time"], lambda: P.latency_over_time(items),
                    "no per-window latencies"),
        B.make_plot("Throughput and lag", B.PLOT_CAPTIONS["throughput"], lambda: P.throughput_lag(items),
                    "no engine time series"),
        B.make_plot("Resource use", B.PLOT_CAPTIONS["resources"], lambda: P.resources(items), "no engine time series"),
        B.make_plot("Correctness and duplicates", B.PLOT_CAPTIONS["correctness"] + " Hatch: run B //, C .., D xx.",
                    lambda: P.correctness_bars(bars), "no engine reached the correctness check"),
        B.make_plot("Load sent vs intended", B.PLOT_CAPTIONS["load"], lambda: P.load_sent(loads), "no load time series"),
    ]
    for m, title in ((M.P99, "p99 latency by run"), (M.CPU_M, "CPU per million events by run")):
        groups = []
        for e in names:
            bars_e = []
            for lab, r in zip(labels, runs):
                f = M.figure(r.by_engine().get(e, []), m)
                bars_e.append((f"run {lab}", colours[e], f.mid if f else None, f.lo if f else None,
                               f.hi if f else None))
            groups.append((e, bars_e))
        plots.append(B.make_plot(title, f"{m.label} per engine and run (colour: engine; whiskers: min..max over repeats; "
                                        "hatch: run, as in the legend).",
                                 lambda m=m, title=title, groups=groups: P.figure_bars(title, f"{m.label} ({m.unit})",
                                                                                     groups), "not measured"))
    noise, why_no_band = noise_for_runs(runs)
    change_table, glance = changes(runs, noise)
    incomplete = [f"run {lab} ({r.run_id}) is {r.status.upper()}" + (f": {r.doc.error}" if r.doc.error else "")
                  for lab, r in zip(labels, runs) if not r.complete]
    scen = sorted({r.scenario.name for r in runs})
    glance = ([f"Scenario differs between runs ({', '.join(scen)}): compare with care."] if len(scen) > 1 else []) \
        + glance + [f"How changes are called: {RULE} Single runs: "
                    + (f"the noise band measured by {noise.source}." if noise else f"{why_no_band or S.NO_NOISE_BAND}, "
                       "so no change between single runs is called.")]
    sections = [
        B._table_section("changes", "What changed, run by run (against run A)", [("", change_table)],
                         "Each cell: the figure, its change against run A, and the verdict; hover for the reason. "
                         + RULE),
        B._table_section("slo", "SLO verdicts per run", [("", slo_table(runs))],
                         "Each run judged against its own scenario's SLOs (see each run's report for the details)."),
        B._table_section("differences", "What differs between the runs' set-ups", [("", differences(runs))],
                         "Scenario fields, engine settings, machine and versions whose values differ."),
        B._table_section("runs", "The runs", [("", runs_table(runs))]),
        B._table_section("definitions", "Metric definitions", [], html=B._defs_html()),
    ]
    headlines = [{"title": f"Run {lab}: {r.run_id} ({r.status})", "table": T.headline(r), "colours": colours,
                  "intro": ""} for lab, r in zip(labels, runs)]
    styles_note = " · line style per run: " + ", ".join(
        f"{lab} {({'-': 'solid', '--': 'dashed', ':': 'dotted', '-.': 'dash-dot'})[st]}" for lab, st in styles.items())
    return {
        "title": f"Stream harness comparison: {len(runs)} runs",
        "subtitle": " · ".join(f"{lab}: {r.run_id}" for lab, r in zip(labels, runs)),
        "incomplete": ("— " + "; ".join(incomplete) + ". Its figures are what was measured before it stopped.")
        if incomplete else "",
        "banner_ok": None,
        "glance": glance,
        "nav": [("headline-section", "Headlines"), ("plots", "Plots"), ("changes", "Changes"), ("slo", "SLOs"),
                ("differences", "Set-up differences"), ("runs", "Runs"), ("definitions", "Definitions")],
        "headlines": headlines,
        "decision": None,
        "colours": colours,
        "styles_note": Markup(styles_note),
        "plots": plots,
        "sections": sections,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": ", ".join(str(r.run_dir) for r in runs),
        "runs": runs,
        "labels": labels,
    }


def render_markdown(ctx: dict[str, Any]) -> str:
    out = [f"# {'INCOMPLETE: ' if ctx['incomplete'] else ''}{ctx['title']}", "", ctx["subtitle"], ""]
    if ctx["incomplete"]:
        out += [f"> **INCOMPLETE** {ctx['incomplete']}", ""]
    out += ["**At a glance**", ""] + [f"- {g}" for g in ctx["glance"]] + ["",
            "Plots: open `compare.html` next to this file.", ""]
    for sec in ctx["sections"]:
        if sec["id"] == "definitions":
            continue
        out += [f"## {sec['title']}", ""] + ([sec["intro"], ""] if sec["intro"] else [])
        for t in sec["tables"]:
            out += B.md_table(t["table"]) + [""]
    out += ["## Headlines", ""]
    for hl in ctx["headlines"]:
        out += [f"### {hl['title']}", ""] + B.md_table(hl["table"]) + [""]
    return "\n".join(out) + "\n"


def build_compare(run_dirs: list[Path], out_dir: Path) -> tuple[Path, Path]:
    """Write compare.html and compare.md into out_dir (created if needed) and return their paths (html, md).

    compare.html is self-contained (plots as data: URIs): the headline table of every run (the first has
    id="headline"), the main plots overlaid (colour: engine, line style: run), a table of every ranked figure per
    engine with each later run judged against the first (better / worse only when the repeats' rank test calls it,
    or beyond the measured noise band for single runs; else a tie or "not enough repeats"), the SLO verdicts per run, the set-up differences
    (scenario, engine settings, machine, versions) and the runs themselves. compare.md holds the same tables.
    Runs that are not complete are marked INCOMPLETE. Raises HarnessError for fewer than two run folders or a
    folder without a readable result.json.
    """
    dirs = [Path(d) for d in run_dirs]
    if len(dirs) < 2:
        raise HarnessError(f"compare needs two or more run folders, got {len(dirs)}")
    runs = [RunData.load(d) for d in dirs]
    ctx = compare_context(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out / "compare.html", out / "compare.md"
    B._write(html_path, B.render_html(ctx))
    B._write(md_path, render_markdown(ctx))
    return html_path, md_path
