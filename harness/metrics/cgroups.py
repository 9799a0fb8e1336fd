"""CPU and memory of one engine run, exactly, from a control group of its own.

Sampling processes every 0.5 s misses a child that lives between two samples and must guess how a reaped
child's CPU reaches its parent. The kernel's own accounting does neither: every process the engine starts
after it joined the group is charged to the group, children included, until the group is removed.

Where: nested under the harness's own group of each controller (read from /proc/self/cgroup), so nothing is
moved out of the group the harness runs in. cgroup v1 uses `cpuacct` (cpuacct.usage, ns) and `memory`
(memory.max_usage_in_bytes, which includes page cache); cgroup v2 uses a delegated subtree (cpu.stat's
usage_usec, memory.peak). Where neither can be created (no root, no delegation, no cgroupfs), create() returns
None with the reason, and the run falls back to sampling, recording which method was used.

Engines start their processes through harness.engines.launcher.JobProcess, whose children join the active
group between fork and exec (preexec_active), with adopt_active() after the start as a second chance; the run
activates its group around the engine's life.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path("/sys/fs/cgroup")
SUBTREE = "stream-harness"


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """controller -> this process's group path, from /proc/self/cgroup's lines "id:controllers:path"."""
    out: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for c in (controllers.split(",") if controllers else [""]):
            out[c] = path
    return out


def _remove_empty(subtree: Path) -> None:
    """Remove groups a killed harness left behind. rmdir refuses a group that still holds a process, so a
    running engine's group stays."""
    try:
        stale = [d for d in subtree.iterdir() if d.is_dir()]
    except OSError:
        return
    for d in stale:
        try:
            if not (d / "cgroup.procs").read_text().split():
                d.rmdir()
        except OSError:
            pass


def _v1_dir(controller: str, own: dict[str, str]) -> Path | None:
    if controller not in own:
        return None
    base = ROOT / controller
    if not (base / "cgroup.procs").exists():
        return None
    return base / own[controller].lstrip("/")


@dataclass
class EngineGroup:
    """One engine run's group: a folder per controller (v1) or one folder (v2)."""

    name: str
    method: str                          # "cgroup v1" | "cgroup v2"
    cpu_dir: Path
    memory_dir: Path | None

    @property
    def dirs(self) -> list[Path]:
        """Every folder a process must be written into (one in v2, where cpu and memory share it)."""
        return [self.cpu_dir, *([self.memory_dir] if self.memory_dir and self.memory_dir != self.cpu_dir else [])]

    @classmethod
    def create(cls, name: str) -> tuple["EngineGroup | None", str]:
        """A fresh group for name, or (None, why not)."""
        if os.environ.get("HARNESS_CGROUPS", "1") == "0":
            return None, "turned off (HARNESS_CGROUPS=0)"
        try:
            own = _own_paths(Path("/proc/self/cgroup").read_text())
        except OSError as exc:
            return None, f"cannot read /proc/self/cgroup ({exc})"
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        cpu = _v1_dir("cpuacct", own)
        if cpu is not None:
            mem = _v1_dir("memory", own)
            _remove_empty(cpu / SUBTREE)
            if mem is not None:
                _remove_empty(mem / SUBTREE)
            try:
                cpu_dir = cpu / SUBTREE / safe
                cpu_dir.mkdir(parents=True, exist_ok=True)
                mem_dir = None
                if mem is not None:
                    mem_dir = mem / SUBTREE / safe
                    try:
                        mem_dir.mkdir(parents=True, exist_ok=True)
                    except OSError:
                        mem_dir = None
                return cls(safe, "cgroup v1", cpu_dir, mem_dir), ""
            except OSError as exc:
                return None, f"cannot create a cgroup v1 cpuacct group under {cpu} ({exc.strerror})"
        if "" in own and (ROOT / "cgroup.controllers").exists():
            base = ROOT / own[""].lstrip("/")
            try:
                # v2: a process may only sit in a leaf, and the harness's own group already holds the harness,
                # so the engine group is a sibling inside a subtree the harness was delegated.
                d = base / SUBTREE / safe
                d.mkdir(parents=True, exist_ok=True)
                return cls(safe, "cgroup v2", d, d), ""
            except OSError as exc:
                return None, f"cannot create a cgroup v2 group under {base} ({exc.strerror}; needs delegation)"
        return None, "no writable cgroup v1 cpuacct or cgroup v2 hierarchy"

    def adopt(self, pid: int) -> bool:
        """Move pid into the group; what it starts from now on is charged here too."""
        ok = False
        for d in self.dirs:
            try:
                (d / "cgroup.procs").write_text(str(pid))
                ok = True
            except OSError:
                pass
        return ok

    def cpu_seconds(self) -> float | None:
        try:
            if self.method == "cgroup v1":
                return int((self.cpu_dir / "cpuacct.usage").read_text()) / 1e9
            for line in (self.cpu_dir / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except (OSError, ValueError):
            return None
        return None

    def memory_max_bytes(self) -> int | None:
        if self.memory_dir is None:
            return None
        name = "memory.max_usage_in_bytes" if self.method == "cgroup v1" else "memory.peak"
        try:
            return int((self.memory_dir / name).read_text())
        except (OSError, ValueError):
            return None

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in (self.cpu_dir / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def close(self) -> None:
        """Remove the group. Processes still in it (there should be none once the engine stopped) go back to
        the group the harness runs in, the parent of the subtree."""
        for d in self.dirs:
            parent = d.parent.parent
            for _ in range(3):
                try:
                    for pid in (d / "cgroup.procs").read_text().split():
                        try:
                            (parent / "cgroup.procs").write_text(pid)
                        except OSError:
                            pass
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.2)


_active: EngineGroup | None = None


def activate(group: EngineGroup | None) -> None:
    global _active
    _active = group


def adopt_active(pid: int) -> None:
    """Called by the launcher for every engine process it starts (a second chance after preexec_active)."""
    if _active is not None and pid not in _active.pids():
        _active.adopt(pid)


def preexec_active() -> Callable[[], None] | None:
    """For Popen(preexec_fn=...): the child joins the active group between fork and exec, so even its start-up
    is charged there (moving it after Popen returns misses what it did meanwhile)."""
    group = _active
    if group is None:
        return None
    dirs = group.dirs

    def join() -> None:
        for d in dirs:
            try:
                with open(d / "cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
            except OSError:
                pass
    return join
