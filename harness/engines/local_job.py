"""What engines that run one local job process share: launch it with its config, know it runs once it writes
its status file, read its position from that file, and stop it with nothing left behind."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import paths
from harness.engines.protocol import EngineBase, Position, S
from harness.errors import EXIT_FAILED, HarnessError
from harness.stack import processes


class StatusFileJob:
    """A job process that writes <work_dir>/status.json ({"offsets": {partition: next}, "records_in": n, ...})."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.proc: subprocess.Popen[bytes] | None = None
        self.work_dir: Path | None = None

    def launch(self, cmd: list[str], work_dir: Path, config: dict[str, Any]) -> None:
        self.work_dir = work_dir
        (work_dir / "config.json").write_text(json.dumps(config, indent=2))
        with open(work_dir / "job.log", "ab") as log:
            self.proc = subprocess.Popen([*cmd, str(work_dir / "config.json")], stdout=log, stderr=subprocess.STDOUT,
                                         cwd=paths.PROJECT_ROOT)

    @property
    def status_file(self) -> Path:
        assert self.work_dir is not None
        return self.work_dir / "status.json"

    def wait_running(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"the {self.what} exited while starting:\n"
                                   f"{processes.tail(self.status_file.with_name('job.log'))}", exit_code=EXIT_FAILED)
            if self.status_file.exists():
                return
            time.sleep(0.1)
        raise HarnessError(f"the {self.what} did not start within {timeout_s:.0f} s", exit_code=EXIT_FAILED)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.alive() and self.proc else []

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError, AssertionError):
            return {}

    def position(self) -> Position | None:
        st = self.status()
        if not st:
            return None
        return Position({int(p): int(o) for p, o in st.get("offsets", {}).items()}, st.get("records_in"))

    def stop(self, grace_s: float = 15) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        processes.terminate_tree(self.proc.pid, timeout=10)


class LocalJobEngine(EngineBase[S]):
    """Base for engines whose whole pipeline is one local job process (StatusFileJob): the lifecycle half of
    the Engine Protocol, so an engine class only describes itself and builds its job's config."""

    job: StatusFileJob
    stop_grace_s: float = 15

    def wait_running(self, timeout_s: float) -> None:
        self.job.wait_running(timeout_s)

    def alive(self) -> bool:
        return self.job.alive()

    def pids(self) -> list[int]:
        return self.job.pids()

    def position(self) -> Position | None:
        return self.job.position()

    def stop(self) -> None:
        self.job.stop(grace_s=self.stop_grace_s)
