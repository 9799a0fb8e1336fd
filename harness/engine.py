"""The engine boundary: one small Protocol that each pipelines/<name>/engine.py implements, and discovery.

The runner never names an engine. An engine only acts (start, report its processes and position, stop);
everything that measures lives in the harness, so every engine is measured by the same code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from harness import paths
from harness.errors import EXIT_FAILED, HarnessError
from harness.scenario import Scenario


class EngineRefused(HarnessError):
    """The engine itself refused the query when it was started (an unsupported mode or operator), in its own
    words. The runner records the engine as skipped with that reason: like cannot_run(), but found out by
    asking the engine rather than known beforehand."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_FAILED)


class EngineSettings(BaseModel):
    """Base of every engine's settings model: unknown keys are refused like anywhere in a scenario."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Capabilities:
    window_types: frozenset[str]
    triggers: tuple[str, ...]            # e.g. ("continuous",), ("processing_time", "real_time"), ("interval",)
    allowed_lateness: bool               # can it keep windows open after the watermark passes their end?
    emits: str                           # "final": each window once, after the watermark; "updates": partial rows


@dataclass
class EngineContext:
    """Everything an engine needs for one load; the runner builds it, the engine reads it."""

    run_id: str
    load_id: str
    repeat: int
    scenario: Scenario
    settings: Any                        # the engine's validated settings model
    bootstrap: str
    dsn: str
    topic: str
    work_dir: Path                       # the engine's own folder in the run folder: logs, config, checkpoints


@dataclass
class Position:
    """Where the engine's source is, as the engine itself reports it."""

    offsets: dict[int, int] = field(default_factory=dict)   # partition -> next offset to read
    records_in: int | None = None                             # source records read so far (a counter)


@runtime_checkable
class Engine(Protocol):
    name: str
    description: str
    capabilities: Capabilities
    settings_model: type[EngineSettings]

    def cannot_run(self, scenario: Scenario, settings: Any) -> str | None:
        """None when it can run the scenario, else the reason it skips (never a silent ignore)."""

    def promised_answer(self, scenario: Scenario, settings: Any) -> str:
        """Which ground-truth answer the engine's semantics promise: "on_time" (watermark-based: late events
        dropped) or "complete" (every well-formed event, e.g. a batch job that recomputes within a look-back)."""

    def max_trigger_interval_ms(self, settings: Any) -> int:
        """Longest interval between the engine's emissions (0 for continuous engines): late data must clear it."""

    def late_margin_ms(self, settings: Any) -> int:
        """How long after the watermark passes a window's end the engine may still add events to it (0 for an
        engine that judges each event against the current watermark): the scenario's late delay must clear it,
        or "late" events would count in some engines and not in others."""

    def latency_floor(self, scenario: Scenario, settings: Any) -> dict[str, int]:
        """Settings (name -> ms) that put a floor under this engine's latency."""

    def changed_settings(self, settings: Any) -> dict[str, Any]:
        """The engine settings this run changed from the engine's own defaults."""

    def start(self, ctx: EngineContext) -> None: ...

    def wait_running(self, timeout_s: float) -> None:
        """Return once the pipeline reads its topic; raise EngineRefused if the engine refused the query (the
        run records a skip with the engine's words), HarnessError(exit 1) if it failed to start."""

    def alive(self) -> bool: ...

    def pids(self) -> list[int]:
        """Every process the engine owns (a session cluster's JVMs are not children of the harness)."""

    def position(self) -> Position | None: ...

    def engine_metrics(self) -> dict[str, Any]:
        """The engine's own metrics worth keeping (checkpoints, backpressure, its drop counters...)."""

    def stop(self) -> None:
        """Stop everything started; idempotent; nothing left behind."""


def discover() -> dict[str, type]:
    """Every pipelines/<name>/engine.py that defines ENGINE (a class implementing Engine)."""
    found: dict[str, type] = {}
    for f in sorted(paths.pipelines_dir().glob("*/engine.py")):
        name = f.parent.name
        module = importlib.import_module(f"pipelines.{name}.engine")
        cls = getattr(module, "ENGINE", None)
        if cls is None:
            continue
        if getattr(cls, "name", None) != name:
            raise HarnessError(f"{f}: ENGINE.name is {getattr(cls, 'name', None)!r}, expected its folder name {name!r}")
        found[name] = cls
    return found


def validate_settings(cls: type, raw: dict[str, Any], source: str) -> Any:
    try:
        return cls.settings_model.model_validate(raw)
    except ValidationError as exc:
        from harness.scenario import describe_validation_error

        text = describe_validation_error(source, exc).replace("  ", f"  engines.{cls.name}.", 1)
        lines = text.splitlines()
        lines[1:] = [ln if ln.startswith(f"  engines.{cls.name}.") else ln.replace("  ", f"  engines.{cls.name}.", 1)
                     for ln in lines[1:]]
        raise HarnessError("\n".join(lines)) from None


def parse_engine_options(options: list[str]) -> dict[str, dict[str, Any]]:
    """--engine-option name.key=value (repeatable); values are parsed as YAML scalars (1, true, 5s stay typed)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for opt in options:
        left, eq, value = opt.partition("=")
        name, dot, key = left.partition(".")
        if not (eq and dot and name and key):
            raise HarnessError(f"--engine-option {opt!r} is not NAME.KEY=VALUE (e.g. flink.parallelism=2)")
        out.setdefault(name, {})[key] = yaml.safe_load(value) if value else value
    return out
