"""How idle the machine's CPUs are, from /proc/stat, and the wait before an engine starts.

On two cores the previous engine's JVM, a compaction in the broker or an autovacuum can still be burning CPU
when the next engine starts, and that engine then pays for work that is not its own. Before each engine the
harness waits until the CPUs have been at least MIN_IDLE idle over WINDOW_S, for at most MAX_WAIT_S, and
records what it saw. HARNESS_IDLE_WAIT=0 turns the wait off (the tests do: they measure no speed).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

MIN_IDLE = 0.90
WINDOW_S = 2.0
MAX_WAIT_S = 15.0
PROC_STAT = Path("/proc/stat")


def _totals() -> tuple[int, int] | None:
    """(idle + iowait jiffies, all jiffies) over every CPU, or None where /proc/stat cannot be read."""
    try:
        first = PROC_STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    ticks = [int(x) for x in first[1:]]
    # user nice system idle iowait irq softirq steal (guest is already inside user)
    return ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks[:8])


def busy_cpu_seconds() -> float | None:
    """CPU seconds every CPU of the machine has spent busy since boot (a counter: differences are what count),
    or None where /proc/stat cannot be read."""
    t = _totals()
    return None if t is None else (t[1] - t[0]) / os.sysconf("SC_CLK_TCK")


def idle_fraction(window_s: float = WINDOW_S) -> float | None:
    """The share of CPU time spent idle over the next window_s seconds."""
    a = _totals()
    time.sleep(window_s)
    b = _totals()
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


@dataclass(frozen=True)
class IdleWait:
    idle: float | None        # the last window's idle share (None: unreadable, or the wait was off)
    waited_s: float
    reached: bool             # idle reached MIN_IDLE within MAX_WAIT_S
    enabled: bool


def wait_for_idle(min_idle: float = MIN_IDLE, window_s: float = WINDOW_S, max_wait_s: float = MAX_WAIT_S) -> IdleWait:
    """Block until the CPUs were idle at least min_idle over window_s, or max_wait_s has passed."""
    if os.environ.get("HARNESS_IDLE_WAIT", "1") == "0":
        return IdleWait(None, 0.0, False, enabled=False)
    t0 = time.monotonic()
    idle = None
    while True:
        idle = idle_fraction(window_s)
        if idle is None or idle >= min_idle:
            return IdleWait(idle, round(time.monotonic() - t0, 2), idle is not None, enabled=True)
        if time.monotonic() - t0 + window_s > max_wait_s:
            return IdleWait(idle, round(time.monotonic() - t0, 2), False, enabled=True)
