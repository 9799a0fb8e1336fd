"""Machine, versions, commit and settings recorded with every result, so results can be compared honestly and a
run can be repeated as it was.

Everything here is read once when a run starts and none of it may fail a run: each reader catches its own
errors and records None (with a short note where the reason helps).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Callable

import psutil

from harness import __version__, paths
from harness.metrics import cgroups
from harness.stack import jvm

CPU_SYS = Path("/sys/devices/system/cpu")


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_governor": cpu_governor(),
        "cgroup": cgroup_limits(),
        "env": behaviour_env(),
    }


# -- CPU frequency governor ----------------------------------------------------------------------------------
def cpu_governor(cpu_dir: Path = CPU_SYS) -> dict[str, object]:
    """{"per_cpu": {"cpu0": "performance" | None, ...}, "note": why some or all could not be read}."""
    per_cpu: dict[str, str | None] = {}
    unreadable = 0
    try:
        cpus = sorted((d for d in cpu_dir.iterdir() if re.fullmatch(r"cpu\d+", d.name)), key=lambda d: int(d.name[3:]))
        for d in cpus:
            try:
                per_cpu[d.name] = (d / "cpufreq" / "scaling_governor").read_text().strip() or None
            except OSError:
                per_cpu[d.name] = None
            unreadable += per_cpu[d.name] is None
    except Exception as exc:  # metadata; never fail a run for it
        return {"per_cpu": per_cpu, "note": f"cannot list {cpu_dir} ({type(exc).__name__}: {exc})"}
    note = None
    if not per_cpu:
        note = f"no CPUs under {cpu_dir}"
    elif unreadable == len(per_cpu):
        note = "no cpufreq/scaling_governor; the kernel exposes no frequency scaling, usual on a VM"
    elif unreadable:
        note = f"not readable for {unreadable} of {len(per_cpu)} CPUs"
    return {"per_cpu": per_cpu, "note": note}


# -- cgroup limits ---------------------------------------------------------------------------------------------
_UNLIMITED_V1 = 2**60     # cgroup v1 writes "no memory limit" as a page-rounded 2**63 - 1
Limit = tuple[str, "float | None"]   # (as cgroup v2 writes it, "max" for none; the number, None for none)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _cpu_v1(d: Path) -> Limit | None:
    q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
    if q is None or p is None:
        return None
    quota, period = int(q), int(p)
    return (f"{quota if quota > 0 else 'max'} {period}", quota / period if quota > 0 and period > 0 else None)


def _cpu_v2(d: Path) -> Limit | None:
    v = _read(d / "cpu.max")
    if v is None:
        return None
    q, _, p = v.partition(" ")
    return v, (int(q) / int(p or 100000) if q != "max" else None)


def _memory_v1(d: Path) -> Limit | None:
    v = _read(d / "memory.limit_in_bytes")
    if v is None:
        return None
    n = int(v)
    return (str(n), float(n)) if 0 < n < _UNLIMITED_V1 else ("max", None)


def _memory_v2(d: Path) -> Limit | None:
    v = _read(d / "memory.max")
    if v is None:
        return None
    return v, (float(int(v)) if v != "max" else None)


def _tightest(base: Path, group: str, read: Callable[[Path], Limit | None]) -> tuple[Limit, Path] | None:
    """The tightest limit of the group and its parents up to the mount point (a parent's limit binds its
    children too), or the group's own "max"; None when none of them is readable. A group path that is not under
    the mount (a container that sees its own group as the root) reads the mount's root."""
    d = base / group.lstrip("/")
    if not d.is_dir():
        d = base
    chain = [d, *(p for p in d.parents if p == base or base in p.parents)]
    found: list[tuple[Limit, Path]] = []
    for folder in chain:
        try:
            limit = read(folder)
        except ValueError:
            limit = None
        if limit is not None:
            found.append((limit, folder))
    limited = [x for x in found if x[0][1] is not None]
    if limited:
        return min(limited, key=lambda x: x[0][1])  # type: ignore[arg-type,return-value]
    return found[0] if found else None


def cgroup_limits(proc_cgroup: str | None = None, root: Path | None = None) -> dict[str, object]:
    """The CPU and memory limits of the group the harness runs in (the tightest of it and its parents), from
    cgroup v1's cpu and memory controllers or cgroup v2's unified hierarchy; the controllers are found as
    harness.metrics.cgroups finds them. `cpu_max` and `memory_max` are written as cgroup v2 writes them ("max":
    no limit; v1's values converted); None where not readable, with the reason in `note`."""
    out: dict[str, object] = {"version": None, "cpu_group": None, "memory_group": None, "cpu_max": None,
                              "cpu_limit_cores": None, "memory_max": None, "memory_limit_mb": None, "note": None}
    notes: list[str] = []
    try:
        root = root or cgroups.ROOT
        own = cgroups._own_paths(Path("/proc/self/cgroup").read_text() if proc_cgroup is None else proc_cgroup)
        v1 = {c: own[c] for c in ("cpu", "memory") if c in own and (root / c / "cgroup.procs").exists()}
        if v1:
            out["version"] = "v1"
            where = {"cpu": (root / "cpu", v1.get("cpu"), _cpu_v1, "cpu.cfs_quota_us"),
                     "memory": (root / "memory", v1.get("memory"), _memory_v1, "memory.limit_in_bytes")}
        elif "" in own and (root / "cgroup.controllers").exists():
            out["version"] = "v2"
            where = {"cpu": (root, own[""], _cpu_v2, "cpu.max"), "memory": (root, own[""], _memory_v2, "memory.max")}
        else:
            where = {}
            notes.append(f"no cgroup v1 cpu/memory controller or cgroup v2 hierarchy under {root}")
        for what, (base, group, read, file) in where.items():
            if group is None:
                notes.append(f"no cgroup v1 {what} controller")
                continue
            out[f"{what}_group"] = group
            found = _tightest(base, group, read)
            if found is None:
                notes.append(f"{file} not readable" + (" (the root group has none)" if out["version"] == "v2"
                                                       else ""))
                continue
            (raw, number), folder = found
            if what == "cpu":
                out["cpu_max"], out["cpu_limit_cores"] = raw, (round(number, 3) if number is not None else None)
            else:
                out["memory_max"] = raw
                out["memory_limit_mb"] = round(number / 2**20, 1) if number is not None else None
            if number is not None and folder != base / group.lstrip("/"):
                rel = str(folder.relative_to(base))
                notes.append(f"{what} limit from the group /{'' if rel == '.' else rel}")
    except Exception as exc:  # metadata; never fail a run for it
        notes.append(f"cannot read cgroup limits ({type(exc).__name__}: {exc})")
    out["note"] = "; ".join(notes) or None
    return out


# -- environment variables that change what a run does --------------------------------------------------------
# Read by the harness or an engine and changing what a run does or measures (fault points, waits, JVM flags).
# Every HARNESS_* not excluded below is recorded too, so a new switch is not missed.
BEHAVIOUR_ENV = ("JVM_ARGS", "HARNESS_IDLE_WAIT", "HARNESS_CGROUPS", "HARNESS_SPARK_FAIL_AFTER_WRITE",
                 "HARNESS_SPARK_STALL_AFTER_WRITE", "HARNESS_BATCH_STALL_BEFORE_COMMIT_S")
# Addresses and users (recorded under `services`, or irrelevant to what is measured) and test-only switches.
NOT_BEHAVIOUR_ENV = ("HARNESS_BOOTSTRAP_SERVERS", "HARNESS_PG_USER", "HARNESS_TEST_ENGINES",
                     "HARNESS_REQUIRE_CHROMIUM")
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|DSN|CREDENTIAL|API_?KEY", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"pass(word|wd)?\s*[=:]|secret|token|://[^/\s@:]*:[^/\s@]*@", re.IGNORECASE)
_PATH_NAME = re.compile(r"_(DIR|PATH|FILE|HOME)$")


def behaviour_env(environ: dict[str, str] | None = None) -> dict[str, object]:
    """{"variables": {name: value}, "skipped": [names whose value held a password]}: every HARNESS_FAULT_*
    variable, JVM_ARGS and the other HARNESS_* switches; never paths, addresses or anything secret."""
    try:
        env = dict(os.environ if environ is None else environ)
        wanted: dict[str, str] = {}
        skipped: list[str] = []
        for name in sorted(env):
            if _SECRET_NAME.search(name):
                continue
            if not (name in BEHAVIOUR_ENV or name.startswith("HARNESS_FAULT_")
                    or (name.startswith("HARNESS_") and name not in NOT_BEHAVIOUR_ENV
                        and not _PATH_NAME.search(name))):
                continue
            if _SECRET_VALUE.search(env[name]):
                skipped.append(name)
                continue
            wanted[name] = env[name]
        return {"variables": wanted, "skipped": skipped}
    except Exception:  # metadata; never fail a run for it
        return {"variables": {}, "skipped": []}


# -- a JVM's options -----------------------------------------------------------------------------------------
# java launcher options whose value is the next argument (so that value is not taken for the main class)
_JAVA_VALUE_OPTS = {"-cp", "-classpath", "--class-path", "-p", "--module-path", "--upgrade-module-path",
                    "--add-modules", "--add-exports", "--add-opens", "--add-reads", "--limit-modules",
                    "--patch-module", "--enable-native-access", "--source"}


def is_java(cmdline: list[str]) -> bool:
    """A java launcher's command line: argv[0]'s basename is `java`."""
    return bool(cmdline) and os.path.basename(cmdline[0]) == "java"


def jvm_options(cmdline: list[str]) -> list[str]:
    """The options of a java command line that decide its resources and behaviour: every -X... (-Xmx, -Xms,
    -Xss, -XX:...) and -javaagent... argument before the main class (or -jar/-m), in order. [] for a process
    that is not java (argv[0]'s basename is not `java`)."""
    if not is_java(cmdline):
        return []
    out: list[str] = []
    args = iter(cmdline[1:])
    for arg in args:
        if arg in _JAVA_VALUE_OPTS:
            next(args, None)
        elif arg in ("-jar", "-m", "--module") or not arg.startswith("-"):
            break                  # the main class, jar or module: what follows is the program's own arguments
        elif arg.startswith("-X") or arg.startswith("-javaagent"):
            out.append(arg)
    return out


# -- versions, commit, service settings ----------------------------------------------------------------------
def _pkg(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def commit(path: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """{"sha", "dirty", "modified", "untracked"} of the git tree at path (the project by default). Untracked
    files (not ignored ones) make it dirty too: a rerun from the commit alone would not have them."""
    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(["git", "--no-optional-locks", *args], cwd=path or paths.PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10)
            return p.stdout if p.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    sha = (git("rev-parse", "HEAD") or "").strip()
    out: dict[str, object] = {"sha": sha or None, "dirty": None, "modified": None, "untracked": None}
    if sha:
        status = git("status", "--porcelain", "--untracked-files=all")
        if status is not None:
            lines = [ln for ln in status.splitlines() if ln.strip()]
            untracked = sum(ln.startswith("?? ") for ln in lines)
            out.update(modified=len(lines) - untracked, untracked=untracked, dirty=bool(lines))
    return out


# PostgreSQL settings that change durability, write cost or memory (SHOW, so with their units)
PG_SETTINGS = ("synchronous_commit", "fsync", "wal_level", "shared_buffers", "work_mem", "max_wal_size",
               "checkpoint_timeout", "autovacuum", "track_commit_timestamp")
# Broker settings that change flushing, threads, replication and record sizes
KAFKA_SETTINGS = ("log.flush.interval.messages", "log.flush.interval.ms", "num.network.threads", "num.io.threads",
                  "log.segment.bytes", "default.replication.factor", "min.insync.replicas", "message.max.bytes",
                  "group.initial.rebalance.delay.ms", "num.partitions")


def postgres_settings(dsn: str) -> dict[str, object]:
    """{"server_version", "settings": {name: SHOW value | None}, "error"} from the live server."""
    out: dict[str, object] = {"server_version": None, "settings": {}, "error": None}
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
            settings: dict[str, str | None] = {}
            for name in ("server_version", *PG_SETTINGS):
                try:
                    row = conn.execute(f"SHOW {name}").fetchone()
                    settings[name] = str(row[0]) if row else None
                except psycopg.Error:
                    settings[name] = None      # a setting this server does not have
            out["server_version"] = settings.pop("server_version")
            out["settings"] = settings
    except Exception as exc:  # metadata; never fail a run for it
        out["error"] = _short(exc)
    return out


def kafka_settings(bootstrap: str, timeout: float = 10.0) -> dict[str, object]:
    """{"broker_id", "brokers", "configs": {name: int | None}, "error"}: the configuration of the broker with the
    lowest id, read with AdminClient.describe_configs within timeout seconds."""
    out: dict[str, object] = {"broker_id": None, "brokers": None, "configs": {}, "error": None}
    try:
        from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

        from harness.stack.probes import kafka_conf

        deadline = time.monotonic() + timeout
        admin = AdminClient(kafka_conf(bootstrap))
        md = admin.list_topics(timeout=timeout / 2)
        if not md.brokers:
            raise RuntimeError("the cluster lists no brokers")
        broker = min(md.brokers)
        out["broker_id"], out["brokers"] = broker, len(md.brokers)
        left = max(1.0, deadline - time.monotonic())
        futures = admin.describe_configs([ConfigResource(ResourceType.BROKER, str(broker))], request_timeout=left)
        entries = next(iter(futures.values())).result(timeout=left)
        out["configs"] = {name: _int(entries[name].value) if name in entries else None for name in KAFKA_SETTINGS}
    except Exception as exc:  # metadata; never fail a run for it
        out["error"] = _short(exc)
    return out


def _int(value: object) -> int | None:
    """Every broker setting recorded is a number; None for a null (unset) one."""
    try:
        return int(str(value).strip()) if value is not None else None
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


def versions(postgres_dsn: str | None = None, engines: list[type] | None = None,
             bootstrap: str | None = None) -> dict[str, object]:
    """The harness's own versions, then each engine's (its versions(): libraries and connectors), by name; the
    commit; and the live services' settings where their addresses are given."""
    import confluent_kafka

    pg = postgres_settings(postgres_dsn) if postgres_dsn else None
    return {
        "harness": __version__,
        "python": platform.python_version(),
        "java": jvm.java_version(),
        "kafka_jars": jvm.jar_version("kafka", "kafka_2.13"),
        "postgresql_server": pg["server_version"] if pg else None,
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "pandas": _pkg("pandas"),
        "commit": commit(),
        "engines": {cls.name: _engine_versions(cls) for cls in dict.fromkeys(engines or [])},
        "postgresql_settings": ({"settings": pg["settings"], "error": pg["error"]} if pg else None),
        "kafka_settings": kafka_settings(bootstrap) if bootstrap else None,
    }


def _engine_versions(cls: type) -> dict[str, object]:
    try:
        return dict(cls().versions())
    except Exception as exc:  # a version string is metadata; never fail a run for it
        return {"error": f"{type(exc).__name__}: {exc}"}
