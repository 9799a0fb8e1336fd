"""How the generator keeps its schedule on a machine it shares with the engine.

A generator on a machine of its own needs a fraction of a core and sends each event at its intended time. Here
it shares two cores with the broker, PostgreSQL and the engine, and its send-delay tail is the scheduler's:
woken at an event's due time, it waits until the kernel lets it run. Under nice -10 that wait was a few
milliseconds at the 99th percentile whenever an engine kept both cores busy, near the 5 ms that labels a
capacity step machine-bound (with the generator's own block preparation, generator.PACED_BLOCK, it moved the
step where two searches stopped by 25-45%; the rest of that spread was the sending thread's own cost, see
generator.SLEEP_QUANTUM_NS). A real-time (SCHED_FIFO) main thread runs as soon as it is woken:
p99 0.02 ms against 1.6 ms under nice -10 for a 200 µs timer loop beside a running stack.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

GENERATOR_NICE = -10      # the generator's threads (librdkafka's too) over the engine's
SENDING_FIFO_PRIORITY = 10  # low among real-time priorities: above every ordinary thread, below the kernel's


def raise_priority() -> int:
    """Renice this process to GENERATOR_NICE, where allowed, and return the nice value it runs at. Linux keeps
    nice per thread, so this runs first, before librdkafka starts its threads (they inherit it)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, GENERATOR_NICE)
    except OSError:       # not root, or not allowed here: it runs at the default, and says so
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)


def _may_run_realtime() -> bool:
    """A machine where a real-time sender leaves a core to the rest (two or more), on a platform that has it."""
    return (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setscheduler")


def fifo_allowed() -> bool:
    """Whether this process may run a thread under SCHED_FIFO here (and the machine has a core to spare)."""
    if not _may_run_realtime():
        return False
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        return False
    os.sched_setscheduler(0, before[0], before[1])
    return True


@contextmanager
def realtime_sending(enabled: bool = True) -> Iterator[str | None]:
    """Run the calling thread under SCHED_FIFO while it sends a paced schedule, and give the policy it ran
    under ("SCHED_FIFO 10"), or None where it could not be set (not root, no real-time budget in this cgroup,
    one core). Only the sending thread: librdkafka's threads stay ordinary, so the broker and the engine are
    never starved by them. Unpaced sending (a backlog fill, the generator's ceiling) never runs real-time: a
    thread that never sleeps would hold a core."""
    policy: str | None = None
    if enabled and _may_run_realtime():
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(SENDING_FIFO_PRIORITY))
            policy = f"SCHED_FIFO {SENDING_FIFO_PRIORITY}"
        except OSError:
            policy = None
    try:
        yield policy
    finally:
        if policy is not None:
            try:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))   # keeps the thread's nice
            except OSError:
                pass
