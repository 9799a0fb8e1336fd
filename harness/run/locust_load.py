"""A load from many producers through Locust: a headless master and N workers here, each worker one shard of the
load (harness/run/shard.py, harness/loadgen/locustfile.py).

`harness load --locust-workers N` sends a load this way (run_locust), and `harness run --load locust` measures
engines on it: LocustLoad has the surface of the single generator's process (warm_up, run, stats, load_done,
stop, encoder, close), so a LoadSession uses either. The shards' figures come back through their folders
(ShardFiles) and are merged into one SendStats, the single generator's for the same seed (merge_shards): the
events, their intended and hand-off times and their offsets, so latency, ground truth and every check read it
as they read the single generator's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.errors import EXIT_FAILED, HarnessError
from harness.loadgen.encoding import JsonEncoder
from harness.loadgen.generator import CLIENT_LOG_KEEP, Progress, SendStats, Shard
from harness.run.planning import close_horizon_ms, next_time_base
from harness.run.shard import ShardFiles, ensure_topic, shard_skew, summary
from harness.scenario import Scenario
from harness.stack import net, processes

LOCUSTFILE = Path(__file__).resolve().parent.parent / "loadgen" / "locustfile.py"
LOCUST_START_S = 12      # the workers start, import and connect before the shared time base
POLL_S = 0.2             # how often the shards' live figures are read (the monitor samples every 0.5 s)
STOP_GRACE_S = 30        # a stopped shard's last delivery reports and its figures
STATS_WAIT_S = 10        # for the workers' last report to reach the master's statistics


def merge_shards(parts: list[SendStats]) -> SendStats:
    """The shards' figures as one load's: each event's hand-off and send delay from the shard that sent it
    (shard_mask), offsets per partition from the partition's one shard, and the counters added up."""
    if not parts:
        raise ValueError("no shards to merge")
    n = max(p.scheduled for p in parts)
    handoff = np.zeros(n, dtype=np.int64)
    delay = np.zeros(n, dtype=np.float64)
    for p in parts:
        mask = p.shard_mask if p.shard_mask is not None else np.ones(p.sent, dtype=bool)
        idx = np.flatnonzero(mask)
        handoff[idx] = p.handoff_ms[idx]
        delay[idx] = p.send_delay_ms[idx]
    offsets: dict[int, Any] = {}
    for p in parts:
        for part, offs in p.offsets.items():
            if part in offsets:
                raise ValueError(f"partition {part} was sent to by two shards")
            offsets[part] = offs

    def total(counts: list[dict[int, int]]) -> dict[int, int]:
        out: dict[int, int] = {}
        for c in counts:
            for k, v in c.items():
                out[k] = out.get(k, 0) + v
        return dict(sorted(out.items()))

    def first(vals: list[int | None], pick: Callable[[list[int]], int]) -> int | None:
        have = [v for v in vals if v is not None]
        return pick(have) if have else None

    sent = max(p.sent for p in parts)
    return SendStats(
        scheduled=n, time_base_ms=parts[0].time_base_ms, handoff_ms=handoff, send_delay_ms=delay,
        ack_latency_ms=[v for p in parts for v in p.ack_latency_ms], sent=sent,
        acked=sum(p.acked for p in parts), delivery_errors=sum(p.delivery_errors for p in parts),
        last_error=next((p.last_error for p in parts if p.last_error), None),
        client_log=[line for p in parts for line in p.client_log][-CLIENT_LOG_KEEP:],
        heartbeats_sent=sum(p.heartbeats_sent for p in parts),
        heartbeats_acked=sum(p.heartbeats_acked for p in parts),
        acked_per_second=total([p.acked_per_second for p in parts]),
        sent_per_second=total([p.sent_per_second for p in parts]),
        first_handoff_ms=first([p.first_handoff_ms for p in parts], min),
        last_handoff_ms=first([p.last_handoff_ms for p in parts], max),
        last_ack_ms=first([p.last_ack_ms for p in parts], max),
        finished_ms=first([p.finished_ms for p in parts], max),
        # a shard that stopped short leaves holes the others' `sent` would hide
        interrupted=any(p.interrupted for p in parts) or any(p.sent < sent for p in parts),
        offsets=offsets, refused_too_large=sum(p.refused_too_large for p in parts),
        shard_events=sum(p.shard_events for p in parts), shard_mask=None,
        nice=first([p.nice for p in parts], max),
        # every shard ran real-time, or the merged load did not
        scheduler=parts[0].scheduler if len({p.scheduler for p in parts}) == 1 else None)


class LocustProcesses:
    """A headless Locust master and `workers` workers, all in the process registry, each worker one shard."""

    def __init__(self, scenario_file: Path, bootstrap: str, topic: str, workers: int, time_base_ms: int,
                 heartbeat_until_ms: int, out: Path, owner: dict[str, str] | None = None) -> None:
        self.out, self.workers, self.owner = out, workers, owner or {}
        self.env = {**os.environ, "HARNESS_LOCUST_SCENARIO": str(Path(scenario_file).resolve()),
                    "HARNESS_LOCUST_TOPIC": topic, "HARNESS_LOCUST_TIME_BASE": str(time_base_ms),
                    "HARNESS_LOCUST_HEARTBEAT_UNTIL": str(heartbeat_until_ms),
                    "HARNESS_LOCUST_SHARDS": str(workers), "HARNESS_BOOTSTRAP_SERVERS": bootstrap,
                    "HARNESS_LOCUST_OUT": str(out), "HARNESS_LOCUST_PARENT_PID": str(os.getpid())}
        self.procs: list[subprocess.Popen[str]] = []
        self._logs: list[Any] = []

    def files(self, i: int) -> ShardFiles:
        return ShardFiles(self.out / f"shard-{i}")

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        port = net.free_port()
        base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
        # no --run-time: the shards end when their load and heartbeats are over, then the master is stopped
        master = [*base, "--headless", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                  str(port), "--expect-workers", str(self.workers), "-u", str(self.workers), "-r", str(self.workers),
                  "--csv", str(self.out / "locust"), "--only-summary"]
        worker = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
        names = ["master", *[f"worker-{i}" for i in range(self.workers)]]
        for name, cmd in zip(names, [master, *[worker] * self.workers]):
            log = open(self.out / f"locust-{name}.log", "w")
            self._logs.append(log)
            p = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True)
            processes.register(p.pid, f"locust {name}", **self.owner)
            self.procs.append(p)

    def failed(self) -> str | None:
        """Why the load cannot finish: a shard that failed, or a process that exited before its shard wrote its
        figures."""
        for i in range(self.workers):
            if self.files(i).error.exists():
                return f"locust shard {i}/{self.workers} failed: {self.files(i).error.read_text()}"
        for i, p in enumerate(self.procs):
            code = p.poll()
            if code is None:
                continue
            if i == 0:
                return f"the locust master exited with {code}; see {self.out / 'locust-master.log'}"
            if not self.files(i - 1).done.exists():
                return (f"locust worker {i - 1} exited with {code} before it finished; see "
                        f"{self.out / f'locust-worker-{i - 1}.log'}")
        return None

    def wait_for_statistics(self, timeout_s: float = STATS_WAIT_S) -> bool:
        """Until the master's statistics hold every shard's entry: workers report every 3 s and the master writes
        its CSV every second, so a master stopped as soon as the shards are done would miss the last ones."""
        import csv

        deadline = time.monotonic() + timeout_s
        path = self.out / "locust_stats.csv"
        while time.monotonic() < deadline:
            try:
                with open(path, newline="") as f:
                    rows = [r for r in csv.DictReader(f) if r.get("Type") == "shard"]
                if sum(int(r.get("Request Count") or 0) for r in rows) >= self.workers:
                    return True
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        return False

    def stop_shards(self) -> None:
        for i in range(self.workers):
            f = self.files(i)
            f.folder.mkdir(parents=True, exist_ok=True)
            f.stop.touch()

    def close(self, timeout: float = 20) -> None:
        """SIGTERM (the master writes its statistics and tells the workers to quit), then SIGKILL what is left."""
        if self.procs and self.procs[0].poll() is None:
            self.procs[0].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for p in self.procs:
            processes.unregister(p.pid)
        for log in self._logs:
            log.close()
        self._logs = []


class LocustLoad:
    """The single generator's surface over Locust: run() blocks until every shard has finished (its heartbeats
    end at heartbeat_until_ms, or when stop is set), and `stats` holds the shards' live figures as it goes."""

    start_lead_ms = LOCUST_START_S * 1000

    def __init__(self, scenario: Scenario, scenario_file: Path, bootstrap: str, topic: str, workers: int, out: Path,
                 *, owner: dict[str, str] | None = None) -> None:
        if workers > scenario.topic.partitions:
            raise HarnessError(f"--locust-workers {workers}: each worker owns at least one partition, and the "
                               f"scenario's topic has {scenario.topic.partitions}")
        if scenario.load.mode == "backlog":
            raise HarnessError("--load locust sends on the open-loop schedule; backlog mode fills the topic unpaced "
                               "from one generator")
        self.scenario, self.scenario_file, self.bootstrap, self.topic = scenario, scenario_file, bootstrap, topic
        self.workers, self.out, self.owner = workers, out, owner or {}
        self.encoder = JsonEncoder(scenario.load.payload_bytes, scenario.topic.max_message_bytes)
        self.stop = threading.Event()
        self.load_done = threading.Event()
        self.stats: SendStats | None = None
        self.pid: int | None = None         # several processes: their CPU is not sampled as the generator's
        self.shards: list[dict[str, Any]] = []
        self.skew: dict[str, Any] | None = None
        self._procs: LocustProcesses | None = None

    def warm_up(self) -> None:
        ensure_topic(self.bootstrap, self.topic, self.scenario)

    def run(self, time_base_ms: int, *, heartbeat_until_ms: int | None = None, paced: bool = True,
            progress: Progress | None = None) -> SendStats:
        if not paced:
            raise HarnessError("a Locust load is paced (open-loop schedule); an unpaced fill uses one generator")
        until = heartbeat_until_ms if heartbeat_until_ms is not None else time_base_ms + close_horizon_ms(self.scenario)
        procs = self._procs = LocustProcesses(self.scenario_file, self.bootstrap, self.topic, self.workers,
                                              time_base_ms, until, self.out, owner=self.owner)
        self.stats = SendStats(scheduled=0, time_base_ms=time_base_ms, handoff_ms=np.zeros(0, dtype=np.int64),
                               send_delay_ms=np.zeros(0))
        files = [procs.files(i) for i in range(self.workers)]
        procs.start()
        stopping_since: float | None = None
        try:
            while True:
                if self.stop.is_set() and stopping_since is None:
                    procs.stop_shards()
                    stopping_since = time.monotonic()
                if all(f.done.exists() for f in files):
                    break
                if (why := procs.failed()) is not None:
                    raise HarnessError(why, exit_code=EXIT_FAILED)
                if stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_S:
                    raise HarnessError(f"the locust shards did not finish within {STOP_GRACE_S} s of the stop",
                                       exit_code=EXIT_FAILED)
                if not self.load_done.is_set() and all(f.loaded.exists() for f in files):
                    self.stats = merge_shards([ShardFiles.read_stats(f.loaded) for f in files])
                    self.load_done.set()
                elif not self.load_done.is_set():
                    self._live(files)
                if progress is not None and self.stats.scheduled:     # a progress bar needs its total
                    progress(self.stats)
                time.sleep(POLL_S)
            procs.wait_for_statistics()       # Locust's own record; the figures below do not depend on it
            done = [ShardFiles.read_stats(f.done) for f in files]
            self.stats = merge_shards(done)
            parts = self.scenario.topic.partitions
            self.shards = [summary(st, Shard(i, self.workers), Shard(i, self.workers).partitions(parts), self.topic)
                           for i, st in enumerate(done)]
            self.skew = shard_skew(self.shards, self.scenario)
            self.load_done.set()
            if progress is not None:
                progress(self.stats)
            return self.stats
        finally:
            self.load_done.set()
            procs.close()

    def _live(self, files: list[ShardFiles]) -> None:
        rows = []
        for f in files:
            try:
                rows.append(json.loads(f.live.read_text()))
            except (OSError, ValueError):     # not written yet
                continue
        st = self.stats
        if not rows or st is None:
            return
        st.scheduled = max(r["scheduled"] for r in rows)
        st.sent = min(r["sent"] for r in rows) if len(rows) == len(files) else 0
        for k in ("acked", "delivery_errors", "heartbeats_sent", "heartbeats_acked"):
            setattr(st, k, sum(r[k] for r in rows))
        st.last_ack_ms = max((r["last_ack_ms"] for r in rows if r["last_ack_ms"] is not None), default=None)

    def close(self, timeout: float = 60) -> None:
        self.stop.set()
        if self._procs is not None:
            self._procs.close(min(timeout, 20))

    def terminate(self) -> None:
        self.close(10)


def run_locust(scenario_path: Path, scenario: Scenario, bootstrap: str, topic: str, workers: int, out: Path,
               say: Callable[[str], None]) -> dict[str, Any]:
    """`harness load --locust-workers N`: send the load through Locust and return every shard's figures, the skew
    between them and where Locust's own statistics are (out/locust_stats.csv)."""
    load = LocustLoad(scenario, scenario_path, bootstrap, topic, workers, out, owner={"topic": topic})
    load.warm_up()
    tb = next_time_base(scenario, time.time_ns() // 1_000_000 + load.start_lead_ms)
    say(f"locust: a master and {workers} workers, one shard each, sending from {tb}")
    load.run(tb)
    return {"topic": topic, "time_base_ms": tb, "workers": workers, "shards": load.shards, "skew": load.skew,
            "locust_stats": str(out / "locust_stats.csv")}
