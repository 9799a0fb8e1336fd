"""results/<run_id>/result.json: one versioned document, rewritten atomically as the run goes.

A crash or Ctrl-C therefore keeps everything measured up to the last completed step. Bulky raw data (per-window
rows, time series) goes beside it under raw/ so reports work after the stack is gone.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ResultFile:
    def __init__(self, run_dir: Path, header: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "result.json"
        self.doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **header, "loads": [], "engines": []}
        run_dir.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=2, default=_jsonable)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def update(self, **fields: Any) -> None:
        self.doc.update(fields)
        self.save()

    def add(self, section: str, entry: dict[str, Any]) -> dict[str, Any]:
        self.doc[section].append(entry)
        self.save()
        return entry

    def raw_dir(self, name: str) -> Path:
        d = self.run_dir / "raw" / name
        d.mkdir(parents=True, exist_ok=True)
        return d


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_result(run_dir: Path) -> dict[str, Any]:
    with open(Path(run_dir) / "result.json") as f:
        return json.load(f)
