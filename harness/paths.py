"""Where things live on disk. Every location can be moved with an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).resolve() if value else default


def stack_dir() -> Path:
    """Data and logs of the embedded Kafka and PostgreSQL (HARNESS_STACK_DIR)."""
    return _env_path("HARNESS_STACK_DIR", PROJECT_ROOT / ".stack")


def process_registry_dir() -> Path:
    """One JSON file per process that an engine or a session cluster started (<stack dir>/processes), so
    `harness stack status` and `harness stack down` find what a killed harness left running."""
    return stack_dir() / "processes"


def jars_dir() -> Path:
    """Jars that `harness setup` had Maven copy, one folder per engine or the broker (HARNESS_JARS_DIR)."""
    return _env_path("HARNESS_JARS_DIR", PROJECT_ROOT / ".cache" / "jars")


def results_dir() -> Path:
    """One folder per run (HARNESS_RESULTS_DIR)."""
    return _env_path("HARNESS_RESULTS_DIR", PROJECT_ROOT / "results")


def package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it (some packages' imports have side
    effects, and a JVM distribution inside a wheel is all that is needed)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def pipelines_dir() -> Path:
    return PROJECT_ROOT / "pipelines"
