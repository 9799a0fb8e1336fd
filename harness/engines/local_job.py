"""What engines that run one local job process share: launch it with its config, know it runs once it writes
its status file, read its position from that file, and stop it with nothing left behind."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness.engines.launcher import JobProcess
from harness.engines.protocol import EngineBase, EngineContext, Position, Restart, S
from harness.errors import EXIT_FAILED, HarnessError
from harness.stack import processes


class StatusFileJob(JobProcess):
    """A job process (JobProcess) that writes <work_dir>/status.json ({"offsets": {partition: next},
    "records_in": n, ...}): it runs once that file exists, and its position is read from it."""

    def launch(self, cmd: list[str], ctx: EngineContext[Any], config: dict[str, Any]) -> None:
        self.start(cmd, ctx.work_dir, config, run_id=ctx.run_id, load_id=ctx.load_id)

    def relaunch(self, changes: dict[str, Any]) -> None:
        """Start again after a kill; it runs again once it has written a new status file."""
        self.status_file.unlink(missing_ok=True)
        super().relaunch(changes)

    @property
    def status_file(self) -> Path:
        assert self.work_dir is not None
        return self.work_dir / "status.json"

    def wait_running(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"the {self.what} exited while starting:\n"
                                   f"{processes.tail(self.log_file)}", exit_code=EXIT_FAILED)
            if self.status_file.exists():
                return
            time.sleep(0.1)
        raise HarnessError(f"the {self.what} did not start within {timeout_s:.0f} s", exit_code=EXIT_FAILED)

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


class LocalJobEngine(EngineBase[S]):
    """Base for engines whose whole pipeline is one local job process (StatusFileJob): the lifecycle half of
    the Engine Protocol, so an engine class only describes itself and builds its job's config."""

    job: StatusFileJob
    stop_grace_s: float = 15
    def restart_config(self, restart: Restart) -> dict[str, Any]:
        """The job config's changes for this restart (the policy's start position)."""
        return {}

    def restart(self, restart: Restart) -> None:
        self.job.relaunch(self.restart_config(restart))

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
