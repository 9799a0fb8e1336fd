"""CPU and memory of every process an engine owns, children included (also children that already exited).

CPU seconds: user + system of each process plus its reaped children (psutil cpu_times children_*). A watched
child that exits is counted once: its CPU as last seen is credited to its parent, and the parent counts the
larger of that credit and what the kernel added to its children_* when it reaped the child (the reaped figure
includes the child's last moments, the credit covers a child not reaped yet). A process whose parent is not
watched (a root, or an orphan) keeps the last value seen. Peak memory: the largest sampled sum of RSS, and
beside it the sum of each process's kernel high-water mark (VmHWM in /proc/<pid>/status), which psutil does not
give on Linux and which catches peaks between samples (an upper bound, since the peaks need not coincide).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def service_cpu_seconds(pid: int) -> float | None:
    """CPU a service has used so far: the process, the children it has reaped (PostgreSQL's ended backends)
    and its live children. None once it is gone."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            try:
                c = p.cpu_times()
                total += c.user + c.system + c.children_user + c.children_system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return round(total, 3)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@dataclass
class _Watched:
    proc: psutil.Process
    ppid: int
    own: float = 0.0                # user + system of the process itself
    reaped: float = 0.0             # children_user + children_system: the children it has waited for
    reaped_at_first_sight: float = 0.0  # of those, children that had exited before it was watched
    exited_children: float = 0.0    # CPU of watched children that have gone, as last seen

    @property
    def total(self) -> float:
        # A watched child that exited is in `reaped` once its parent waited for it, and in `exited_children`
        # as soon as it is gone: the larger of the two counts it once.
        return self.own + max(self.reaped, self.reaped_at_first_sight + self.exited_children)


@dataclass
class ResourceSampler:
    cpu_by_pid: dict[int, float] = field(default_factory=dict)  # CPU per process at its last sight
    hwm_by_pid: dict[int, int] = field(default_factory=dict)
    peak_rss: int = 0
    series: list[dict[str, float]] = field(default_factory=list)
    _watched: dict[int, _Watched] = field(default_factory=dict)
    _gone_unwatched_parent: float = 0.0  # exited processes no watched process will reap (roots, orphans)

    def sample(self, roots: list[int], t0: float) -> None:
        rss = 0
        seen: set[int] = set()
        for root in roots:
            try:
                w = self._watched.get(root)
                r = w.proc if w is not None else psutil.Process(root)
                procs = [r] + r.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                if p.pid in seen:
                    continue
                seen.add(p.pid)
                w = self._watched.get(p.pid)
                if w is not None and w.proc != p:  # the pid was reused: the old process is gone
                    self._gone([p.pid])
                    w = None
                try:
                    # A child younger than a second is usually a fork about to exec (a JVM running chmod):
                    # its RSS is the parent's shared pages. Its CPU reaches the parent's children_* once reaped.
                    if w is None and p.pid not in roots and time.time() - p.create_time() < 1.0:
                        continue
                    with p.oneshot():
                        c = p.cpu_times()
                        ppid = p.ppid()
                        mem = p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                reaped = c.children_user + c.children_system
                if w is None:
                    w = self._watched[p.pid] = _Watched(p, ppid, reaped_at_first_sight=reaped)
                w.ppid, w.own, w.reaped = ppid, c.user + c.system, reaped
                rss += mem
                self.cpu_by_pid[p.pid] = w.total
                self.hwm_by_pid[p.pid] = max(self.hwm_by_pid.get(p.pid, 0), _hwm_kb(p.pid))
        self._gone([pid for pid, w in self._watched.items() if pid not in seen and not w.proc.is_running()])
        self.peak_rss = max(self.peak_rss, rss)
        self.series.append({"t": round(time.monotonic() - t0, 3), "cpu_s": round(self.cpu_seconds, 3),
                            "rss_mb": round(rss / 2**20, 1), "processes": len(seen)})

    def _gone(self, pids: list[int]) -> None:
        """Retire exited processes, children before their parents, crediting each to its watched parent."""
        gone = set(pids)
        while gone:
            parents = {self._watched[pid].ppid for pid in gone}
            leaves = [pid for pid in gone if pid not in parents] or list(gone)  # (a cycle only via pid reuse)
            for pid in leaves:  # no gone child of its own left
                w = self._watched.pop(pid)
                gone.discard(pid)
                self.cpu_by_pid[pid] = w.total
                parent = self._watched.get(w.ppid)
                if parent is not None:
                    parent.exited_children += w.total
                else:
                    self._gone_unwatched_parent += w.total

    @property
    def cpu_seconds(self) -> float:
        return sum(w.total for w in self._watched.values()) + self._gone_unwatched_parent

    def summary(self, events: int) -> dict[str, object]:
        cpu = self.cpu_seconds
        return {
            "cpu_seconds": round(cpu, 3),
            "cpu_seconds_per_million_events": round(cpu / (events / 1e6), 2) if events else None,
            "peak_rss_mb": round(self.peak_rss / 2**20, 1),
            "peak_hwm_sum_mb": round(sum(self.hwm_by_pid.values()) / 1024, 1),
            "processes_seen": len(self.cpu_by_pid),
        }
