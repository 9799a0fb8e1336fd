"""The report of a capacity run (`harness capacity`): per engine, the sustainable rate with its bracket, the
latency-versus-throughput curve (p50 and p99 per step) and the CPU per million events per step."""

from __future__ import annotations

import base64
import html
from typing import Any

from harness.metrics import capacity as cap
from harness.report import plots as P
from harness.report.data import RunData
from harness.report.template import CSS
from harness.results.document import EngineCapacity

INTRO = (f"Each engine ran once and took a staircase of constant rates: doubling from the first rate, then "
         f"bisection between the highest sustainable rate and the lowest that was not, until the bracket was "
         f"narrower than {cap.BRACKET_SHARE:.0%} of its lower end. A step is sustainable when, after its warm-up, "
         f"the lag did not grow (the keeping-up rule of `harness run`) and its p99 latency met the bound. A step "
         f"whose generator fell behind (achieved rate over {cap.GEN_RATE_SHORTFALL:.0%} short, or send-delay p99 "
         f"over {cap.GEN_SEND_DELAY_P99_MS:g} ms), or after whose warm-up the machine's CPUs were at least "
         f"{cap.MACHINE_BUSY_SHARE:.0%} busy, is machine-bound: it closes the bracket from above and says the "
         f"machine, not the engine, was the limit. Cores are CPU seconds per second of the step; on this "
         f"machine every process shares the same cores, so a curve above them is bound by the machine.")


def _f(v: float | None, fmt: str = ",.0f") -> str:
    return "–" if v is None else format(v, fmt)


def summary_rows(run: RunData) -> list[list[str]]:
    rows = []
    for c in run.doc.capacity:
        rows.append([c.engine, c.status, _f(c.sustainable_rate), _f(c.bracket_high),
                     {"machine": "the machine (CPUs or generator)", "engine": "the engine"}.get(c.bound_by or "",
                                                                                                 "–"),
                     "yes" if c.bracket_narrow else "no", str(len(c.steps)),
                     f"{c.latency_bound_metric.replace('_', '-')} p99 ≤ {c.latency_bound_ms / 1000:g} s",
                     c.reason or c.error or ""])
    return rows


SUMMARY_COLUMNS = ["engine", "status", "sustainable events/s", "bracket high", "bracket closed by", "within 10%",
                   "steps",
                   "latency bound", "note"]
STEP_COLUMNS = ["step", "phase", "offered/s", "achieved/s", "send delay p99 ms", "verdict", "lag slope rec/s",
                "p50 ms", "p99 ms", "windows final", "CPU s per M events", "cores engine", "cores broker",
                "cores PostgreSQL", "cores generator", "cores machine", "peak RSS MB", "drained s", "reason"]


def step_rows(c: EngineCapacity) -> list[list[str]]:
    lat = "event_to_result_ms" if c.latency_bound_metric == "event_to_result" else "window_close_ms"
    out = []
    for s in c.steps:
        p = getattr(s, lat)
        out.append([str(s.index + 1), s.phase, _f(s.rate), _f(s.achieved_rate_eps), _f(s.send_delay_ms.p99, ".2f"),
                    s.verdict, _f(s.keeping_up.lag_slope_records_per_s), _f(p.p50), _f(p.p99),
                    f"{s.windows_exact}/{s.windows_expected}", _f(s.cpu_seconds_per_million, ".1f"),
                    _f(s.cores.engine, ".2f"), _f(s.cores.broker, ".2f"), _f(s.cores.postgres, ".2f"),
                    _f(s.cores.generator, ".2f"),
                    _f(s.cores.machine, ".2f") + (f" of {s.cores.machine_cores}" if s.cores.machine_cores else ""),
                    _f(s.peak_rss_mb, ".0f"), _f(s.drained_s, ".1f"), s.reason])
    return out


def curve_png(run: RunData) -> bytes | None:
    """Latency p50 and p99 against the offered rate, one colour per engine; the CPU per million events below."""
    entries = [c for c in run.doc.capacity if c.steps]
    if not entries:
        return None
    colours = P.colour_map([c.engine for c in entries])
    fig, (ax, ax2) = P._new(2, height=6.4)
    for c in entries:
        lat = "event_to_result_ms" if c.latency_bound_metric == "event_to_result" else "window_close_ms"
        steps = sorted(c.steps, key=lambda s: s.rate)
        x = [s.rate for s in steps]
        col = colours[c.engine]
        ax.plot(x, [getattr(s, lat).p50 for s in steps], "o-", color=col, label=f"{c.engine} p50")
        ax.plot(x, [getattr(s, lat).p99 for s in steps], "s--", color=col, label=f"{c.engine} p99")
        bad = [s for s in steps if s.verdict != "sustainable"]
        ax.scatter([s.rate for s in bad], [getattr(s, lat).p99 for s in bad], marker="x", s=80, color="black",
                   zorder=5)
        ax2.plot(x, [s.cpu_seconds_per_million for s in steps], "o-", color=col, label=c.engine)
        if c.sustainable_rate is not None:
            ax.axvline(c.sustainable_rate, color=col, alpha=0.4, lw=1)
    bound = entries[0]
    ax.axhline(bound.latency_bound_ms, color="grey", ls=":", label="latency bound")
    ax.set_xscale("log")
    ax.set_ylabel(f"{bound.latency_bound_metric.replace('_', '-')} latency (ms)")
    ax.set_title("Latency against offered rate (x: not sustainable or machine-bound; line: sustainable rate)")
    ax2.set_ylabel("engine CPU s per million events")
    ax2.set_xlabel("offered events per second")
    P._legend(ax)
    P._legend(ax2)
    return P._png(fig)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def render_markdown(run: RunData) -> str:
    d = run.doc
    out = [f"# Capacity report: {d.scenario.name}", "",
           f"Run {d.run_id} · {d.started_at} · status {d.status}" + (f" ({d.error})" if d.error else ""), "",
           "## Capacity", "", INTRO, "", _md_row(SUMMARY_COLUMNS), "|" + " --- |" * len(SUMMARY_COLUMNS)]
    out += [_md_row(r) for r in summary_rows(run)] + [""]
    for c in d.capacity:
        if not c.steps:
            continue
        out += [f"### {c.engine}", "", f"Latency bound: {c.latency_bound_source}.", "",
                _md_row(STEP_COLUMNS), "|" + " --- |" * len(STEP_COLUMNS)]
        out += [_md_row(r) for r in step_rows(c)] + [""]
    out += ["The curve is in `report.html` next to this file.", ""]
    return "\n".join(out)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _html_table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(run: RunData) -> str:
    d = run.doc
    try:
        png = curve_png(run)
        plot = (f'<img alt="latency against offered rate" src="{_data_uri(png)}">' if png else
                "<p>No step finished: nothing to draw.</p>")
    except Exception as exc:  # a plotting problem must never cost the report
        plot = f"<p>The plot failed: {html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>"
    parts: list[Any] = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Capacity: {html.escape(d.scenario.name)}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>Capacity report: {html.escape(d.scenario.name)}</h1>",
        f"<p>Run {html.escape(d.run_id)} · {html.escape(d.started_at)} · status {html.escape(d.status)}"
        + (f" ({html.escape(d.error)})" if d.error else "") + "</p>",
        f"<section id='capacity'><h2>Capacity</h2><p>{html.escape(INTRO)}</p>",
        _html_table(SUMMARY_COLUMNS, summary_rows(run)), plot]
    for c in d.capacity:
        if c.steps:
            parts += [f"<h3>{html.escape(c.engine)}</h3><p>Latency bound: {html.escape(c.latency_bound_source)}.</p>",
                      _html_table(STEP_COLUMNS, step_rows(c))]
    parts.append("</section></body></html>")
    return "\n".join(parts)
