"""Finding java and the jars Maven fetched (`harness setup`: jvm/kafka/pom.xml and pipelines/<name>/pom.xml ->
.cache/jars/<name>/; group = the stack's "kafka" or an engine's name)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness import paths
from harness.errors import HarnessError


def find_java() -> str:
    """The java executable: $JAVA_HOME/bin/java, else java on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise HarnessError(
            "java not found: the Kafka broker and the JVM engines need a Java runtime (OpenJDK 17 or newer)",
            hint="install OpenJDK 17 and put java on PATH, or set JAVA_HOME",
        )
    return found


def java_home() -> str:
    """$JAVA_HOME, else the installation the java on PATH belongs to (Flink's and Spark's scripts want it)."""
    return os.environ.get("JAVA_HOME") or str(Path(find_java()).resolve().parent.parent)


def java_version(java: str | None = None) -> str:
    try:
        out = subprocess.run([java or find_java(), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired, HarnessError):
        return "unknown"
    first = (out.stderr or out.stdout).splitlines()
    return first[0].strip() if first else "unknown"


def jar_dir(group: str) -> Path:
    d = paths.jars_dir() / group
    if not d.is_dir() or not any(d.glob("*.jar")):
        raise HarnessError(
            f"the {group} jars are missing from {d}",
            hint="run `harness setup` (or `make setup`): it runs `mvn -f <pom.xml> generate-resources` for the stack's "
                 "jvm/kafka/pom.xml and each engine folder's pom.xml",
        )
    return d


def jars(group: str) -> list[Path]:
    return sorted(jar_dir(group).glob("*.jar"))


def classpath(group: str) -> str:
    return os.pathsep.join(str(j) for j in jars(group))


def jar_version(group: str, artifact_prefix: str) -> str | None:
    """Version of the first jar named <artifact_prefix>-<version>.jar in a group, for result metadata."""
    try:
        for j in jars(group):
            stem = j.name[: -len(".jar")]
            if stem.startswith(artifact_prefix + "-"):
                rest = stem[len(artifact_prefix) + 1:]
                if rest[:1].isdigit():
                    return rest
    except HarnessError:
        return None
    return None
