"""A local standalone Flink session cluster (one JobManager, one TaskManager) from the PyFlink distribution.

The harness starts it for `engines.flink.mode: session`, submits the job to its REST endpoint like to any
remote JobManager, and stops it afterwards. Its JVMs are not children of the harness: their PIDs come from
Flink's own PID files, so the harness can measure and stop them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from harness import paths
from harness.errors import EXIT_FAILED, HarnessError
from harness.stack import jvm, net, processes


def flink_home() -> Path:
    home = paths.package_dir("pyflink")
    if home is None:
        raise HarnessError("PyFlink is not installed", hint="run `make setup`")
    return home


class SessionCluster:
    def __init__(self, work_dir: Path, slots: int, owner: dict[str, str] | None = None) -> None:
        self.dir = work_dir / "session-cluster"
        self.registry = processes.ClusterRegistrations("flink session cluster", owner)  # owner: run_id, load_id
        self.conf = self.dir / "conf"
        self.logs = self.dir / "log"
        self.pid_dir = self.dir / "pids"
        self.slots = slots
        self.rest_port = net.free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.rest_port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "FLINK_HOME": str(flink_home()), "FLINK_CONF_DIR": str(self.conf),
                "FLINK_LOG_DIR": str(self.logs), "FLINK_PID_DIR": str(self.pid_dir),
                "JAVA_HOME": jvm.java_home()}

    def start(self, timeout_s: float = 120) -> None:
        for d in (self.conf, self.logs, self.pid_dir):
            d.mkdir(parents=True, exist_ok=True)
        conf = {
            "jobmanager.rpc.address": "127.0.0.1", "jobmanager.rpc.port": net.free_port(),
            "jobmanager.bind-host": "127.0.0.1", "taskmanager.bind-host": "127.0.0.1", "taskmanager.host": "127.0.0.1",
            "rest.address": "127.0.0.1", "rest.bind-address": "127.0.0.1", "rest.port": self.rest_port,
            "taskmanager.numberOfTaskSlots": self.slots, "parallelism.default": 1,
            # Sized for a 2-core, shared machine: one engine at a time, about 1.6 GB for both JVMs.
            "jobmanager.memory.process.size": "768m", "taskmanager.memory.process.size": "1024m",
            "taskmanager.memory.managed.size": "64m",
            "metrics.fetcher.update-interval": "1 s",
            # A lost TaskManager is noticed in seconds, not after the 50 s default (kill_worker); the RPC
            # failures of a killed process end it sooner still.
            "heartbeat.interval": 2000, "heartbeat.timeout": 8000,
            # the REST API's newest completed checkpoint, fresh: the 3 s default cache once named an older one
            # than the restart restored
            "rest.cache.checkpoint-statistics.timeout": "100 ms",
        }
        (self.conf / "config.yaml").write_text("".join(f"{k}: {json.dumps(v) if isinstance(v, str) else v}\n"
                                                       for k, v in conf.items()))
        log4j = flink_home() / "conf" / "log4j.properties"
        if log4j.exists():
            (self.conf / "log4j.properties").write_text(log4j.read_text())
        bin_dir = flink_home() / "bin"
        for script in ("jobmanager.sh", "taskmanager.sh"):
            out = subprocess.run(["bash", str(bin_dir / script), "start"], env=self._env(), capture_output=True,
                                 text=True, timeout=60)
            if out.returncode != 0:
                self.stop()
                raise HarnessError(f"starting the Flink session cluster ({script}) failed:\n{out.stdout}{out.stderr}",
                                   exit_code=EXIT_FAILED)
            self.registry.add(self.pids())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.address}/overview", timeout=2) as r:
                    if json.load(r).get("slots-available", 0) >= 1:
                        return
            except OSError:
                pass
            if not self.pids():
                break
            time.sleep(0.5)
        logs = "\n".join(processes.tail(p, 10) for p in sorted(self.logs.glob("*.log")))
        self.stop()
        raise HarnessError(f"the Flink session cluster did not offer a task slot within {timeout_s:.0f} s:\n{logs}",
                           exit_code=EXIT_FAILED)

    def pids(self) -> list[int]:
        return processes.pids_from_files(self.pid_dir)

    def taskmanager_pids(self) -> list[int]:
        return processes.pids_from_files(self.pid_dir, "taskexecutor")

    def kill_taskmanager(self) -> list[int]:
        """SIGKILL the TaskManager (a lost machine): the JobManager finds out by its heartbeats."""
        procs = processes.with_children(self.taskmanager_pids())
        if not procs:
            raise HarnessError("the session cluster has no TaskManager left to kill", exit_code=EXIT_FAILED)
        return processes.kill_all(procs)

    def start_taskmanager(self) -> None:
        """A replacement TaskManager, as a cluster manager would start one; it registers with the JobManager."""
        out = subprocess.run(["bash", str(flink_home() / "bin" / "taskmanager.sh"), "start"], env=self._env(),
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise HarnessError(f"starting a replacement TaskManager failed:\n{out.stdout}{out.stderr}",
                               exit_code=EXIT_FAILED)
        self.registry.add(self.pids())

    def stop(self) -> None:
        bin_dir = flink_home() / "bin"
        for script in ("taskmanager.sh", "jobmanager.sh"):
            try:
                subprocess.run(["bash", str(bin_dir / script), "stop"], env=self._env(), capture_output=True,
                               timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for pid in self.pids():  # whatever the scripts did not stop
            processes.terminate_tree(pid, timeout=15)
        self.registry.release()
