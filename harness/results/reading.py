"""Reading result.json: a clear error (exit 2) for anything that is not a result this harness can read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.errors import HarnessError
from harness.results.document import SCHEMA_VERSION, ResultDocument
from harness.results.migrations import READABLE, upgrade

RESULT_FILE = "result.json"


def result_path(run_dir_or_file: str | Path) -> Path:
    p = Path(run_dir_or_file)
    return p if p.suffix == ".json" else p / RESULT_FILE


def load(run_dir: str | Path) -> ResultDocument:
    """The typed document of a run folder (or of a result.json path), upgraded to SCHEMA_VERSION."""
    path = result_path(run_dir)
    if not path.is_file():
        raise HarnessError(f"{path.parent}: no {RESULT_FILE} (not a run folder?)",
                           hint="run folders are results/<run_id>/, written by `harness run`")
    try:
        text = path.read_text()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read it: {exc}") from None
    return parse(text, str(path))


def parse(text: str, where: str = RESULT_FILE) -> ResultDocument:
    try:
        raw: Any = json.loads(text)
    except ValueError as exc:
        raise HarnessError(f"{where}: not a result document: the JSON is broken or cut short ({exc})",
                           hint="a run killed while writing keeps result.json.tmp; result.json is written "
                                "atomically, so a broken one was edited or copied in part") from None
    if not isinstance(raw, dict) or "schema_version" not in raw or "run_id" not in raw:
        raise HarnessError(f"{where}: not a result document (no schema_version and run_id at the top level)",
                           hint="`harness report` reads results/<run_id>/result.json written by `harness run`")
    version = raw["schema_version"]
    if version not in READABLE:
        raise HarnessError(f"{where}: result schema version {version!r} cannot be read by this harness, which "
                           f"reads versions {', '.join(map(str, READABLE))} (current: {SCHEMA_VERSION})",
                           hint="a newer harness wrote it: read it with that version"
                           if isinstance(version, int) and version > SCHEMA_VERSION else None)
    try:
        return ResultDocument.model_validate(upgrade(raw))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()[:5])
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise HarnessError(f"{where}: not a valid schema-{SCHEMA_VERSION} result document: {problems}{more}",
                           hint="docs/results.md describes the fields; docs/result-schema.json is the JSON Schema") \
            from None
