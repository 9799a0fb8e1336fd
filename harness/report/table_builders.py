"""The report's tables as plain rows (label, cells) that the HTML template and the Markdown writer both render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from harness.report import verdicts as M
from harness.report.data import EngineRun, RunData, dig, num
from harness.report.decision import fmt

UNRELIABLE_TIP = "fewer than 10/(1-p) samples: this percentile is not much more than the maximum"


@dataclass
class Cell:
    text: str
    flag: str = ""          # space-separated: "unreliable", "partial", "bad", "warn" (also the HTML classes)
    tip: str = ""

    def add(self, flag: str, tip: str = "") -> None:
        self.flag = f"{self.flag} {flag}".strip()
        if tip:
            self.tip = f"{self.tip}; {tip}" if self.tip else tip


@dataclass
class Row:
    label: str
    cells: list[Cell]
    note: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[Row] = field(default_factory=list)


def _pool(runs: list[EngineRun]) -> tuple[list[EngineRun], bool]:
    """The runs whose figures a cell shows: the complete ones, else any that measured something (marked)."""
    measured = [r for r in runs if r.measured]
    if measured:
        return measured, False
    return [r for r in runs if r.status != "skipped"
            and (isinstance(r.entry.get("windows"), dict) or isinstance(r.entry.get("resources"), dict))], True


def _partial_tip(pool: list[EngineRun]) -> str:
    return "from a run that did not complete (" + ", ".join(sorted({r.status for r in pool})) + ")"


def number_cell(runs: list[EngineRun], read: Callable[[EngineRun], Any], unit: str = "", digits: int = 0,
                unreliable: Callable[[EngineRun], bool] | None = None, extra: Callable[[EngineRun], str] | None = None,
                bad_if: Callable[[float], bool] | None = None) -> Cell:
    pool, partial = _pool(runs)
    vals = [(r, num(read(r))) for r in pool]
    vals = [(r, v) for r, v in vals if v is not None]
    if not vals:
        return Cell("–")
    vs = [v for _, v in vals]
    if len(vs) == 1:
        text = fmt(vs[0], unit, digits)
    else:
        f = M.Figure(vs)
        text = f"{fmt(f.mid, unit, digits)} ({fmt(f.lo, '', digits)}..{fmt(f.hi, '', digits)}, n={len(vs)})"
    if extra:
        more = [extra(r) for r, _ in vals]
        more = [m for m in more if m]
        if more:
            text += " " + (more[0] if len(set(more)) == 1 else " / ".join(more))
    cell = Cell(text)
    if bad_if and any(bad_if(v) for v in vs):
        cell.add("bad")
    if unreliable and any(unreliable(r) for r, _ in vals):
        cell.add("unreliable", UNRELIABLE_TIP)
    if partial:
        cell.add("partial", _partial_tip(pool))
    return cell


def text_cell(runs: list[EngineRun], text: Callable[[EngineRun], str | None], bad: Callable[[EngineRun], bool] | None = None
              ) -> Cell:
    pool, partial = _pool(runs)
    texts = [(r, text(r)) for r in pool]
    texts = [(r, t) for r, t in texts if t]
    if not texts:
        return Cell("–")
    uniq = list(dict.fromkeys(t for _, t in texts))
    s = uniq[0] + (f" (all {len(texts)} repeats)" if len(texts) > 1 else "") if len(uniq) == 1 else \
        "; ".join(f"#{r.repeat}: {t}" for r, t in texts)
    cell = Cell(s)
    if bad and any(bad(r) for r, _ in texts):
        cell.add("bad")
    if partial:
        cell.add("partial", _partial_tip(pool))
    return cell


def _status(runs: list[EngineRun]) -> Cell:
    if not runs:
        return Cell("not in result.json", "bad")
    st = [r.status for r in runs]
    if len(set(st)) == 1:
        s = st[0] + (f" ×{len(st)}" if len(st) > 1 else "")
    else:
        s = ", ".join(f"#{r.repeat} {r.status}" for r in runs)
    flag = "" if all(x == "complete" for x in st) else "warn" if all(x in ("complete", "skipped") for x in st) else "bad"
    tip = "; ".join(str(r.entry.get("error") or r.entry.get("reason")) for r in runs
                    if r.entry.get("error") or r.entry.get("reason"))
    return Cell(s, flag, tip)


def _lat_n(r: EngineRun) -> str:
    n = r.get("windows", "event_to_result_ms", "count")
    return f"n={int(n)}" if num(n) is not None else ""


def _correct(r: EngineRun) -> str | None:
    c = r.get("windows", "correctness")
    if not isinstance(c, dict):
        return None
    promised = r.get("windows", "promised_answer") or r.get("promised_answer")
    answer = f" ({str(promised).replace('_', '-')} answer)" if promised else ""
    return (f"{c.get('exact', '?')}/{c.get('expected', '?')} exact{answer}; {c.get('wrong', '?')} wrong, "
            f"{c.get('missing', '?')} missing, {c.get('extra', '?')} extra")


def _correct_bad(r: EngineRun) -> bool:
    c = r.get("windows", "correctness") or {}
    return any((num(c.get(k)) or 0) > 0 for k in ("wrong", "missing", "extra"))


def _pair(a: tuple[str, ...], b: tuple[str, ...], sep: str = " / ") -> Callable[[EngineRun], str | None]:
    def f(r: EngineRun) -> str | None:
        x, y = r.get(*a), r.get(*b)
        if x is None and y is None:
            return None
        return f"{fmt(num(x)) if num(x) is not None else '–'}{sep}{fmt(num(y)) if num(y) is not None else '–'}"
    return f


def headline(run: RunData) -> Table:
    groups = run.by_engine()
    names = list(groups)
    t = Table(["", *names])

    def row(label: str, cells: Callable[[list[EngineRun]], Cell], note: str = "") -> None:
        t.rows.append(Row(label, [cells(groups[n]) for n in names], note))

    e2r = ("windows", "event_to_result_ms")
    wc = ("windows", "window_close_ms")
    row("Status", _status)
    row("Latency p50 (event to result)", lambda rs: number_cell(rs, lambda r: r.get(*e2r, "p50"), "ms",
                                                                 unreliable=M.P50.unreliable, extra=_lat_n))
    row("Latency p99 (event to result)", lambda rs: number_cell(rs, lambda r: r.get(*e2r, "p99"), "ms",
                                                                 unreliable=M.P99.unreliable, extra=_lat_n))
    row("Latency max (event to result)", lambda rs: number_cell(rs, lambda r: r.get(*e2r, "max"), "ms", extra=_lat_n))
    row("Window-close latency p50 / p99", lambda rs: text_cell(rs, lambda r: (
        f"{fmt(num(r.get(*wc, 'p50')), 'ms')} / {fmt(num(r.get(*wc, 'p99')), 'ms')}"
        + (" (p99 unreliable)" if "p99" in (r.get(*wc, "unreliable") or []) else "")) if r.get(*wc, "count") else None))
    row("Throughput in (records/s)", lambda rs: number_cell(
        rs, lambda r: r.get("throughput", "in_records_per_s"), "", 1,
        extra=lambda r: f"(broker acked {fmt(num(r.get('throughput', 'acked_records_per_s')), '', 1)})"
        if num(r.get("throughput", "acked_records_per_s")) is not None else ""))
    row("Throughput out (sink rows/s)", lambda rs: number_cell(rs, lambda r: r.get("throughput", "out_rows_per_s"), "", 2))
    row("Correctness (windows)", lambda rs: text_cell(rs, _correct, _correct_bad))
    row("Late events dropped / on-time events missing", lambda rs: text_cell(
        rs, _pair(("windows", "late_events_dropped"), ("windows", "on_time_events_missing")),
        lambda r: (num(r.get("windows", "on_time_events_missing")) or 0) > 0))
    row("Malformed counted / sent", lambda rs: text_cell(
        rs, _pair(("malformed", "counted_by_engine"), ("malformed", "sent")),
        lambda r: num(r.get("malformed", "counted_by_engine")) != num(r.get("malformed", "sent"))))
    row("Duplicates / re-emissions (rows)", lambda rs: text_cell(
        rs, _pair(("windows", "duplicates"), ("windows", "re_emissions")),
        lambda r: (num(r.get("windows", "duplicates")) or 0) > 0))
    row("CPU per million events, during load", lambda rs: number_cell(
        rs, lambda r: r.get("cpu_during_load", "cpu_seconds_per_million_events"), "CPU s", 1))
    row("CPU total, start-up included", lambda rs: number_cell(
        rs, lambda r: r.get("resources", "cpu_seconds"), "CPU s", 1,
        extra=lambda r: f"({fmt(num(r.get('resources', 'cpu_seconds_per_million_events')), '', 0)} per M events)"
        if num(r.get("resources", "cpu_seconds_per_million_events")) is not None else ""))
    row("Peak memory (RSS sum / high-water sum)", lambda rs: text_cell(
        rs, lambda r: (f"{fmt(num(r.get('resources', 'peak_rss_mb')), 'MB')} / "
                       f"{fmt(num(r.get('resources', 'peak_hwm_sum_mb')), 'MB')}") if r.get("resources") else None))
    row("Max lag (records)", lambda rs: number_cell(rs, lambda r: r.get("lag", "max_records")))
    row("Time to first result", lambda rs: number_cell(rs, lambda r: r.get("time_to_first_result_s"), "s", 1))
    row("Start to running", lambda rs: number_cell(rs, lambda r: r.get("start_to_running_s"), "s", 1))
    row("Sanity: rows before window close", lambda rs: number_cell(
        rs, lambda r: r.get("windows", "emitted_before_window_close"), bad_if=lambda v: v > 0),
        "must be 0 for engines that emit once; more is a measurement bug")
    return t


def repeats(run: RunData) -> Table:
    """Every engine run (engine and repeat) on one line: the per-repeat figures behind the headline."""
    cols = ["run", "status", "p50 ms", "p99 ms", "max ms", "windows", "in rec/s", "exact/expected", "dup",
            "CPU s/M (load)", "peak MB", "first result s"]
    t = Table(cols)
    for r in run.runs:
        w = r.get("windows", "correctness") or {}
        vals = [r.status, r.get("windows", "event_to_result_ms", "p50"), r.get("windows", "event_to_result_ms", "p99"),
                r.get("windows", "event_to_result_ms", "max"), r.get("windows", "event_to_result_ms", "count"),
                r.get("throughput", "in_records_per_s"),
                f"{w.get('exact')}/{w.get('expected')}" if w else None, r.get("windows", "duplicates"),
                r.get("cpu_during_load", "cpu_seconds_per_million_events"), r.get("resources", "peak_rss_mb"),
                r.get("time_to_first_result_s")]
        cells = []
        for v in vals:
            n = num(v) if not isinstance(v, str) else None
            cells.append(Cell(fmt(n, "", 1 if n is not None and abs(n) < 100 and n != int(n) else 0) if n is not None
                              else (str(v) if v is not None else "–")))
        if M.P99.unreliable(r):
            cells[2].add("unreliable", UNRELIABLE_TIP)
        t.rows.append(Row(r.label, cells))
    return t


def latency_floor(run: RunData) -> Table:
    groups = run.by_engine()
    keys: list[str] = []
    for runs in groups.values():
        for r in runs:
            for k in (r.get("latency_floor_ms") or {}):
                if k not in keys:
                    keys.append(k)
    t = Table(["engine", *[k.removesuffix("_ms").replace("_", " ") + " (ms)" for k in keys],
               "measured window-close p50", "settings changed from defaults"])
    for name, runs in groups.items():
        first = runs[0] if runs else None
        floor = (first.get("latency_floor_ms") if first else None) or {}
        cells = [Cell(fmt(num(floor.get(k)))) for k in keys]
        cells.append(number_cell(runs, lambda r: r.get("windows", "window_close_ms", "p50"), "ms"))
        changed = (first.get("changed_settings") if first else None) or {}
        cells.append(Cell(", ".join(f"{k}={v}" for k, v in changed.items()) or "none"))
        t.rows.append(Row(name, cells))
    return t


def settings(run: RunData) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """Per engine: every setting as (name, value, changed from the engine's default)."""
    out = []
    for name, runs in run.by_engine().items():
        s = (runs[0].get("settings") if runs else None) or {}
        changed = (runs[0].get("changed_settings") if runs else None) or {}
        out.append((name, [(str(k), str(v), k in changed) for k, v in s.items()]))
    return out


def _config(run: RunData, r: EngineRun) -> dict[str, Any]:
    import json

    p = run.run_dir / "engines" / f"{r.name}-{r.repeat}" / "config.json"
    try:
        d = json.loads(p.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _jvms(run: RunData, runs: list[EngineRun]) -> str:
    for r in runs:
        j = r.get("resources", "jvms")
        if num(j) is not None:
            return fmt(num(j))
        procs = r.get("resources", "processes") or r.get("processes")
        if isinstance(procs, list) and procs:
            names = [p if isinstance(p, str) else " ".join(str(p.get(k, "")) for k in ("name", "cmdline"))
                     for p in procs]
            return str(sum(1 for n in names if "java" in n.lower()))
    jars = next((len(c["jars"]) for r in runs if isinstance((c := _config(run, r)).get("jars"), list)), None)
    if jars:
        return f"not recorded (runs on the JVM: {jars} jars on its classpath)"
    return "not recorded"


def moving_parts(run: RunData) -> Table:
    t = Table(["engine", "processes seen", "JVMs", "mode", "settings changed from defaults",
               "lines of pipeline code", "start to running"])
    for name, runs in run.by_engine().items():
        procs = [num(r.get("resources", "processes_seen")) for r in runs]
        procs = [p for p in procs if p is not None]
        first = runs[0] if runs else None
        mode = (first.get("settings", "mode") if first else None) or "–"
        changed = (first.get("changed_settings") if first else None) or {}
        loc = M.pipeline_code_lines(name)
        t.rows.append(Row(name, [
            Cell(fmt(max(procs)) if procs else "–"),
            Cell(_jvms(run, runs)),
            Cell(str(mode)),
            Cell(f"{len(changed)}: " + ", ".join(f"{k}={v}" for k, v in changed.items()) if changed else "0"),
            Cell(f"{loc[0]} ({', '.join(loc[1])})" if loc else "not found in pipelines/"),
            number_cell(runs, lambda r: r.get("start_to_running_s"), "s", 1),
        ]))
    return t


def not_run(run: RunData) -> list[tuple[str, str, str]]:
    """(engine #repeat, status, reason or error) for every engine run that did not complete."""
    out = []
    for r in run.runs:
        if not r.measured:
            out.append((r.label, r.status, str(r.entry.get("reason") or r.entry.get("error") or "no reason recorded")))
    for n in run.engine_names:
        if not any(r.name == n for r in run.runs):
            out.append((n, "not started", "requested, but the run stopped before it began"))
    return out


def run_facts(run: RunData) -> list[tuple[str, str]]:
    d = run.doc
    facts = [("run", run.run_id), ("status", run.status + (f": {d.get('error')}" if d.get("error") else "")),
             ("started", str(d.get("started_at") or "–")), ("finished", str(d.get("finished_at") or "–")),
             ("wall time", fmt(num(d.get("wall_seconds")), "s", 1)),
             ("scenario file", str(d.get("scenario_file") or "–")),
             ("engines requested", ", ".join(map(str, d.get("engines_requested") or [])) or "none"),
             ("repeats", str(d.get("repeat") or 1)), ("mode", str(d.get("mode") or "–"))]
    svc = d.get("services") if isinstance(d.get("services"), dict) else {}
    if svc:
        facts.append(("services", f"Kafka {svc.get('kafka', '?')} ({svc.get('bootstrap', '?')}), "
                                  f"PostgreSQL {svc.get('postgres', '?')}"))
    return facts


def machine(run: RunData) -> list[tuple[str, str]]:
    m = d if isinstance(d := run.doc.get("machine"), dict) else {}
    return [(str(k), str(v)) for k, v in m.items()]


def versions(run: RunData) -> list[tuple[str, str]]:
    v = d if isinstance(d := run.doc.get("versions"), dict) else {}
    out = []
    for k, val in v.items():
        if isinstance(val, dict):
            val = ", ".join(f"{a}={b}" for a, b in val.items())
        out.append((str(k), str(val) if val is not None else "–"))
    return out


def scenario_yaml(run: RunData) -> str:
    if not run.scenario:
        return "(not recorded)"
    return yaml.safe_dump(run.scenario, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True).strip()


def loads(run: RunData) -> Table:
    t = Table(["load", "engine", "sent / scheduled", "acked", "rate (events/s)", "send delay p99 (ms)",
               "ack latency p99 (ms)", "windows on time / complete", "late", "malformed"])
    for ld in run.loads.values():
        g = ld.get("generator") if isinstance(ld.get("generator"), dict) else {}
        gt = ld.get("ground_truth") if isinstance(ld.get("ground_truth"), dict) else {}
        kinds = gt.get("events_by_kind") if isinstance(gt.get("events_by_kind"), dict) else {}
        t.rows.append(Row(str(ld.get("load_id")), [
            Cell(f"{ld.get('engine') or 'none'} #{ld.get('repeat', 0)}"),
            Cell(f"{g.get('events_sent', '–')} / {g.get('events_scheduled', '–')}",
                 "bad" if g.get("events_sent") != g.get("events_scheduled") else ""),
            Cell(str(g.get("events_acked", "–")), "bad" if g.get("delivery_errors") else ""),
            Cell(fmt(num(g.get("achieved_rate_eps")), "", 1)),
            Cell(fmt(num(dig(g, "send_delay_ms", "p99")), "", 2)),
            Cell(fmt(num(dig(g, "ack_latency_ms", "p99")), "", 2)),
            Cell(f"{gt.get('windows_on_time', '–')} / {gt.get('windows_complete', '–')}"),
            Cell(str(kinds.get("late", "–"))), Cell(str(kinds.get("malformed", "–"))),
        ]))
    return t
