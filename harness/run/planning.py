"""Planning: every engine's settings validated and its plan asked for before anything starts, and the clock
arithmetic every phase shares (time base, close horizon)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from harness.engines.discovery import changed_settings, discover, parse_engine_options, validate_settings
from harness.engines.protocol import Plan, Skip
from harness.errors import HarnessError
from harness.scenario import Scenario

LEAD_MS = 1500          # time to warm the producer before the load's first instant


@dataclass(frozen=True)
class PlannedEngine:
    """One engine as the run will start it: its class, validated settings and its answer to plan()."""

    name: str
    cls: type
    settings: Any
    plan: Plan | Skip
    tuned: tuple[str, ...] = ()          # settings that came from the scenario's tuning, not written explicitly

    @property
    def changed_settings(self) -> dict[str, Any]:
        """Settings written explicitly (engines.<name> or --engine-option) that differ from the defaults."""
        return {k: v for k, v in changed_settings(self.settings).items() if k not in self.tuned}

    @property
    def tuned_settings(self) -> dict[str, Any]:
        """Settings the scenario's tuning chose, as run."""
        dumped = self.settings.model_dump(mode="json")
        return {k: dumped[k] for k in self.tuned if k in dumped}


def tuning_settings(cls: type, tuning: str) -> dict[str, Any]:
    """What a scenario's `tuning` gives an engine before its explicit settings: its declared low-latency values,
    or nothing (its settings model's defaults, which are the upstream engine's own)."""
    return dict(getattr(cls, "low_latency", {}) or {}) if tuning == "low_latency" else {}


def plan_engines(scenario: Scenario, source: str, requested: list[str] | None, options: list[str]) -> list[PlannedEngine]:
    """The engines to run, in order; exit 2 (HarnessError) naming the first bad name, setting or late delay."""
    found = discover()
    overrides = parse_engine_options(options)
    names = requested if requested is not None else list(scenario.engines)
    unknown = [n for n in [*names, *overrides, *scenario.engines] if n not in found]
    if unknown:
        raise HarnessError(f"unknown engine {unknown[0]!r} (in --engines, --engine-option or {source} engines:); "
                           f"discovered engines: {', '.join(sorted(found)) or 'none'}")
    planned = []
    for n in dict.fromkeys(names):
        explicit = {**scenario.engines.get(n, {}), **overrides.get(n, {})}
        tuned = tuning_settings(found[n], scenario.tuning)
        settings = validate_settings(found[n], {**tuned, **explicit}, source)
        plan = found[n]().plan(scenario, settings)
        if isinstance(plan, Plan):
            try:
                scenario.check_late_delay(plan.late_margin_ms, n)
            except ValueError as exc:
                raise HarnessError(f"{source}: {exc}") from None
        planned.append(PlannedEngine(n, found[n], settings, plan, tuple(k for k in tuned if k not in explicit)))
    return planned


def new_run_id(scenario: Scenario) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{scenario.name}-{secrets.token_hex(2)}"


def next_time_base(scenario: Scenario, now_ms: int | None = None) -> int:
    """The first window boundary at least LEAD_MS from now: event time then follows the wall clock."""
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    grid = scenario.query.window.grid
    return -(-(now_ms + LEAD_MS) // grid) * grid


def backlog_time_base(scenario: Scenario, now_ms: int | None = None) -> int:
    """Backlog mode's time base: a window boundary so far back that the load's event times lie in the past as
    the scenario spreads them and every window of the load has closed on the wall clock before the fill begins
    (now minus the close horizon: the duration, a window, the watermark delay and the allowed lateness)."""
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    grid = scenario.query.window.grid
    return (now_ms - close_horizon_ms(scenario)) // grid * grid


def close_horizon_ms(scenario: Scenario) -> int:
    """Offset from the time base after which every window has closed in a watermark-based engine."""
    q = scenario.query
    return scenario.duration + q.window.length + q.watermark_delay + q.allowed_lateness + scenario.load.heartbeat_interval


def windows_per_event(scenario: Scenario) -> int:
    w = scenario.query.window
    return (w.size // w.slide) if w.type == "sliding" and w.size and w.slide else 1
