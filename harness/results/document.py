"""The result document: what `harness run` writes to results/<run_id>/result.json, typed down to the leaves.

This is the product's contract with its users (they keep results for months and load them into notebooks), so
every field is declared here, unknown keys are refused, and the document carries SCHEMA_VERSION. Sections an
unfinished run has not reached yet are None (or empty lists), so a partial result from a killed run still
validates. docs/results.md describes the fields and their units; docs/result-schema.json is exported from these
models (`harness schema`). A change to the shape bumps SCHEMA_VERSION and adds a step to migrations.py.

Times: `*_at` are ISO-8601 UTC strings, `*_ms` without `_at` are milliseconds (durations or epoch
milliseconds, as each field says), `*_s` seconds.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from harness.scenario import Scenario

SCHEMA_VERSION = 7

RunStatus = Literal["running", "complete", "failed", "interrupted"]
# complete: every promised window held its value; settled: the sink went quiet first, judged as it stands;
# timeout: still emitting at the deadline.
EngineStatus = Literal["starting", "running", "complete", "settled", "timeout", "failed", "skipped", "interrupted"]
Answer = Literal["on_time", "complete"]


class Section(BaseModel):
    """Every part of the document: unknown keys refused; fields stay assignable while the run fills them in."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class Percentiles(Section):
    """A latency (or delay) distribution in milliseconds. Only `count` is set when there were no samples."""

    count: int = 0
    p50: Optional[float] = None
    p90: Optional[float] = None
    p99: Optional[float] = None
    p99_9: Optional[float] = Field(None, alias="p99.9")
    max: Optional[float] = None
    min: Optional[float] = None
    mean: Optional[float] = None
    unreliable: list[str] = Field(default_factory=list,
                                  description="percentiles computed from fewer than 10/(1-p) samples")

    def at(self, name: str) -> Optional[float]:
        """A percentile by its report name ('p50', 'p99.9', 'max')."""
        return getattr(self, name.replace(".", "_"))


# -- run-level sections ------------------------------------------------------------------------------------
class CpuGovernor(Section):
    """Each CPU's frequency governor (/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)."""

    per_cpu: dict[str, Optional[str]] = Field(default_factory=dict, description="cpu0, cpu1, ...: the governor "
                                              "(performance, powersave, ...); None where not readable")
    note: Optional[str] = Field(None, description="why some or all were not readable")


class CgroupLimits(Section):
    """The limits of the control group the harness ran in: the tightest of its group and their parents."""

    version: Optional[Literal["v1", "v2"]] = None
    cpu_group: Optional[str] = Field(None, description="the harness's group of the cpu controller (/proc/self/cgroup)")
    memory_group: Optional[str] = None
    cpu_max: Optional[str] = Field(None, description='"<quota_us> <period_us>", or "max <period_us>" for no quota, '
                                   "as cgroup v2 writes it (v1's cfs_quota_us/cfs_period_us converted); None: not "
                                   "readable")
    cpu_limit_cores: Optional[float] = Field(None, description="quota / period; None: no quota, or not readable")
    memory_max: Optional[str] = Field(None, description='bytes, or "max" for no limit (v1\'s limit_in_bytes '
                                      "converted); None: not readable")
    memory_limit_mb: Optional[float] = Field(None, description="None: no limit, or not readable")
    note: Optional[str] = Field(None, description="what was not readable, or which parent group set a limit")


class BehaviourEnv(Section):
    """Environment variables that change what a run does (fault points, waits, JVM flags): every HARNESS_FAULT_*,
    JVM_ARGS and the other HARNESS_* switches; never paths, addresses, or anything secret."""

    variables: dict[str, str] = Field(default_factory=dict, description="name -> value; empty: none set")
    skipped: list[str] = Field(default_factory=list, description="names left out because the value held a password")


class Machine(Section):
    hostname: str
    os: str
    cpu_model: str
    cores: Optional[int] = None
    memory_gb: Optional[float] = None
    cpu_governor: Optional[CpuGovernor] = Field(None, description="None: not recorded (older files)")
    cgroup: Optional[CgroupLimits] = Field(None, description="None: not recorded (older files)")
    env: Optional[BehaviourEnv] = Field(None, description="None: not recorded (older files)")


class Services(Section):
    kafka: Literal["embedded", "external"]
    bootstrap: str
    postgres: Literal["embedded", "external"]
    postgres_dsn: str = Field(description="with the password redacted")


class Commit(Section):
    sha: Optional[str] = None
    dirty: Optional[bool] = Field(None, description="tracked files changed or untracked files present (ignored "
                                  "ones not counted); before these counts were recorded, untracked files did not count")
    modified: Optional[int] = Field(None, description="tracked files changed, staged or not")
    untracked: Optional[int] = Field(None, description="untracked files, not ignored ones")


class PostgresSettingValues(Section):
    """SHOW of each setting, with its unit as the server writes it; None where the server has no such setting."""

    synchronous_commit: Optional[str] = None
    fsync: Optional[str] = None
    wal_level: Optional[str] = None
    shared_buffers: Optional[str] = None
    work_mem: Optional[str] = None
    max_wal_size: Optional[str] = None
    checkpoint_timeout: Optional[str] = None
    autovacuum: Optional[str] = None
    track_commit_timestamp: Optional[str] = None


class PostgresSettings(Section):
    """The run's PostgreSQL server, read when the run started (its version is versions.postgresql_server)."""

    settings: PostgresSettingValues = PostgresSettingValues()
    error: Optional[str] = Field(None, description="why the server could not be read")


class KafkaBrokerConfig(Section):
    """The broker's configuration values (AdminClient.describe_configs); None: not set (null) or not listed."""

    log_flush_interval_messages: Optional[int] = Field(None, alias="log.flush.interval.messages")
    log_flush_interval_ms: Optional[int] = Field(None, alias="log.flush.interval.ms")
    num_network_threads: Optional[int] = Field(None, alias="num.network.threads")
    num_io_threads: Optional[int] = Field(None, alias="num.io.threads")
    log_segment_bytes: Optional[int] = Field(None, alias="log.segment.bytes")
    default_replication_factor: Optional[int] = Field(None, alias="default.replication.factor")
    min_insync_replicas: Optional[int] = Field(None, alias="min.insync.replicas")
    message_max_bytes: Optional[int] = Field(None, alias="message.max.bytes")
    group_initial_rebalance_delay_ms: Optional[int] = Field(None, alias="group.initial.rebalance.delay.ms")
    num_partitions: Optional[int] = Field(None, alias="num.partitions")


class KafkaSettings(Section):
    """The run's Kafka broker, read when the run started."""

    broker_id: Optional[int] = Field(None, description="the broker read: the lowest id in the cluster")
    brokers: Optional[int] = Field(None, description="brokers in the cluster")
    configs: KafkaBrokerConfig = KafkaBrokerConfig()
    error: Optional[str] = Field(None, description="why the broker could not be read")


class Versions(Section):
    """The software the run used and how its services were configured."""

    harness: str
    python: str
    java: Optional[str] = None
    kafka_jars: Optional[str] = None
    postgresql_server: Optional[str] = None
    confluent_kafka: Optional[str] = None
    librdkafka: Optional[str] = None
    pandas: Optional[str] = None
    commit: Commit = Commit()
    engines: dict[str, dict[str, JsonValue]] = Field(
        default_factory=dict, description="each engine's own versions (libraries, connectors), by engine name")
    postgresql_settings: Optional[PostgresSettings] = Field(None, description="None: not read (older files, or "
                                                            "no database given)")
    kafka_settings: Optional[KafkaSettings] = Field(None, description="None: not read (older files, or no broker "
                                                    "address given)")


# -- a load --------------------------------------------------------------------------------------------------
class GeneratorStats(Section):
    events_scheduled: int
    events_sent: int
    events_acked: int
    delivery_errors: int = 0
    refused_too_large: int = Field(0, description="of the delivery errors, records the broker refused for their "
                                   "size (over the topic's max.message.bytes): left out of ground truth")
    last_delivery_error: Optional[str] = None
    heartbeats_sent: int = 0
    heartbeats_acked: int = 0
    achieved_rate_eps: Optional[float] = None
    send_delay_ms: Percentiles = Field(description="hand-off to the producer minus the schedule's intended time")
    ack_latency_ms: Percentiles = Field(description="broker acknowledgement minus hand-off")
    first_handoff_ms: Optional[int] = Field(None, description="epoch ms")
    last_handoff_ms: Optional[int] = Field(None, description="epoch ms")
    last_ack_ms: Optional[int] = Field(None, description="epoch ms")
    interrupted: bool = False
    nice: Optional[int] = Field(None, description="the generator process's nice value: -10 where it could take "
                                "priority over the engine, 0 where not allowed (None: not recorded)")
    scheduler: Optional[str] = Field(None, description="the sending thread's real-time policy while it kept a "
                                     "paced schedule (\"SCHED_FIFO 10\" where allowed; None: ordinary, under its "
                                     "nice value)")
    unacknowledged: int = Field(0, description="events sent whose delivery report never came (neither an "
                                "acknowledgement nor an error) before the generator gave up waiting: ground truth "
                                "cannot place them, so the load is flagged")
    client_log: list[str] = Field(default_factory=list, description="the producer client's own warnings and errors "
                                  "(librdkafka's log at warning and above, and its error callback), the newest last")


class GroundTruthSummary(Section):
    windows_complete: int = Field(description="windows of every well-formed event")
    windows_on_time: int = Field(description="windows of the events a watermark engine keeps (late ones dropped)")
    events_by_kind: dict[str, int]


class LoadSeries(Section):
    """Per second of the schedule (keys are seconds since the time base)."""

    intended_per_second: dict[int, float] = Field(default_factory=dict)
    sent_per_second: dict[int, int] = Field(default_factory=dict)
    acked_per_second: dict[int, int] = Field(default_factory=dict)


class ShardFigures(Section):
    shard: str = Field(description="i/N")
    partitions: list[int]
    events_sent: int
    events_acked: int
    delivery_errors: int = 0
    heartbeats_sent: int = 0
    achieved_rate_eps: Optional[float] = None
    send_delay_ms: Percentiles = Field(description="hand-off minus intended time, this shard's events")


class ShardedLoad(Section):
    """A load sent by many producers (`harness run --load locust`): each one shard of it."""

    via: Literal["locust"] = "locust"
    workers: int
    shards: list[ShardFigures]
    skew_ms: Optional[float] = Field(None, description="how far one shard can have run behind another: the "
                                     "largest send delay of any shard")
    margin_ms: int = Field(description="the watermark delay minus the out-of-order delay: a skew beyond it turns "
                           "on-time events late in an engine whose watermark is the maximum over partitions (Spark)")
    near_margin: bool = Field(description="the skew reached 80% of the margin")


class LoadResult(Section):
    load_id: str
    engine: Optional[str] = Field(None, description="the engine that read this load; None for a load-only pass")
    repeat: int = 0
    topic: str
    partitions: int
    time_base_ms: Optional[int] = Field(None, description="epoch ms of the schedule's time 0 (a window boundary)")
    encoder: str
    generator: GeneratorStats
    shards: Optional[ShardedLoad] = Field(None, description="--load locust: each producer's figures and the skew "
                                          "between them; `generator` holds their union")
    ground_truth: GroundTruthSummary
    timeseries: LoadSeries = LoadSeries()


# -- an engine run -------------------------------------------------------------------------------------------
class Capabilities(Section):
    window_types: list[str]
    triggers: list[str]
    allowed_lateness: bool
    emits: Literal["final", "updates"]


class Correctness(Section):
    expected: int
    exact: int
    wrong: int
    missing: int
    extra: int


class WindowValues(Section):
    cnt: Optional[int] = None
    sum: Optional[int] = None
    min: Optional[int] = None
    max: Optional[int] = None


class BadWindow(Section):
    """A window of the final table that is not the promised one (the first few are kept)."""

    kind: Literal["wrong", "missing", "extra"]
    key: str
    window_start: int = Field(description="epoch ms")
    window_end: int = Field(description="epoch ms")
    expected: Optional[WindowValues] = Field(None, description="None for an extra window")
    got: Optional[WindowValues] = Field(None, description="None for a missing window")


class WindowSummary(Section):
    promised_answer: Answer
    correctness: Correctness
    duplicates: int = Field(description="emissions equal to an earlier emission of the same window (replays)")
    re_emissions: int = Field(description="emissions of a window after its first")
    emissions: int
    late_events_dropped: int
    on_time_events_missing: int
    latency_windows_measured: int
    latency_windows_excluded_warmup: int
    event_to_result_ms: Percentiles = Field(description="sink time of the window's final value minus the intended "
                                            "send time of its last contributing event (see event_to_result_from)")
    event_to_result_from: Literal["intended", "handoff"] = Field(
        "intended", description="what event_to_result_ms starts from: the schedule's intended send time (from "
        "schema 4 on), or the hand-off to the producer (older files)")
    event_to_result_handoff_ms: Optional[Percentiles] = Field(
        None, description="the same, from the hand-off to the producer: leaves out the generator's send delay")
    window_close_ms: Percentiles
    emitted_before_window_close: int
    bad_windows: list[BadWindow] = Field(default_factory=list, description="the first wrong, missing and extra "
                                         "windows (up to 10), in key and window order")
    first_emission_ms: Optional[Percentiles] = Field(None, description="only for engines that emit updates")


class KindCount(Section):
    """One record kind of the load (harness/metrics/bad_input.py)."""

    malformed: bool = Field(description="whether the rule (README \"What counts as malformed\") calls it malformed")
    sent: int = Field(description="records of this kind the generator handed over")
    in_topic: int = Field(description="of those, what the topic holds (the broker refuses records over its limit)")
    counted_as_malformed: Optional[int] = Field(description="of those, the distinct (partition, offset) pairs the "
                                                "engine wrote to harness_malformed: all of them for a malformed kind, "
                                                "none otherwise; None when a delivery report is missing")
    windows: int = Field(description="windows of the promised answer that contain a record of this kind")
    windows_not_exact: int = Field(description="of those, the windows the engine's final table got wrong or "
                                   "left out")


class FarFutureDamage(Section):
    """One far_future plant of the load (harness/metrics/bad_input.py: far_future_damage)."""

    at_ms: int = Field(description="when it was planted, ms after the load's time base")
    partitions: Literal["one", "all"]
    records: int = Field(description="records planted, each a day ahead")
    windows_after: int = Field(description="windows of the promised answer ending after it, until the next plant")
    windows_not_exact_after: int = Field(description="of those, the ones the engine's final table got wrong or "
                                         "left out")


class MalformedCount(Section):
    sent: int
    counted_by_engine: Optional[int] = Field(None, description="distinct (partition, offset) pairs the engine "
                                             "wrote to harness_malformed")
    rows_written: Optional[int] = Field(None, description="rows it wrote there: more than counted when a replay "
                                        "wrote a record's row again")
    by_kind: dict[str, KindCount] = Field(default_factory=dict, description="per malformed kind and load.bad_input "
                                          "kind in the load")
    not_malformed_counted: Optional[int] = Field(None, description="pairs the engine wrote as malformed that ground "
                                                 "truth holds as well-formed or does not know")
    far_future: list[FarFutureDamage] = Field(default_factory=list, description="per far_future plant: the windows "
                                              "after it the engine got wrong (the damage with max_clock_skew: none)")


class Throughput(Section):
    in_records_per_s: Optional[float] = Field(None, description="least-squares slope of records read, from time "
                                              "base + warm-up + 2 s to the last send; heartbeats and malformed "
                                              "records included")
    acked_records_per_s: Optional[float] = None
    in_vs_acked: Optional[float] = None
    out_rows_per_s: Optional[float] = None


class KeepingUp(Section):
    """Whether the engine kept up with the load (harness/metrics/keeping_up.py); when it did not, its latency
    measures its backlog."""

    kept_up: Optional[bool] = Field(description="None: too few samples to say")
    rule: Literal["continuous", "interval"]
    reason: str
    lag_slope_records_per_s: Optional[float] = None
    in_vs_acked: Optional[float] = None
    max_lag_after_run: Optional[int] = None


class ClockReading(Section):
    """The database's clock against the harness's: clock_timestamp() read between two local readings."""

    offset_ms: float = Field(description="database clock minus harness clock")
    uncertainty_ms: float = Field(description="half the round trip of the best of the readings")


class FaultRecord(Section):
    """One fault injected into the engine run (harness/run/faults.py); times are epoch ms on the harness's clock."""

    kind: str
    planned_at_ms: int = Field(description="time base + the fault's `at`")
    fired_at_ms: Optional[int] = Field(None, description="when it took effect (None: it never did, see error)")
    ended_at_ms: Optional[int] = None
    detail: Optional[str] = Field(None, description="what it did")
    error: Optional[str] = None
    skipped: Optional[str] = Field(None, description="why this engine run did not get the fault (never fired)")
    restart_policy: Optional[str] = None
    killed_pids: list[int] = Field(default_factory=list)
    registered_pids: list[int] = Field(default_factory=list, description="kill_job: the load's processes in the "
                                       "process registry once the restarted engine ran")
    restarted_at_ms: Optional[int] = Field(None, description="kill_job: when the harness asked the engine to start")
    running_again_ms: Optional[int] = Field(None, description="kill_job: when the engine read its topic again")
    downtime_ms: Optional[int] = Field(None, description="kill_job: from the kill to running again")
    first_result_after_ms: Optional[int] = Field(None, description="from the fault to the first sink row after it")
    recovery_ms: Optional[int] = Field(None, description="from the fault to recovered (docs/faults.md)")
    recovery_note: Optional[str] = Field(None, description="why recovery_ms is missing, or how it was bounded")
    duplicates_after: Optional[int] = Field(None, description="duplicates written between this fault and the next")
    malformed_lost: Optional[int] = Field(None, description="malformed records sent since the previous fault and "
                                          "before this one that the engine never wrote to harness_malformed: what "
                                          "this fault cost the malformed count (a driver that died before its "
                                          "listener wrote them, or a restart that skipped them); None when a "
                                          "delivery report is missing")
    malformed_rewritten: Optional[int] = Field(None, description="rows written to harness_malformed between this "
                                               "fault and the next for records already written before it (a "
                                               "replay; the distinct count is unchanged)")
    engine_survived: Optional[bool] = Field(None, description="restart_postgres/restart_broker: the engine was still "
                                            "running once the service served again")
    start_offsets: Optional[dict[int, int]] = Field(None, description="kill_job with latest/timestamp: per partition, "
                                                    "the offset the restart read from, as the harness resolved it; "
                                                    "the promised answer is built on it (docs/faults.md)")


class JvmProcess(Section):
    """One JVM the engine ran, as read from its command line once it was running."""

    pid: int
    options: list[str] = Field(default_factory=list, description="its -X/-XX/-javaagent options: heap, collector")


class CpuIdleBefore(Section):
    """How idle the CPUs were just before the engine started (harness/metrics/cpu_idle.py)."""

    enabled: bool = Field(description="false: the wait was turned off (HARNESS_IDLE_WAIT=0, as in the tests)")
    idle: Optional[float] = Field(None, description="share of CPU time idle over the last 2 s window")
    waited_s: float = 0.0
    reached: bool = Field(False, description="idle reached the 90% wanted within 15 s")


class Timing(Section):
    """How this run's sink times were read and put on the harness's clock."""

    sink_time: Literal["commit", "insert"] = Field(description="commit: a row's time is when readers could see "
                                                   "it; insert: its INSERT time (the database does not track "
                                                   "commit times)")
    sink_time_note: Optional[str] = None
    insert_to_commit_ms: Optional[Percentiles] = Field(None, description="per sink row, commit minus insert")
    clock_before: Optional[ClockReading] = None
    clock_after: Optional[ClockReading] = None
    offset_applied_ms: float = Field(0.0, description="subtracted from every database time (the mean of the "
                                     "readings before and after)")
    offset_bound_ms: float = Field(description="a run whose offset is less certain than this is refused")


class GeneratorCheck(Section):
    """Whether the generator kept to its schedule during this engine's load."""

    fell_behind: bool
    send_delay_p99_ms: Optional[float] = None
    threshold_ms: float = Field(description="max(floor, 1% of the event-to-result p50)")
    reason: str


class Lag(Section):
    max_records: Optional[int] = None
    final_records: Optional[int] = None


class CpuDuringLoad(Section):
    """From the time base until the answer settled (the last change to the sink): start-up excluded
    (Resources includes it)."""

    cpu_seconds: Optional[float] = None
    cpu_seconds_per_million_events: Optional[float] = None
    method: Literal["cgroup v1", "cgroup v2", "sampled"] = Field(
        "sampled", description="where the engine's CPU comes from: its own cgroup (exact, children included), or "
        "sampling its process tree every 0.5 s")
    until_ms_after_time_base: Optional[int] = Field(None, description="where the interval ends: the last sink change")
    sampled_cpu_seconds: Optional[float] = Field(None, description="the sampled figure, beside a cgroup's")
    broker_cpu_seconds: Optional[float] = Field(None, description="the embedded broker's CPU in the same interval")
    broker_cpu_seconds_per_million_events: Optional[float] = None
    postgres_cpu_seconds: Optional[float] = Field(None, description="the embedded PostgreSQL's CPU (server and its "
                                                  "backends, the harness's monitoring queries included)")
    postgres_cpu_seconds_per_million_events: Optional[float] = None


class Resources(Section):
    """The whole engine run, start-up included, over every process the engine owns."""

    cpu_seconds: float
    cpu_seconds_per_million_events: Optional[float] = None
    peak_rss_mb: float
    peak_hwm_sum_mb: float
    processes_seen: int
    cpu_method: Literal["cgroup v1", "cgroup v2", "sampled"] = "sampled"
    cgroup_cpu_seconds: Optional[float] = Field(None, description="the engine run's cgroup, start-up included")
    cgroup_memory_max_mb: Optional[float] = Field(None, description="the cgroup's maximum usage: includes page cache")
    cgroup_note: Optional[str] = Field(None, description="why no cgroup was used, where none was")


class Sample(Section):
    """One monitor sample, every 0.5 s while the engine runs."""

    t: float = Field(description="seconds since the monitor started")
    wall_ms: int = Field(description="epoch ms")
    records_in: Optional[int] = None
    lag: Optional[int] = None
    end_offsets: int
    acked_records: int
    rows_out: Optional[int] = Field(None, description="rows in the results log (None: the database was away)")
    cpu_s: float
    rss_mb: float
    cgroup_cpu_s: Optional[float] = None
    broker_cpu_s: Optional[float] = None
    postgres_cpu_s: Optional[float] = None
    machine_busy_s: Optional[float] = Field(None, description="CPU seconds the whole machine's CPUs have been busy "
                                            "since boot (/proc/stat; None where unreadable): a counter")


class BacklogDrain(Section):
    """Backlog mode (load.mode: backlog): the topic was filled before the engine started; definitions in
    harness/metrics/backlog.py."""

    fill_s: Optional[float] = Field(None, description="how long the generator took to fill the topic")
    fill_events_per_s: Optional[float] = None
    events: int
    records_in_topic: Optional[int] = Field(None, description="the topic's records when the engine started "
                                            "(events, malformed records and heartbeats)")
    drain_s: Optional[float] = Field(None, description="engine running to its lag within the sampling noise (None: "
                                     "it never drained)")
    answer_s: Optional[float] = Field(None, description="engine running to its final answer")
    events_per_s: Optional[float] = None
    cores: Optional[float] = Field(None, description="CPU seconds per second of the engine during the drain")
    events_per_s_per_core: Optional[float] = None
    cpu_seconds_per_million: Optional[float] = Field(None, description="the engine's CPU from running to its "
                                                     "answer, per million events")
    peak_rss_mb: Optional[float] = None
    cgroup_memory_max_mb: Optional[float] = None
    modelled_interval_ms: Optional[int] = Field(None, description="an interval job: the schedule its latency is "
                                                "modelled on")
    modelled_latency_ms: Optional[Percentiles] = Field(None, description="an interval job: each window's wait "
                                                       "for the next scheduled run after its end plus grace, plus "
                                                       "the measured answer time (modelled, not measured)")


class EngineResult(Section):
    """One engine on one load (one repeat)."""

    engine: str
    display_name: str
    role: Literal["floor", "option"] = "option"
    colour: Optional[str] = None
    repeat: int
    load_id: str
    description: str = ""
    settings: dict[str, JsonValue] = Field(default_factory=dict)
    changed_settings: dict[str, JsonValue] = Field(default_factory=dict, description="settings written explicitly "
                                                   "(engines.<name>, --engine-option) that differ from the defaults")
    tuned_settings: dict[str, JsonValue] = Field(default_factory=dict, description="settings the scenario's "
                                                 "`tuning` chose (low_latency: the engine's declared values)")
    latency_floor_ms: dict[str, float] = Field(default_factory=dict)
    capabilities: Capabilities
    status: EngineStatus
    reason: Optional[str] = Field(None, description="why the engine was skipped")
    error: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    promised_answer: Optional[Answer] = None
    start_to_running_s: Optional[float] = None
    engine_metrics: Optional[dict[str, JsonValue]] = Field(None, description="the engine's own counters, as it "
                                                           "reports them (their keys are the engine's)")
    cpu_during_load: Optional[CpuDuringLoad] = None
    windows: Optional[WindowSummary] = None
    malformed: Optional[MalformedCount] = None
    throughput: Optional[Throughput] = None
    lag: Optional[Lag] = None
    keeping_up: Optional[KeepingUp] = None
    generator: Optional[GeneratorCheck] = None
    timing: Optional[Timing] = None
    cpu_idle_before: Optional[CpuIdleBefore] = None
    faults: Optional[list[FaultRecord]] = Field(None, description="the scenario's faults as injected into this "
                                                "engine run (None: the scenario has none)")
    backlog: Optional[BacklogDrain] = Field(None, description="backlog mode: how the engine drained the filled "
                                            "topic (None: a live run)")
    jvms: Optional[list[JvmProcess]] = Field(None, description="the engine's JVMs once it was running, with their "
                                             "options (None: not read, as in results from before)")
    time_to_first_result_s: Optional[float] = None
    timeseries: list[Sample] = Field(default_factory=list)
    resources: Optional[Resources] = None


# -- capacity (harness capacity; definitions in harness/metrics/capacity.py) --------------------------------------
class CoresUsed(Section):
    """CPU seconds per second of a step (cores busy), per process group; None where not measured."""

    engine: Optional[float] = None
    broker: Optional[float] = Field(None, description="the embedded broker (None for an external one)")
    postgres: Optional[float] = Field(None, description="the embedded PostgreSQL (None for an external one)")
    generator: Optional[float] = None
    machine: Optional[float] = Field(None, description="every process on the machine, after the step's warm-up "
                                     "(/proc/stat): what the four above leave out is the harness and the rest")
    machine_cores: Optional[int] = Field(None, description="the CPUs /proc/stat counts")


class CapacityStep(Section):
    """One step of the staircase: a constant offered rate for the step's duration."""

    index: int
    rate: float = Field(description="offered events per second")
    phase: Literal["doubling", "halving", "bisection", "confirmation", "hold"] = Field(
        description="hold: the bracket's lower end offered again for a long step (long_step_ms) before a slowly "
                    "settling engine's search ends")
    time_base_ms: int
    duration_ms: int
    warmup_ms: int
    events_sent: int
    achieved_rate_eps: Optional[float] = None
    send_delay_ms: Percentiles = Field(description="hand-off behind the intended send time, events due after the "
                                       "warm-up")
    verdict: Literal["sustainable", "not sustainable", "machine-bound"]
    reason: str
    keeping_up: KeepingUp
    event_to_result_ms: Percentiles = Field(description="from the intended send time, over the windows wholly "
                                            "between the warm-up and the step's end")
    window_close_ms: Percentiles
    windows_expected: int
    windows_exact: int
    windows_without_final: int
    cpu_seconds_per_million: Optional[float] = Field(None, description="the engine's CPU over the step, per million "
                                                     "events sent")
    cpu_method: Literal["cgroup v1", "cgroup v2", "sampled"] = "sampled"
    cores: CoresUsed
    peak_rss_mb: Optional[float] = None
    drained_s: Optional[float] = Field(None, description="after a step that was not sustainable: how long the lag "
                                       "took to drain before the next step (None: not needed)")


class EngineCapacity(Section):
    """One engine's staircase."""

    engine: str
    display_name: str
    role: Literal["floor", "option"] = "option"
    settings: dict[str, JsonValue] = Field(default_factory=dict)
    status: Literal["running", "complete", "failed", "skipped", "interrupted"]
    reason: Optional[str] = Field(None, description="why it was skipped, failed or stopped early")
    error: Optional[str] = None
    start_to_running_s: Optional[float] = None
    latency_bound_metric: Literal["event_to_result", "window_close"]
    latency_bound_ms: float
    latency_bound_source: str
    long_step_ms: Optional[int] = Field(None, description="an engine whose batches settle slowly (Spark's "
                                        "micro-batches): the length of its steps after the doubling's first "
                                        "failure, SETTLE_FACTOR times --step (harness/metrics/capacity.py)")
    steps: list[CapacityStep] = Field(default_factory=list)
    sustainable_rate: Optional[float] = Field(None, description="the highest rate measured sustainable")
    bracket_high: Optional[float] = Field(None, description="the lowest rate above it that was not (None: none was "
                                          "found below the search's maximum)")
    bracket_narrow: bool = Field(False, description="the bracket is narrower than 10% of its lower end")
    bound_by: Optional[Literal["engine", "machine"]] = Field(None, description="what closed the bracket from "
                                                             "above: the engine (its step was not sustainable) or "
                                                             "the machine (the generator fell behind: the engine "
                                                             "may take more than this machine can offer)")


class ResultDocument(Section):
    """result.json."""

    schema_version: Literal[7] = SCHEMA_VERSION
    run_id: str
    status: RunStatus
    error: Optional[str] = None
    started_at: str
    finished_at: Optional[str] = None
    wall_seconds: Optional[float] = None
    scenario_file: str
    scenario: Scenario
    engines_requested: list[str] = Field(default_factory=list)
    repeat: int = 1
    mode: Literal["isolated", "capacity"] = Field("isolated", description="isolated: `harness run`, one load per engine run; capacity: `harness capacity`, a staircase of rates per engine")
    machine: Optional[Machine] = None
    services: Optional[Services] = None
    versions: Optional[Versions] = None
    loads: list[LoadResult] = Field(default_factory=list)
    engines: list[EngineResult] = Field(default_factory=list)
    capacity: list[EngineCapacity] = Field(default_factory=list, description="`harness capacity`: per engine, its "
                                          "staircase of steps and the sustainable rate found")

    def load(self, load_id: str) -> Optional[LoadResult]:
        return next((ld for ld in self.loads if ld.load_id == load_id), None)

    def dump(self) -> dict[str, object]:
        """The JSON form written to result.json (aliases such as 'p99.9' restored)."""
        return self.model_dump(mode="json", by_alias=True)


def json_schema() -> dict[str, object]:
    """The JSON Schema of result.json, as docs/result-schema.json holds it."""
    schema = ResultDocument.model_json_schema(by_alias=True, mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"stream-harness/result/v{SCHEMA_VERSION}", **schema}
