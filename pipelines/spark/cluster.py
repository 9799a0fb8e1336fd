"""A local Spark standalone cluster (one Master, one Worker) from the PySpark distribution.

The harness starts it for `engines.spark.master: standalone`, runs the job's driver against spark://HOST:PORT
like against any standalone master, and stops it afterwards. The pip distribution has no start-master.sh;
`sbin/spark-daemon.sh start org.apache.spark.deploy.master.Master 1 ...` works (and the same for the Worker).
Its JVMs are not children of the harness: their PIDs come from Spark's own PID files (SPARK_PID_DIR), so the
harness can measure and stop them; the executors the Worker starts are the Worker's children.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil

from harness import paths
from harness.errors import EXIT_FAILED, HarnessError
from harness.stack import jvm, net, processes

MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"
EXECUTOR = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


def spark_home() -> Path:
    home = paths.package_dir("pyspark")
    if home is None:
        raise HarnessError("PySpark is not installed", hint="run `make setup`")
    return home


class StandaloneCluster:
    def __init__(self, work_dir: Path, cores: int, memory: str, owner: dict[str, str] | None = None) -> None:
        self.dir = (work_dir / "standalone").resolve()
        self.registry = processes.ClusterRegistrations("spark standalone cluster", owner)  # owner: run_id, load_id
        self.logs = self.dir / "logs"
        self.pid_dir = self.dir / "pids"
        self.worker_dir = self.dir / "work"
        self.cores = cores
        self.memory = memory
        self.port = net.free_port()
        self.web_port = net.free_port()
        self.worker_port = net.free_port()
        self.worker_web_port = net.free_port()

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOG_DIR": str(self.logs),
                "SPARK_PID_DIR": str(self.pid_dir), "SPARK_WORKER_DIR": str(self.worker_dir),
                "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_MASTER_HOST": "127.0.0.1",
                "SPARK_IDENT_STRING": f"harness-{self.port}",
                "SPARK_DAEMON_MEMORY": "512m",
                "JAVA_HOME": jvm.java_home()}

    def _daemon(self, action: str, cls: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(spark_home() / "sbin" / "spark-daemon.sh"), action, cls, "1", *args],
                              env=self._env(), capture_output=True, text=True, timeout=90)

    def start(self, timeout_s: float = 120) -> None:
        for d in (self.logs, self.pid_dir, self.worker_dir):
            d.mkdir(parents=True, exist_ok=True)
        steps = [
            (MASTER, ("--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.web_port))),
            (WORKER, ("--host", "127.0.0.1", "--port", str(self.worker_port), "--webui-port",
                      str(self.worker_web_port), "--cores", str(self.cores), "--memory", self.memory,
                      "--work-dir", str(self.worker_dir), self.url)),
        ]
        for cls, args in steps:
            out = self._daemon("start", cls, *args)
            if out.returncode != 0:
                self.stop()
                raise HarnessError(f"starting the Spark standalone {cls.rsplit('.', 1)[-1]} failed:\n"
                                   f"{out.stdout}{out.stderr}", exit_code=EXIT_FAILED)
            self.registry.add(self.pids())
            if cls == MASTER and not net.wait_for(lambda: net.can_connect("127.0.0.1", self.port) is None, 60):
                break
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._worker_registered():
                return
            if len(self.pids()) < 2:
                break
            time.sleep(0.5)
        logs = "\n".join(processes.tail(p, 10) for p in sorted(self.logs.glob("*.out")))
        self.stop()
        raise HarnessError(f"the Spark standalone cluster did not register a worker within {timeout_s:.0f} s:\n{logs}",
                           exit_code=EXIT_FAILED)

    def _worker_registered(self) -> bool:
        for f in self.logs.glob("*Master*.out"):
            try:
                if "Registering worker" in f.read_text(errors="replace"):
                    return True
            except OSError:
                pass
        return False

    def pids(self) -> list[int]:
        return processes.pids_from_files(self.pid_dir)

    def executor_pids(self) -> list[int]:
        """The Worker's executor JVMs (CoarseGrainedExecutorBackend), the processes a lost machine takes along."""
        out = []
        for proc in processes.with_children(self.pids()):
            try:
                if EXECUTOR in " ".join(proc.cmdline()):
                    out.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def kill_executors(self) -> list[int]:
        """SIGKILL every executor of the Worker (and its Python workers) at once; the Worker stays, and the
        Master asks it for a replacement, as a standalone cluster does when an executor is lost."""
        pids = self.executor_pids()
        processes.kill_all(processes.with_children(pids), timeout=10)
        return pids

    def stop(self) -> None:
        # spark-daemon.sh stop sends SIGTERM and deletes the PID file without waiting: take the processes (and
        # the Worker's executors, which an exiting Worker would orphan) first
        started = processes.with_children(self.pids())
        for cls in (WORKER, MASTER):
            try:
                subprocess.run(["bash", str(spark_home() / "sbin" / "spark-daemon.sh"), "stop", cls, "1"],
                               env=self._env(), capture_output=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
        processes.terminate_all(started, timeout=15)  # wait for them; kill whatever did not stop
        self.registry.release()
