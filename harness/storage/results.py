"""results/<run_id>/result.json: the typed result document (harness.results), rewritten atomically as the run goes.

A crash or Ctrl-C therefore keeps everything measured up to the last completed step. Bulky raw data (per-window
rows, time series) goes beside it under raw/ so reports work after the stack is gone.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from harness.results.document import EngineResult, LoadResult, ResultDocument


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ResultFile:
    def __init__(self, run_dir: Path, doc: ResultDocument) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "result.json"
        self.doc = doc
        run_dir.mkdir(parents=True, exist_ok=True)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.doc.dump(), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def add_engine(self, entry: EngineResult) -> EngineResult:
        self.doc.engines.append(entry)
        self.save()
        return entry

    def add_load(self, entry: LoadResult) -> LoadResult:
        self.doc.loads.append(entry)
        self.save()
        return entry

    def raw_dir(self, name: str) -> Path:
        d = self.run_dir / "raw" / name
        d.mkdir(parents=True, exist_ok=True)
        return d
