"""What an engine is to the harness: one call that plans a run, then a short lifecycle.

An engine only acts (start, report its processes and position, stop); everything that measures lives in the
harness, so every engine is measured by the same code. The harness never names an engine: what it needs to
know about one comes from the engine's plan, its class attributes, or its folder.

    plan(scenario, settings) -> Plan | Skip     asked once, before anything starts
    start(ctx) -> wait_running(timeout)         the pipeline reads its topic
    alive() / pids() / position()               sampled while it runs
    engine_metrics()                            its own counters, kept in result.json
    stop()                                      idempotent, nothing left behind

Restarts are optional (Restartable, asked for with hasattr), so an engine without them still satisfies this
Protocol: the harness kills the engine's processes itself (a fault is the harness acting, like the load), then
asks the engine to start again under a restart policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Generic, Literal, Mapping, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from harness.errors import EXIT_FAILED, HarnessError
from harness.scenario import Scenario

Answer = Literal["on_time", "complete"]
Role = Literal["floor", "option"]


class EngineRefused(HarnessError):
    """The engine itself refused the query when it was started (an unsupported mode or operator), in its own
    words. The runner records the engine as skipped with that reason: like a Skip from plan(), but found out by
    asking the engine rather than known beforehand."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_FAILED)


class EngineSettings(BaseModel):
    """Base of every engine's settings model: unknown keys are refused like anywhere in a scenario."""

    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=EngineSettings)


@dataclass(frozen=True)
class Capabilities:
    window_types: frozenset[str]
    triggers: tuple[str, ...]            # e.g. ("continuous",), ("processing_time", "real_time"), ("interval",)
    allowed_lateness: bool               # can it keep windows open after the watermark passes their end?
    emits: Literal["final", "updates"]   # "final": each window once, after the watermark; "updates": partial rows

    def to_json(self) -> dict[str, Any]:
        return {"window_types": sorted(self.window_types), "triggers": list(self.triggers),
                "allowed_lateness": self.allowed_lateness, "emits": self.emits}


@dataclass(frozen=True)
class Plan:
    """Everything the harness asks about one (scenario, settings) pair, answered once."""

    promised_answer: Answer              # "on_time": late events dropped; "complete": every well-formed event
    capabilities: Capabilities           # what these settings give (e.g. emits "updates" in an update mode)
    max_trigger_interval_ms: int = 0     # longest time between emissions (0: continuous)
    late_margin_ms: int = 0              # how long after the watermark passes a window it may still gain events
    latency_floor_ms: Mapping[str, int] = field(default_factory=dict)  # settings that bound latency from below
    # its batches lengthen under a load it cannot take, but only over tens of seconds (micro-batches): a capacity
    # search holds its candidate rates for longer steps (harness/metrics/capacity.py, settling)
    settles_slowly: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "latency_floor_ms", MappingProxyType(dict(self.latency_floor_ms)))


@dataclass(frozen=True)
class Skip:
    """The engine cannot run this scenario with these settings, and says why (never a silent ignore)."""

    reason: str


@dataclass
class EngineContext(Generic[S]):
    """Everything an engine needs for one load; the runner builds it, the engine reads it."""

    run_id: str
    load_id: str
    repeat: int
    scenario: Scenario
    settings: S
    bootstrap: str
    dsn: str
    topic: str
    work_dir: Path                       # the engine's own folder in the run folder: logs, config, checkpoints
    plan: Plan | None = None


@dataclass
class Position:
    """Where the engine's source is, as the engine itself reports it."""

    offsets: dict[int, int] = field(default_factory=dict)   # partition -> next offset to read
    records_in: int | None = None                             # source records read so far (a counter)


@dataclass(frozen=True)
class Restart:
    """How a killed engine starts again: where it reads from, and the epoch ms for policy `timestamp`."""

    policy: str                          # one of harness.scenario.RESTART_POLICIES
    timestamp_ms: int | None = None
    number: int = 1                      # the engine run's first restart is 1
    # latest/timestamp: per partition, the offset to start from, resolved by the harness at the restart (the
    # end offsets then, or the first offset at or after the timestamp), so that the answer the policy promises
    # is built on the same records the engine reads. Given to engines with restart_from_offsets.
    offsets: dict[int, int] | None = None


class Restartable(Protocol):
    """The optional half of the Protocol that a `kill_job` fault needs."""

    def restart_skip(self, policy: str, settings: Any) -> str | None:
        """None when the engine, with these settings, can restart under `policy`; else why not (recorded)."""

    def restart(self, restart: Restart) -> None:
        """Start again after every process of the engine was SIGKILLed; wait_running() follows. No warm-up.
        An engine may also have before_kill(): read its own state just before the kill (it is not warned); and
        kill_job_pids(): the processes a kill_job kills where that is not every one of pids() (Spark's driver,
        not the standalone Master and Worker it runs on, which stay up as a cluster's would)."""


class WorkerFaults(Protocol):
    """The optional half of the Protocol that a `kill_worker` fault needs: an engine whose job runs on workers
    apart from the process that owns it."""

    # True where the engine's own cluster manager starts the replacement (Spark's standalone Master), so the
    # harness neither waits restart_after nor calls replace_worker for the job to go on
    replaces_workers_itself: bool

    def worker_skip(self, settings: Any) -> str | None:
        """None when this engine run has a worker the harness can kill; else why not (recorded)."""

    def kill_worker(self) -> list[int]:
        """SIGKILL one worker process (and its children) at once; returns the pids killed."""

    def replace_worker(self) -> str:
        """Start a replacement where no cluster manager would (returns what was done, for the record)."""

    def wait_recovered(self, timeout_s: float) -> None:
        """Return once the job runs on a full set of workers again, after a restart of its own."""


@runtime_checkable
class Engine(Protocol[S]):
    name: str                            # its folder's name
    display_name: str
    role: Role                           # "floor": a reference point; "option": a choice a team could make
    description: str
    capabilities: Capabilities           # what it can do with some settings (`harness engines`)
    settings_model: type[S]
    test_settings: dict[str, Any]        # settings for the contract tests (e.g. a short interval)
    low_latency: dict[str, Any]          # the settings `tuning: low_latency` means for it ({}: none to change)

    def plan(self, scenario: Scenario, settings: S) -> Plan | Skip: ...

    def versions(self) -> dict[str, str | None]:
        """The versions this engine runs (libraries, connectors), recorded in result.json."""

    def start(self, ctx: EngineContext[S]) -> None: ...

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


class EngineBase(Generic[S]):
    """Defaults for the descriptive half of the Protocol, so an engine class states only what differs."""

    name: ClassVar[str]
    display_name: ClassVar[str] = ""
    role: ClassVar[Role] = "option"
    colour: ClassVar[str | None] = None  # its colour in plots (a hex RGB); None: a stable pick by name
    description: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities]
    settings_model: ClassVar[type[EngineSettings]] = EngineSettings
    test_settings: ClassVar[dict[str, Any]] = {}
    # The emission settings `tuning: low_latency` gives it (scenario values, durations as text): {} for an engine
    # whose latency no setting bounds. `tuning: defaults` keeps its settings model's defaults, the upstream ones.
    low_latency: ClassVar[dict[str, Any]] = {}
    # "shared": its requirements.txt (if any) is installed into the harness's environment; "own": the setup
    # builds .cache/envs/<name> from it and the engine's job runs with that interpreter.
    environment: ClassVar[Literal["shared", "own"]] = "shared"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("display_name") and getattr(cls, "name", ""):
            cls.display_name = cls.name

    # The restart policies (kill_job) an engine with a restart() has, and why it lacks the others.
    restart_policies: ClassVar[frozenset[str]] = frozenset()
    restart_refusals: ClassVar[dict[str, str]] = {}
    # Whether restart() starts from Restart.offsets when given (latest/timestamp); without it those two
    # policies are skipped, since the harness could not say which records the engine skipped.
    restart_from_offsets: ClassVar[bool] = False

    def versions(self) -> dict[str, str | None]:
        return {}

    def engine_metrics(self) -> dict[str, Any]:
        return {}

    def restart_skip(self, policy: str, settings: Any) -> str | None:
        """Restartable's question, answered from restart_policies and restart_refusals."""
        if policy in ("latest", "timestamp") and policy in self.restart_policies and not self.restart_from_offsets:
            return (f"restart_policy {policy}: the answer it promises is built on the offsets the restart reads from, "
                    f"and {self.name} cannot start from offsets the harness gives it yet")
        if policy in self.restart_policies:
            return None
        return self.restart_refusals.get(policy) or (
            f"{self.name} has no restart policy {policy} (it has: {', '.join(sorted(self.restart_policies)) or 'none'})")
