"""The one way an engine runs its job process: write its config, start it in its own session with its log,
record it in the process registry, watch it, and stop it with nothing left behind.

Every engine's job (baseline, batch, Flink, Spark) is started by JobProcess, and its config starts with
job_config(): the same keys, names and units (milliseconds, `*_ms`) for every engine.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from harness import paths
from harness.metrics import cgroups
from harness.engines.protocol import EngineContext
from harness.scenario import Window
from harness.stack import processes


def window_config(w: Window) -> dict[str, Any]:
    """The window as every job reads it: {"type", "size_ms", "slide_ms", "gap_ms"} (None where not used)."""
    return {"type": w.type, "size_ms": w.size, "slide_ms": w.slide, "gap_ms": w.gap}


def job_config(ctx: EngineContext[Any], engine: str, **extra: Any) -> dict[str, Any]:
    """The part of a job's config.json that is the same for every engine, plus the engine's own keys."""
    return {
        "bootstrap": ctx.bootstrap, "topic": ctx.topic, "partitions": ctx.scenario.topic.partitions,
        "dsn": ctx.dsn, "load_id": ctx.load_id, "engine": engine, "repeat": ctx.repeat,
        "window": window_config(ctx.scenario.query.window),
        "watermark_delay_ms": ctx.scenario.query.watermark_delay,
        "max_clock_skew_ms": ctx.scenario.query.max_clock_skew,   # None: the rule is off
        "status_file": str(ctx.work_dir / "status.json"),
        **extra,
    }


class JobProcess:
    """One job process: `cmd config.json`, started in its own session (its own process group), stdout and
    stderr in <work_dir>/job.log, recorded in the process registry until stop() has stopped it."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.proc: subprocess.Popen[bytes] | None = None
        self.work_dir: Path | None = None
        self._created: float | None = None  # the process's create_time
        self._stopped = False
        self._launch: dict[str, Any] = {}     # start()'s arguments, for relaunch()

    @property
    def log_file(self) -> Path:
        assert self.work_dir is not None
        return self.work_dir / "job.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, cmd: list[str], work_dir: Path, config: dict[str, Any], *, cwd: Path | None = None,
              env: dict[str, str] | None = None, run_id: str | None = None, load_id: str | None = None) -> None:
        """Write work_dir/config.json and start `cmd work_dir/config.json` (cwd: the project root unless given)."""
        self._launch = {"cmd": cmd, "work_dir": work_dir, "config": config, "cwd": cwd, "env": env,
                        "run_id": run_id, "load_id": load_id}
        if self.proc is not None and self.proc.poll() is not None:
            processes.unregister(self.proc.pid)   # a restart after a kill: the old process is gone
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        cfg = work_dir / "config.json"
        cfg.write_text(json.dumps(config, indent=2))
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen([*cmd, str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=cwd or paths.PROJECT_ROOT, env=env,
                                         start_new_session=True,
                                         preexec_fn=cgroups.preexec_active())
        cgroups.adopt_active(self.proc.pid)
        self._stopped = False
        self._created = processes.register(self.proc.pid, self.what, run_id=run_id,
                                           load_id=load_id or config.get("load_id"), work_dir=str(work_dir))

    def relaunch(self, changes: dict[str, Any]) -> None:
        """Start the job again (after a kill), as it was started last, with these changes to its config."""
        assert self._launch, "relaunch before start"
        launch = dict(self._launch)
        launch["config"] = {**launch["config"], **changes}
        self.start(launch.pop("cmd"), launch.pop("work_dir"), launch.pop("config"), **launch)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.alive() else []

    def stop(self, grace_s: float = 15, kill_after_s: float = 10) -> None:
        """SIGTERM, up to grace_s for the job to finish by itself, then SIGTERM/SIGKILL its process tree (as it
        was while it ran: a JVM it started may outlive it) and whatever is left in its process group.
        Idempotent."""
        if self.proc is None or self._stopped:
            return
        pid = self.proc.pid
        tree = processes.with_children([pid]) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        processes.terminate_all(tree, timeout=kill_after_s)
        if self._created is not None:  # its own session: the group is pid's, and nothing in it is older
            processes.terminate_all(processes.group_members(pid, self._created), timeout=kill_after_s)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._stopped = True
        processes.unregister(pid)
