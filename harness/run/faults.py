"""Faults injected into an engine run on the scenario's schedule (`faults:`), each recorded with when it was meant
to fire, when it fired and ended, and what it did, so the run's figures can be read against it.

- `stall_sink`, backpressure from the database: a thread takes `LOCK TABLE ... IN SHARE MODE` on the sink
  tables at time base + `at` and holds it for `duration`. Every engine's INSERTs wait, while the harness's own
  reads (the monitor, the completion check) go on.
- `restart_postgres` / `restart_broker`: the embedded PostgreSQL or Kafka broker stopped and started again after
  `down_for`; the monitor and the jobs this project wrote reconnect, and the generator counts what it could not
  deliver.
- `kill_worker`, a lost machine: one worker of the engine's cluster gets SIGKILL while the job goes on; after
  `restart_after` the engine starts a replacement where no cluster manager would (WorkerFaults), and the fault
  ends when the job runs again after a restart of its own.
- `kill_job`, a crash: every process of the engine (and their children) gets SIGKILL at once. After
  `restart_after` the engine is asked to start again under the fault's restart policy (Restartable), and the
  fault ends when it reads its topic again. An engine without that policy skips the fault, with its reason.

The run is judged like any other; the settle interval starts only once every fault has ended.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import psycopg

from harness.engines.protocol import Engine, Restart
from harness.results.document import FaultRecord
from harness.scenario import Fault, KillJob, KillWorker, RestartBroker, RestartPostgres, StallSink
from harness.stack import processes
from harness.stack.embedded import EmbeddedStack

SINK_TABLES = ("harness_results_log", "harness_malformed")
# Policies that skip records on purpose: the harness resolves where the restart reads from and gives the engine
# those offsets, and the run is judged against the answer they promise (harness/metrics/promised.py).
SKIPPING_POLICIES = ("latest", "timestamp")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def applies(fault: Fault, engine: str) -> bool:
    return fault.engines is None or engine in fault.engines


def skip_reason(fault: Fault, engine: Engine[Any], settings: Any) -> str | None:
    """Why this engine run cannot get the fault (recorded, never a silent substitute); None when it can."""
    if isinstance(fault, KillJob):
        if not hasattr(engine, "restart") or not hasattr(engine, "restart_skip"):
            return f"{engine.name} cannot be restarted by the harness (no restart in its engine class)"
        return engine.restart_skip(fault.restart_policy, settings)  # type: ignore[attr-defined]
    if isinstance(fault, KillWorker):
        why = engine.worker_skip(settings) if hasattr(engine, "worker_skip") else None  # type: ignore[attr-defined]
        if why is None and not hasattr(engine, "kill_worker"):
            why = f"{engine.name} runs in processes of its own, with no separate worker to kill (kill_job kills it whole)"
        return why
    return None


class FaultInjector:
    """One thread for a load's faults, started when the load's time base is known; stop() ends a fault still
    running (releasing its lock) and returns the records. `down` is true from a kill until the engine runs
    again, when the engine's processes are gone on purpose."""

    def __init__(self, faults: list[Fault], dsn: str, time_base_ms: int, *, engine: Engine[Any], settings: Any,
                 load_id: str, start_timeout_s: float, stack: EmbeddedStack | None = None,
                 external: list[str] | None = None, service_pids: dict[str, int] | None = None,
                 say: Callable[[str], None] | None = None, bootstrap: str | None = None, topic: str | None = None,
                 partitions: int = 1) -> None:
        self.load_id, self.stack = load_id, stack
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.service_pids = service_pids if service_pids is not None else {}
        mine = sorted((f for f in faults if applies(f, engine.name)), key=lambda f: f.at)
        self.dsn, self.time_base_ms, self.engine, self.start_timeout_s = dsn, time_base_ms, engine, start_timeout_s
        self.say = say or (lambda _msg: None)
        self.faults: list[tuple[Fault, FaultRecord]] = []
        for f in mine:
            rec = FaultRecord(kind=f.kind, planned_at_ms=time_base_ms + f.at,
                              restart_policy=f.restart_policy if isinstance(f, KillJob) else None)
            service = {RestartPostgres: "postgres", RestartBroker: "kafka"}.get(type(f))
            rec.skipped = skip_reason(f, engine, settings) or (
                f"the harness restarts only the services it runs itself (embedded); this {service} is external"
                if service and (stack is None or service in (external or [])) else None)
            if rec.skipped:
                self.say(f"fault {f.kind} skipped: {rec.skipped}")
            self.faults.append((f, rec))
        self.records = [rec for _, rec in self.faults]
        self.down = False
        self._restarts = 0
        self._busy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "FaultInjector":
        if any(rec.skipped is None for _, rec in self.faults):
            self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
            self._thread.start()
        return self

    def busy_until_ms(self) -> int:
        """When the last fault that fired ended (now while one is still going, or still to come)."""
        if self._busy or any(rec.skipped is None and rec.fired_at_ms is None and rec.error is None
                             for _, rec in self.faults):
            return now_ms()
        return max((rec.ended_at_ms or 0 for _, rec in self.faults), default=0)

    def _run(self) -> None:
        for fault, rec in self.faults:
            if rec.skipped:
                continue
            if self._stop.wait(max(0.0, (rec.planned_at_ms - now_ms()) / 1000)):
                rec.error = "not fired: the engine run ended first"
                continue
            self._busy = True
            try:
                if isinstance(fault, StallSink):
                    self._stall_sink(fault, rec)
                elif isinstance(fault, KillJob):
                    self._kill_job(fault, rec)
                elif isinstance(fault, KillWorker):
                    self._kill_worker(fault, rec)
                elif isinstance(fault, (RestartPostgres, RestartBroker)):
                    self._restart_service(fault, rec)
            except Exception as exc:  # a fault that could not be injected is recorded, never a crash
                rec.error = f"{type(exc).__name__}: {exc}"
                self.say(f"fault {fault.kind} failed: {rec.error}")
            finally:
                rec.ended_at_ms = rec.ended_at_ms or (now_ms() if rec.fired_at_ms else None)
                self.down = self._busy = False     # a restart that failed leaves the engine not alive: failed

    def _stall_sink(self, fault: StallSink, rec: FaultRecord) -> None:
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            conn.execute(f"LOCK TABLE {', '.join(SINK_TABLES)} IN SHARE MODE")
            rec.fired_at_ms = now_ms()
            self.say(f"fault stall_sink: {', '.join(SINK_TABLES)} locked for {fault.duration / 1000:g} s")
            self._stop.wait(fault.duration / 1000)
            conn.rollback()                      # releases the lock
            rec.ended_at_ms = now_ms()
        rec.detail = (f"LOCK TABLE {', '.join(SINK_TABLES)} IN SHARE MODE held "
                      f"{(rec.ended_at_ms - rec.fired_at_ms) / 1000:.2f} s")

    def _kill_job(self, fault: KillJob, rec: FaultRecord) -> None:
        owned = getattr(self.engine, "kill_job_pids", self.engine.pids)
        procs = processes.with_children(owned())
        if not procs:
            raise RuntimeError("the engine had no process left to kill")
        if hasattr(self.engine, "before_kill"):
            try:   # the engine's state just before the crash (Flink: its newest checkpoint); it is not warned
                self.engine.before_kill()
            except Exception as exc:
                self.say(f"fault kill_job: reading the engine's state before the kill failed: {exc}")
        self.down = True
        rec.fired_at_ms = now_ms()
        rec.killed_pids = processes.kill_all(procs)
        self.say(f"fault kill_job: SIGKILL to {len(rec.killed_pids)} processes; restart ({fault.restart_policy}) "
                 f"in {fault.restart_after / 1000:g} s")
        if self._stop.wait(fault.restart_after / 1000):
            rec.detail = "killed; the engine run ended before the restart"
            return
        self._restarts += 1
        ts = self.time_base_ms + fault.timestamp if fault.timestamp is not None else None
        offsets = None
        if fault.restart_policy in SKIPPING_POLICIES:
            offsets = rec.start_offsets = self._start_offsets(fault.restart_policy, ts)
        rec.restarted_at_ms = now_ms()
        self.engine.restart(Restart(fault.restart_policy, ts, self._restarts, offsets))  # type: ignore[attr-defined]
        self.engine.wait_running(self.start_timeout_s)
        rec.running_again_ms = rec.ended_at_ms = now_ms()
        rec.registered_pids = sorted(int(e["pid"]) for e in processes.registered() if e.get("load_id") == self.load_id)
        rec.downtime_ms = rec.running_again_ms - rec.fired_at_ms
        self.down = False
        self.say(f"fault kill_job: running again after {rec.downtime_ms / 1000:.1f} s ({fault.restart_policy})")
        rec.detail = (f"SIGKILL to {len(rec.killed_pids)} processes; restarted from {fault.restart_policy} after "
                      f"{fault.restart_after / 1000:g} s; reading its topic again "
                      f"{(rec.running_again_ms - rec.restarted_at_ms) / 1000:.1f} s after the restart")

    def _kill_worker(self, fault: KillWorker, rec: FaultRecord) -> None:
        eng: Any = self.engine
        rec.fired_at_ms = now_ms()
        rec.killed_pids = eng.kill_worker()
        self.say(f"fault kill_worker: SIGKILL to {len(rec.killed_pids)} worker processes; the job goes on")
        wait_s = 0 if eng.replaces_workers_itself else fault.restart_after / 1000
        if self._stop.wait(wait_s):
            rec.detail = "worker killed; the engine run ended before its replacement"
            return
        rec.restarted_at_ms = now_ms()
        replaced = eng.replace_worker()
        eng.wait_recovered(self.start_timeout_s)
        rec.running_again_ms = rec.ended_at_ms = now_ms()
        rec.downtime_ms = rec.running_again_ms - rec.fired_at_ms
        rec.engine_survived = self.engine.alive()
        rec.detail = (f"SIGKILL to worker pids {', '.join(map(str, rec.killed_pids))}; {replaced}; the job ran again "
                      f"{(rec.running_again_ms - rec.restarted_at_ms) / 1000:.1f} s after that")
        self.say(f"fault kill_worker: the job runs again after {rec.downtime_ms / 1000:.1f} s")

    def _start_offsets(self, policy: str, ts: int | None) -> dict[int, int]:
        """Where a latest/timestamp restart reads from: the end offsets now, or per partition the first offset
        at or after the timestamp (the end where none is)."""
        from harness.stack import topics

        assert self.bootstrap is not None and self.topic is not None
        ends = topics.end_offsets(self.bootstrap, self.topic, self.partitions)
        if policy == "latest":
            return ends
        assert ts is not None
        found = topics.offsets_for_time(self.bootstrap, self.topic, self.partitions, ts)
        return {p: (o if o >= 0 else ends[p]) for p, o in found.items()}

    def _restart_service(self, fault: RestartPostgres | RestartBroker, rec: FaultRecord) -> None:
        assert self.stack is not None
        pg = isinstance(fault, RestartPostgres)
        rec.fired_at_ms = now_ms()
        self.say(f"fault {fault.kind}: stopping {'PostgreSQL' if pg else 'the broker'} for {fault.down_for / 1000:g} s")
        if pg:
            pid = self.stack.restart_postgres(fault.down_for / 1000)
        else:
            pid = self.stack.restart_kafka(fault.down_for / 1000)
        self.service_pids["postgres" if pg else "kafka"] = pid   # the monitor samples the new process from now on
        rec.ended_at_ms = now_ms()
        rec.engine_survived = self.engine.alive()
        how = "pg_ctl stop -m fast" if pg else "SIGTERM (clean shutdown)"
        rec.detail = (f"{how}, {fault.down_for / 1000:g} s down, started again (pid {pid}); "
                      f"{(rec.ended_at_ms - rec.fired_at_ms) / 1000:.1f} s from the stop to serving again")
        self.say(f"fault {fault.kind}: serving again after {(rec.ended_at_ms - rec.fired_at_ms) / 1000:.1f} s")

    def stop(self) -> list[FaultRecord]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        return self.records
