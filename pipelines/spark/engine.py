"""The Spark engine: PySpark Structured Streaming, micro-batch (pipelines/spark/job.py), on local[N], on a local
standalone cluster the harness starts (`master: standalone`), or on any master URL (spark://...)."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from harness import paths
from harness.durations import Millis
from harness.engines import fair
from harness.engines.cluster_job import ClusterJobEngine
from harness.engines.launcher import JobProcess, job_config
from harness.engines.protocol import (Capabilities, EngineContext, EngineRefused, EngineSettings, Plan,
                                      Position, Restart, Skip)
from harness.errors import EXIT_FAILED, HarnessError
from harness.scenario import Scenario
from harness.stack import jvm, processes

# Spark's own defaults for what the settings change (reported in engine_metrics, since changed settings are
# relative to this engine's defaults: a run with default settings changes nothing).
SPARK_DEFAULTS = {"master": "local[*]", "trigger": "processing_time", "trigger_interval": "0 (next batch at once)",
                  "output_mode": "append", "shuffle_partitions": 200, "driver_memory": "1g",
                  "spark.ui.enabled": True, "spark.sql.session.timeZone": "the JVM's time zone",
                  "spark.sql.variant.allowDuplicateKeys": False,
                  "spark.sql.streaming.statefulOperator.allowMultiple": True}

# The longest micro-batch seen here with some room: see late_margin_ms. Measured at the fair defaults (local[2],
# 1g heap, serial collector, warm-up, tuning low_latency: 200 ms trigger) with batches running back to back:
# 1.46-1.49 s over the quick scenario's 5 repeats, 1.57 s on steady (2,000 events/s); 1.7 s before, with other
# engines running beside it.
BATCH_ALLOWANCE_MS = 2000
BACKLOG_MAX_OFFSETS = 100_000   # backlog mode: records per micro-batch unless max_offsets_per_trigger says


# local, local[N], local[*] and local[N,F] (F: task retries): the masters that run in the driver's JVM.
LOCAL_MASTER = re.compile(r"local(\[(\*|[0-9]+)(,[0-9]+)?\])?")


class SparkSettings(EngineSettings):
    master: str = Field(f"local[{fair.SLOTS}]", description="local[N] (the default N is the harness's task "
                                                "slots for every JVM engine, Flink's parallelism too), `standalone` (a local Master and Worker started for "
                                                "the run), or a master URL such as spark://host:7077")
    trigger: Literal["processing_time", "real_time", "continuous"] = Field(
        "processing_time", description="processing_time: micro-batches every trigger_interval; real_time "
                                       "(Spark 4.1+, output_mode update) and continuous are Spark's low-latency "
                                       "modes: the run asks Spark, and records a skip with Spark's own error "
                                       "when it refuses the query")
    trigger_interval: Millis = Field(0, description="micro-batch interval; 0, Spark's default, runs micro-batches "
                                                   "back to back")
    output_mode: Literal["append", "update"] = Field(
        "append", description="append: each window once, after the watermark passes its end; update: every "
                              "batch emits the windows it changed (partial values)")
    shuffle_partitions: int = Field(2, ge=1, le=10_000, description="spark.sql.shuffle.partitions (Spark: 200)")
    driver_memory: str = Field(fair.HEAP, pattern=r"^[0-9]+[kmgt]?$", description="the driver's heap cap: in "
                               "local mode the JVM that runs the work (the same default as Flink's heap)")
    executor_memory: str = Field("1g", pattern=r"^[0-9]+[kmgt]?$", description="standalone/remote executors")
    worker_cores: int = Field(2, ge=1, le=256, description="cores of the Worker started with master: standalone")
    warmup_batches: int = Field(fair.WARMUP_BATCHES, ge=0, le=200, description="micro-batches of the same query "
                                "on warm-up records (a private topic `<topic>-warmup`, deleted after; local files if it cannot "
                                "be made) before the real query starts, so the JVM is warm when the load begins")
    query_restarts: int = Field(0, ge=0, le=100, description="restart a failed query from its checkpoint up to "
                                "N times (Spark runs the batch it had not committed again: a replay)")
    sink: Literal["append", "idempotent"] = Field(
        "append", description="append: every batch's rows are appended (at least once: a replayed batch writes "
        "again); idempotent: the batch id commits with the rows in one transaction and a replayed batch writes "
        "nothing (Spark's documented foreachBatch pattern)")
    max_offsets_per_trigger: Optional[int] = Field(None, ge=1, description="Spark's maxOffsetsPerTrigger: the "
                                                   "most records a micro-batch reads (None: all there are; in "
                                                   f"backlog mode {BACKLOG_MAX_OFFSETS:,}, so the first batch is "
                                                   "not the whole backlog)")
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    spark_conf: dict[str, str] = Field({}, description="extra Spark configuration (key: value)")

    @field_validator("master")
    @classmethod
    def _master(cls, v: str) -> str:
        if v == "standalone" or LOCAL_MASTER.fullmatch(v) or re.match(
                r"^(spark|yarn|k8s|mesos)(://.+)?$", v):
            return v
        raise ValueError(f"expected local[N], standalone or a master URL (spark://host:port), got {v!r}")

    @model_validator(mode="after")
    def _consistent(self) -> "SparkSettings":
        if self.trigger == "processing_time" and self.trigger_interval < 0:
            raise ValueError("trigger_interval must be >= 0")
        if self.trigger in ("real_time", "continuous") and self.trigger_interval <= 0:
            raise ValueError(f"trigger {self.trigger} needs a positive trigger_interval (a checkpoint interval)")
        return self


def local_cores(master: str) -> int | None:
    """Cores of a local[N] master (local: 1, local[*]: this machine's), None for a cluster master."""
    m = LOCAL_MASTER.fullmatch(master)
    if m is None:
        return None
    if m.group(2) is None:  # plain `local`
        return 1
    return (os.cpu_count() or 1) if m.group(2) == "*" else int(m.group(2))


def pyspark_version() -> str:
    try:
        from importlib.metadata import version

        return version("pyspark")
    except Exception:
        return "unknown"


class SparkEngine(ClusterJobEngine[SparkSettings]):
    name = "spark"
    display_name = "Spark Structured Streaming (micro-batch)"
    colour = "#ff7f0e"  # orange, in every plot and report
    description = "Apache Spark Structured Streaming (PySpark), micro-batch: Kafka source, window/session_window, " \
                  "foreachBatch to PostgreSQL"
    # emits: "final" describes the default output mode (append). With output_mode: update every batch emits
    # partial rows; the plan then says emits="updates" so the harness's measurement (first-emission latency, no
    # early-emission check) matches what was run.
    capabilities = Capabilities(window_types=frozenset({"tumbling", "sliding", "session"}),
                                triggers=("processing_time", "real_time"), allowed_lateness=False,
                                emits="final")
    settings_model = SparkSettings
    # The trigger interval bounds every result's latency from below; Spark's default (0) runs batches back to
    # back, which on two cores takes CPU from the broker and the generator. 200 ms matches Flink's flush timer.
    low_latency = {"trigger_interval": "200ms"}
    # checkpoint: the same checkpoint location (offsets, commits and window state); earliest and latest: a new one.
    # latest and timestamp start from the offsets the harness resolves (startingOffsets as JSON)
    restart_policies = frozenset({"checkpoint", "earliest", "latest", "timestamp"})
    restart_refusals = {
        "committed": "Spark's Kafka source commits no consumer-group offsets: its offsets live in its checkpoint"}

    def __init__(self) -> None:
        self.job = JobProcess("spark job")
        self.ctx: EngineContext | None = None
        self.cluster: Any = None
        self._checkpoint: Path | None = None   # where the running query keeps its checkpoint
        self._worker_kills: list[dict[str, Any]] = []   # kill_worker: what was killed and how the query went on
        self._worker_kill: dict[str, Any] = {}

    def restart_skip(self, policy: str, settings: Any) -> str | None:
        if local_cores(settings.master) is None and settings.master != "standalone":
            return (f"master {settings.master}: a cluster the harness does not manage, whose executors would need "
                    "the checkpoint location on storage they share with the driver; kill_job is built for "
                    "local[N] and standalone")
        return super().restart_skip(policy, settings)

    def kill_job_pids(self) -> list[int]:
        """kill_job kills the driver (its Python process and JVM). A standalone Master and Worker stay, as a
        cluster's would: the Master ends the dead application's executors and gives the restarted driver new ones."""
        return self.job.pids()

    def worker_skip(self, settings: Any) -> str | None:
        """kill_worker (WorkerFaults): the executor of the standalone cluster the harness starts."""
        if local_cores(settings.master) is not None:
            return (f"master {settings.master}: the executors run inside the driver's JVM, with no separate worker "
                    "(kill_job kills it); use master: standalone")
        if settings.master != "standalone":
            return f"master {settings.master}: the harness does not manage a remote cluster's executors"
        return None

    def kill_worker(self) -> list[int]:
        assert self.cluster is not None
        st = self._status()
        self._worker_kill = {"killed_at_ms": time.time_ns() // 1_000_000, "batches_before": st.get("batches", 0),
                             "executors_before": list(st.get("executors") or [])}
        killed = self.cluster.kill_executors()
        self._worker_kill["pids"] = killed
        self._worker_kills.append(self._worker_kill)
        return killed

    replaces_workers_itself = True      # kill_worker: restart_after does not apply

    def replace_worker(self) -> str:
        # a standalone Master replaces a lost executor itself: the harness starts nothing
        return "no replacement started by the harness: the standalone Master asks the Worker for a new executor"

    def wait_recovered(self, timeout_s: float) -> None:
        """Until a new executor runs and the query has completed a batch since the kill."""
        assert self.cluster is not None
        kill = self._worker_kill
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError("the Spark job exited after its executor was killed; last lines of its log:\n"
                                   f"{processes.tail(self.job.log_file, 25)}", exit_code=EXIT_FAILED)
            fresh = [p for p in self.cluster.executor_pids() if p not in kill["pids"]]
            st = self._status()
            if fresh and st.get("batches", 0) > kill["batches_before"]:
                kill.update(new_executor_pids=fresh, recovered_at_ms=time.time_ns() // 1_000_000,
                            batches_after=st.get("batches"))
                return
            time.sleep(0.25)
        raise HarnessError(f"the Spark query did not complete a batch on a new executor within {timeout_s:.0f} s of "
                           "the kill", exit_code=EXIT_FAILED)

    restart_from_offsets = True

    def restart(self, restart: Restart) -> None:
        assert self.ctx is not None
        changes: dict[str, Any] = {"warmup_batches": 0}
        if restart.policy != "checkpoint":
            self._checkpoint = self.ctx.work_dir / f"checkpoint-restart-{restart.number}"
            # latest: the offsets the harness resolved at the restart, as Spark's JSON form of startingOffsets
            start = (json.dumps({self.ctx.topic: {str(p): o for p, o in restart.offsets.items()}})
                     if restart.offsets is not None else restart.policy)
            changes.update(checkpoint_dir=str(self._checkpoint), starting_offsets=start)
        (self.ctx.work_dir / "status.json").unlink(missing_ok=True)
        self.job.relaunch(changes)

    # -- description -------------------------------------------------------------------------------------
    def plan(self, scenario: Scenario, settings: SparkSettings) -> Plan | Skip:
        """What Spark has no setting for is a Skip. Modes Spark may refuse (real-time, continuous, session windows
        in update mode) are not judged here: the run starts the query and Spark says (wait_running)."""
        if scenario.query.allowed_lateness > 0:
            return Skip("Spark Structured Streaming has no allowed lateness: a window's state is dropped (and, in "
                        "append mode, emitted) as soon as the watermark passes its end; the watermark delay is the "
                        "only lateness knob. Run with query.allowed_lateness: 0")
        if settings.sink == "idempotent" and settings.trigger != "processing_time":
            return Skip(f"sink: idempotent needs foreachBatch's batch id, which trigger {settings.trigger} does not "
                        "give (it writes through a ForeachWriter); use trigger: processing_time")
        if settings.trigger == "real_time":
            cores = local_cores(settings.master)
            need = scenario.topic.partitions + settings.shuffle_partitions
            if cores is not None and cores < need:
                # Spark's docs: every Kafka partition and every shuffle partition holds a core for the whole
                # real-time batch; with fewer the query waits for cores instead of failing.
                return Skip(f"real-time mode needs a core for each Kafka partition and each shuffle partition "
                            f"({scenario.topic.partitions} + {settings.shuffle_partitions} = {need}); master "
                            f"{settings.master} has {cores}. Use topic.partitions: 1 with shuffle_partitions: 1, or "
                            f"more cores")
        caps = self.capabilities
        if settings.output_mode == "update":
            caps = Capabilities(caps.window_types, caps.triggers, allowed_lateness=False, emits="updates")
        # The late margin is one batch cycle, max(trigger interval, batch duration): the watermark a batch judges
        # rows by was computed at the end of the batch before (NOTES.md, Watermark). Batches took up to 1.7 s on
        # 2 cores while other engines ran, so the cycle is taken as at least BATCH_ALLOWANCE_MS.
        return Plan("on_time", caps, max_trigger_interval_ms=int(settings.trigger_interval),
                    late_margin_ms=max(int(settings.trigger_interval), BATCH_ALLOWANCE_MS),
                    latency_floor_ms={"watermark_delay_ms": scenario.query.watermark_delay,
                                      "heartbeat_interval_ms": scenario.load.heartbeat_interval,
                                      "trigger_interval_ms": int(settings.trigger_interval)},
                    # a processing-time batch takes what arrived during the one before, so a load too high lengthens
                    # them a little each time: measured here, 20 s at 80,000 events/s did not show it, 60 s did
                    settles_slowly=settings.trigger == "processing_time")

    def versions(self) -> dict[str, str | None]:
        return {"pyspark": pyspark_version(),
                "spark_kafka_connector": jvm.jar_version("spark", "spark-sql-kafka-0-10_2.13"),
                "postgresql_jdbc": jvm.jar_version("spark", "postgresql")}

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, ctx: EngineContext[SparkSettings]) -> None:
        self.ctx = ctx
        s: SparkSettings = ctx.settings
        jvm.find_java()
        master = s.master
        if master == "standalone":
            from pipelines.spark.cluster import StandaloneCluster

            self.cluster = StandaloneCluster(ctx.work_dir, cores=s.worker_cores, memory=s.executor_memory,
                                             owner={"run_id": ctx.run_id, "load_id": ctx.load_id})
            self.cluster.start()
            master = self.cluster.url
        cfg = job_config(
            ctx, self.name,
            trigger={"kind": s.trigger, "interval_ms": int(s.trigger_interval)},
            output_mode=s.output_mode, master=master, shuffle_partitions=s.shuffle_partitions,
            driver_memory=s.driver_memory, executor_memory=s.executor_memory,
            cores_max=s.worker_cores if s.master == "standalone" else None,
            collector=fair.COLLECTOR, log_level=s.log_level, warmup_batches=s.warmup_batches, spark_conf=dict(s.spark_conf),
            query_restarts=s.query_restarts, sink_mode=s.sink, kafka_options=self._kafka_options(ctx),
            jars=[str(j) for j in jvm.jars("spark")],
            work_dir=str(ctx.work_dir), checkpoint_dir=str(ctx.work_dir / "checkpoint"))
        self._checkpoint = ctx.work_dir / "checkpoint"
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
               "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": os.pathsep.join(
                   p for p in (str(paths.PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)}
        self.job.start([sys.executable, str(paths.pipelines_dir() / "spark" / "job.py")], ctx.work_dir, cfg,
                       cwd=ctx.work_dir, env=env, run_id=ctx.run_id, load_id=ctx.load_id)

    @staticmethod
    def _kafka_options(ctx: EngineContext[SparkSettings]) -> dict[str, str]:
        limit = ctx.settings.max_offsets_per_trigger
        if limit is None and ctx.scenario.load.mode == "backlog":
            limit = BACKLOG_MAX_OFFSETS
        return {"maxOffsetsPerTrigger": str(limit)} if limit is not None else {}

    def wait_running(self, timeout_s: float) -> None:
        """Returns once the query has completed its first micro-batch (it then reads the topic)."""
        assert self.ctx is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self._status()
            if st.get("refused"):
                raise EngineRefused(f"Spark {pyspark_version()} refused the query ({self._mode()}); Spark says: "
                                    f"{st['refused']}")
            if st.get("error"):
                raise HarnessError(f"the Spark query failed to start: {st['error']}", exit_code=EXIT_FAILED)
            if not self.alive():
                raise HarnessError(f"the Spark job exited while starting; last lines of its log:\n"
                                   f"{processes.tail(self.ctx.work_dir / 'job.log', 25)}", exit_code=EXIT_FAILED)
            if st.get("batches", 0) >= 1:
                return
            time.sleep(0.25)
        raise HarnessError(f"the Spark query had not completed a batch after {timeout_s:.0f} s; see "
                           f"{self.ctx.work_dir / 'job.log'}", exit_code=EXIT_FAILED)

    def _mode(self) -> str:
        assert self.ctx is not None
        s: SparkSettings = self.ctx.settings
        return (f"trigger {s.trigger}, output mode {s.output_mode}, {self.ctx.scenario.query.window.type} "
                f"windows")

    # -- what the engine reports ----------------------------------------------------------------------------
    def _status(self) -> dict[str, Any]:
        if self.ctx is None:
            return {}
        try:
            return json.loads((self.ctx.work_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def _offset_log(self) -> tuple[int, dict[int, int]] | None:
        """The newest entry of the query's offset log (checkpoint/offsets/N): the end offsets of the batch
        Spark has planned and is reading now. It is written (atomically) when a batch starts, one batch
        duration before the batch's progress report."""
        if self.ctx is None or self._checkpoint is None:
            return None
        d = self._checkpoint / "offsets"
        try:
            ids = [int(f.name) for f in d.iterdir() if f.name.isdigit()]
        except OSError:
            return None
        for batch in sorted(ids, reverse=True)[:2]:
            try:
                for line in (d / str(batch)).read_text().splitlines()[1:]:
                    doc = json.loads(line)
                    if isinstance(doc, dict) and self.ctx.topic in doc:
                        return batch, {int(p): int(o) for p, o in doc[self.ctx.topic].items()}
            except (OSError, ValueError):
                continue
        return None

    def position(self) -> Position | None:
        """Per partition the next offset the source reads: the end offsets of the batch in progress (from the
        offset log) or, before the first one, of the last completed batch. records_in: Spark's numInputRows
        summed over completed batches, plus the records of the batch in progress (its offset range)."""
        st = self._status()
        done = {int(p): int(o) for p, o in (st.get("offsets") or {}).items()}
        records = st.get("records_in")
        wal = self._offset_log()
        if wal is not None and (st.get("batch_id") is None or wal[0] > int(st["batch_id"])):
            offsets = wal[1]
            records = (records or 0) + sum(max(0, o - done.get(p, 0)) for p, o in offsets.items())
            return Position(offsets, records)
        if not st.get("batches"):
            return None
        return Position(done, records)

    def engine_metrics(self) -> dict[str, Any]:
        st = self._status()
        if not st:
            return {}
        keep = ("batches", "records_in", "records_by_offsets", "warmup", "batch_ms", "duration_ms", "input_rows_per_second",
                "processed_rows_per_second", "state_operators", "max_state_rows", "watermark", "watermark_ms",
                "num_rows_dropped_by_watermark", "sink", "offsets", "latest_offsets", "master", "executors",
                "restarts", "error")
        out = {k: st.get(k) for k in keep if k in st}
        if self._worker_kills:
            out["worker_kills"] = self._worker_kills
        out["notes"] = {
            "num_rows_dropped_by_watermark": "Spark's own late-row counter: rows dropped by the stateful "
                                             "operator, counted after the window expansion and partial "
                                             "aggregation, so it counts aggregated rows, not events",
            "batch_ms": "triggerExecution duration of every micro-batch",
            "offsets": "endOffset of the last completed batch per partition (the next offset to read)",
        }
        if self.ctx is not None:
            s = self.ctx.settings
            out["changed_from_spark_defaults"] = {
                k: {"spark_default": SPARK_DEFAULTS[k], "this_run": v} for k, v in {
                    "master": s.master, "trigger": s.trigger, "trigger_interval": f"{s.trigger_interval} ms" if s.trigger_interval else SPARK_DEFAULTS["trigger_interval"],
                    "output_mode": s.output_mode, "shuffle_partitions": s.shuffle_partitions,
                    "driver_memory": s.driver_memory, "spark.ui.enabled": False,
                    "spark.sql.session.timeZone": "UTC", "spark.sql.variant.allowDuplicateKeys": True,
                    "spark.sql.streaming.statefulOperator.allowMultiple": False,
                }.items() if str(SPARK_DEFAULTS[k]) != str(v)}
        return out


ENGINE = SparkEngine
