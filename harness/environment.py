"""Machine, versions and commit recorded with every result, so results can be compared honestly."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess

import psutil

from harness import __version__, paths
from harness.stack import jvm


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
    }


def _pkg(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def commit() -> dict[str, object]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=paths.PROJECT_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    sha = git("rev-parse", "HEAD")
    return {"sha": sha or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if sha else None}


def versions(postgres_dsn: str | None = None, engines: list[type] | None = None) -> dict[str, object]:
    """The harness's own versions, then each engine's (its versions(): libraries and connectors), by name."""
    import confluent_kafka

    pg = None
    if postgres_dsn:
        try:
            import psycopg

            with psycopg.connect(postgres_dsn, connect_timeout=5) as conn:
                pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        except Exception:  # a version string is metadata; never fail a run for it
            pg = None
    return {
        "harness": __version__,
        "python": platform.python_version(),
        "java": jvm.java_version(),
        "kafka_jars": jvm.jar_version("kafka", "kafka_2.13"),
        "postgresql_server": pg,
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "pandas": _pkg("pandas"),
        "commit": commit(),
        "engines": {cls.name: _engine_versions(cls) for cls in dict.fromkeys(engines or [])},
    }


def _engine_versions(cls: type) -> dict[str, object]:
    try:
        return dict(cls().versions())
    except Exception as exc:  # a version string is metadata; never fail a run for it
        return {"error": f"{type(exc).__name__}: {exc}"}
