"""Finding engines, and turning a scenario's engine sections into validated settings.

An engine is found in one of two ways:

* a folder `<name>/engine.py` that defines `ENGINE`, in the engine path: `pipelines/` of this project, or the
  folders listed in HARNESS_ENGINE_PATH (separated like PATH), which then replace `pipelines/`;
* an entry point in the group `stream_harness.engines` (`name = "package.module:EngineClass"`), for a team that
  keeps its own engine in its own package.

Either way ENGINE.name must be the folder's (or entry point's) name, and everything the harness needs to know
about an engine comes from its class and its folder (engine_folder).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness import paths
from harness.errors import HarnessError

ENTRY_POINT_GROUP = "stream_harness.engines"
ENGINE_PATH_ENV = "HARNESS_ENGINE_PATH"


def engine_path() -> list[Path]:
    raw = os.environ.get(ENGINE_PATH_ENV)
    if raw:
        return [Path(p).resolve() for p in raw.split(os.pathsep) if p]
    return [paths.pipelines_dir()]


def _from_folder(root: Path, f: Path) -> type | None:
    name = f.parent.name
    if root == paths.pipelines_dir():
        module = importlib.import_module(f"pipelines.{name}.engine")
    else:  # a folder outside the project: its parent goes on sys.path, so `<name>.job` imports too
        if str(root) in sys.path:
            sys.path.remove(str(root))
        sys.path.insert(0, str(root))
        cached = sys.modules.get(f"{name}.engine")
        if cached is not None and Path(getattr(cached, "__file__", "") or "").resolve() != f.resolve():
            # the same name from another folder earlier in this process: import this folder's instead
            for mod in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
                del sys.modules[mod]
        module = importlib.import_module(f"{name}.engine")
    return getattr(module, "ENGINE", None)


def _check_name(cls: Any, name: str, where: str) -> None:
    if getattr(cls, "name", None) != name:
        raise HarnessError(f"{where}: ENGINE.name is {getattr(cls, 'name', None)!r}, expected {name!r}")


def discover() -> dict[str, type]:
    """Every engine in the engine path and the entry-point group, by name."""
    found: dict[str, type] = {}
    for root in engine_path():
        for f in sorted(root.glob("*/engine.py")):
            cls = _from_folder(root, f)
            if cls is None:
                continue
            _check_name(cls, f.parent.name, str(f))
            found[f.parent.name] = cls
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            raise HarnessError(f"engine {ep.name!r} is both a folder ({engine_folder(found[ep.name])}) and the entry "
                               f"point {ep.value!r}; rename one")
        cls = ep.load()
        _check_name(cls, ep.name, f"entry point {ep.value}")
        found[ep.name] = cls
    return found


def engine_folder(cls: type) -> Path:
    """The folder that holds an engine's module: its pom.xml, requirements.txt and job live there."""
    return Path(inspect.getfile(cls)).resolve().parent


def changed_settings(settings: Any) -> dict[str, Any]:
    """The settings a run changed from the engine's own defaults (its settings model's)."""
    return settings.model_dump(mode="json", exclude_defaults=True)


def validate_settings(cls: type, raw: dict[str, Any], source: str) -> Any:
    try:
        return cls.settings_model.model_validate(raw)
    except ValidationError as exc:
        from harness.scenario import describe_validation_error

        text = describe_validation_error(source, exc).replace("  ", f"  engines.{cls.name}.", 1)
        lines = text.splitlines()
        lines[1:] = [ln if ln.startswith(f"  engines.{cls.name}.") else ln.replace("  ", f"  engines.{cls.name}.", 1)
                     for ln in lines[1:]]
        raise HarnessError("\n".join(lines)) from None


def parse_engine_options(options: list[str]) -> dict[str, dict[str, Any]]:
    """--engine-option name.key=value (repeatable); values are parsed as YAML scalars (1, true, 5s stay typed)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for opt in options:
        left, eq, value = opt.partition("=")
        name, dot, key = left.partition(".")
        if not (eq and dot and name and key):
            raise HarnessError(f"--engine-option {opt!r} is not NAME.KEY=VALUE (e.g. flink.parallelism=2)")
        out.setdefault(name, {})[key] = yaml.safe_load(value) if value else value
    return out
