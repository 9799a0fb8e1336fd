"""`harness bench noise`: how much one engine's figures move from repeat to repeat on this machine, the band a
single run is judged against (harness.metrics.significance.measured_noise_band).

It runs a scenario with one engine and --repeat N through the same runner as `harness run`, then takes, for every
ranked metric (harness.report.verdicts.RANKED), the relative spread over the repeats:

    band = (max - min) / |median|

the full range rather than a standard deviation: with 5 repeats a standard deviation is itself uncertain by about
a third, while the range is what a reader sees between two runs that differ by chance. Two single runs of equal
engines then differ by less than the band most of the time (with 5 repeats the range holds a sixth repeat with
probability 4/6 and the middle of the distribution far more often). A metric whose repeats are all equal has
band 0 (correctness counts, usually); one whose median is 0 but which moved has no relative band (None), and
single runs are not judged on it.

The result goes to results/bench-noise-<time>.json and results/bench-noise-latest.json, with the machine it was
measured on, so a report can say where its band came from and refuse a band from another kind of machine.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from harness import environment, paths
from harness.metrics.significance import NOISE_FILE
from harness.report import verdicts as M
from harness.report.data import EngineRun, RunData

METHOD = "(max - min) / |median| over the repeats"


def relative_spread(values: Sequence[float]) -> float | None:
    """(max - min) / |median|: 0 when every value is equal, None when the median is 0 but the values moved (no
    relative band exists), and None for fewer than two values (no spread was measured)."""
    v = [float(x) for x in values]
    if len(v) < 2:
        return None
    lo, hi = min(v), max(v)
    if hi == lo:
        return 0.0
    med = statistics.median(v)
    return (hi - lo) / abs(med) if med != 0 else None


def bands_from_figures(figures: dict[str, Sequence[float]]) -> dict[str, float | None]:
    """Per metric key, the relative spread of its per-repeat figures, rounded for the file."""
    out: dict[str, float | None] = {}
    for key, values in figures.items():
        band = relative_spread(values)
        out[key] = None if band is None else round(band, 4)
    return out


def repeat_figures(runs: list[EngineRun]) -> dict[str, list[float]]:
    """Per ranked metric, the figure of every measured repeat that has it (the same reading as the reports)."""
    measured = [r for r in runs if r.measured]
    out: dict[str, list[float]] = {}
    for m in M.RANKED:
        vals = [v for r in measured if (v := m.value(r)) is not None]
        if vals:
            out[m.key] = vals
    return out


def summarise_run(run: RunData, engine: str) -> dict[str, Any]:
    """The noise document for one engine's repeats in a run folder (without the machine, which the caller adds)."""
    runs = run.by_engine().get(engine, [])
    figures = repeat_figures(runs)
    return {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_id": run.run_id,
        "run_dir": str(run.run_dir),
        "scenario": run.scenario.name,
        "engine": engine,
        "repeats": sum(1 for r in runs if r.measured),
        "repeats_requested": len(runs),
        "method": METHOD,
        "bands": bands_from_figures(figures),
        "figures": figures,
    }


def summarise_engines(run: RunData, engines: list[str]) -> dict[str, Any]:
    """One noise document for several engines' repeats in one run folder: per metric the widest band of any of
    them (a single run of any engine is then judged against a band no engine's own noise exceeds), with each
    engine's own figures and bands kept beside it."""
    docs = {e: summarise_run(run, e) for e in engines}
    bands: dict[str, float | None] = {}
    for m in M.RANKED:
        per = [d["bands"][m.key] for d in docs.values() if m.key in d["bands"]]
        if not per:
            continue
        bands[m.key] = None if any(b is None for b in per) else max(per)
    first = next(iter(docs.values()))
    return {**{k: first[k] for k in ("measured_at", "run_id", "run_dir", "scenario")},
            "engine": ", ".join(engines), "repeats": min(d["repeats"] for d in docs.values()),
            "repeats_requested": min(d["repeats_requested"] for d in docs.values()),
            "method": METHOD + ", the widest of the engines'", "bands": bands,
            "figures": first["figures"] if len(docs) == 1 else {},
            "by_engine": {e: {"repeats": d["repeats"], "bands": d["bands"], "figures": d["figures"]}
                          for e, d in docs.items()}}


def from_run(run_dir: Path, engine: str) -> dict[str, Any]:
    """The noise document of the repeats already in a run folder (a `harness run --repeat N`): `engine`, or
    every engine that ran with `all`. Refused (HarnessError, exit 2) when an engine has fewer than two measured
    repeats."""
    from harness.errors import HarnessError

    run = RunData.load(run_dir)
    engines = [e for e, runs in run.by_engine().items() if any(r.measured for r in runs)]
    chosen = engines if engine == "all" else [engine]
    for e in chosen:
        n = sum(1 for r in run.by_engine().get(e, []) if r.measured)
        if n < 2:
            raise HarnessError(f"{run_dir}: engine {e!r} has {n} measured repeat(s); a band needs at least 2 "
                               f"(engines measured there: {', '.join(engines) or 'none'})")
    res = summarise_engines(run, chosen)
    res["machine"] = environment.machine()
    return res


def measure(scenario: Path, engine: str, repeat: int, *, bootstrap: str | None = None, dsn: str | None = None,
            results_dir: Path | None = None, hooks: Any = None) -> tuple[dict[str, Any], Path]:
    """Run the scenario with one engine `repeat` times (as `harness run --engines ENGINE --repeat N`) and return
    the noise document and the run folder."""
    from harness.run import RunHooks, RunOptions, run

    run_dir = run(RunOptions(scenario, bootstrap, dsn, results_dir, engines=[engine], repeat=repeat),
                  hooks or RunHooks())
    res = summarise_run(RunData.load(run_dir), engine)
    res["machine"] = environment.machine()
    return res, run_dir


def save(res: dict[str, Any], results_dir: Path | None = None) -> tuple[Path, Path]:
    """Write bench-noise-<time>.json and bench-noise-latest.json (the one reports read); returns both paths."""
    folder = results_dir or paths.results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(res, indent=2)
    dated = folder / f"bench-noise-{time.strftime('%Y%m%dT%H%M%S')}.json"
    dated.write_text(text)
    latest = folder / NOISE_FILE
    tmp = latest.with_name(f".{latest.name}.tmp")
    tmp.write_text(text)
    tmp.replace(latest)     # a report reading it meanwhile sees the old band or the new, never half of one
    return dated, latest


def table_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, unit, figures over the repeats, band) per ranked metric, for the terminal."""
    rows = []
    for m in M.RANKED:
        vals = res["figures"].get(m.key)
        if not vals and m.key in res["bands"] and res.get("by_engine"):
            rows.append((m.label, m.unit, "; ".join(
                f"{e} ±{b:.1%}" if (b := d["bands"].get(m.key)) is not None else f"{e} n/a"
                for e, d in res["by_engine"].items() if m.key in d["bands"]),
                "n/a (median 0)" if res["bands"][m.key] is None else f"±{res['bands'][m.key]:.1%}"))
            continue
        if not vals:
            continue
        band = res["bands"].get(m.key)
        shown = ", ".join(f"{v:,.{m.digits}f}" for v in vals)
        rows.append((m.label, m.unit, shown, "n/a (median 0)" if band is None else f"±{band:.1%}"))
    return rows
