"""What a rerun needs, recorded with every result (harness/environment.py): a JVM's options, the environment
variables that change behaviour (never secrets), the commit with untracked files counted, the CPU governor and
cgroup limits (read without raising, also from made-up trees), and, from the live stack, the PostgreSQL and
Kafka settings. The report shows each on one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, Svc
from harness import environment, results
from harness.report import table_builders as T
from harness.report.data import RunData
from harness.results.document import Machine, Versions

FLINK_TM = ["/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "-XX:+UseSerialGC", "-Xmx536870902", "-Xms536870902",
            "-XX:MaxDirectMemorySize=268435458", "-XX:MaxMetaspaceSize=268435456",
            "-javaagent:/opt/agents/jmx_prometheus.jar=9404:/opt/agents/config.yaml",
            "-Dlog.file=/tmp/flink/log/taskmanager.log",
            "-Dlog4j.configurationFile=file:/opt/flink/conf/log4j.properties",
            "--add-opens", "java.base/java.util=ALL-UNNAMED", "-classpath", "/opt/flink/lib/flink-dist.jar:/opt/x.jar",
            "org.apache.flink.runtime.taskexecutor.TaskManagerRunner", "--configDir", "/opt/flink/conf",
            "-Xnot-a-jvm-option-but-the-programs"]


# -- jvm_options -----------------------------------------------------------------------------------------------
def test_jvm_options_of_a_java_command_line() -> None:
    assert environment.jvm_options(FLINK_TM) == [
        "-XX:+UseSerialGC", "-Xmx536870902", "-Xms536870902", "-XX:MaxDirectMemorySize=268435458",
        "-XX:MaxMetaspaceSize=268435456", "-javaagent:/opt/agents/jmx_prometheus.jar=9404:/opt/agents/config.yaml"]
    # -jar ends the options too; a bare `java` on PATH counts
    assert environment.jvm_options(["java", "-Xss512k", "-Dx=1", "-jar", "app.jar", "-Xmx9g"]) == ["-Xss512k"]


@pytest.mark.parametrize("cmdline", [
    ["/work/main/.venv/bin/python", "-X", "dev", "-m", "harness", "run", "-Xmx1g"],
    ["/usr/bin/javac", "-Xlint", "A.java"], ["bash", "-c", "java -Xmx1g Main"], [],
], ids=["python", "javac", "bash", "empty"])
def test_jvm_options_of_other_processes_is_empty(cmdline: list[str]) -> None:
    assert environment.jvm_options(cmdline) == []


# -- behaviour_env ---------------------------------------------------------------------------------------------
def test_behaviour_env_keeps_switches_and_drops_secrets_and_paths() -> None:
    env = {
        "HARNESS_FAULT_SEND_DELAY_MS": "40", "HARNESS_FAULT_DB_CLOCK_MS": "-250", "HARNESS_IDLE_WAIT": "0",
        "JVM_ARGS": "-Xmx1g -XX:+UseSerialGC", "HARNESS_SPARK_FAIL_AFTER_WRITE": "3", "HARNESS_NEW_SWITCH": "1",
        "HARNESS_PG_PASSWORD": "hunter2", "HARNESS_POSTGRES_DSN": "postgresql://u:pw@db/x",
        "HARNESS_FAULT_TOKEN": "abc", "HARNESS_STACK_DIR": "/tmp/stack", "HARNESS_ENGINE_PATH": "/x",
        "HARNESS_BOOTSTRAP_SERVERS": "localhost:9092", "PATH": "/usr/bin", "PGPASSWORD": "hunter2",
    }
    got = environment.behaviour_env(env)
    assert got == {"variables": {"HARNESS_FAULT_DB_CLOCK_MS": "-250", "HARNESS_FAULT_SEND_DELAY_MS": "40",
                                 "HARNESS_IDLE_WAIT": "0", "HARNESS_NEW_SWITCH": "1",
                                 "HARNESS_SPARK_FAIL_AFTER_WRITE": "3", "JVM_ARGS": "-Xmx1g -XX:+UseSerialGC"},
                   "skipped": []}
    # a value that holds a password is left out, and named as left out
    leaky = environment.behaviour_env({"JVM_ARGS": "-Xmx1g -Djavax.net.ssl.keyStorePassword=hunter2",
                                       "HARNESS_FAULT_URL": "postgresql://u:hunter2@db/x"})
    assert leaky == {"variables": {}, "skipped": ["HARNESS_FAULT_URL", "JVM_ARGS"]}
    assert "hunter2" not in json.dumps(leaky) and "hunter2" not in json.dumps(got)
    assert environment.behaviour_env({"HOME": "/root"}) == {"variables": {}, "skipped": []}


# -- commit ------------------------------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main",
                    *args], cwd=repo, check=True, capture_output=True, timeout=30)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_commit_counts_untracked_files_as_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    clean = environment.commit(repo)
    assert isinstance(clean["sha"], str) and len(clean["sha"]) == 40
    assert clean == {"sha": clean["sha"], "dirty": False, "modified": 0, "untracked": 0}
    (repo / "ignored.log").write_text("not counted\n")
    assert environment.commit(repo)["dirty"] is False
    (repo / "new").mkdir()
    (repo / "new" / "b.txt").write_text("b\n")
    (repo / "new" / "c.txt").write_text("c\n")
    assert environment.commit(repo) == {"sha": clean["sha"], "dirty": True, "modified": 0, "untracked": 2}
    (repo / "a.txt").write_text("changed\n")
    assert environment.commit(repo) == {"sha": clean["sha"], "dirty": True, "modified": 1, "untracked": 2}


def test_commit_outside_a_repository_is_null(tmp_path: Path) -> None:
    assert environment.commit(tmp_path) == {"sha": None, "dirty": None, "modified": None, "untracked": None}


# -- governor and cgroup limits ----------------------------------------------------------------------------------
def test_machine_readers_return_without_raising() -> None:
    gov = environment.cpu_governor()
    assert set(gov) == {"per_cpu", "note"} and gov["per_cpu"], gov
    assert all(v is None or isinstance(v, str) for v in gov["per_cpu"].values())  # type: ignore[union-attr]
    if None in gov["per_cpu"].values():  # type: ignore[union-attr]
        assert gov["note"]
    cg = environment.cgroup_limits()
    assert cg["version"] in ("v1", "v2", None)
    assert cg["version"] is not None or cg["note"]
    # the whole machine section is a valid typed one, and unreadable places do not raise
    m = Machine.model_validate(environment.machine())
    assert m.cpu_governor is not None and m.cgroup is not None and m.env is not None
    assert environment.cpu_governor(Path("/nonexistent"))["note"]
    assert environment.cgroup_limits("garbage", Path("/nonexistent"))["note"]


def test_governor_from_a_made_up_tree(tmp_path: Path) -> None:
    for i, gov in [(0, "performance"), (1, "powersave"), (10, None)]:
        (tmp_path / f"cpu{i}" / "cpufreq").mkdir(parents=True)
        if gov:
            (tmp_path / f"cpu{i}" / "cpufreq" / "scaling_governor").write_text(gov + "\n")
    (tmp_path / "cpufreq").mkdir()            # not a CPU
    got = environment.cpu_governor(tmp_path)
    assert got == {"per_cpu": {"cpu0": "performance", "cpu1": "powersave", "cpu10": None},
                   "note": "not readable for 1 of 3 CPUs"}


def _files(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text + "\n")


def test_cgroup_v1_limits_take_the_tightest_parent(tmp_path: Path) -> None:
    _files(tmp_path, {"cpu/cgroup.procs": "", "cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000",
                      "cpu/box/cpu.cfs_quota_us": "150000", "cpu/box/cpu.cfs_period_us": "100000",
                      "cpu/box/me/cpu.cfs_quota_us": "-1", "cpu/box/me/cpu.cfs_period_us": "100000",
                      "memory/cgroup.procs": "", "memory/memory.limit_in_bytes": "9223372036854771712",
                      "memory/box/me/memory.limit_in_bytes": str(2 * 2**30)})
    got = environment.cgroup_limits("4:memory:/box/me\n2:cpu,cpuacct:/box/me\n0::/\n", tmp_path)
    assert got == {"version": "v1", "cpu_group": "/box/me", "memory_group": "/box/me", "cpu_max": "150000 100000",
                   "cpu_limit_cores": 1.5, "memory_max": str(2 * 2**30), "memory_limit_mb": 2048.0,
                   "note": "cpu limit from the group /box"}
    # no limit anywhere: "max", and no number
    _files(tmp_path, {"cpu/box/cpu.cfs_quota_us": "-1", "memory/box/me/memory.limit_in_bytes": "9223372036854771712"})
    got = environment.cgroup_limits("4:memory:/box/me\n2:cpu,cpuacct:/box/me\n", tmp_path)
    assert (got["cpu_max"], got["cpu_limit_cores"], got["memory_max"], got["memory_limit_mb"], got["note"]) == (
        "max 100000", None, "max", None, None)


def test_cgroup_v2_limits(tmp_path: Path) -> None:
    _files(tmp_path, {"cgroup.controllers": "cpu memory", "user.slice/cpu.max": "max 100000",
                      "user.slice/memory.max": "max", "user.slice/me.scope/cpu.max": "200000 100000",
                      "user.slice/me.scope/memory.max": "1073741824"})
    got = environment.cgroup_limits("0::/user.slice/me.scope\n", tmp_path)
    assert got == {"version": "v2", "cpu_group": "/user.slice/me.scope", "memory_group": "/user.slice/me.scope",
                   "cpu_max": "200000 100000", "cpu_limit_cores": 2.0, "memory_max": "1073741824",
                   "memory_limit_mb": 1024.0, "note": None}
    # the root group has no cpu.max or memory.max: not readable, said so
    root = environment.cgroup_limits("0::/\n", tmp_path)
    assert root["cpu_max"] is None and root["memory_max"] is None and "cpu.max not readable" in root["note"]


# -- the report's lines ------------------------------------------------------------------------------------------
def _run(tmp_path: Path) -> RunData:
    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(ROOT / "tests" / "fixtures" / "result-v1.json", folder / "result.json")
    return RunData(folder, results.load(folder))


def test_report_lines_old_and_new(tmp_path: Path) -> None:
    run = _run(tmp_path)
    old = dict(T.machine(run) + T.versions(run))       # a file from before these were recorded
    assert (old["cpu governor"], old["cgroup limits"], old["fault/behaviour env"], old["postgresql settings"],
            old["kafka broker settings"]) == ("not recorded",) * 5
    assert run.doc.machine is not None and run.doc.versions is not None
    run.doc.machine = Machine.model_validate({
        **run.doc.machine.model_dump(include={"hostname", "os", "cpu_model", "cores", "memory_gb"}),
        "cpu_governor": {"per_cpu": {"cpu0": None, "cpu1": None}, "note": "no cpufreq"},
        "cgroup": {"version": "v2", "cpu_max": "200000 100000", "cpu_limit_cores": 2.0, "memory_max": "max"},
        "env": {"variables": {}, "skipped": []}})
    v = run.doc.versions.model_dump(by_alias=True)
    v.update(commit={"sha": "e330ef5", "dirty": True, "modified": 2, "untracked": 1},
             postgresql_settings={"settings": {"fsync": "off", "synchronous_commit": "on"}},
             kafka_settings={"broker_id": 1, "brokers": 1, "configs": {"num.io.threads": 8,
                                                                      "log.flush.interval.messages": 2**63 - 1}})
    run.doc.versions = Versions.model_validate(v)
    new = dict(T.machine(run) + T.versions(run))
    assert new["cpu governor"] == "not readable (no cpufreq)"
    assert new["cgroup limits"] == "cgroup v2: CPU 2 cores (200000 100000), memory no limit"
    assert new["fault/behaviour env"] == "none"
    assert new["commit"] == "sha=e330ef5, dirty=True (2 modified, 1 untracked)"
    assert "fsync=off" in new["postgresql settings"] and "synchronous_commit=on" in new["postgresql settings"]
    assert new["kafka broker settings"].startswith("broker 1 of 1: log.flush.interval.messages=2^63-1,")
    assert "num.io.threads=8" in new["kafka broker settings"]


# -- live services -----------------------------------------------------------------------------------------------
def test_settings_read_from_the_live_stack(svc: Svc) -> None:
    t0 = time.monotonic()
    v = Versions.model_validate(environment.versions(svc.dsn, bootstrap=svc.bootstrap))
    assert time.monotonic() - t0 < 10
    pg, kafka = v.postgresql_settings, v.kafka_settings
    assert pg is not None and pg.error is None, pg
    assert pg.settings.fsync in ("on", "off") and pg.settings.wal_level in ("minimal", "replica", "logical")
    assert pg.settings.track_commit_timestamp in ("on", "off") and pg.settings.shared_buffers
    assert v.postgresql_server and v.postgresql_server[0].isdigit()
    assert kafka is not None and kafka.error is None, kafka
    assert kafka.broker_id is not None and kafka.brokers == 1
    c = kafka.configs
    assert isinstance(c.num_io_threads, int) and c.num_io_threads > 0
    assert isinstance(c.num_partitions, int) and c.num_partitions > 0
    assert isinstance(c.message_max_bytes, int) and c.message_max_bytes > 0
    # an address that answers nothing is recorded as an error, within the timeout, without raising
    t0 = time.monotonic()
    dead = environment.kafka_settings("127.0.0.1:9", timeout=3)
    assert dead["error"] and dead["configs"] == {} and time.monotonic() - t0 < 6
