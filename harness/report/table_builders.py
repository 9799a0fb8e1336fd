"""The report's tables as plain rows (label, cells) that the HTML template and the Markdown writer both render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import yaml

from harness.report import verdicts as M
from harness.report.data import EngineRun, RunData, num
from harness.report.decision import fmt
from harness.results.document import Percentiles, Throughput, WindowSummary, WindowValues

UNRELIABLE_TIP = ("its 95% interval over window closes is wider than ±10% of it (or, without raw samples, fewer "
                  "than 10/(1-p) samples)")

V = TypeVar("V")


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
            and (r.entry.windows is not None or r.entry.resources is not None)], True


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


def _faults(r: EngineRun) -> str | None:
    """The faults as injected: kind, when after the load began and for how long (or why not)."""
    if r.entry.faults is None:
        return None
    tb = r.time_base_ms
    out = []
    for f in r.entry.faults:
        if f.fired_at_ms is None:
            out.append(f"{f.kind}: {f'skipped ({f.skipped})' if f.skipped else f.error or 'not fired'}")
            continue
        at = f" at +{(f.fired_at_ms - tb) / 1000:.1f} s" if tb is not None else ""
        held = f" for {(f.ended_at_ms - f.fired_at_ms) / 1000:.1f} s" if f.ended_at_ms is not None else ""
        policy = f" ({f.restart_policy})" if f.restart_policy else ""
        out.append(f"{f.kind}{policy}{at}{held}" + (f" ({f.error})" if f.error else ""))
    return "; ".join(out) or "none"


def _kept_up(r: EngineRun) -> str | None:
    k = r.entry.keeping_up
    if k is None:
        return None
    if k.kept_up is None:
        return f"not judged: {k.reason}"
    return "yes" if k.kept_up else f"NO: did not keep up at this rate ({k.reason}); its latency measures its backlog"


def _on_schedule(r: EngineRun) -> str | None:
    g = r.entry.generator
    if g is None:
        return None
    if not g.fell_behind:
        return "yes"
    return (f"NO: {g.reason} ({g.threshold_ms:g} ms); the latency from intended send time includes the "
            "generator's delay, so this run measured the machine as much as the engine")


def _timing(r: EngineRun) -> str | None:
    t = r.entry.timing
    if t is None:
        return None
    sink = "commit time" if t.sink_time == "commit" else "insert time (commit times not tracked)"
    before = t.clock_before
    off = (f"; database clock {t.offset_applied_ms:+.1f} ms, corrected (±{before.uncertainty_ms:.2f} ms, "
           f"bound ±{t.offset_bound_ms:g} ms)") if before else ""
    return sink + off


def _status(runs: list[EngineRun]) -> Cell:
    if not runs:
        return Cell("not in result.json", "bad")
    st = [r.status for r in runs]
    if len(set(st)) == 1:
        s = st[0] + (f" ×{len(st)}" if len(st) > 1 else "")
    else:
        s = ", ".join(f"#{r.repeat} {r.status}" for r in runs)
    flag = "" if all(x == "complete" for x in st) else "warn" if all(x in ("complete", "skipped") for x in st) else "bad"
    if any(x == "settled" for x in st):
        flag = "bad"  # judged, but some windows are not the promised ones
    tip = "; ".join(str(r.entry.error or r.entry.reason) for r in runs if r.entry.error or r.entry.reason)
    return Cell(s, flag, tip)


def _lat_n(r: EngineRun) -> str:
    """The sample count a latency figure rests on: its window closes (the keys of one close land in one flush,
    so they are one sample, harness.metrics.significance), beside the per-key windows."""
    if r.latency is None:
        return ""
    boot = M.run_bootstrap(r, M.P50)
    return f"n={boot.n_blocks} closes ({r.latency.count} windows)" if boot is not None else f"n={r.latency.count}"


def _unreliable(metric: M.Metric) -> Callable[[EngineRun], bool]:
    return lambda r: M.percentile_unreliable(r, metric)


def _win(r: EngineRun, read: Callable[[WindowSummary], V]) -> V | None:
    """A figure of the engine run's window summary, or None before its measure phase."""
    return read(r.entry.windows) if r.entry.windows is not None else None


def _lat(r: EngineRun, read: Callable[[Percentiles], float | None]) -> float | None:
    """A figure of the event-to-result latency, or None before the measure phase."""
    return read(r.latency) if r.latency is not None else None


def _thr(r: EngineRun, read: Callable[[Throughput], float | None]) -> float | None:
    return read(r.entry.throughput) if r.entry.throughput is not None else None


def _window_close(r: EngineRun) -> Percentiles | None:
    return _win(r, lambda w: w.window_close_ms)


def _correct(r: EngineRun) -> str | None:
    w = r.entry.windows
    if w is None:
        return None
    c = w.correctness
    promised = w.promised_answer or r.entry.promised_answer
    answer = f" ({promised.replace('_', '-')} answer)" if promised else ""
    return f"{c.exact}/{c.expected} exact{answer}; {c.wrong} wrong, {c.missing} missing, {c.extra} extra"


def _correct_bad(r: EngineRun) -> bool:
    c = r.correctness
    return c is not None and (c.wrong > 0 or c.missing > 0 or c.extra > 0)


def _pair(a: Callable[[EngineRun], float | None], b: Callable[[EngineRun], float | None], sep: str = " / "
          ) -> Callable[[EngineRun], str | None]:
    """"x / y" from two readings of an engine run (– for a missing one), or None when both are missing."""
    def f(r: EngineRun) -> str | None:
        x, y = a(r), b(r)
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

    def window_close(r: EngineRun) -> str | None:
        wc = _window_close(r)
        if wc is None or not wc.count:
            return None
        return (f"{fmt(num(wc.p50), 'ms')} / {fmt(num(wc.p99), 'ms')}"
                + (" (p99 unreliable)" if "p99" in wc.unreliable else ""))

    def from_handoff(r: EngineRun) -> str | None:
        h = _win(r, lambda w: w.event_to_result_handoff_ms)
        if h is None or not h.count:
            return None
        return f"{fmt(num(h.p50), 'ms')} / {fmt(num(h.p99), 'ms')}"

    def acked(r: EngineRun) -> str:
        v = _thr(r, lambda t: t.acked_records_per_s)
        return f"(broker acked {fmt(num(v), '', 1)})" if num(v) is not None else ""

    def per_m(r: EngineRun) -> str:
        v = r.entry.resources.cpu_seconds_per_million_events if r.entry.resources else None
        return f"({fmt(num(v), '', 0)} per M events)" if num(v) is not None else ""

    def memory(r: EngineRun) -> str | None:
        res = r.entry.resources
        return f"{fmt(num(res.peak_rss_mb), 'MB')} / {fmt(num(res.peak_hwm_sum_mb), 'MB')}" if res else None

    def cgroup_memory(r: EngineRun) -> str | None:
        res = r.entry.resources
        return None if res is None or res.cgroup_memory_max_mb is None else fmt(num(res.cgroup_memory_max_mb), "MB")

    def services_cpu(r: EngineRun) -> str | None:
        c = r.entry.cpu_during_load
        if c is None or (c.broker_cpu_seconds is None and c.postgres_cpu_seconds is None):
            return None
        return (f"{fmt(num(c.broker_cpu_seconds_per_million_events), '', 1)} / "
                f"{fmt(num(c.postgres_cpu_seconds_per_million_events), '', 1)} CPU s")

    def cpu_method(r: EngineRun) -> str | None:
        c, res = r.entry.cpu_during_load, r.entry.resources
        if c is None:
            return None
        until = "" if c.until_ms_after_time_base is None else f", until {c.until_ms_after_time_base / 1000:.1f} s after the time base"
        why = f" ({res.cgroup_note})" if res is not None and res.cgroup_note else ""
        return f"{c.method}{until}{why}"

    def malformed_differs(r: EngineRun) -> bool:
        m = r.entry.malformed
        return m is not None and num(m.counted_by_engine) != num(m.sent)

    row("Status", _status)
    if run.scenario.faults:
        row("Faults injected", lambda rs: text_cell(rs, _faults, lambda r: any(
            f.error for f in r.entry.faults or [])))
    row("Kept up with the load", lambda rs: text_cell(rs, _kept_up, lambda r: r.kept_up is False))
    row("Generator kept to its schedule", lambda rs: text_cell(
        rs, _on_schedule, lambda r: r.entry.generator is not None and r.entry.generator.fell_behind))
    row("Latency p50 (event to result)", lambda rs: number_cell(rs, lambda r: _lat(r, lambda p: p.p50), "ms",
                                                                 unreliable=_unreliable(M.P50), extra=_lat_n))
    row("Latency p99 (event to result)", lambda rs: number_cell(rs, lambda r: _lat(r, lambda p: p.p99), "ms",
                                                                 unreliable=_unreliable(M.P99), extra=_lat_n))
    row("Latency max (event to result)", lambda rs: number_cell(rs, lambda r: _lat(r, lambda p: p.max), "ms",
                                                                 extra=_lat_n))
    row("Latency p50 / p99 from hand-off", lambda rs: text_cell(rs, from_handoff),
        "event to result from when the generator handed the event over; the rows above start at its intended "
        "send time")
    row("Window-close latency p50 / p99", lambda rs: text_cell(rs, window_close))
    row("Throughput in (records/s)", lambda rs: number_cell(
        rs, lambda r: _thr(r, lambda t: t.in_records_per_s), "", 1, extra=acked))
    row("Throughput out (sink rows/s)", lambda rs: number_cell(
        rs, lambda r: _thr(r, lambda t: t.out_rows_per_s), "", 2))
    row("Correctness (windows)", lambda rs: text_cell(rs, _correct, _correct_bad))
    row("Late events dropped / on-time events missing", lambda rs: text_cell(
        rs, _pair(lambda r: _win(r, lambda w: w.late_events_dropped),
                  lambda r: _win(r, lambda w: w.on_time_events_missing)),
        lambda r: (_win(r, lambda w: w.on_time_events_missing) or 0) > 0))
    row("Malformed counted / sent", lambda rs: text_cell(
        rs, _pair(lambda r: r.entry.malformed.counted_by_engine if r.entry.malformed else None,
                  lambda r: r.entry.malformed.sent if r.entry.malformed else None), malformed_differs))
    row("Duplicates / re-emissions (rows)", lambda rs: text_cell(
        rs, _pair(lambda r: _win(r, lambda w: w.duplicates), lambda r: _win(r, lambda w: w.re_emissions)),
        lambda r: (_win(r, lambda w: w.duplicates) or 0) > 0))
    row("CPU per million events, during load", lambda rs: number_cell(
        rs, lambda r: r.entry.cpu_during_load.cpu_seconds_per_million_events if r.entry.cpu_during_load else None,
        "CPU s", 1))
    row("CPU measured by", lambda rs: text_cell(rs, cpu_method),
        "cgroup: the kernel's count for the engine run's own control group, children included; sampled: its "
        "process tree every 0.5 s. The interval ends when the answer settled (the last sink change)")
    row("Broker / PostgreSQL CPU per million events, same interval", lambda rs: text_cell(rs, services_cpu),
        "the embedded services' CPU while this engine ran (PostgreSQL's includes the harness's monitoring queries)")
    row("CPU total, start-up included", lambda rs: number_cell(
        rs, lambda r: r.entry.resources.cpu_seconds if r.entry.resources else None, "CPU s", 1, extra=per_m))
    row("Peak memory (RSS sum / high-water sum)", lambda rs: text_cell(rs, memory))
    row("Peak memory of the cgroup", lambda rs: text_cell(rs, cgroup_memory),
        "the control group's maximum usage: includes page cache the engine's processes brought in, but not pages "
        "first charged elsewhere (shared libraries already cached), so it can sit below the RSS sum")
    row("Max lag (records)", lambda rs: number_cell(rs, lambda r: r.entry.lag.max_records if r.entry.lag else None))
    row("Time to first result", lambda rs: number_cell(rs, lambda r: r.entry.time_to_first_result_s, "s", 1))
    row("Start to running", lambda rs: number_cell(rs, lambda r: r.entry.start_to_running_s, "s", 1))
    row("Sink time and clock", lambda rs: text_cell(rs, _timing),
        "a sink row's time is when readers could see it, on the harness's clock")
    row("Sanity: rows before window close", lambda rs: number_cell(
        rs, lambda r: _win(r, lambda w: w.emitted_before_window_close), bad_if=lambda v: v > 0),
        "must be 0 for engines that emit once; more is a measurement bug")
    return t


def repeats(run: RunData) -> Table:
    """Every engine run (engine and repeat) on one line: the per-repeat figures behind the headline."""
    cols = ["run", "status", "p50 ms", "p99 ms", "max ms", "windows", "in rec/s", "exact/expected", "dup",
            "CPU s/M (load)", "peak MB", "first result s"]
    t = Table(cols)
    for r in run.runs:
        lat, c, e = r.latency, r.correctness, r.entry
        vals: list[str | float | None] = [
            r.status, lat.p50 if lat else None, lat.p99 if lat else None, lat.max if lat else None,
            lat.count if lat else None, _thr(r, lambda t: t.in_records_per_s),
            f"{c.exact}/{c.expected}" if c else None, _win(r, lambda w: w.duplicates),
            e.cpu_during_load.cpu_seconds_per_million_events if e.cpu_during_load else None,
            e.resources.peak_rss_mb if e.resources else None, e.time_to_first_result_s]
        cells = []
        for v in vals:
            n = num(v) if not isinstance(v, str) else None
            cells.append(Cell(fmt(n, "", 1 if n is not None and abs(n) < 100 and n != int(n) else 0) if n is not None
                              else (str(v) if v is not None else "–")))
        if _unreliable(M.P99)(r):
            cells[2].add("unreliable", UNRELIABLE_TIP)
        t.rows.append(Row(r.label, cells))
    return t


def faults(run: RunData) -> Table:
    """One line per fault per engine run: what it did, how long the engine was down, how it recovered, and what
    the final table and the log show (duplicates and windows lost or wrong against the promised answer)."""
    t = Table(["run", "fault", "policy", "at", "downtime s", "first result after s", "recovery s",
               "duplicates after it", "duplicates in the run", "final table wrong / missing / extra",
               "malformed lost / rewritten", "note"])

    def secs(ms: int | None) -> str:
        return "–" if ms is None else f"{ms / 1000:.1f}"

    for r in run.runs:
        c, w, tb = r.correctness, r.entry.windows, r.time_base_ms
        for f in r.entry.faults or []:
            at = "–" if f.fired_at_ms is None or tb is None else f"+{(f.fired_at_ms - tb) / 1000:.1f} s"
            cells = [Cell(f.kind), Cell(f.restart_policy or "–"), Cell(at), Cell(secs(f.downtime_ms)),
                     Cell(secs(f.first_result_after_ms)), Cell(secs(f.recovery_ms)),
                     Cell("–" if f.duplicates_after is None else str(f.duplicates_after)),
                     Cell(str(w.duplicates) if w else "–"),
                     Cell(f"{c.wrong} / {c.missing} / {c.extra}" if c else "–"),
                     Cell("–" if f.malformed_rewritten is None else
                          f"{'?' if f.malformed_lost is None else f.malformed_lost} / {f.malformed_rewritten}"),
                     Cell(f.skipped and f"skipped: {f.skipped}" or f.error or "; ".join(n for n in (
                         "the engine did not survive it" if f.engine_survived is False else "",
                         f.recovery_note or "") if n))]
            if f.skipped or f.error:
                cells[-1].add("warn")
            if c and (c.wrong or c.missing or c.extra):
                cells[8].add("bad")
            if f.malformed_lost:
                cells[9].add("warn")
            t.rows.append(Row(r.label, cells))
    return t


def bad_input(run: RunData) -> Table:
    """One line per record kind (the malformed ones and load.bad_input's): what was sent, what the topic holds,
    and per engine run how many it wrote as malformed and how many windows holding such a record it got wrong
    (harness/metrics/bad_input.py)."""
    runs = [r for r in run.runs if r.entry.malformed is not None and r.entry.malformed.by_kind]
    t = Table(["kind", "rule", "sent / in topic", *[r.label for r in runs]])
    kinds: list[str] = []
    for r in runs:
        kinds += [k for k in r.entry.malformed.by_kind if k not in kinds]  # type: ignore[union-attr]
    for kind in kinds:
        first = next(r.entry.malformed.by_kind[kind] for r in runs if kind in r.entry.malformed.by_kind)  # type: ignore[union-attr]
        rule = "malformed" if first.malformed else "well-formed"
        if kind == "far_future" and run.scenario.query.max_clock_skew is None:
            rule = "malformed in ground truth; the clock rule is off"
        elif kind == "oversized":
            rule = "refused by the broker (over max_message_bytes)"
        cells = [Cell(rule), Cell(f"{first.sent} / {first.in_topic}")]
        for r in runs:
            k = r.entry.malformed.by_kind.get(kind)  # type: ignore[union-attr]
            if k is None:
                cells.append(Cell("–"))
                continue
            want = k.in_topic if k.malformed else 0
            counted = "?" if k.counted_as_malformed is None else str(k.counted_as_malformed)
            cell = Cell(f"{counted} as malformed; {k.windows_not_exact} of {k.windows} windows not exact")
            if k.counted_as_malformed is not None and k.counted_as_malformed != want or k.windows_not_exact:
                cell.add("bad")
            cells.append(cell)
        t.rows.append(Row(kind, cells))
    return t


def far_future(run: RunData) -> Table:
    """Per far_future plant and engine run: the windows after it that the final table got wrong or left out."""
    runs = [r for r in run.runs if r.entry.malformed is not None and r.entry.malformed.far_future]
    t = Table(["planted", "records", *[r.label for r in runs]])
    if not runs:
        return t
    plants = runs[0].entry.malformed.far_future  # type: ignore[union-attr]
    for j, p in enumerate(plants):
        cells = [Cell(f"{p.records} ({'one partition' if p.partitions == 'one' else 'every partition'})")]
        for r in runs:
            d = r.entry.malformed.far_future  # type: ignore[union-attr]
            if j >= len(d):
                cells.append(Cell("–"))
                continue
            cell = Cell(f"{d[j].windows_not_exact_after} of {d[j].windows_after} windows after it not exact")
            if d[j].windows_not_exact_after:
                cell.add("bad")
            cells.append(cell)
        t.rows.append(Row(f"+{p.at_ms / 1000:g} s", cells))
    return t


def latency_floor(run: RunData) -> Table:
    groups = run.by_engine()
    keys: list[str] = []
    for runs in groups.values():
        for r in runs:
            for k in r.entry.latency_floor_ms:
                if k not in keys:
                    keys.append(k)
    t = Table(["engine", *[k.removesuffix("_ms").replace("_", " ") + " (ms)" for k in keys],
               "measured window-close p50", f"set by tuning: {run.scenario.tuning}", "settings changed from defaults"])
    for name, runs in groups.items():
        first = runs[0] if runs else None
        floor = first.entry.latency_floor_ms if first else {}
        cells = [Cell(fmt(num(floor.get(k)))) for k in keys]
        cells.append(number_cell(runs, lambda r: _win(r, lambda w: w.window_close_ms.p50), "ms"))
        tuned = first.entry.tuned_settings if first else {}
        cells.append(Cell(", ".join(f"{k}={v}" for k, v in tuned.items()) or "none"))
        changed = first.entry.changed_settings if first else {}
        cells.append(Cell(", ".join(f"{k}={v}" for k, v in changed.items()) or "none"))
        t.rows.append(Row(name, cells))
    return t


def settings(run: RunData) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """Per engine: every setting as (name, value, changed from the engine's default)."""
    out = []
    for name, runs in run.by_engine().items():
        s = runs[0].entry.settings if runs else {}
        changed = runs[0].entry.changed_settings if runs else {}
        tuned = runs[0].entry.tuned_settings if runs else {}
        out.append((name, [(str(k), str(v), k in changed or k in tuned) for k, v in s.items()]))
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
    """The JVMs of the first repeat that recorded them with their heap and collector options; results from before
    they were recorded say whether the engine runs on one (its config.json lists jars)."""
    recorded = next((r.entry.jvms for r in runs if r.entry.jvms is not None), None)
    if recorded is not None:
        if not recorded:
            return "0"
        keep = ("-Xmx", "-Xms", "-XX:+Use")
        opts = sorted({o for j in recorded for o in j.options if o.startswith(keep)})
        return f"{len(recorded)}" + (f" ({' '.join(opts)})" if opts else "")
    jars = next((len(c["jars"]) for r in runs if isinstance((c := _config(run, r)).get("jars"), list)), None)
    if jars:
        return f"not recorded (runs on the JVM: {jars} jars on its classpath)"
    return "not recorded"


def moving_parts(run: RunData) -> Table:
    t = Table(["engine", "processes seen", "JVMs", "mode", "settings changed from defaults",
               "lines of pipeline code", "start to running"])
    for name, runs in run.by_engine().items():
        procs = [r.entry.resources.processes_seen for r in runs if r.entry.resources is not None]
        first = runs[0] if runs else None
        mode = (first.entry.settings.get("mode") if first else None) or "–"
        changed = first.entry.changed_settings if first else {}
        loc = M.pipeline_code_lines(name)
        t.rows.append(Row(name, [
            Cell(fmt(max(procs)) if procs else "–"),
            Cell(_jvms(run, runs)),
            Cell(str(mode)),
            Cell(f"{len(changed)}: " + ", ".join(f"{k}={v}" for k, v in changed.items()) if changed else "0"),
            Cell(f"{loc[0]} ({', '.join(loc[1])})" if loc else "not found in pipelines/"),
            number_cell(runs, lambda r: r.entry.start_to_running_s, "s", 1),
        ]))
    return t


def _values(v: WindowValues | None) -> str:
    return "–" if v is None else f"cnt {v.cnt}, sum {v.sum}, min {v.min}, max {v.max}"


def bad_windows(run: RunData) -> Table:
    """The first windows (up to 10 per engine run) whose final value is not the promised one."""
    t = Table(["engine", "kind", "key", "window (ms from time base)", "expected", "got"])
    for r in run.runs:
        if r.entry.windows is None:
            continue
        tb = r.time_base_ms or 0
        for b in r.entry.windows.bad_windows:
            t.rows.append(Row(r.label, [Cell(b.kind, "bad"), Cell(b.key),
                                        Cell(f"{b.window_start - tb:.0f} – {b.window_end - tb:.0f}"),
                                        Cell(_values(b.expected)), Cell(_values(b.got))]))
    return t


def not_run(run: RunData) -> list[tuple[str, str, str]]:
    """(engine #repeat, status, reason or error) for every engine run that did not complete."""
    out = []
    for r in run.runs:
        if not r.measured:
            out.append((r.label, r.status, r.entry.reason or r.entry.error or "no reason recorded"))
    for n in run.engine_names:
        if not any(r.name == n for r in run.runs):
            out.append((n, "not started", "requested, but the run stopped before it began"))
    return out


def run_facts(run: RunData) -> list[tuple[str, str]]:
    d = run.doc
    facts = [("run", run.run_id), ("status", run.status + (f": {d.error}" if d.error else "")),
             ("started", d.started_at or "–"), ("finished", d.finished_at or "–"),
             ("wall time", fmt(num(d.wall_seconds), "s", 1)),
             ("scenario file", d.scenario_file or "–"),
             ("engines requested", ", ".join(d.engines_requested) or "none"),
             ("repeats", str(d.repeat or 1)), ("mode", d.mode or "–")]
    if (svc := d.services) is not None:
        facts.append(("services", f"Kafka {svc.kafka} ({svc.bootstrap}), PostgreSQL {svc.postgres}"))
    return facts


def _text(v: Any) -> str:
    return str(v) if v is not None else "–"


def machine(run: RunData) -> list[tuple[str, str]]:
    """The machine's facts, then one line each for the CPU governor, the cgroup limits and the environment
    variables that change behaviour ("not recorded" in files from before they were)."""
    m = run.doc.machine
    if m is None:
        return []
    out = [(k, _text(v)) for k, v in m.model_dump(exclude={"cpu_governor", "cgroup", "env"}).items()]
    out.append(("cpu governor", _governor_text(m.cpu_governor)))
    out.append(("cgroup limits", _cgroup_text(m.cgroup)))
    if m.env is None:
        env = "not recorded"
    else:
        env = ", ".join(f"{k}={v}" for k, v in m.env.variables.items()) or "none"
        if m.env.skipped:
            env += f" (left out, the value holds a password: {', '.join(m.env.skipped)})"
    out.append(("fault/behaviour env", env))
    return out


def _governor_text(g: Any) -> str:
    if g is None:
        return "not recorded"
    found = [v for v in g.per_cpu.values() if v]
    if not found:
        return f"not readable ({g.note})" if g.note else "not readable"
    counts = {v: found.count(v) for v in dict.fromkeys(found)}
    if len(counts) == 1 and len(found) == len(g.per_cpu):
        return f"{found[0]} (all {len(found)} CPUs)"
    return ", ".join(f"{v} ×{n}" for v, n in counts.items()) + (f" ({g.note})" if g.note else "")


def _cgroup_text(c: Any) -> str:
    if c is None:
        return "not recorded"
    if c.version is None:
        return f"not readable ({c.note})" if c.note else "not readable"
    cpu = ("not readable" if c.cpu_max is None else
           f"{c.cpu_limit_cores:g} cores ({c.cpu_max})" if c.cpu_limit_cores is not None else "no quota")
    mem = ("not readable" if c.memory_max is None else
           f"{c.memory_limit_mb:g} MB" if c.memory_limit_mb is not None else "no limit")
    return f"cgroup {c.version}: CPU {cpu}, memory {mem}" + (f" ({c.note})" if c.note else "")


def _setting_text(v: Any) -> str:
    return "2^63-1" if v == 2**63 - 1 else _text(v)


def versions(run: RunData) -> list[tuple[str, str]]:
    """The harness's versions, its commit, the PostgreSQL and Kafka settings, then each engine's own versions
    (one line per engine)."""
    v = run.doc.versions
    if v is None:
        return []
    out = [(k, _text(val)) for k, val in v.model_dump(
        exclude={"commit", "engines", "postgresql_settings", "kafka_settings"}).items()]
    c = v.commit
    counts = f" ({c.modified} modified, {c.untracked} untracked)" if c.modified is not None else ""
    out.append(("commit", f"sha={c.sha}, dirty={c.dirty}{counts}"))
    pg = v.postgresql_settings
    out.append(("postgresql settings", "not recorded" if pg is None else f"not readable ({pg.error})" if pg.error
                else ", ".join(f"{k}={_setting_text(x)}" for k, x in pg.settings.model_dump().items())))
    k = v.kafka_settings
    out.append(("kafka broker settings", "not recorded" if k is None else f"not readable ({k.error})" if k.error
                else f"broker {k.broker_id} of {k.brokers}: " + ", ".join(
                    f"{a}={_setting_text(b)}" for a, b in k.configs.model_dump(by_alias=True).items())))
    for engine, own in v.engines.items():
        out.append((engine, ", ".join(f"{a}={b}" for a, b in own.items())))
    return out


def scenario_yaml(run: RunData) -> str:
    return yaml.safe_dump(run.scenario.model_dump(mode="json"), sort_keys=False, default_flow_style=False, width=1000,
                          allow_unicode=True).strip()


def loads(run: RunData) -> Table:
    t = Table(["load", "engine", "sent by", "sent / scheduled", "acked", "rate (events/s)", "send delay p99 (ms)",
               "ack latency p99 (ms)", "windows on time / complete", "late", "malformed"])
    for ld in run.loads.values():
        g, gt = ld.generator, ld.ground_truth
        kinds = gt.events_by_kind      # by event kind, as the generator names them
        sh = ld.shards
        # a skew near the margin can turn one shard's on-time events late in a max-watermark engine (Spark)
        by = Cell("one generator") if sh is None else Cell(
            f"Locust, {sh.workers} workers (skew {fmt(num(sh.skew_ms), '', 1)} ms of {sh.margin_ms} ms margin)",
            "bad" if sh.near_margin else "")
        t.rows.append(Row(ld.load_id, [
            Cell(f"{ld.engine or 'none'} #{ld.repeat}"), by,
            Cell(f"{g.events_sent} / {g.events_scheduled}", "bad" if g.events_sent != g.events_scheduled else ""),
            Cell(str(g.events_acked) + (f" ({g.unacknowledged} never acknowledged)" if g.unacknowledged else ""),
                 "bad" if g.delivery_errors > g.refused_too_large or g.unacknowledged else ""),
            Cell(fmt(num(g.achieved_rate_eps), "", 1)),
            Cell(fmt(num(g.send_delay_ms.p99), "", 2)),
            Cell(fmt(num(g.ack_latency_ms.p99), "", 2)),
            Cell(f"{gt.windows_on_time} / {gt.windows_complete}"),
            Cell(str(kinds.get("late", "–"))), Cell(str(kinds.get("malformed", "–"))),
        ]))
    return t


def backlog(run: RunData) -> Table:
    """Backlog mode, one line per engine run: how it drained the filled topic, at what cost, and, for an interval
    job, the latency its schedule gives (modelled: the wait for the next run plus the measured run)."""
    t = Table(["run", "events", "drain s", "answer s", "events/s", "cores", "events/s per core",
               "CPU s per M events", "peak RSS MB", "cgroup memory max MB", "correct", "modelled latency p50 / p99"])

    def f(v: float | None, fmt: str = ",.1f") -> str:
        return "–" if v is None else format(v, fmt)

    for r in run.runs:
        b = r.entry.backlog
        if b is None:
            continue
        c = r.correctness
        lat = "–"
        if b.modelled_latency_ms is not None and b.modelled_interval_ms is not None:
            lat = (f"{f(b.modelled_latency_ms.p50 and b.modelled_latency_ms.p50 / 1000, ',.1f')} s / "
                   f"{f(b.modelled_latency_ms.p99 and b.modelled_latency_ms.p99 / 1000, ',.1f')} s "
                   f"(runs every {b.modelled_interval_ms / 1000:g} s)")
        correct = Cell(f"{c.exact}/{c.expected}" if c else "–")
        if c and c.exact != c.expected:
            correct.add("bad")
        t.rows.append(Row(r.label, [Cell(f"{b.events:,}"), Cell(f(b.drain_s)), Cell(f(b.answer_s)),
                                    Cell(f(b.events_per_s, ",.0f")), Cell(f(b.cores, ".2f")),
                                    Cell(f(b.events_per_s_per_core, ",.0f")), Cell(f(b.cpu_seconds_per_million)),
                                    Cell(f(b.peak_rss_mb, ",.0f")), Cell(f(b.cgroup_memory_max_mb, ",.0f")), correct,
                                    Cell(lat)]))
    return t
