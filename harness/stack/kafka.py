"""A single-node Apache Kafka broker in KRaft mode, run from the Maven-fetched jars."""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.stack import jvm, net, processes

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
"""


@dataclass
class KafkaBroker:
    home: Path  # <stack>/kafka
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"{net.HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{net.HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{net.HOST}:{self.port},CONTROLLER://{net.HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{net.HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            # Topics are created by the harness, fresh for each run; a typo must not create one silently.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "24",
            "delete.topic.enable": "true",
        }
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.home / "log4j2.properties").write_text(LOG4J2)

    def _java_cmd(self, main: str, *args: str, heap: str = "1g") -> list[str]:
        return [
            jvm.find_java(), f"-Xmx{heap}", "-Xms256m", "-XX:+UseG1GC",
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp", jvm.classpath("kafka"), main, *args,
        ]

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    def prepare(self) -> bool:
        """Write the config and format storage on first start. Returns True when storage was reused."""
        self._write_config()
        if self.formatted:
            return True
        cluster_id = new_cluster_id()
        out = subprocess.run(
            self._java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_file), heap="256m"),
            capture_output=True, text=True, timeout=120,
        )
        if out.returncode != 0:
            raise HarnessError(f"formatting Kafka storage in {self.data_dir} failed:\n{out.stdout}{out.stderr}")
        return False

    def start(self) -> int:
        return processes.spawn_detached(
            self._java_cmd("kafka.Kafka", str(self.config_file)), self.log_dir / "stdout.log", cwd=self.home
        )

    def marker(self) -> str:
        return str(self.config_file)


def new_cluster_id() -> str:
    """A random cluster id as Kafka's own Uuid.randomUuid makes it: base64url of 16 bytes, never starting with
    "-" (the storage tool's argument parser would take such an id for an option: 1 format in 64 failed)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
