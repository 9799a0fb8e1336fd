"""The Flink engine: PyFlink, continuous mode, Flink SQL (pipelines/flink/job.py), on a local mini-cluster,
a local standalone session cluster the harness starts, or any running JobManager (remote)."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Literal


from pydantic import Field, model_validator

from harness import paths
from harness.durations import Millis
from harness.engines import fair
from harness.engines.cluster_job import ClusterJobEngine
from harness.engines.launcher import JobProcess, job_config
from harness.engines.protocol import Capabilities, EngineContext, EngineSettings, Plan, Position, Restart, Skip
from harness.errors import EXIT_FAILED, HarnessError
from harness.scenario import Scenario
from harness.stack import jvm, net, processes
from pipelines.flink.cluster import SessionCluster

# Flink's own defaults, which the settings' defaults keep: buffer timeout 100 ms, auto-watermark interval 200 ms,
# JDBC sink flush every 1 s or 100 rows, no checkpoints.
FLINK_DEFAULTS = {"buffer_timeout": 100, "watermark_interval": 200, "sink_flush_interval": 1000, "sink_batch_size": 100}


class FlinkSettings(EngineSettings):
    mode: Literal["mini", "session", "remote"] = Field(
        "mini", description="mini: local mini-cluster in the job's process; session: a local standalone cluster "
                            "started for the run; remote: submit to `jobmanager`")
    jobmanager: str | None = Field(None, description="host:port of a running JobManager's REST API (mode remote)")
    parallelism: int = Field(fair.SLOTS, ge=1, le=64, description="task slots (the harness's default for every "
                             "JVM engine: Spark's local[N] gets the same)")
    heap: str = Field(fair.HEAP, pattern=r"^[0-9]+[kmgt]?$", description="heap cap of the JVM that runs the job "
                      "(mini mode; the client JVM in session/remote mode); the same default as Spark's driver")
    warmup_batches: int = Field(fair.WARMUP_BATCHES, ge=0, le=200, description="batches of warm-up records (a "
                                "private topic `<topic>-warmup`, deleted after) the same query runs on, as a "
                                "bounded job into a discarding sink, before the real job starts (0: none)")
    checkpoint_interval: Millis | None = None
    checkpoint_mode: Literal["exactly_once", "at_least_once"] = "exactly_once"
    start_offsets: Literal["earliest", "latest", "committed", "timestamp"] = "earliest"
    start_timestamp: int | None = Field(None, ge=0, description="epoch ms, with start_offsets: timestamp")
    buffer_timeout: Millis = FLINK_DEFAULTS["buffer_timeout"]
    watermark_interval: Millis = FLINK_DEFAULTS["watermark_interval"]
    sink_flush_interval: Millis = FLINK_DEFAULTS["sink_flush_interval"]
    sink_batch_size: int = Field(FLINK_DEFAULTS["sink_batch_size"], ge=1, le=100_000)
    idle_timeout: Millis | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "FlinkSettings":
        if self.mode == "remote" and not self.jobmanager:
            raise ValueError("mode remote needs jobmanager: host:port of the JobManager's REST API")
        if self.jobmanager and self.mode != "remote":
            raise ValueError("jobmanager is only used with mode: remote")
        if (self.start_offsets == "timestamp") != (self.start_timestamp is not None):
            raise ValueError("start_timestamp goes with start_offsets: timestamp, and only with it")
        return self


class FlinkEngine(ClusterJobEngine[FlinkSettings]):
    name = "flink"
    display_name = "Apache Flink (continuous)"
    colour = "#1f77b4"  # blue, in every plot and report
    description = "Apache Flink (PyFlink SQL), continuous: Kafka SQL source, window TVFs, JDBC sink"
    capabilities = Capabilities(window_types=frozenset({"tumbling", "sliding", "session"}), triggers=("continuous",),
                                allowed_lateness=False, emits="final")
    settings_model = FlinkSettings
    # latest and timestamp start reading elsewhere; committed reads the group offsets the source commits (on each
    # checkpoint, or by the consumer's auto-commit without checkpoints).
    restart_policies = frozenset({"checkpoint", "earliest", "latest", "committed", "timestamp"})
    restart_from_offsets = True
    # The JDBC sink's flush timer bounds every result's latency from below (Flink's default: 1 s).
    low_latency = {"sink_flush_interval": "200ms"}

    def __init__(self) -> None:
        self.job = JobProcess("flink job")
        self.ctx: EngineContext | None = None
        self.cluster: SessionCluster | None = None
        self._rest: str | None = None
        self._job: str | None = None
        self._source_vertex: str | None = None
        self._warmup: Any = None
        self._killed_jobs: list[str | None] = []   # the jobs a kill_job ended, oldest first
        self._restored: list[dict[str, Any]] = []  # the checkpoints restarts restored, with their trigger time
        self._last_checkpoint: dict[str, Any] | None = None
        self._checkpoint_read_at = 0.0
        self._restarts_before = 0
        self._worker_kills: list[dict[str, Any]] = []   # kill_worker: when, and the checkpoint completed before

    # -- description -------------------------------------------------------------------------------------
    def plan(self, scenario: Scenario, settings: FlinkSettings) -> Plan | Skip:
        if scenario.query.allowed_lateness > 0:
            return Skip("Flink SQL window table-valued functions cannot keep a window open after the watermark "
                        "(no allowed lateness); run with query.allowed_lateness: 0")
        if settings.idle_timeout is not None:
            need = scenario.load.heartbeat_interval + scenario.load.out_of_order.max_delay
            if settings.idle_timeout <= need:
                return Skip(f"idle_timeout ({settings.idle_timeout} ms) must exceed the heartbeat interval plus the "
                            f"out-of-order delay ({need} ms), or an idle-marked partition drops on-time data")
        return Plan("on_time", self.capabilities, latency_floor_ms={
            "watermark_delay_ms": scenario.query.watermark_delay,
            "heartbeat_interval_ms": scenario.load.heartbeat_interval,
            "watermark_interval_ms": settings.watermark_interval,
            "buffer_timeout_ms": settings.buffer_timeout,
            "sink_flush_interval_ms": settings.sink_flush_interval})

    def versions(self) -> dict[str, str | None]:
        from importlib.metadata import version

        return {"apache_flink": version("apache-flink"),
                "flink_kafka_connector": jvm.jar_version("flink", "flink-sql-connector-kafka"),
                "flink_jdbc_connector": jvm.jar_version("flink", "flink-connector-jdbc-core"),
                "postgresql_jdbc": jvm.jar_version("flink", "postgresql")}

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, ctx: EngineContext[FlinkSettings]) -> None:
        self.ctx = ctx
        s: FlinkSettings = ctx.settings
        host, port = net.split_host_port(ctx.dsn.split("@", 1)[-1].split("/", 1)[0], 5432)
        user = ctx.dsn.split("://", 1)[1].split("@", 1)[0] if "@" in ctx.dsn else "harness"
        user, _, password = user.partition(":")
        db = ctx.dsn.rsplit("/", 1)[-1].split("?", 1)[0]
        jobmanager = s.jobmanager
        if s.mode == "session":
            jvm.find_java()
            self.cluster = SessionCluster(ctx.work_dir, slots=s.parallelism, owner={"run_id": ctx.run_id,
                                                                                   "load_id": ctx.load_id})
            self.cluster.start()
            jobmanager = self.cluster.address
        cfg = job_config(
            ctx, self.name,
            jdbc_url=f"jdbc:postgresql://{host}:{port}/{db}", jdbc_user=urllib.parse.unquote(user),
            jdbc_password=urllib.parse.unquote(password),
            idle_timeout_ms=s.idle_timeout, parallelism=s.parallelism, checkpoint_interval_ms=s.checkpoint_interval,
            checkpoint_mode=s.checkpoint_mode, checkpoint_dir=str(ctx.work_dir / "checkpoints"),
            start_offsets={"timestamp": s.start_timestamp} if s.start_offsets == "timestamp" else s.start_offsets,
            buffer_timeout_ms=s.buffer_timeout, watermark_interval_ms=s.watermark_interval,
            sink_flush_interval_ms=s.sink_flush_interval, sink_batch_size=s.sink_batch_size,
            jvm_args=f"{fair.heap_flags(s.heap)} {fair.COLLECTOR}", warmup_batches=s.warmup_batches,
            jars=[str(j) for j in jvm.jars("flink")],
            mode="mini" if s.mode == "mini" else "remote", jobmanager=jobmanager,
            rest_port=net.free_port() if s.mode == "mini" else None,
            metrics_file=str(ctx.work_dir / "job.json"))
        self.job.start([sys.executable, str(paths.pipelines_dir() / "flink" / "job.py")], ctx.work_dir, cfg,
                       cwd=ctx.work_dir, run_id=ctx.run_id, load_id=ctx.load_id)

    def restart_skip(self, policy: str, settings: Any) -> str | None:
        if settings.mode == "remote":
            return ("mode remote: the harness does not manage a remote cluster's JobManager and TaskManagers, so "
                    "kill_job would kill only the client; use mode: mini or session")
        if policy == "checkpoint" and not settings.checkpoint_interval:
            return "restart_policy checkpoint needs checkpoints: set checkpoint_interval (Flink takes none by default)"
        return super().restart_skip(policy, settings)

    # -- kill_worker (WorkerFaults) ----------------------------------------------------------------------
    def worker_skip(self, settings: Any) -> str | None:
        if settings.mode == "mini":
            return ("mode mini has no separate worker: the TaskManager runs inside the job's JVM (kill_job kills "
                    "it); use mode: session")
        if settings.mode == "remote":
            return "mode remote: the harness does not manage a remote cluster's TaskManagers"
        if not settings.checkpoint_interval:
            return ("without checkpoints Flink does not restart a failed job (its restart strategy is then none): "
                    "set checkpoint_interval")
        return None

    def _restarts(self) -> int:
        got = self._get(f"/jobs/{self._job}/metrics?get=numRestarts")
        return int(got[0]["value"]) if got else 0

    replaces_workers_itself = False     # a standalone session cluster starts no TaskManager: the harness does

    def kill_worker(self) -> list[int]:
        assert self.cluster is not None
        try:
            self._restarts_before = self._restarts()
        except (OSError, ValueError, KeyError, IndexError):
            self._restarts_before = 0
        self.before_kill()    # the checkpoint the restart will restore: its trigger time bounds the replay
        killed = self.cluster.kill_taskmanager()
        self._worker_kills.append({"killed_at_ms": time.time_ns() // 1_000_000, "pids": killed,
                                   "last_checkpoint": dict(self._last_checkpoint or {}) or None})
        return killed

    def replace_worker(self) -> str:
        assert self.cluster is not None
        self.cluster.start_taskmanager()
        return "a replacement TaskManager started (taskmanager.sh start)"

    def wait_recovered(self, timeout_s: float) -> None:
        """Until Flink has restarted the job (numRestarts grew) and every task runs again."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError("the Flink job's client exited after the TaskManager was killed; last lines of its "
                                   f"log:\n{processes.tail(self.job.log_file, 25)}", exit_code=EXIT_FAILED)
            try:
                job = self._get(f"/jobs/{self._job}")
                tasks = [v.get("status") for v in job.get("vertices", [])]
                if (self._restarts() > self._restarts_before and job.get("state") == "RUNNING" and tasks
                        and all(t == "RUNNING" for t in tasks)):
                    self._worker_kills[-1]["restored"] = self._restored_checkpoint()
                    return
            except (OSError, ValueError, KeyError, IndexError):
                pass
            time.sleep(0.25)
        raise HarnessError(f"the Flink job did not run again within {timeout_s:.0f} s of the replacement TaskManager",
                           exit_code=EXIT_FAILED)

    def _restored_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint Flink says it restored (its id, trigger and completion time), after a failover."""
        try:
            cp = self._get(f"/jobs/{self._job}/checkpoints")
            rid = ((cp.get("latest") or {}).get("restored") or {}).get("id")
            if rid is None:
                return None
            got = self._get(f"/jobs/{self._job}/checkpoints/details/{rid}")
            return {"id": rid, "trigger_ms": got.get("trigger_timestamp"), "completed_ms": got.get("latest_ack_timestamp")}
        except (OSError, ValueError, KeyError):
            return None

    def newest_checkpoint(self) -> Path | None:
        """The newest completed checkpoint of the job that was killed (a chk-N folder holding _metadata)."""
        if self.ctx is None or self._job is None:
            return None
        done = [d for d in (self.ctx.work_dir / "checkpoints" / self._job).glob("chk-*") if (d / "_metadata").exists()]
        return max(done, key=lambda d: int(d.name.split("-", 1)[1]), default=None)

    def before_kill(self) -> None:
        self._checkpoint_read_at = 0.0
        self._track_checkpoint()

    def restart(self, restart: Restart) -> None:
        assert self.ctx is not None
        changes: dict[str, Any] = {"warmup_batches": 0, "rest_port": net.free_port() if self.ctx.settings.mode == "mini"
                                   else None, "recover_from": None}
        if restart.policy == "checkpoint":
            chk = self.newest_checkpoint()
            if chk is None:
                raise HarnessError(f"restart_policy checkpoint: the killed job {self._job} left no completed checkpoint "
                                   f"under {self.ctx.work_dir / 'checkpoints'}", exit_code=EXIT_FAILED)
            changes["recover_from"] = str(chk)
            known = self._last_checkpoint or {}
            same = known.get("job_id") == self._job and f"chk-{known.get('id')}" == chk.name
            self._restored.append({"path": str(chk), "id": int(chk.name.split("-", 1)[1]),
                                   "trigger_ms": known.get("trigger_ms") if same else None,
                                   "completed_ms": known.get("completed_ms") if same else None})
        elif restart.offsets is not None:   # latest/timestamp, resolved by the harness: the promised answer's records
            changes["start_offsets"] = {"offsets": {str(p): o for p, o in restart.offsets.items()}}
        else:
            changes["start_offsets"] = ({"timestamp": restart.timestamp_ms} if restart.policy == "timestamp"
                                        else restart.policy)
        if self.ctx.settings.mode == "session":
            changes["jobmanager"] = self._new_session_cluster()
        (self.ctx.work_dir / "job.json").unlink(missing_ok=True)
        self._killed_jobs.append(self._job)
        self._rest = self._job = self._source_vertex = None
        self.job.relaunch(changes)

    def _new_session_cluster(self) -> str:
        """After kill_job in session mode (the JobManager and TaskManager were killed with the client): a new
        cluster, as its cluster manager would bring back, for the job to be submitted to again; its address."""
        assert self.ctx is not None
        if self.cluster is not None:
            self.cluster.stop()     # nothing runs any more: this drops the killed JVMs' registry entries
        self.cluster = SessionCluster(self.ctx.work_dir, slots=self.ctx.settings.parallelism,
                                      owner={"run_id": self.ctx.run_id, "load_id": self.ctx.load_id})
        self.cluster.start()
        return self.cluster.address

    def _get(self, path: str) -> Any:
        assert self._rest is not None
        with urllib.request.urlopen(f"{self._rest}{path}", timeout=5) as r:
            return json.load(r)

    def wait_running(self, timeout_s: float) -> None:
        assert self.ctx is not None
        deadline = time.monotonic() + timeout_s
        info = self.ctx.work_dir / "job.json"
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"the Flink job exited while starting; last lines of its log:\n"
                                   f"{processes.tail(self.ctx.work_dir / 'job.log', 25)}", exit_code=EXIT_FAILED)
            if self._job is None and info.exists():
                meta = json.loads(info.read_text())
                self._rest, self._job = meta["rest"], meta["job_id"]
                self._warmup = meta.get("warmup")
            if self._job is not None:
                try:
                    job = self._get(f"/jobs/{self._job}")
                    tasks = [v.get("status") for v in job.get("vertices", [])]
                    if job.get("state") == "RUNNING" and tasks and all(t == "RUNNING" for t in tasks):
                        self._source_vertex = job["vertices"][0]["id"]
                        return
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.25)
        raise HarnessError(f"the Flink job was not running after {timeout_s:.0f} s; see {self.ctx.work_dir}",
                           exit_code=EXIT_FAILED)

    # -- what the engine reports ----------------------------------------------------------------------------
    def _source_metrics(self) -> dict[str, float]:
        """The source vertex's metrics, summed over subtasks (each Kafka partition lives on one subtask)."""
        if self._job is None or self._source_vertex is None:
            return {}
        base = f"/jobs/{self._job}/vertices/{self._source_vertex}/subtasks/metrics"
        ids = [m["id"] for m in self._get(base)]
        wanted = [i for i in ids if i.endswith(".currentOffset") or re.search(r"Source.*\.numRecordsOut$", i)]
        out: dict[str, float] = {}
        for chunk in range(0, len(wanted), 20):
            q = ",".join(wanted[chunk:chunk + 20])
            for m in self._get(f"{base}?get={urllib.parse.quote(q, safe=',')}&agg=sum"):
                out[m["id"]] = float(m.get("sum", 0))
        return out

    def _track_checkpoint(self) -> None:
        """The newest completed checkpoint as the REST API reports it, read as the run goes: after a kill the
        job's REST API is gone, and a restore needs the trigger time of the checkpoint it restored."""
        if self._job is None or time.monotonic() < self._checkpoint_read_at + 1.0:
            return
        self._checkpoint_read_at = time.monotonic()
        try:
            done = (self._get(f"/jobs/{self._job}/checkpoints").get("latest") or {}).get("completed")
        except (OSError, ValueError):
            return
        if done:
            self._last_checkpoint = {"job_id": self._job, "id": done.get("id"),
                                     "trigger_ms": done.get("trigger_timestamp"),
                                     "completed_ms": done.get("latest_ack_timestamp"),
                                     "path": done.get("external_path")}

    def position(self) -> Position | None:
        self._track_checkpoint()
        try:
            metrics = self._source_metrics()
        except (OSError, ValueError, KeyError):
            return None
        if not metrics:
            return None
        offsets: dict[int, int] = {}
        records = None
        for mid, v in metrics.items():
            m = re.search(r"partition\.(\d+)\.currentOffset$", mid)
            if m:
                # currentOffset is the last record read; the next one to read is one past it (-1: none yet).
                offsets[int(m.group(1))] = int(v) + 1 if v >= 0 else 0
            elif mid.endswith("numRecordsOut"):
                records = int(v)
        return Position(offsets, records)

    def engine_metrics(self) -> dict[str, Any]:
        if self._job is None:
            return {}
        job = self._get(f"/jobs/{self._job}")
        out: dict[str, Any] = {"job_id": self._job, "state": job.get("state"), "warmup": self._warmup,
                               **({"killed_jobs": self._killed_jobs, "restored_checkpoints": self._restored}
                                  if self._killed_jobs else {}),
                               **({"worker_kills": self._worker_kills} if self._worker_kills else {}), "vertices": [
            {"name": v["name"][:120], "parallelism": v.get("parallelism"),
             "read_records": v.get("metrics", {}).get("read-records"),
             "write_records": v.get("metrics", {}).get("write-records")} for v in job.get("vertices", [])]}
        try:   # Flink's own restarts of the job (its restart strategy), not the harness's kill_job restarts
            got = self._get(f"/jobs/{self._job}/metrics?get=numRestarts")
            out["restarts"] = int(got[0]["value"]) if got else None
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            pass
        try:
            cp = self._get(f"/jobs/{self._job}/checkpoints")
            out["checkpoints"] = {"counts": cp.get("counts"), "summary": {
                k: cp.get("summary", {}).get(k) for k in ("end_to_end_duration", "state_size", "checkpointed_size")}}
        except (OSError, ValueError):
            pass
        try:
            bp = [self._get(f"/jobs/{self._job}/vertices/{v['id']}/backpressure") for v in job.get("vertices", [])]
            out["backpressure"] = [b.get("backpressureLevel") or b.get("backpressure-level") for b in bp]
        except (OSError, ValueError):
            pass
        return out


ENGINE = FlinkEngine
