"""What a caller gives a run (RunOptions) and how the run reports progress back (RunHooks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.loadgen.generator import SendStats


@dataclass
class RunOptions:
    scenario_path: Path
    bootstrap: str | None = None
    dsn: str | None = None
    results_dir: Path | None = None
    run_id: str | None = None
    engines: list[str] | None = None          # None: the scenario's engines section
    engine_options: list[str] = field(default_factory=list)
    repeat: int = 1
    backlog: bool = False                     # --backlog: load.mode backlog
    load: str = "generator"                   # --load: generator (one process) or locust (--locust-workers)
    locust_workers: int = 2


@dataclass
class RunHooks:
    """How the runner reports progress; the CLI renders it, tests ignore it."""

    message: Callable[[str], None] = lambda _m: None
    sending: Callable[[str, SendStats], None] = lambda _l, _s: None
    monitor: Callable[[str, dict[str, Any]], None] = lambda _l, _d: None
    started: Callable[[Path], None] = lambda _d: None  # the run folder exists (result.json is being written)
