"""`harness bench engines`: the headline ratios from one sitting on one machine.

Three parts on the same stack, one after another: the generator's ceiling (unpaced, the scenario's record size
and partitions), each engine's sustainable rate (`harness capacity` on the scenario), and each engine's backlog
drain rate per core (`harness run --backlog` on the same scenario with late data left out, sized by
--backlog-events). Every figure is also given as a ratio to the reference-floor engine's (role "floor": the
baseline). The figures come from the two run folders it writes, which keep everything behind them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import yaml

from harness import results as result_files
from harness.bench.producer import generator_throughput
from harness.run.capacity import CapacityOptions, run_capacity
from harness.run.hooks import RunHooks, RunOptions
from harness.run.scenario_run import run
from harness.scenario import load_scenario
from harness.stack.services import services


def backlog_variant(scenario_path: Path, events: int, out_dir: Path) -> Path:
    """The scenario as a backlog of about `events` events: load.mode backlog, no late data, no faults."""
    data = yaml.safe_load(Path(scenario_path).read_text())
    load = data["load"]
    load["mode"] = "backlog"
    load.pop("late", None)
    if isinstance(load.get("bad_input"), dict):
        load["bad_input"].pop("far_future", None)
    data.pop("faults", None)
    data["duration"] = f"{max(10, int(events / float(load['rate'])))}s"
    data["name"] = f"{data['name']}-backlog"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_bench(scenario_path: Path, *, engines: list[str] | None, backlog_events: int, bootstrap: str | None,
              dsn: str | None, results_dir: Path, hooks: RunHooks, say: Callable[[str], None]) -> dict[str, Any]:
    scen = load_scenario(scenario_path)
    out: dict[str, Any] = {"scenario": str(scenario_path), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    # the stack stays up for all three parts; inside, each part finds it running and records its CPU
    with services(bootstrap, dsn, progress=say) as svc:
        say("1/3 the generator's ceiling (unpaced)")
        row = generator_throughput(svc.bootstrap, 300_000, scen.load.payload_bytes, scen.topic.partitions)
        out["generator_ceiling_eps"] = round(row.records / row.seconds, 1) if row.seconds else None
        say(f"2/3 capacity search on {scenario_path}")
        cap_dir = run_capacity(CapacityOptions(scenario_path, engines=engines, results_dir=results_dir,
                                               bootstrap=bootstrap, dsn=dsn), hooks)
        say("3/3 backlog drain")
        variant = backlog_variant(scenario_path, backlog_events, results_dir / "bench-engines-scenarios")
        back_dir = run(RunOptions(variant, bootstrap, dsn, results_dir, engines=engines), hooks)
    cap, back = result_files.load(cap_dir), result_files.load(back_dir)
    rows: dict[str, dict[str, Any]] = {}
    floor = None
    for c in cap.capacity:
        rows.setdefault(c.engine, {})["sustainable_eps"] = c.sustainable_rate
        rows[c.engine]["bound_by"] = c.bound_by
        if c.role == "floor":
            floor = c.engine
    for e in back.engines:
        if e.backlog is not None:
            rows.setdefault(e.engine, {})["drain_eps_per_core"] = e.backlog.events_per_s_per_core
            rows[e.engine]["drain_eps"] = e.backlog.events_per_s
            c = e.windows.correctness if e.windows is not None else None
            # a drain rate is only worth its answer: an inexact one is shown as such, never dropped
            rows[e.engine]["backlog_exact"] = None if c is None else f"{c.exact}/{c.expected}"
        if e.role == "floor":
            floor = floor or e.engine
    ref = rows.get(floor or "", {})
    for r in rows.values():
        for k in ("sustainable_eps", "drain_eps_per_core"):
            r[f"{k}_ratio"] = round(r[k] / ref[k], 2) if r.get(k) and ref.get(k) else None
    out.update(floor=floor, engines=rows, capacity_run=str(cap_dir), backlog_run=str(back_dir),
               services_started=svc.started_here)
    return out
