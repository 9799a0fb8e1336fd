"""Before anything starts: the memory a load needs in the harness, against the memory the machine has. A scenario
beyond it is refused (exit 2) with the estimate, instead of running the machine out of memory an hour in.

What grows with a load, in the harness's processes:
- ground truth: every event handed over, as a frame, and its windows (BYTES_PER_EVENT_GROUND_TRUTH, the peak
  measured by `harness bench memory`);
- the generator's per-event hand-off times, send delays and delivered offsets, in its process and again in the
  harness's (GENERATOR_BYTES_PER_EVENT: three int64/float64 arrays, twice);
- the schedule: three float64 arrays per millisecond of the load (SCHEDULE_BYTES_PER_MS), in both processes.
Engines, the broker and PostgreSQL are not counted: they are bounded by their own settings, not by the load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from harness.errors import HarnessError
from harness.loadgen.schedule import rate_at
from harness.scenario import Scenario

# Peak bytes per event of ground truth (events frame, keys, on-time/complete window assignment), measured with
# `harness bench memory` on this project's machine (1 M events of the quick scenario's mix: see the closing
# note of the issue that added it). The bench prints the figure again wherever it runs.
BYTES_PER_EVENT_GROUND_TRUTH = 420
GENERATOR_BYTES_PER_EVENT = 2 * (8 + 8 + 8)
SCHEDULE_BYTES_PER_MS = 2 * 3 * 8


@dataclass(frozen=True)
class MemoryEstimate:
    events: int
    needed_bytes: int
    available_bytes: int
    available_from: str          # "the machine's available memory" or the cgroup limit that binds

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.available_bytes

    def describe(self) -> str:
        return (f"about {self.events:,} events need about {gib(self.needed_bytes)} in the harness; "
                f"{gib(self.available_bytes)} is available ({self.available_from})")


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def sampled_rates(scenario: Scenario) -> np.ndarray:
    """The load's rate (events/s) at the midpoints of at most 200,000 equal steps of its duration: every
    millisecond for loads up to 200 s, so a day-long scenario costs no per-millisecond array."""
    d = scenario.duration
    n = int(min(d, 200_000))
    t = (np.arange(n, dtype=np.float64) + 0.5) * (d / n)
    return rate_at(scenario.load.shape, scenario.load.rate, d, t)


def expected_events(scenario: Scenario) -> int:
    """The events a scenario's load sends: its rate integrated over the duration."""
    return int(math.ceil(float(sampled_rates(scenario).mean()) * scenario.duration / 1000.0))


def available_memory() -> tuple[int, str]:
    """What this process may still allocate: the machine's available memory, or less where a cgroup limit
    binds (the harness's own group and its parents: harness.environment reads them)."""
    avail = int(psutil.virtual_memory().available)
    source = "the machine's available memory"
    try:
        from harness import environment

        cg = environment.cgroup_limits()
        limit_mb = cg.get("memory_limit_mb") if isinstance(cg, dict) else None
        if isinstance(limit_mb, (int, float)) and limit_mb > 0:
            used = psutil.Process().memory_info().rss
            room = int(limit_mb * 2**20) - used
            if room < avail:
                avail, source = max(0, room), f"the cgroup memory limit of {limit_mb:,.0f} MiB"
    except Exception:  # limits are a refinement; the machine's figure stands without them
        pass
    return avail, source


def estimate(scenario: Scenario) -> MemoryEstimate:
    events = expected_events(scenario)
    needed = (events * (BYTES_PER_EVENT_GROUND_TRUTH + GENERATOR_BYTES_PER_EVENT)
              + scenario.duration * SCHEDULE_BYTES_PER_MS)
    avail, source = available_memory()
    return MemoryEstimate(events, int(needed), avail, source)


def check(scenario: Scenario, source: str) -> MemoryEstimate:
    """The estimate, or HarnessError (exit 2) naming it when the load cannot fit."""
    est = estimate(scenario)
    if not est.fits:
        raise HarnessError(f"{source}: this load does not fit in memory: {est.describe()}",
                           hint="lower load.rate or duration (or run on a machine with more memory)")
    return est


def generator_ceiling(results_dir: Path | None = None) -> tuple[float, str] | None:
    """The generator's unpaced rate from the newest `harness bench producer` on file (records/s, file name), or
    None when none was measured here."""
    import json

    from harness import paths

    folder = results_dir or paths.results_dir()
    for f in sorted(folder.glob("bench-producer-*.json"), reverse=True):
        try:
            rows = json.loads(f.read_text())["throughput"]
            rate = next(float(r["records_per_s"]) for r in rows if str(r["producer"]).startswith("harness generator"))
        except (OSError, ValueError, KeyError, TypeError, StopIteration):
            continue
        return rate, f.name
    return None


def peak_rate(scenario: Scenario) -> float:
    """The highest rate the load's shape reaches (events/s)."""
    rates = sampled_rates(scenario)
    return float(rates.max()) if rates.size else 0.0


def rate_warning(scenario: Scenario, results_dir: Path | None = None) -> str | None:
    """A warning when the load's peak rate is above the generator's measured ceiling on this machine."""
    ceiling = generator_ceiling(results_dir)
    if ceiling is None:
        return None
    peak = peak_rate(scenario)
    if peak <= ceiling[0]:
        return None
    return (f"the load peaks at {peak:,.0f} events/s, above the generator's ceiling of {ceiling[0]:,.0f} events/s "
            f"measured by `harness bench producer` ({ceiling[1]}): the generator will fall behind its schedule, "
            "and the run will be flagged")
