"""CPU and memory of every process an engine owns, children included (also children that already exited).

CPU seconds: user + system of each process plus its reaped children (psutil cpu_times children_*), taking the
last value seen for processes that have gone. Peak memory: the largest sampled sum of RSS, and beside it the
sum of each process's kernel high-water mark (VmHWM in /proc/<pid>/status), which psutil does not give on
Linux and which catches peaks between samples (an upper bound, since the peaks need not coincide).
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


@dataclass
class ResourceSampler:
    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    hwm_by_pid: dict[int, int] = field(default_factory=dict)
    peak_rss: int = 0
    series: list[dict[str, float]] = field(default_factory=list)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)

    def sample(self, roots: list[int], t0: float) -> None:
        rss = 0
        seen: set[int] = set()
        for root in roots:
            try:
                r = self._procs.get(root) or psutil.Process(root)
                procs = [r] + r.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                if p.pid in seen:
                    continue
                seen.add(p.pid)
                p = self._procs.setdefault(p.pid, p)
                try:
                    # A child younger than a second is usually a fork about to exec (a JVM running chmod):
                    # its RSS is the parent's shared pages. Its CPU reaches the parent's children_* once reaped.
                    if p.pid not in roots and time.time() - p.create_time() < 1.0:
                        continue
                    with p.oneshot():
                        c = p.cpu_times()
                        self.cpu_by_pid[p.pid] = c.user + c.system + c.children_user + c.children_system
                        rss += p.memory_info().rss
                    self.hwm_by_pid[p.pid] = max(self.hwm_by_pid.get(p.pid, 0), _hwm_kb(p.pid))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        self.peak_rss = max(self.peak_rss, rss)
        self.series.append({"t": round(time.monotonic() - t0, 3), "cpu_s": round(self.cpu_seconds, 3),
                            "rss_mb": round(rss / 2**20, 1), "processes": len(seen)})

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_pid.values())

    def summary(self, events: int) -> dict[str, object]:
        cpu = self.cpu_seconds
        return {
            "cpu_seconds": round(cpu, 3),
            "cpu_seconds_per_million_events": round(cpu / (events / 1e6), 2) if events else None,
            "peak_rss_mb": round(self.peak_rss / 2**20, 1),
            "peak_hwm_sum_mb": round(sum(self.hwm_by_pid.values()) / 1024, 1),
            "processes_seen": len(self.cpu_by_pid),
        }
