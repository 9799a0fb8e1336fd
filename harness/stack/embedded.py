"""`harness stack up|down|status`: the embedded Kafka broker and PostgreSQL server, one folder for both."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from harness import paths
from harness.errors import HarnessError
from harness.stack import jvm, net, probes, processes
from harness.stack.kafka import KafkaBroker
from harness.stack.postgres import PostgresServer

KAFKA_START_TIMEOUT = 120.0

Progress = Callable[[str], None]


def _silent(_: str) -> None:
    pass


@dataclass
class StackState:
    """What stack.json records: enough for `down` to find every process, even from another shell."""

    kafka: dict[str, object] = field(default_factory=dict)
    postgres: dict[str, object] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "StackState":
        try:
            raw = json.loads(path.read_text())
            return cls(kafka=raw.get("kafka", {}), postgres=raw.get("postgres", {}))
        except (OSError, ValueError):
            return cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"kafka": self.kafka, "postgres": self.postgres}, indent=2))
        tmp.replace(path)


def _stop_postgres(server: PostgresServer) -> None:
    """pg_ctl's fast stop, then the postmaster's tree if it is still there after 30 s."""
    pid = server.postmaster_pid()
    server.stop()
    if pid and not processes.wait_gone(pid, 30):
        processes.terminate_tree(pid)


class EmbeddedStack:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or paths.stack_dir()).resolve()
        self.state_file = self.root / "stack.json"
        self.state = StackState.load(self.state_file)

    # -- queries ---------------------------------------------------------------------------------------
    def kafka_running(self) -> bool:
        pid = self.state.kafka.get("pid")
        return processes.alive(pid if isinstance(pid, int) else None, str(self.root / "kafka"))

    def postgres_running(self) -> bool:
        pid = self.state.postgres.get("pid")
        return processes.alive(pid if isinstance(pid, int) else None)

    @property
    def bootstrap(self) -> str | None:
        return str(self.state.kafka["bootstrap"]) if self.kafka_running() else None

    @property
    def dsn(self) -> str | None:
        return str(self.state.postgres["dsn"]) if self.postgres_running() else None

    def pids(self) -> list[int]:
        out = []
        for svc in (self.state.kafka, self.state.postgres):
            pid = svc.get("pid")
            if isinstance(pid, int) and processes.alive(pid):
                out.append(pid)
        return out

    def service_pids(self, only: list[str]) -> dict[str, int]:
        """The main process of each running embedded service named in only (for PostgreSQL, the postmaster:
        its backends are its children)."""
        out: dict[str, int] = {}
        for name, svc in (("kafka", self.state.kafka), ("postgres", self.state.postgres)):
            pid = svc.get("pid")
            if name in only and isinstance(pid, int) and processes.alive(pid):
                out[name] = pid
        return out

    # -- up ------------------------------------------------------------------------------------------
    def up(self, *, kafka: bool = True, postgres: bool = True, kafka_port: int | None = None,
           postgres_port: int | None = None, progress: Progress = _silent) -> dict[str, float]:
        """Start what is asked and not yet running; return once each serves. Times in seconds per step."""
        timings: dict[str, float] = {}
        started: list[str] = []
        try:
            if kafka and not self.kafka_running():
                t = time.monotonic()
                self._start_kafka(kafka_port, progress)
                started.append("kafka")
                timings["kafka_start_s"] = time.monotonic() - t
            if postgres and not self.postgres_running():
                t = time.monotonic()
                self._start_postgres(postgres_port, progress)
                started.append("postgres")
                timings["postgres_start_s"] = time.monotonic() - t
            if kafka:
                progress("probing Kafka: create a topic, produce and consume a record")
                timings["kafka_probe_s"] = probes.probe_kafka(str(self.state.kafka["bootstrap"]))
            if postgres:
                progress("probing PostgreSQL: write and read a table")
                timings["postgres_probe_s"] = probes.probe_postgres(str(self.state.postgres["dsn"]))
        except BaseException:
            # Leave nothing behind that this call started.
            self.down(only=started)
            raise
        return timings

    def _port(self, explicit: int | None, previous: object, what: str, option: str) -> int:
        if explicit is not None:
            net.require_free(explicit, what, option)
            return explicit
        if isinstance(previous, int) and not net.port_in_use(previous):
            return previous
        return net.free_port()

    def _start_kafka(self, port: int | None, progress: Progress) -> None:
        jvm.find_java()
        jvm.jar_dir("kafka")
        kport = self._port(port, self.state.kafka.get("port"), "Kafka", "--kafka-port")
        cport = self._port(None, self.state.kafka.get("controller_port"), "Kafka controller", "")
        if cport == kport:
            cport = net.free_port()
        broker = KafkaBroker(self.root / "kafka", kport, cport)
        reused = broker.prepare()
        progress(f"starting Kafka (KRaft) on {broker.bootstrap}"
                 + (" with its existing storage" if reused else ", storage formatted"))
        pid = broker.start()
        self.state.kafka = {"pid": pid, "port": kport, "controller_port": cport, "bootstrap": broker.bootstrap,
                            "storage_reused": reused, "log": str(broker.log_dir)}
        self.state.save(self.state_file)
        deadline = time.monotonic() + KAFKA_START_TIMEOUT
        while time.monotonic() < deadline:
            if not processes.alive(pid):
                raise HarnessError(f"the Kafka broker exited while starting; last lines of its log:\n"
                                   f"{processes.tail(broker.log_dir / 'stdout.log')}\n"
                                   f"{processes.tail(broker.log_dir / 'server.log')}", exit_code=1)
            if net.can_connect(net.HOST, kport, timeout=0.5) is None:
                try:
                    probes.check_reachable_kafka(broker.bootstrap, timeout=5)
                    return
                except HarnessError:
                    pass
            time.sleep(0.3)
        raise HarnessError(f"the Kafka broker did not serve within {KAFKA_START_TIMEOUT:.0f} s; see {broker.log_dir}",
                           exit_code=1)

    def _start_postgres(self, port: int | None, progress: Progress) -> None:
        pport = self._port(port, self.state.postgres.get("port"), "PostgreSQL", "--postgres-port")
        server = PostgresServer(self.root / "postgres", pport)
        reused = server.prepare()
        progress(f"starting PostgreSQL on {net.HOST}:{pport}"
                 + (" with its existing data" if reused else ", data directory initialised")
                 + (f" as user {server.user}" if server.user else ""))
        pid = server.start()
        self.state.postgres = {"pid": pid, "port": pport, "dsn": server.dsn, "data_dir": str(server.data_dir),
                               "log": str(server.log_file), "data_reused": reused}
        self.state.save(self.state_file)
        server.create_database()

    def restart_postgres(self, down_s: float) -> int:
        """Stop the embedded PostgreSQL (fast: connections closed, open transactions rolled back), wait down_s,
        start it again on the same port and data; returns the new postmaster's pid."""
        port = self.state.postgres.get("port")
        if not isinstance(port, int) or not self.postgres_running():
            raise HarnessError("the embedded PostgreSQL is not running", exit_code=1)
        server = PostgresServer(self.root / "postgres", port)
        _stop_postgres(server)
        time.sleep(down_s)
        pid = server.start()
        self.state.postgres = {**self.state.postgres, "pid": pid}
        self.state.save(self.state_file)
        return pid

    def restart_kafka(self, down_s: float) -> int:
        """Stop the embedded broker (SIGTERM, a clean shutdown), wait down_s, start it again on the same ports
        and storage; returns the new broker's pid once it serves."""
        pid = self.state.kafka.get("pid")
        port = self.state.kafka.get("port")
        if not isinstance(pid, int) or not isinstance(port, int) or not self.kafka_running():
            raise HarnessError("the embedded Kafka broker is not running", exit_code=1)
        processes.terminate_tree(pid, timeout=30)
        time.sleep(down_s)
        self._start_kafka(port, _silent)
        new = self.state.kafka.get("pid")
        assert isinstance(new, int)
        return new

    # -- down ----------------------------------------------------------------------------------------
    def down(self, only: list[str] | None = None, purge: bool = False) -> list[str]:
        """Stop the embedded services (or only those named); return what was stopped. purge also deletes
        their data, so the next `up` formats and initialises afresh."""
        stopped = []
        pg_base = None
        if (only is None or "postgres" in only) and self.state.postgres:
            port = self.state.postgres.get("port")
            if isinstance(port, int):
                server = PostgresServer(self.root / "postgres", port)
                pg_base = server.base
                _stop_postgres(server)
                stopped.append("postgres")
            # Keep the port so the next `up` serves the same DSN when it can.
            self.state.postgres = {k: v for k, v in self.state.postgres.items() if k == "port"}
        if only is None or "kafka" in only:
            pid = self.state.kafka.get("pid")
            for p in self._kafka_processes(pid if isinstance(pid, int) else None):
                processes.terminate_tree(p, timeout=30)
                stopped.append("kafka")
            self.state.kafka = {k: v for k, v in self.state.kafka.items() if k in ("port", "controller_port")}
        self.state.save(self.state_file)
        if purge:
            import shutil

            if pg_base is None and (self.root / "postgres").exists():
                pg_base = PostgresServer(self.root / "postgres", 0).base
            if pg_base is not None and pg_base != self.root / "postgres":
                shutil.rmtree(pg_base, ignore_errors=True)
            for sub in ("kafka", "postgres"):
                shutil.rmtree(self.root / sub, ignore_errors=True)
            self.state_file.unlink(missing_ok=True)
        return sorted(set(stopped))

    def _kafka_processes(self, pid: int | None) -> list[int]:
        """The recorded broker PID plus any JVM still running this stack's config (a lost state file)."""
        marker = str(self.root / "kafka" / "server.properties")
        found = {pid} if pid and processes.alive(pid, marker) else set()
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if marker in " ".join(p.info["cmdline"] or []):
                    found.add(p.info["pid"])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return sorted(found)
