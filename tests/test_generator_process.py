"""The load generator runs in a process of its own (not a thread of the harness), is in the process registry
while it sends, and leaves nothing behind: after a whole load, and when stopped mid-load."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from conftest import Svc, scenario_dict
from harness.loadgen.priority import SENDING_FIFO_PRIORITY, fifo_allowed
from harness.run import RunHooks
from harness.run.load import LoadSession
from harness.scenario import parse_scenario
from harness.stack import processes

pytestmark = pytest.mark.stack
FIFO_ALLOWED = fifo_allowed()


def _session(svc: Svc, name: str, duration: str) -> LoadSession:
    s = parse_scenario(scenario_dict(name=name, duration=duration))
    return LoadSession(s, svc.bootstrap, svc.dsn, run_id=f"t-{name}", load_id=f"t-{name}-{time.time_ns()}",
                       engine=None, repeat=0, results=None, hooks=RunHooks())


def _registered(pid: int) -> bool:
    return any(e["pid"] == pid and e["alive"] for e in processes.registered())


def test_generator_is_its_own_process_and_leaves_nothing(svc: Svc) -> None:
    whole = _session(svc, "genproc", "2s")
    whole.prepare()
    whole.begin(heartbeat_until_ms=None)
    gen = whole.gen
    assert gen is not None and gen.pid is not None and gen.pid != os.getpid()
    assert psutil.Process(gen.pid).ppid() == os.getpid() and _registered(gen.pid)
    assert gen.pid not in [t.id for t in psutil.Process(os.getpid()).threads()]
    policies: set[tuple[int, ...]] = set()     # (main thread's, every other thread's) while it sends
    while whole.sending:
        try:
            others = [os.sched_getscheduler(t.id) for t in psutil.Process(gen.pid).threads() if t.id != gen.pid]
            policies.add((os.sched_getscheduler(gen.pid), *sorted(set(others))))
        except (OSError, psutil.Error):   # it just ended
            pass
        time.sleep(0.05)
    whole.raise_if_failed()
    stats = whole.stats
    assert stats is not None and stats.sent == stats.scheduled == whole.model.count and stats.acked == stats.sent
    if FIFO_ALLOWED:   # the sending thread real-time while it keeps the schedule, librdkafka's threads not
        assert stats.scheduler == f"SCHED_FIFO {SENDING_FIFO_PRIORITY}"
        assert (os.SCHED_FIFO, os.SCHED_OTHER) in policies, policies
    else:
        assert stats.scheduler is None
    assert all(set(p[1:]) <= {os.SCHED_OTHER} for p in policies), policies
    assert len(stats.handoff_ms) == stats.scheduled and (stats.handoff_ms > 0).all()
    whole.stop()
    assert not psutil.pid_exists(gen.pid) and not _registered(gen.pid)

    cut = _session(svc, "genstop", "30s")
    cut.prepare()
    cut.begin(heartbeat_until_ms=None)
    assert cut.gen is not None and cut.gen.pid is not None
    while cut.stats is None or cut.stats.sent == 0:
        time.sleep(0.1)
    t0 = time.monotonic()
    cut.stop()
    assert time.monotonic() - t0 < 10
    assert not psutil.pid_exists(cut.gen.pid) and not _registered(cut.gen.pid)
    stats = cut.stats
    assert stats is not None and stats.interrupted and 0 < stats.sent < stats.scheduled
