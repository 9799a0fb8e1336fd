"""Scenario files: pydantic models (unknown keys rejected) and the rules that keep ground truth exact.

Every field is documented in docs/scenarios.md. Engines' own settings (`engines.<name>`) are validated by
each engine's settings model, not here: this module never names an engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.durations import Millis, format_duration
from harness.errors import HarnessError

# The generator's heartbeats keep watermarks moving; late events must clear this margin on top of the window,
# the watermark delay and allowed lateness, so no engine sees them as on time (docs/scenarios.md).
LATE_MARGIN_MS = 1000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicSpec(Strict):
    partitions: int = Field(3, ge=1, le=1024)
    # The topic's own `max.message.bytes` (the broker's default when unset). Records near and over it
    # (load.bad_input) are sized against it, so they need it stated.
    max_message_bytes: int | None = Field(None, ge=4096, le=16_777_216)


class ConstantShape(Strict):
    type: Literal["constant"] = "constant"


class RampShape(Strict):
    """Rate rises linearly from start_rate to load.rate over ramp_time (default: the whole duration)."""

    type: Literal["ramp"] = "ramp"
    start_rate: float = Field(0.0, ge=0)
    ramp_time: Millis | None = None


class StepShape(Strict):
    """load.rate until `at` (default: half the duration), then load.rate * factor."""

    type: Literal["step"] = "step"
    factor: float = Field(2.0, gt=0)
    at: Millis | None = None


class BurstShape(Strict):
    """load.rate, with load.rate * factor for `length` at the start of every `every`."""

    type: Literal["burst"] = "burst"
    factor: float = Field(5.0, ge=1)
    every: Millis = 10_000
    length: Millis = 1_000

    @model_validator(mode="after")
    def _length_inside_period(self) -> "BurstShape":
        if not 0 < self.length < self.every:
            raise ValueError(f"burst length ({format_duration(self.length)}) must be more than 0 and shorter "
                             f"than every ({format_duration(self.every)})")
        return self


Shape = Annotated[Union[ConstantShape, RampShape, StepShape, BurstShape], Field(discriminator="type")]


def _shape_from_name(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class OutOfOrder(Strict):
    fraction: float = Field(0.0, ge=0, le=1)
    max_delay: Millis = 0


class Late(Strict):
    fraction: float = Field(0.0, ge=0, le=1)
    delay: Millis = 0


class FarFuture(Strict):
    """One record with an event time a day ahead, planted at `at`: in the partition of the event due then
    (`one`), or in every partition (`all`)."""

    at: Millis
    partitions: Literal["one", "all"] = "one"


class BadInput(Strict):
    """Records real topics carry, each a share of the load (docs/scenarios.md, README "What counts as
    malformed"). They replace whatever kind the event would otherwise have been."""

    tombstone: float = Field(0.0, ge=0, le=1, description="a null value (malformed)")
    empty_value: float = Field(0.0, ge=0, le=1, description="a value of zero bytes (malformed)")
    invalid_utf8: float = Field(0.0, ge=0, le=1, description="a record with bytes that are not UTF-8 (malformed)")
    deep_nesting: float = Field(0.0, ge=0, le=1, description="`value` is an object 100 levels deep (malformed)")
    deep_nesting_extra: float = Field(0.0, ge=0, le=1,
                                      description="an extra field holds an object 100 levels deep (well-formed)")
    extra_fields: float = Field(0.0, ge=0, le=1, description="unknown fields beside the four (well-formed)")
    near_size_limit: float = Field(0.0, ge=0, le=1,
                                   description="1 KiB under the topic's max_message_bytes (well-formed)")
    oversized: int = Field(0, ge=0, le=100, description="records 1 KiB over the topic's max_message_bytes, "
                                                        "which the broker refuses (left out of ground truth)")
    far_future: list[FarFuture] = Field(default_factory=list, max_length=20,
                                        description="records with an event time a day ahead (malformed by "
                                                    "query.max_clock_skew)")

    def fractions(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if k not in ("oversized", "far_future")}

    @property
    def sized(self) -> bool:
        """Whether records are sized against the topic's limit."""
        return self.near_size_limit > 0 or self.oversized > 0

    @model_validator(mode="after")
    def _shares(self) -> "BadInput":
        total = sum(self.fractions().values())
        if total > 1:
            raise ValueError(f"the bad_input fractions add up to {total:g}; they are shares of one load, so at most 1")
        return self


class Load(Strict):
    rate: float = Field(gt=0, le=10_000_000, description="events per second (the shape's base rate)")
    shape: Shape = ConstantShape()
    keys: int = Field(100, ge=1, le=10_000_000)
    key_distribution: Literal["uniform", "zipf"] = "uniform"
    zipf_s: float = Field(1.1, gt=0, le=10)
    payload_bytes: int = Field(128, ge=0, le=1_000_000)
    out_of_order: OutOfOrder = OutOfOrder()
    late: Late = Late()
    malformed_fraction: float = Field(0.0, ge=0, le=1)
    bad_input: BadInput = BadInput()
    heartbeat_interval: Millis = 200
    mode: Literal["live", "backlog"] = Field("live", description="live: the engine runs while the load is sent on "
                                             "its schedule; backlog: the topic is filled first, as fast as the "
                                             "generator can, with event times `duration` in the past, and the engine "
                                             "then drains it (`harness run --backlog` sets it)")

    _normalise_shape = field_validator("shape", mode="before")(_shape_from_name)

    @field_validator("heartbeat_interval")
    @classmethod
    def _positive_heartbeat(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be more than 0 (heartbeats keep every partition's watermark moving)")
        return v

    @model_validator(mode="after")
    def _fractions(self) -> "Load":
        total = self.out_of_order.fraction + self.late.fraction + self.malformed_fraction
        if total > 1:
            raise ValueError(f"out_of_order.fraction + late.fraction + malformed_fraction is {total:g}; "
                             "they are shares of the same events, so at most 1")
        if self.out_of_order.fraction > 0 and self.out_of_order.max_delay <= 0:
            raise ValueError("out_of_order.max_delay must be more than 0 when out_of_order.fraction is set")
        if self.late.fraction > 0 and self.late.delay <= 0:
            raise ValueError("late.delay must be more than 0 when late.fraction is set")
        return self


class Window(Strict):
    type: Literal["tumbling", "sliding", "session"]
    size: Millis | None = None
    slide: Millis | None = None
    gap: Millis | None = None

    @model_validator(mode="after")
    def _parameters(self) -> "Window":
        need = {"tumbling": {"size"}, "sliding": {"size", "slide"}, "session": {"gap"}}[self.type]
        given = {f for f in ("size", "slide", "gap") if getattr(self, f) is not None}
        if need - given:
            raise ValueError(f"a {self.type} window needs {', '.join(sorted(need))}; missing {', '.join(sorted(need - given))}")
        if given - need:
            raise ValueError(f"a {self.type} window takes only {', '.join(sorted(need))}; remove {', '.join(sorted(given - need))}")
        for f in need:
            if getattr(self, f) <= 0:
                raise ValueError(f"window {f} must be more than 0")
        if self.type == "sliding":
            assert self.size is not None and self.slide is not None
            if self.slide > self.size or self.size % self.slide:
                raise ValueError(f"a sliding window's size ({format_duration(self.size)}) must be a whole multiple of "
                                 f"its slide ({format_duration(self.slide)}), as Flink requires")
        return self

    @property
    def length(self) -> int:
        """The longest span one window covers, as far as lateness goes (session: the gap)."""
        return int(self.size if self.size is not None else self.gap or 0)

    @property
    def grid(self) -> int:
        """Window boundaries fall on multiples of this (sessions have none: 1 s is used for the time base)."""
        if self.type == "tumbling":
            return int(self.size or 0)
        if self.type == "sliding":
            return int(self.slide or 0)
        return 1000


FAR_FUTURE_MS = 86_400_000     # how far ahead a far_future record's event time is planted
MAX_CLOCK_SKEW_LIMIT_MS = 43_200_000   # 12 h: half of that, so a planted record is beyond any allowed skew


class Query(Strict):
    window: Window
    watermark_delay: Millis = 2000
    allowed_lateness: Millis = 0
    # An event time beyond the engine's wall clock plus this is malformed (README "What counts as malformed");
    # `none` turns the rule off, and one far-future record may then move an engine's watermark a day ahead.
    max_clock_skew: Optional[Millis] = 3_600_000

    @field_validator("max_clock_skew", mode="before")
    @classmethod
    def _none_turns_off(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() == "none" else v

    @field_validator("max_clock_skew")
    @classmethod
    def _skew_range(cls, v: int | None) -> int | None:
        if v is not None and not 60_000 <= v <= MAX_CLOCK_SKEW_LIMIT_MS:
            raise ValueError(f"must be between 1min and 12h, or none (got {format_duration(v)}): engines on other "
                             "machines may be a little off the harness's clock, and far_future records are planted "
                             "a day ahead, which must stay beyond the skew")
        return v


class StallSink(Strict):
    """Backpressure: `LOCK TABLE ... IN SHARE MODE` on the sink tables (the results log and the malformed table)
    from `at` after the load starts, for `duration`. Writers wait; the harness can still read. `engines`: the
    engines it is injected into (default: all)."""

    kind: Literal["stall_sink"] = "stall_sink"
    at: Millis
    duration: Millis
    engines: list[str] | None = None

    @model_validator(mode="after")
    def _positive(self) -> "StallSink":
        if self.duration <= 0:
            raise ValueError("a stall_sink fault needs a duration of more than 0")
        return self


RestartPolicy = Literal["checkpoint", "earliest", "latest", "committed", "timestamp"]
RESTART_POLICIES: tuple[str, ...] = ("checkpoint", "earliest", "latest", "committed", "timestamp")


class KillJob(Strict):
    """SIGKILL every process of the engine at `at`, then after `restart_after` start it again through the
    engine, reading from where `restart_policy` says: `checkpoint` (its own saved state and offsets),
    `earliest`, `latest`, `committed` (the consumer group's offsets) or `timestamp` (`timestamp` after the load
    starts). An engine that lacks the policy skips the fault, with its reason. `engines`: the engines it is
    injected into (default: all)."""

    kind: Literal["kill_job"] = "kill_job"
    at: Millis
    restart_after: Millis = 5000
    restart_policy: RestartPolicy = "checkpoint"
    timestamp: Millis | None = None
    engines: list[str] | None = None

    @model_validator(mode="after")
    def _timestamp_with_its_policy(self) -> "KillJob":
        if (self.restart_policy == "timestamp") != (self.timestamp is not None):
            raise ValueError("a kill_job fault takes `timestamp` with restart_policy: timestamp, and only with it")
        return self


class KillWorker(Strict):
    """SIGKILL one worker of the engine's cluster at `at` while its job goes on: a Flink session cluster's
    TaskManager (the harness starts a replacement after `restart_after`, as a cluster manager would, and
    Flink's restart strategy restores the last checkpoint), or a Spark standalone executor (Spark's master
    launches a new one and reschedules its tasks). An engine with no separate worker skips it, with its
    reason. `engines`: as for kill_job."""

    kind: Literal["kill_worker"] = "kill_worker"
    at: Millis
    restart_after: Millis = 5000
    engines: list[str] | None = None


class RestartPostgres(Strict):
    """Stop the embedded PostgreSQL (pg_ctl stop -m fast: every connection is closed, open transactions roll
    back) at `at`, and start it again `down_for` later. An external PostgreSQL is a skip. `engines`: as for
    kill_job."""

    kind: Literal["restart_postgres"] = "restart_postgres"
    at: Millis
    down_for: Millis = 3000
    engines: list[str] | None = None


class RestartBroker(Strict):
    """Stop the embedded Kafka broker (SIGTERM: a clean shutdown) at `at` and start it again on the same port
    and storage `down_for` later. An external broker is a skip. `engines`: as for kill_job."""

    kind: Literal["restart_broker"] = "restart_broker"
    at: Millis
    down_for: Millis = 3000
    engines: list[str] | None = None


# The fault kinds built so far (issue: failure and restart, measured); the others named there are refused with
# the list of these.
Fault = Annotated[Union[StallSink, KillJob, KillWorker, RestartPostgres, RestartBroker], Field(discriminator="kind")]


class Slo(Strict):
    """Service-level objectives; each is checked against one metric (docs/scenarios.md names it)."""

    p99_latency: Millis | None = None
    p50_latency: Millis | None = None
    p99_window_close: Millis | None = None
    p50_window_close: Millis | None = None
    max_duplicates: int | None = Field(None, ge=0)
    max_wrong_windows: int | None = Field(None, ge=0)
    max_missing_windows: int | None = Field(None, ge=0)
    min_throughput: float | None = Field(None, gt=0)
    max_cpu_seconds_per_million: float | None = Field(None, gt=0)
    max_peak_memory_mb: float | None = Field(None, gt=0)


class ServicesSpec(Strict):
    bootstrap_servers: str | None = None
    postgres_dsn: str | None = None


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    description: str = ""
    seed: int = Field(42, ge=0, le=2**63 - 1)
    duration: Millis
    warmup: Millis = 0
    topic: TopicSpec = TopicSpec()
    load: Load
    query: Query
    # One choice for every engine's emission settings, so no engine is tuned and another left at its defaults:
    # `defaults` are the upstream engines' own, `low_latency` the values each engine declares (its class's
    # low_latency, listed in docs/engines.md). An explicit engines.<name> setting wins over either.
    tuning: Literal["defaults", "low_latency"] = "defaults"
    engines: dict[str, dict[str, Any]] = Field(default_factory=dict)
    slo: Slo = Slo()
    services: ServicesSpec = ServicesSpec()
    # Injected into every engine run at their time after the load starts (harness/run/faults.py).
    faults: list[Fault] = Field(default_factory=list)

    @field_validator("engines", mode="before")
    @classmethod
    def _engine_sections(cls, v: Any) -> Any:
        if v is None:
            return {}
        if isinstance(v, dict):
            return {k: ({} if s is None else s) for k, s in v.items()}
        return v

    @model_validator(mode="after")
    def _timing_rules(self) -> "Scenario":
        if self.duration <= 0:
            raise ValueError("duration must be more than 0")
        if self.warmup >= self.duration:
            raise ValueError(f"warmup ({format_duration(self.warmup)}) must be shorter than duration "
                             f"({format_duration(self.duration)})")
        for i, f in enumerate(self.faults):
            if f.at >= self.duration:
                raise ValueError(f"faults[{i}].at ({format_duration(f.at)}) must fall inside the load "
                                 f"(duration {format_duration(self.duration)})")
            unknown = sorted(set(f.engines or []) - set(self.engines)) if self.engines else []
            if unknown:
                raise ValueError(f"faults[{i}].engines names {', '.join(unknown)}, not among the scenario's engines "
                                 f"({', '.join(self.engines)})")
        load, q = self.load, self.query
        if load.mode == "backlog":
            if self.faults:
                raise ValueError("faults are timed from the load's start, while an engine reads it; in backlog mode "
                                 "(load.mode: backlog, --backlog) the load is in the topic before the engine starts: "
                                 "drop the faults or run it live")
            if load.late.fraction > 0:
                raise ValueError("late events are refused in backlog mode (load.mode: backlog, --backlog): a "
                                 "watermark that jumps over a backlog (Spark's advances per micro-batch) makes late "
                                 "events on time, which is engine behaviour, not a wrong answer; set "
                                 "load.late.fraction to 0")
            if load.bad_input.far_future:
                raise ValueError("load.bad_input.far_future is refused in backlog mode: a record a day ahead is "
                                 "judged against the engine's clock while it is sent, and a backlog is read later")
        for i, ff in enumerate(load.bad_input.far_future):
            if ff.at >= self.duration:
                raise ValueError(f"load.bad_input.far_future[{i}].at ({format_duration(ff.at)}) must fall inside the "
                                 f"load (duration {format_duration(self.duration)})")
        if load.bad_input.sized and self.topic.max_message_bytes is None:
            raise ValueError("load.bad_input.near_size_limit and oversized are sized against the topic's limit: set "
                             "topic.max_message_bytes (e.g. 1048576)")
        if load.bad_input.sized and load.payload_bytes + 4096 > (self.topic.max_message_bytes or 0):
            raise ValueError(f"topic.max_message_bytes ({self.topic.max_message_bytes:,}) must be at least 4 KiB above "
                             f"load.payload_bytes ({load.payload_bytes:,}) for records near the limit to be larger "
                             "than every other record")
        if load.out_of_order.fraction > 0 and load.out_of_order.max_delay >= q.watermark_delay:
            raise ValueError(
                f"load.out_of_order.max_delay ({format_duration(load.out_of_order.max_delay)}) must be shorter than "
                f"query.watermark_delay ({format_duration(q.watermark_delay)}): out-of-order events are meant to be "
                "on time, and a longer delay would make some of them late in every engine")
        if load.late.fraction > 0:
            if q.window.type == "session":
                raise ValueError(
                    "late events with session windows are refused: a late event can merge or split sessions, so "
                    "engines legitimately disagree and no single right answer exists; set load.late.fraction to 0 "
                    "or use tumbling or sliding windows")
            self.check_late_delay(0)
        return self

    def min_late_delay(self, engine_margin_ms: int) -> int:
        q = self.query
        return q.window.length + q.watermark_delay + q.allowed_lateness + self.load.heartbeat_interval \
            + LATE_MARGIN_MS + engine_margin_ms

    def check_late_delay(self, engine_margin_ms: int, who: str = "") -> None:
        """Late events must be late for every engine; engines that judge lateness once per batch or interval add
        their late margin (Plan.late_margin_ms)."""
        need = self.min_late_delay(engine_margin_ms)
        if self.load.late.fraction > 0 and self.load.late.delay < need:
            extra = (f" + {who}'s late margin ({format_duration(engine_margin_ms)}: how long after the watermark "
                     f"passes a window it may still add events to it)") if engine_margin_ms else ""
            raise ValueError(
                f"load.late.delay ({format_duration(self.load.late.delay)}) is too short: late events must arrive "
                f"after their window closed in every engine, so it must be at least window size/gap + "
                f"watermark_delay + allowed_lateness + heartbeat_interval + {format_duration(LATE_MARGIN_MS)} margin"
                f"{extra} = {format_duration(need)}")


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in {"constant", "ramp", "step", "burst"}
                                          and loc and loc[0] == "load")]
    return ".".join(parts) or "(top level)"


def describe_validation_error(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid scenario"]
    for e in exc.errors():
        where = _location(tuple(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not allowed; see docs/scenarios.md for the fields a scenario takes)"
        elif e["type"] == "literal_error" and "expected" in e.get("ctx", {}):
            msg = f"{msg} (got {e.get('input')!r})"
        elif e["type"] == "union_tag_invalid":
            msg = f"shape must be one of constant, ramp, step, burst (got {e.get('ctx', {}).get('tag')!r})"
        elif "input" in e and e["type"] not in ("missing", "value_error"):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise HarnessError(f"{source}: a scenario is a YAML mapping of fields, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise HarnessError(describe_validation_error(source, exc)) from None


def load_scenario(path: str | Path, *, backlog: bool = False) -> Scenario:
    """The scenario in a file; backlog=True (`--backlog`) sets load.mode: backlog, checked like the file's own."""
    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"scenario file not found: {p}", hint="scenarios/ holds the shipped ones, e.g. scenarios/quick.yaml")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise HarnessError(f"{p}: not valid YAML: {exc}") from None
    if backlog and isinstance(data, dict) and isinstance(data.get("load"), dict):
        data["load"] = {**data["load"], "mode": "backlog"}
        return parse_scenario(data, f"{p} with --backlog")
    return parse_scenario(data, str(p))
